"""The 53 ICT-FaceKit / ARKit-style expression names: the column order of ``Drive.expression``.

Copied once from ``scenes/assets/ict_facekit/ict_facekit_light.npz`` (key ``expr_names``); a test checks that
this literal still equals the bundled file.
"""

from __future__ import annotations

EXPRESSION_NAMES: tuple[str, ...] = (
    "browDown_L",
    "browDown_R",
    "browInnerUp_L",
    "browInnerUp_R",
    "browOuterUp_L",
    "browOuterUp_R",
    "cheekPuff_L",
    "cheekPuff_R",
    "cheekSquint_L",
    "cheekSquint_R",
    "eyeBlink_L",
    "eyeBlink_R",
    "eyeLookDown_L",
    "eyeLookDown_R",
    "eyeLookIn_L",
    "eyeLookIn_R",
    "eyeLookOut_L",
    "eyeLookOut_R",
    "eyeLookUp_L",
    "eyeLookUp_R",
    "eyeSquint_L",
    "eyeSquint_R",
    "eyeWide_L",
    "eyeWide_R",
    "jawForward",
    "jawLeft",
    "jawOpen",
    "jawRight",
    "mouthClose",
    "mouthDimple_L",
    "mouthDimple_R",
    "mouthFrown_L",
    "mouthFrown_R",
    "mouthFunnel",
    "mouthLeft",
    "mouthLowerDown_L",
    "mouthLowerDown_R",
    "mouthPress_L",
    "mouthPress_R",
    "mouthPucker",
    "mouthRight",
    "mouthRollLower",
    "mouthRollUpper",
    "mouthShrugLower",
    "mouthShrugUpper",
    "mouthSmile_L",
    "mouthSmile_R",
    "mouthStretch_L",
    "mouthStretch_R",
    "mouthUpperUp_L",
    "mouthUpperUp_R",
    "noseSneer_L",
    "noseSneer_R",
)
"""Expression coefficient names in ``Drive.expression`` column order (ICT-FaceKit light order)."""

NUM_EXPRESSIONS: int = len(EXPRESSION_NAMES)
"""53."""

EXPRESSION_INDEX: dict[str, int] = {name: i for i, name in enumerate(EXPRESSION_NAMES)}
"""Name -> column in ``Drive.expression``."""
