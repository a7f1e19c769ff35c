"""The capture rig: renders the rigged real-scan head (``nerfhead.parametric.load_rigged_head``) performing a
drive, filmed by calibrated cameras, and writes a capture with ground truth (drive, masks, cameras).

>>> from nerfhead.synth import RigConfig, SynthConfig, render_capture, default_capture
"""

from nerfhead.synth.capture import SYNTH_VERSION, SynthConfig, head_renderer, render_capture
from nerfhead.synth.default_scene import DEFAULT_SCENE, cache_root, default_capture
from nerfhead.synth.preview import PREVIEW_EXPRESSIONS, render_preview
from nerfhead.synth.rig import NERSEMBLE16_LAYOUT, NERSEMBLE16_TEST, RIGS, Rig, RigConfig, make_rig
from nerfhead.synth.script import ScriptConfig, expressive_drive, load_drive_file

__all__ = [
    "DEFAULT_SCENE",
    "NERSEMBLE16_LAYOUT",
    "NERSEMBLE16_TEST",
    "PREVIEW_EXPRESSIONS",
    "RIGS",
    "SYNTH_VERSION",
    "Rig",
    "RigConfig",
    "ScriptConfig",
    "SynthConfig",
    "cache_root",
    "default_capture",
    "expressive_drive",
    "head_renderer",
    "load_drive_file",
    "make_rig",
    "render_capture",
    "render_preview",
]
