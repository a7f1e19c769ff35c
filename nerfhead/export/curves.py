"""ARKit blendshape curves: a Drive to and from Live Link Face CSV and a JSON form.

The CSV has Live Link Face's columns: ``Timecode, BlendShapeCount``, the 52 ARKit coefficients in ARKit's
order written in Live Link Face's PascalCase (``EyeBlinkLeft, ..., JawOpen, ..., TongueOut``), then
``HeadYaw, HeadPitch, HeadRoll`` and the six eye angles. Readers match names case-insensitively, so ARKit's
camelCase (``eyeBlinkLeft``) headers load too.

Timing, as Unreal's LiveLinkFaceImporter reads it (``ULiveLinkFaceImporterFactory``): the ``HH:MM:SS:FF.fff``
timecode's ``FF.fff`` is a frame count at a rate the importer *guesses*: 60 fps if any row's frame number is
above 30, else 30 fps; a row's time is ``HH*3600 + MM*60 + SS + FF / rate``. So we write rows at exactly 30 or
60 fps, resampling the drive (linear for coefficients, quaternion nlerp for the head): 60 fps for drives above
30 fps (when the take reaches frame 31 of a second, else 30), 30 fps otherwise. Drives at 30 or 60 fps are
written frame for frame (exact round trip).

Angles, as the app writes them (Unreal's AppleARKit ``ToBlendShapeMap``): each of yaw / pitch / roll is the
Unreal rotator angle of ARKit's face (or eye) transform / 180 degrees (so -1..1), yaw and roll negated for an
unmirrored face. nerfhead's head frame is ARKit's face frame (+x the subject's left, +y up, the face looking
toward +z; ``nerfhead.parametric.ict``) and ARKit's axis change into Unreal's frame and that negation cancel,
so with nerfhead's ``R = Ry(yaw) @ Rx(pitch) @ Rz(roll)`` (:func:`head_angles`) the columns are simply
``HeadYaw = yaw / pi``, ``HeadPitch = pitch / pi``, ``HeadRoll = roll / pi``: HeadYaw > 0 when the subject
turns to their own left, HeadPitch > 0 looking down, HeadRoll > 0 tilting toward the right shoulder. Eye
yaw / pitch come from the eyeLook* coefficients in the same units and signs (1.0 of eyeLookOut/In = 30
degrees, eyeLookUp/Down = 25 degrees; roll 0). ``angle_unit="rad"`` / ``"deg"`` write plain radians /
degrees instead.

ICT <-> ARKit: ``name_L`` <-> ``nameLeft``, ``name_R`` <-> ``nameRight``; ARKit's single ``browInnerUp`` and
``cheekPuff`` are the mean of ICT's left and right shapes (and set both on reading); ``tongueOut`` has no ICT
shape: it is carried beside the Drive (``tongue=`` on writing, :func:`read_curves_csv_tongue` on reading).
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
from nerfhead.geometry import (
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    quaternion_to_matrix,
)

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

AngleUnit = Literal["llf", "rad", "deg"]
LLF_SIGNS = (1.0, 1.0, 1.0)
"""nerfhead (yaw, pitch, roll) → Live Link Face (HeadYaw, HeadPitch, HeadRoll) signs (see the module notes)."""
EYE_YAW_DEG = 30.0
EYE_PITCH_DEG = 25.0
LLF_RATES = (30.0, 60.0)
"""Frame rates Unreal's LiveLinkFaceImporter recognises."""


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
    """Axis-angle [..., 3] → (yaw, pitch, roll) [..., 3] radians with ``R = Ry(yaw) Rx(pitch) Rz(roll)`` (head
    frame: +x the subject's left, +y up, +z where the face looks)."""
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


def _angle_scale(unit: str) -> tuple[float, float, float]:
    """Per-axis factor from nerfhead's (yaw, pitch, roll) radians to the CSV's angle columns."""
    if unit == "llf":
        return tuple(sg / math.pi for sg in LLF_SIGNS)  # type: ignore[return-value]
    if unit in ("rad", "deg"):
        k = 180.0 / math.pi if unit == "deg" else 1.0
        return (k, k, k)
    raise ValueError(f"angle_unit must be 'llf', 'rad' or 'deg', got {unit!r}")


def csv_rate(drive_fps: float, n_frames: int) -> float:
    """The 30 or 60 fps our Live Link Face CSV is written at (see the module notes)."""
    if drive_fps <= 30.0:
        return 30.0
    n60 = math.floor((n_frames - 1) / drive_fps * 60.0 + 1e-9) + 1
    return 60.0 if n60 >= 32 else 30.0


def resample(drive: Drive, fps: float, tongue: Tensor | None = None) -> tuple[Drive, Tensor | None]:
    """``drive`` (and an optional [T] tongueOut curve) at ``fps``: samples at k / fps until the last frame's time
    is reached (the final sample holds the last frame):
    coefficients linearly interpolated, rotations by normalised quaternion interpolation. Same fps: unchanged."""
    if float(fps) == drive.fps:
        return drive, tongue
    T = len(drive)
    n = math.ceil((T - 1) / drive.fps * fps - 1e-9) + 1
    u = (torch.arange(n, dtype=torch.float64) * (drive.fps / fps)).clamp(max=T - 1)
    i0 = u.floor().long().clamp(0, T - 1)
    i1 = (i0 + 1).clamp(max=T - 1)
    w = (u - i0.double())[:, None]

    def lerp(x: Tensor) -> Tensor:
        xd = x.detach().cpu().double()
        return ((1 - w) * xd[i0] + w * xd[i1]).to(x.dtype)

    q = matrix_to_quaternion(axis_angle_to_matrix(drive.rotation.detach().cpu().double()))
    qa, qb = q[i0], q[i1]
    qb = torch.where((qa * qb).sum(-1, keepdim=True) < 0, -qb, qb)
    qm = (1 - w) * qa + w * qb
    rot = matrix_to_axis_angle(quaternion_to_matrix(qm / qm.norm(dim=-1, keepdim=True)))
    out = Drive(
        rot.to(drive.rotation.dtype),
        lerp(drive.translation),
        lerp(drive.expression),
        None if drive.latent is None else lerp(drive.latent),
        float(fps),
    )
    return out, None if tongue is None else lerp(tongue.reshape(-1, 1))[:, 0]


def eye_angles(arkit: Tensor) -> Tensor:
    """ARKit coefficients [..., 52] → Live Link Face eye columns [..., 6] (left yaw, pitch, roll, right ...), in
    the app's units (degrees / 180): yaw > 0 toward the subject's left, pitch > 0 looking down (as the head)."""
    A = {a: arkit[..., j] for j, a in enumerate(ARKIT_NAMES)}
    h, v = EYE_YAW_DEG / 180.0, EYE_PITCH_DEG / 180.0
    zero = torch.zeros_like(A["eyeLookOutLeft"])
    left_yaw = (A["eyeLookOutLeft"] - A["eyeLookInLeft"]) * h
    right_yaw = (A["eyeLookInRight"] - A["eyeLookOutRight"]) * h
    left_pitch = (A["eyeLookDownLeft"] - A["eyeLookUpLeft"]) * v
    right_pitch = (A["eyeLookDownRight"] - A["eyeLookUpRight"]) * v
    return torch.stack([left_yaw, left_pitch, zero, right_yaw, right_pitch, zero], dim=-1)


def write_curves_csv(
    drive: Drive, path: str | os.PathLike, angle_unit: AngleUnit = "llf", tongue: Tensor | None = None
) -> Path:
    """Write a Drive as a Live Link Face CSV that Unreal's importer times correctly (atomic write).

    Rows are at :func:`csv_rate` (30 or 60 fps; the drive is resampled when its rate differs).

    Args:
        drive: T timesteps; its latent and translation are not written (use JSON to keep translation).
        path: output ``.csv``.
        angle_unit: head angle columns in the app's units (``llf``), or nerfhead's radians / degrees.
        tongue: optional [T] TongueOut curve (ICT has no tongue shape), written in the TongueOut column.
    """
    if tongue is not None and tongue.reshape(-1).shape[0] != len(drive):
        raise ValueError(f"tongue must have {len(drive)} values, got {tongue.numel()}")
    scale = torch.tensor(_angle_scale(angle_unit), dtype=torch.float64)
    rate = csv_rate(drive.fps, len(drive))
    d, tg = resample(drive.to("cpu"), rate, None if tongue is None else tongue.detach().cpu().float())
    ark_t = ict_to_arkit(d.expression.detach().float())
    if tg is not None:
        ark_t[:, ARKIT_NAMES.index("tongueOut")] = tg.float().clamp(0.0, 1.0)
    ark = ark_t.numpy()
    ang = (head_angles(d.rotation.detach().double()) * scale).float().numpy()
    eyes = eye_angles(ark_t).numpy()
    lines = [",".join(CSV_HEADER)]
    for t in range(len(d)):
        vals = ",".join(_fmt(v) for v in ark[t])
        head = ",".join(_fmt(v) for v in ang[t])
        eye = ",".join(_fmt(v) for v in eyes[t])
        lines.append(f"{_timecode(t / rate, rate)},{len(CSV_HEADER) - 2},{vals},{head},{eye}")
    return atomic_write_text(path, "\n".join(lines) + "\n", newline="")


def read_curves_csv(
    path: str | os.PathLike, fps: float | None = None, angle_unit: AngleUnit = "llf"
) -> Drive:
    """Read a Live Link Face CSV (ours or the app's) into a Drive; see :func:`read_curves_csv_tongue`."""
    return read_curves_csv_tongue(path, fps, angle_unit)[0]


def read_curves_csv_tongue(
    path: str | os.PathLike, fps: float | None = None, angle_unit: AngleUnit = "llf"
) -> tuple[Drive, Tensor]:
    """Read a Live Link Face CSV (ours or the app's) into a Drive and its TongueOut curve [T]; rows are taken
    in file order.

    Args:
        path: the ``.csv``.
        fps: frame rate of the rows; None infers it from the timecodes (needs rows spanning a full second).
        angle_unit: unit of the head angle columns (``llf``: the app's).

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
                    ang[r - 2, k] = float(np.float32(row[col[h.lower()]])) / scale[k]
            tcs.append(row[col["timecode"]])
        except (ValueError, IndexError) as e:
            raise InputError(path, f"line {r}: unreadable value ({e})") from None
    if fps is None:
        fps = _infer_fps(path, tcs)
    if not np.isfinite(ark).all() or not np.isfinite(ang).all():
        raise InputError(path, "non-finite values in curves")
    expr = arkit_to_ict(torch.from_numpy(np.clip(ark, 0.0, 1.0)))
    rot = rotation_from_angles(torch.from_numpy(ang)).float()
    tongue = torch.from_numpy(np.clip(ark[:, ARKIT_NAMES.index("tongueOut")], 0.0, 1.0))
    drive = Drive(rotation=rot, translation=torch.zeros(len(data), 3), expression=expr, latent=None, fps=fps)
    return drive, tongue


def _infer_fps(path: Path, timecodes: list[str]) -> float:
    """Frames per second from ``HH:MM:SS:FF`` timecodes: rows per whole second, else max(FF) + 1, else (a
    take inside one second) Unreal's LiveLinkFaceImporter guess, 60 if some FF > 30 else 30."""
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
    # within one second: Unreal's importer rule (60 if a frame number exceeds 30, else 30)
    return 60.0 if max(ffs) > 30.0 else 30.0


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
