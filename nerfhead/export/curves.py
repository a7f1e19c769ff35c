"""ARKit blendshape curves: a Drive to and from Live Link Face style CSV and a JSON form.

The CSV has Live Link Face's columns: ``Timecode, BlendShapeCount``, the 52 ARKit coefficients in ARKit's
order written in Live Link Face's PascalCase (``EyeBlinkLeft, ..., JawOpen, ..., TongueOut``), then
``HeadYaw, HeadPitch, HeadRoll`` and the six eye angles (written as 0). Readers match names case-insensitively,
so ARKit's camelCase (``eyeBlinkLeft``) headers load too.

ICT ↔ ARKit: ``name_L`` ↔ ``nameLeft``, ``name_R`` ↔ ``nameRight``; ARKit's single ``browInnerUp`` and
``cheekPuff`` are the mean of ICT's left and right shapes (and set both on reading); ``tongueOut`` has no ICT
shape (written 0, ignored on reading). Coefficients round-trip exactly (float32); head angles to float32
rounding.

Head angles: ``R = Ry(yaw) @ Rx(pitch) @ Rz(roll)`` for the Drive's head-to-world rotation in nerfhead's OpenCV
axes (x right, y down, z forward), radians unless ``angle_unit="deg"``.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from nerfhead.atomic import atomic_write_text
from nerfhead.data.drive import Drive
from nerfhead.data.expressions import EXPRESSION_INDEX, NUM_EXPRESSIONS
from nerfhead.errors import InputError
from nerfhead.geometry import axis_angle_to_matrix, matrix_to_axis_angle

ARKIT_NAMES: tuple[str, ...] = (
    *("eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft"),
    *("eyeSquintLeft", "eyeWideLeft"),
    *("eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight"),
    *("eyeSquintRight", "eyeWideRight"),
    *("jawForward", "jawRight", "jawLeft", "jawOpen"),
    *("mouthClose", "mouthFunnel", "mouthPucker", "mouthRight", "mouthLeft"),
    *("mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight"),
    *("mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight"),
    *("mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper"),
    *("mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight"),
    *("mouthUpperUpLeft", "mouthUpperUpRight"),
    *("browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight"),
    *("cheekPuff", "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft", "noseSneerRight", "tongueOut"),
)
"""The 52 ARKit blendshapes in ARKit / Live Link Face order."""

HEAD_COLUMNS = ("HeadYaw", "HeadPitch", "HeadRoll")
EYE_COLUMNS = ("LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll", "RightEyeYaw", "RightEyePitch", "RightEyeRoll")
CSV_HEADER: tuple[str, ...] = (
    "Timecode",
    "BlendShapeCount",
    *(n[0].upper() + n[1:] for n in ARKIT_NAMES),
    *HEAD_COLUMNS,
    *EYE_COLUMNS,
)
"""Live Link Face CSV columns (BlendShapeCount = 61: 52 shapes + 9 angles)."""


def _ict_sources(arkit: str) -> tuple[str, ...]:
    """ICT names feeding one ARKit name (empty for tongueOut)."""
    if arkit in EXPRESSION_INDEX:
        return (arkit,)
    for side, suffix in (("Left", "_L"), ("Right", "_R")):
        if arkit.endswith(side) and arkit[: -len(side)] + suffix in EXPRESSION_INDEX:
            return (arkit[: -len(side)] + suffix,)
    pair = (arkit + "_L", arkit + "_R")
    return pair if all(p in EXPRESSION_INDEX for p in pair) else ()


ARKIT_TO_ICT: dict[str, tuple[str, ...]] = {a: _ict_sources(a) for a in ARKIT_NAMES}
"""ARKit name → the ICT name(s) it stands for (two for browInnerUp and cheekPuff, none for tongueOut)."""


def ict_to_arkit(expression: Tensor) -> Tensor:
    """ICT coefficients [..., 53] → ARKit coefficients [..., 52] (pairs averaged, tongueOut 0)."""
    out = expression.new_zeros(*expression.shape[:-1], len(ARKIT_NAMES))
    for j, a in enumerate(ARKIT_NAMES):
        src = ARKIT_TO_ICT[a]
        if len(src) == 1:
            out[..., j] = expression[..., EXPRESSION_INDEX[src[0]]]
        elif len(src) == 2:
            out[..., j] = 0.5 * (
                expression[..., EXPRESSION_INDEX[src[0]]] + expression[..., EXPRESSION_INDEX[src[1]]]
            )
    return out


def arkit_to_ict(arkit: Tensor) -> Tensor:
    """ARKit coefficients [..., 52] → ICT coefficients [..., 53] (a merged ARKit shape sets both ICT sides)."""
    out = arkit.new_zeros(*arkit.shape[:-1], NUM_EXPRESSIONS)
    for j, a in enumerate(ARKIT_NAMES):
        for s in ARKIT_TO_ICT[a]:
            out[..., EXPRESSION_INDEX[s]] = arkit[..., j]
    return out


def head_angles(rotation: Tensor) -> Tensor:
    """Axis-angle [..., 3] → (yaw, pitch, roll) [..., 3] radians with ``R = Ry(yaw) Rx(pitch) Rz(roll)``."""
    R = axis_angle_to_matrix(rotation.double())
    pitch = torch.asin((-R[..., 1, 2]).clamp(-1.0, 1.0))
    yaw = torch.atan2(R[..., 0, 2], R[..., 2, 2])
    roll = torch.atan2(R[..., 1, 0], R[..., 1, 1])
    return torch.stack([yaw, pitch, roll], dim=-1).to(rotation.dtype)


def rotation_from_angles(angles: Tensor) -> Tensor:
    """(yaw, pitch, roll) [..., 3] radians → axis-angle [..., 3] (inverse of :func:`head_angles`)."""
    a = angles.double()
    cy, sy = torch.cos(a[..., 0]), torch.sin(a[..., 0])
    cp, sp = torch.cos(a[..., 1]), torch.sin(a[..., 1])
    cr, sr = torch.cos(a[..., 2]), torch.sin(a[..., 2])
    one, zero = torch.ones_like(cy), torch.zeros_like(cy)
    Ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(*a.shape[:-1], 3, 3)
    Rx = torch.stack([one, zero, zero, zero, cp, -sp, zero, sp, cp], -1).reshape(*a.shape[:-1], 3, 3)
    Rz = torch.stack([cr, -sr, zero, sr, cr, zero, zero, zero, one], -1).reshape(*a.shape[:-1], 3, 3)
    return matrix_to_axis_angle(Ry @ Rx @ Rz).to(angles.dtype)


def _fmt(x: np.float32) -> str:
    return np.format_float_positional(x, unique=True, trim="-")


def _timecode(t: float, fps: float) -> str:
    """``HH:MM:SS:FF.fff`` with FF.fff the (fractional) frame within the second at ``fps``."""
    whole = math.floor(t + 1e-9)
    frames = max(0.0, (t - whole) * fps)
    h, rem = divmod(whole, 3600)
    m, s = divmod(rem, 60)
    return f"{h:02d}:{m:02d}:{s:02d}:{frames:06.3f}"


def _angle_scale(unit: str) -> float:
    if unit not in ("rad", "deg"):
        raise ValueError(f"angle_unit must be 'rad' or 'deg', got {unit!r}")
    return 180.0 / math.pi if unit == "deg" else 1.0


def write_curves_csv(
    drive: Drive, path: str | os.PathLike, angle_unit: Literal["rad", "deg"] = "rad"
) -> Path:
    """Write a Drive as a Live Link Face style CSV (one row per timestep; atomic write).

    Args:
        drive: T timesteps; its latent and translation are not written (use JSON to keep translation).
        path: output ``.csv``.
        angle_unit: unit of the head angle columns.
    """
    scale = _angle_scale(angle_unit)
    ark = ict_to_arkit(drive.expression.detach().cpu().float()).numpy()
    ang = (head_angles(drive.rotation.detach().cpu().double()) * scale).float().numpy()
    lines = [",".join(CSV_HEADER)]
    eyes = ",".join(["0"] * len(EYE_COLUMNS))
    for t in range(len(drive)):
        vals = ",".join(_fmt(v) for v in ark[t])
        head = ",".join(_fmt(v) for v in ang[t])
        lines.append(f"{_timecode(t / drive.fps, drive.fps)},{len(CSV_HEADER) - 2},{vals},{head},{eyes}")
    return atomic_write_text(path, "\n".join(lines) + "\n", newline="")


def read_curves_csv(
    path: str | os.PathLike, fps: float | None = None, angle_unit: Literal["rad", "deg"] = "rad"
) -> Drive:
    """Read a Live Link Face style CSV (ours or the app's) into a Drive; rows are taken in file order.

    Args:
        path: the ``.csv``.
        fps: frame rate of the rows; None infers it from the timecodes (needs rows spanning a full second).
        angle_unit: unit of the head angle columns.

    Raises:
        InputError: naming ``path``: missing, no Timecode / blendshape columns, unparsable numbers, fps not
            inferable.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "curves file not found")
    scale = _angle_scale(angle_unit)
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    if not rows:
        raise InputError(path, "empty curves CSV")
    header = [h.strip().lower() for h in rows[0]]
    col = {h: i for i, h in enumerate(header)}
    if "timecode" not in col:
        raise InputError(path, "not a Live Link Face CSV (no Timecode column)")
    found = [a for a in ARKIT_NAMES if a.lower() in col]
    if not found:
        raise InputError(path, "no ARKit blendshape columns (e.g. JawOpen, EyeBlinkLeft)")
    data = rows[1:]
    ark = np.zeros((len(data), len(ARKIT_NAMES)), np.float32)
    ang = np.zeros((len(data), 3), np.float64)
    tcs: list[str] = []
    for r, row in enumerate(data, start=2):
        try:
            for j, a in enumerate(ARKIT_NAMES):
                if a.lower() in col:
                    ark[r - 2, j] = np.float32(row[col[a.lower()]])
            for k, h in enumerate(HEAD_COLUMNS):
                if h.lower() in col:
                    ang[r - 2, k] = float(np.float32(row[col[h.lower()]])) / scale
            tcs.append(row[col["timecode"]])
        except (ValueError, IndexError) as e:
            raise InputError(path, f"line {r}: unreadable value ({e})") from None
    if fps is None:
        fps = _infer_fps(path, tcs)
    if not np.isfinite(ark).all() or not np.isfinite(ang).all():
        raise InputError(path, "non-finite values in curves")
    expr = arkit_to_ict(torch.from_numpy(np.clip(ark, 0.0, 1.0)))
    rot = rotation_from_angles(torch.from_numpy(ang)).float()
    return Drive(rotation=rot, translation=torch.zeros(len(data), 3), expression=expr, latent=None, fps=fps)


def _infer_fps(path: Path, timecodes: list[str]) -> float:
    """Frames per second from ``HH:MM:SS:FF`` timecodes: rows per whole second, else max(FF) + 1."""
    try:
        parts = [tc.strip().split(":") for tc in timecodes]
        secs = [int(p[0]) * 3600 + int(p[1]) * 60 + int(p[2]) for p in parts]
        ffs = [float(p[3]) for p in parts]
    except (ValueError, IndexError):
        raise InputError(
            path, "unreadable Timecode (expected HH:MM:SS:FF)", hint="pass fps explicitly"
        ) from None
    distinct = sorted(set(secs))
    if len(distinct) >= 3:  # rows in the seconds fully inside the take
        return float(np.median([secs.count(s) for s in distinct[1:-1]]))
    if len(distinct) == 2:  # the first second rolled over: frames 0 .. fps-1 were used
        return float(round(max(ffs)) + 1)
    raise InputError(path, "cannot infer fps from timecodes within one second", hint="pass fps explicitly")


def write_curves_json(drive: Drive, path: str | os.PathLike) -> Path:
    """Write a Drive as JSON: ARKit coefficients per frame plus head pose (exact round trip of both).

    Layout: ``{"format": "nerfhead.arkit_curves", "version": 1, "fps", "names": [52 ARKit names],
    "frames": [[52 floats], ...], "head_rotation": [[axis-angle x, y, z], ...],
    "head_translation": [[x, y, z] metres, ...], "head_yaw_pitch_roll": [[rad x3], ...]}``.
    """
    cpu = drive.to("cpu")
    ark = ict_to_arkit(cpu.expression.float()).numpy()
    doc = {
        "format": "nerfhead.arkit_curves",
        "version": 1,
        "fps": drive.fps,
        "names": list(ARKIT_NAMES),
        "frames": [[float(v) for v in row] for row in ark],
        "head_rotation": cpu.rotation.double().tolist(),
        "head_translation": cpu.translation.double().tolist(),
        "head_yaw_pitch_roll": head_angles(cpu.rotation.double()).tolist(),
    }
    return atomic_write_text(path, json.dumps(doc, separators=(",", ":")) + "\n", newline="")


def read_curves_json(path: str | os.PathLike) -> Drive:
    """Read :func:`write_curves_json` output (names may come in any order; missing ones are 0).

    Raises:
        InputError: naming ``path``: missing, not JSON, missing keys or inconsistent lengths.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "curves file not found")
    try:
        doc = json.loads(path.read_text())
        fps = float(doc["fps"])
        names = [str(n).lower() for n in doc["names"]]
        frames = np.asarray(doc["frames"], np.float32).reshape(-1, len(names))
        T = frames.shape[0]
        rot = np.asarray(doc.get("head_rotation") or np.zeros((T, 3)), np.float32).reshape(T, 3)
        trans = np.asarray(doc.get("head_translation") or np.zeros((T, 3)), np.float32).reshape(T, 3)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(path, f"not a curves JSON file ({type(e).__name__}: {e})") from None
    lookup = {n: i for i, n in enumerate(names)}
    ark = np.zeros((T, len(ARKIT_NAMES)), np.float32)
    for j, a in enumerate(ARKIT_NAMES):
        if a.lower() in lookup:
            ark[:, j] = frames[:, lookup[a.lower()]]
    expr = arkit_to_ict(torch.from_numpy(np.clip(ark, 0.0, 1.0)))
    try:
        return Drive(torch.from_numpy(rot), torch.from_numpy(trans), expr, None, fps)
    except ValueError as e:
        raise InputError(path, str(e)) from None
