"""nerfstudio ``transforms.json``: read any nerfstudio/instant-ngp/D-NeRF-style file, and write nerfhead's capture
format, which is a superset of it that nerfstudio reads as it is.

This file is the only place where OpenGL camera-to-world poses (nerfstudio) meet OpenCV world-to-camera
viewmats (everything else in nerfhead): see :func:`opengl_c2w_to_viewmat` and :func:`viewmat_to_opengl_c2w`.

What nerfhead writes (standard nerfstudio keys first, ours after)::

    {"camera_model": "OPENCV" | "PINHOLE",
     "fl_x", "fl_y", "cx", "cy", "w", "h", "k1", "k2", "p1", "p2"[, "k3"]   # top level when every camera shares
                                                                          # the value, else on every frame
     "frames": [{"file_path", "transform_matrix" (4x4 OpenGL c2w), ["mask_path"],
                 "camera_index", "timestep_index", "timestamp" (s), "time" (timestep / (T - 1), D-NeRF style),
                 [per-frame intrinsics]}],
     ["train_filenames", "val_filenames", "test_filenames"],   # from the camera split, for nerfstudio
     "nerfhead": {"version": 1, "fps", "camera_names", "drive": "drive.npz", "audio", "audio_offset",
                  "train_cameras", "test_cameras", "metadata", ["frame_poses": "head"]}}

Head-centred frames (``"frame_poses": "head"``): a capture filmed by one fixed camera (a tracked video: the head
moves, drive.npz holds its motion) would give every frame the same ``transform_matrix``, and nerfstudio's default
dataparser (orientation "up", centring on the mean camera, auto-scale by the largest centred camera offset)
would divide by zero (x 8.4 million). Such captures are written with each frame's camera in the *head's* frame
at that frame's timestep, ``inv(H_t) @ c2w`` with ``H_t`` the drive's head-to-world pose: nerfstudio then sees
what it models, a static head filmed by a moving camera, at a finite scale. nerfhead reads such frames back
into world cameras (``H_t @ transform_matrix``), so its own capture (one camera + drive) is unchanged.

Pose entries are written rounded to 12 decimals so that write -> read -> write is byte identical.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nerfhead.atomic import atomic_write_text
from nerfhead.data.cameras import Cameras, intrinsics_matrix, rigid_problem
from nerfhead.data.capture import Capture, Frame, missing_indices
from nerfhead.data.drive import Drive
from nerfhead.data.images import read_image_size
from nerfhead.errors import InputError
from nerfhead.geometry import rigid_inverse

FORMAT_VERSION = 1
"""Version of the ``nerfhead`` block this code writes (and the newest it reads)."""

SUPPORTED_MODELS = ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL")
"""Perspective camera models with OpenCV-style distortion (a subset of k1, k2, p1, p2, k3)."""

UNSUPPORTED_MODELS = (
    "OPENCV_FISHEYE",
    "FISHEYE624",
    "EQUIRECTANGULAR",
    "OMNIDIRECTIONALSTEREO_L",
    "OMNIDIRECTIONALSTEREO_R",
    "VR180_L",
    "VR180_R",
    "ORTHOPHOTO",
)
"""nerfstudio camera models nerfhead recognises but cannot use."""

_INTRINSICS = ("fl_x", "fl_y", "cx", "cy", "w", "h")
_DIST = ("k1", "k2", "p1", "p2", "k3")
_FRAME_KEYS = {
    "file_path",
    "transform_matrix",
    "mask_path",
    "camera_index",
    "timestep_index",
    "timestamp",
    "time",
}
_FRAME_KEYS |= set(_INTRINSICS) | set(_DIST) | {"k4", "camera_angle_x", "camera_angle_y"}
_TOP_KEYS = {"camera_model", "frames", "nerfhead", "camera_angle_x", "camera_angle_y", "k4"}
_TOP_KEYS |= set(_INTRINSICS) | set(_DIST)
_SPLIT_KEYS = ("train_filenames", "val_filenames", "test_filenames")
_POSE_DECIMALS = 12


# ---------------------------------------------------------------------------------------------- conversion
def opengl_c2w_to_viewmat(c2w: Tensor) -> Tensor:
    """nerfstudio/Blender camera-to-world (OpenGL axes: x right, y up, z back) [..., 4, 4] -> OpenCV
    world-to-camera viewmat (x right, y down, z forward) [..., 4, 4].

    The rotation is transposed; the translation is ``-R^-1 t`` with a solve rather than ``-R^T t``, so the camera
    centre of the result is ``t`` to round-off even when ``R`` is orthonormal only to the file's printed digits
    (this is what makes write -> read -> write byte identical).
    """
    R = c2w[..., :3, :3].clone()
    R[..., :, 1:3] = -R[..., :, 1:3]
    out = torch.zeros_like(c2w)
    out[..., :3, :3] = R.transpose(-1, -2)
    out[..., :3, 3] = -torch.linalg.solve(R, c2w[..., :3, 3:4])[..., 0]
    out[..., 3, 3] = 1
    return out


def viewmat_to_opengl_c2w(viewmat: Tensor) -> Tensor:
    """Inverse of :func:`opengl_c2w_to_viewmat`: OpenCV viewmat [..., 4, 4] -> OpenGL camera-to-world."""
    c2w = rigid_inverse(viewmat)
    c2w[..., :3, 1:3] = -c2w[..., :3, 1:3]
    return c2w


# ----------------------------------------------------------------------------------------------- reading
def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _resolve(root: Path, rel: Any, what: str, path: Path, contained: bool = False) -> Path:
    """``rel`` (from the file ``path``) as a path under ``root``; with ``contained`` an existing file must
    resolve inside ``root`` (after symlinks), so a capture file cannot make a verb read any file on the machine
    (a missing one is reported as missing when it is opened)."""
    if not isinstance(rel, str) or not rel:
        raise InputError(path, f"{what} must be a non-empty string, got {rel!r}")
    p = Path(rel)
    p = p if p.is_absolute() else root / p
    if not p.suffix and not p.exists() and p.with_suffix(".png").exists():  # D-NeRF/Blender omit ".png"
        p = p.with_suffix(".png")
    if (
        contained and p.exists() and not p.resolve().is_relative_to(root.resolve())
    ):  # a missing file reads nothing
        raise InputError(
            path,
            f"{what} {rel!r} points outside the capture folder {root}",
            hint="copy the file into the capture, or pass --allow-outside-paths",
        )
    return p


def _load_json(path: Path) -> Any:
    if not path.exists():
        raise InputError(path, "file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(path, f"cannot read ({type(e).__name__})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(path, f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None


def _frame_pose(fr: dict, i: int, path: Path) -> np.ndarray:
    m = fr.get("transform_matrix")
    if m is None:
        raise InputError(path, f"frame {i} has no transform_matrix")
    try:
        a = np.asarray(m, dtype=np.float64)
    except (TypeError, ValueError):
        a = None
    if a is None or a.shape not in ((4, 4), (3, 4)):
        shape = "ragged" if a is None else list(a.shape)
        raise InputError(
            path, f"frame {i}: transform_matrix must be a 4x4 list of numbers, got shape {shape}"
        )
    what = rigid_problem(torch.from_numpy(a), "transform_matrix")
    if what:
        raise InputError(path, f"frame {i}: {what}")
    if a.shape == (3, 4):
        a = np.concatenate([a, [[0.0, 0.0, 0.0, 1.0]]])
    return a


class _Intrinsics:
    """nerfstudio's rule: a key at the top level applies to every frame, else every frame must carry it."""

    def __init__(self, meta: dict, path: Path):
        self.meta, self.path = meta, path
        self.top_dist = any(k in meta for k in ("k1", "k2", "k3", "p1", "p2"))
        frames = meta["frames"]
        self.has_dist = self.top_dist or any(k in fr for fr in frames for k in _DIST)
        self.has_k3 = "k3" in meta or any("k3" in fr for fr in frames)

    def value(self, fr: dict, i: int, key: str) -> float | None:
        v = self.meta.get(key, fr.get(key))
        if v is not None and not (_is_num(v) and math.isfinite(v)):
            raise InputError(self.path, f"frame {i}: {key} must be a finite number, got {v!r}")
        return v

    def camera(
        self, fr: dict, i: int, image: Path
    ) -> tuple[list[float], list[float] | None, tuple[int, int]]:
        """([fx, fy, cx, cy], dist or None, (w, h)) of frame ``i``."""
        w, h = self.value(fr, i, "w"), self.value(fr, i, "h")
        if w is None or h is None:
            w, h = read_image_size(image)  # instant-ngp / Blender files may omit the size
        if int(w) != w or int(h) != h:
            raise InputError(self.path, f"frame {i}: w and h must be whole pixels, got {w}x{h}")
        fx, fy = self.value(fr, i, "fl_x"), self.value(fr, i, "fl_y")
        if fx is None:
            angle = self.value(fr, i, "camera_angle_x")
            if angle is None:
                raise InputError(
                    self.path, f"frame {i}: no fl_x (give it at the top level or on every frame)"
                )
            fx = 0.5 * w / math.tan(0.5 * angle)
        if fy is None:
            angle_y = self.value(fr, i, "camera_angle_y")
            fy = fx if angle_y is None else 0.5 * h / math.tan(0.5 * angle_y)
        cx, cy = self.value(fr, i, "cx"), self.value(fr, i, "cy")
        cx = w / 2 if cx is None else cx
        cy = h / 2 if cy is None else cy
        k4 = self.value(fr, i, "k4")
        if k4:
            raise InputError(
                self.path, f"frame {i}: k4 = {k4} is a fisheye/higher-order term nerfhead does not use"
            )
        dist = None
        if self.has_dist:
            src = self.meta if self.top_dist else fr
            ks = ("k1", "k2", "p1", "p2", "k3") if self.has_k3 else ("k1", "k2", "p1", "p2")
            dist = [float(self.value(src, i, k) or 0.0) for k in ks]
        return [float(fx), float(fy), float(cx), float(cy)], dist, (int(w), int(h))


def _all_or_none(frames: list[dict], key: str, path: Path) -> bool:
    have = [key in fr for fr in frames]
    if any(have) and not all(have):
        raise InputError(path, f"frame {have.index(False)} lacks {key!r} while other frames have it")
    return all(have)


def _int_key(fr: dict, i: int, key: str, path: Path) -> int:
    v = fr[key]
    if not (_is_num(v) and float(v).is_integer() and v >= 0):
        raise InputError(path, f"frame {i}: {key} must be a non-negative integer, got {v!r}")
    return int(v)


def _read_cameras(meta: dict, path: Path, images: list[Path]) -> tuple[Cameras, list[int]]:
    """The cameras and each frame's camera index."""
    frames: list[dict] = meta["frames"]
    intr = _Intrinsics(meta, path)
    poses = [_frame_pose(fr, i, path) for i, fr in enumerate(frames)]
    cams = [intr.camera(fr, i, images[i]) for i, fr in enumerate(frames)]
    if _all_or_none(frames, "camera_index", path):
        cam_of = [_int_key(fr, i, "camera_index", path) for i, fr in enumerate(frames)]
        N = max(cam_of) + 1
        first: dict[int, int] = {}
        for i, c in enumerate(cam_of):
            j = first.setdefault(c, i)
            if j != i and (cams[i] != cams[j] or np.abs(poses[i] - poses[j]).max() > 1e-9):
                raise InputError(
                    path, f"frames {j} and {i} share camera_index {c} but differ in pose or intrinsics"
                )
        missing = missing_indices(first, N, limit=1)
        if missing:
            raise InputError(
                path, f"camera indices have gaps: no frame uses camera {missing[0]} (of 0..{N - 1})"
            )
        order = [first[c] for c in range(N)]
    else:
        cam_of = list(range(len(frames)))
        order = cam_of
    fx, fy, cx, cy = (torch.tensor([cams[j][0][k] for j in order], dtype=torch.float64) for k in range(4))
    c2w = torch.from_numpy(np.stack([poses[j] for j in order]))
    sizes = torch.tensor([cams[j][2] for j in order], dtype=torch.int64)
    dist = torch.tensor([cams[j][1] for j in order], dtype=torch.float64) if intr.has_dist else None
    names = meta.get("nerfhead", {}).get("camera_names")
    if names is not None and (not isinstance(names, list) or len(names) != len(order)):
        raise InputError(path, f"nerfhead.camera_names must list {len(order)} names")
    names = None if names is None else tuple(names)
    try:
        K = intrinsics_matrix(fx, fy, cx, cy)
        cameras = Cameras(K, opengl_c2w_to_viewmat(c2w), sizes[:, 0], sizes[:, 1], dist, names)
        cameras.check()
    except ValueError as e:
        raise InputError(path, str(e)) from None
    return cameras, cam_of


def _read_times(frames: list[dict], fps: float, path: Path) -> tuple[list[int], list[float]]:
    """Each frame's timestep index and timestamp (s)."""
    if _all_or_none(frames, "timestep_index", path):
        t_of = [_int_key(fr, i, "timestep_index", path) for i, fr in enumerate(frames)]
    elif _all_or_none(frames, "time", path):
        times = [fr["time"] for fr in frames]
        if not all(_is_num(t) and math.isfinite(t) for t in times):
            raise InputError(path, "every frame 'time' must be a finite number")
        rank = {t: k for k, t in enumerate(sorted(set(times)))}
        t_of = [rank[t] for t in times]
    else:
        t_of = [0] * len(frames)
    stamps = []
    for i, fr in enumerate(frames):
        s = fr.get("timestamp", t_of[i] / fps)
        if not (_is_num(s) and math.isfinite(s)):
            raise InputError(path, f"frame {i}: timestamp must be a finite number of seconds, got {s!r}")
        stamps.append(float(s))
    return t_of, stamps


def _read_block(meta: dict, path: Path) -> dict[str, Any]:
    """Capture keyword arguments from the ``nerfhead`` block (fps, drive, audio, splits, metadata)."""
    nh, root = meta.get("nerfhead", {}), path.parent
    fps = nh.get("fps", 25.0)
    if not (_is_num(fps) and math.isfinite(fps) and fps > 0):
        raise InputError(path, f"nerfhead.fps must be a positive number, got {fps!r}")
    out: dict[str, Any] = {"fps": float(fps), "drive": None, "audio_path": None}
    if nh.get("drive") is not None:
        out["drive"] = Drive.load_npz(_resolve(root, nh["drive"], "nerfhead.drive", path))
    if nh.get("audio") is not None:
        audio = _resolve(root, nh["audio"], "nerfhead.audio", path)
        if not audio.is_file():
            raise InputError(audio, "audio file not found", hint=f"referenced by {path}")
        out["audio_path"] = audio
    offset = nh.get("audio_offset", 0.0)
    if not (_is_num(offset) and math.isfinite(offset)):
        raise InputError(path, f"nerfhead.audio_offset must be a number of seconds, got {offset!r}")
    out["audio_offset"] = float(offset)
    for key in ("train_cameras", "test_cameras"):
        v = nh.get(key)
        if v is not None and not (
            isinstance(v, list) and all(_is_num(c) and float(c).is_integer() for c in v)
        ):
            raise InputError(path, f"nerfhead.{key} must be a list of camera indices")
        out[key] = None if v is None else tuple(int(c) for c in v)
    metadata = nh.get("metadata", {})
    if not isinstance(metadata, dict):
        raise InputError(path, "nerfhead.metadata must be a JSON object")
    metadata = dict(metadata)
    extra = {
        k: v for k, v in meta.items() if k not in _TOP_KEYS and not ("nerfhead" in meta and k in _SPLIT_KEYS)
    }
    if extra:
        metadata["nerfstudio_extra"] = extra
    ignored = sorted({k for fr in meta["frames"] for k in fr if k not in _FRAME_KEYS})
    if ignored:
        metadata["ignored_frame_keys"] = ignored
    out["metadata"] = metadata
    return out


def read_transforms(path: str | os.PathLike, allow_outside_paths: bool = False) -> Capture:
    """Read a ``transforms.json`` (a folder holding one, or the file) into a Capture.

    Frames with a ``camera_index`` share that camera (their poses and intrinsics must agree); without it each
    frame is its own camera. Timesteps come from ``timestep_index``, else from distinct ``time`` values, else
    all 0. Image files are not opened here (except for a missing w/h); see ``Capture.check_files``. Every
    ``file_path`` / ``mask_path`` must resolve inside the file's folder unless ``allow_outside_paths``.
    Cameras are float64 (exact values from the file).

    Raises:
        InputError: naming the file and the problem.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "transforms.json"
    path = path.absolute()
    meta = _load_json(path)
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list):
        got = type(meta).__name__ if not isinstance(meta, dict) else "no 'frames' list"
        raise InputError(path, f"expected a JSON object with a 'frames' list, got {got}")
    frames: list = meta["frames"]
    if not frames:
        raise InputError(path, "the frame list is empty")
    for i, fr in enumerate(frames):
        if not isinstance(fr, dict):
            raise InputError(path, f"frame {i} must be a JSON object, got {type(fr).__name__}")
    model = meta.get("camera_model", "PINHOLE")
    hint = f"use one of {', '.join(SUPPORTED_MODELS)}"
    if model in UNSUPPORTED_MODELS:
        raise InputError(path, f"camera model {model!r} is not supported", hint=hint)
    if model not in SUPPORTED_MODELS:
        raise InputError(path, f"unknown camera model {model!r}", hint=hint)
    nh = meta.get("nerfhead", {})
    if not isinstance(nh, dict):
        raise InputError(path, "'nerfhead' must be a JSON object")
    if _is_num(nh.get("version")) and nh["version"] > FORMAT_VERSION:
        raise InputError(
            path, f"written by a newer nerfhead (format {nh['version']})", hint="upgrade nerfhead"
        )

    root = path.parent
    images = [
        _resolve(root, fr.get("file_path"), f"frame {i} file_path", path, not allow_outside_paths)
        for i, fr in enumerate(frames)
    ]
    masks = [
        _resolve(root, fr["mask_path"], f"frame {i} mask_path", path, not allow_outside_paths)
        if "mask_path" in fr
        else None
        for i, fr in enumerate(frames)
    ]
    kw = _read_block(meta, path)
    t_of, stamps = _read_times(frames, kw["fps"], path)
    if nh.get("frame_poses", "world") not in ("world", "head"):
        raise InputError(path, f"nerfhead.frame_poses must be 'world' or 'head', got {nh['frame_poses']!r}")
    if nh.get("frame_poses") == "head":
        meta = {**meta, "frames": _world_frames(frames, t_of, kw["drive"], path)}
    cameras, cam_of = _read_cameras(meta, path, images)
    cap_frames = tuple(Frame(cam_of[i], t_of[i], stamps[i], images[i], masks[i]) for i in range(len(frames)))
    try:
        return Capture(cameras, cap_frames, **kw)
    except ValueError as e:
        raise InputError(path, str(e)) from None


def _world_frames(frames: list[dict], t_of: list[int], drive: Drive | None, path: Path) -> list[dict]:
    """Head-centred frames (``frame_poses: head``) with their poses mapped back to world: ``H_t @ pose``."""
    if drive is None:
        raise InputError(path, "nerfhead.frame_poses is 'head' but there is no nerfhead.drive")
    if max(t_of) >= len(drive):
        raise InputError(path, f"timestep {max(t_of)} has no head pose (the drive has {len(drive)})")
    H = head_poses(drive)
    out = []
    for i, fr in enumerate(frames):
        pose = _frame_pose(fr, i, path)
        pose = np.vstack([pose, [0.0, 0.0, 0.0, 1.0]]) if pose.shape[0] == 3 else pose
        world = H[t_of[i]] @ torch.from_numpy(pose)
        out.append({**fr, "transform_matrix": world.tolist()})
    return out


# ----------------------------------------------------------------------------------------------- writing
def _rel(p: Path, root: Path) -> str:
    return Path(os.path.relpath(Path(p).absolute(), root)).as_posix()


def _pose_list(m: Tensor) -> list[list[float]]:
    return [[round(float(v), _POSE_DECIMALS) + 0.0 for v in row] for row in m.tolist()]


def head_poses(drive: Drive) -> Tensor:
    """Head-to-world transforms [T, 4, 4] (float64) of a drive."""
    from nerfhead.geometry import axis_angle_to_matrix

    H = torch.eye(4, dtype=torch.float64).repeat(len(drive), 1, 1)
    H[:, :3, :3] = axis_angle_to_matrix(drive.rotation.detach().cpu().double())
    H[:, :3, 3] = drive.translation.detach().cpu().double()
    return H


def writes_head_centred(capture: Capture) -> bool:
    """Whether :func:`transforms_dict` writes head-centred frames: a drive, and every frame seen by one camera."""
    return capture.drive is not None and len({f.camera for f in capture.frames}) == 1


def transforms_dict(capture: Capture, root: str | os.PathLike, drive_file: str | None = "drive.npz") -> dict:
    """The JSON object :func:`write_transforms` writes, with paths relative to ``root`` (one-camera captures with a
    drive get head-centred frame poses, see the module notes).

    Raises:
        ValueError: the cameras have skew (nerfstudio has no skew key).
    """
    root = Path(root).absolute()
    cams = capture.cameras.to(dtype=torch.float64)
    if bool((cams.K[:, 0, 1] != 0).any()):
        raise ValueError("transforms.json cannot store a skewed K (K[0, 1] != 0)")
    per_cam: dict[str, list] = {
        "fl_x": cams.K[:, 0, 0].tolist(),
        "fl_y": cams.K[:, 1, 1].tolist(),
        "cx": cams.K[:, 0, 2].tolist(),
        "cy": cams.K[:, 1, 2].tolist(),
        "w": cams.width.tolist(),
        "h": cams.height.tolist(),
    }
    dist_keys = _DIST[: cams.dist.shape[1]] if cams.dist is not None else ()
    dist = cams.dist.tolist() if cams.dist is not None else []
    shared = {k: v[0] for k, v in per_cam.items() if all(x == v[0] for x in v)}
    dist_shared = bool(dist) and all(d == dist[0] for d in dist)
    out: dict[str, Any] = {"camera_model": "OPENCV" if cams.dist is not None else "PINHOLE", **shared}
    if dist_shared:
        out.update(zip(dist_keys, dist[0], strict=True))
    c2w = viewmat_to_opengl_c2w(cams.viewmat)
    poses = [_pose_list(m) for m in c2w]
    head_centred = writes_head_centred(capture)
    H_inv = rigid_inverse(head_poses(capture.drive)) if capture.drive is not None and head_centred else None
    T = capture.num_timesteps
    frames = []
    for f in capture.frames:
        pose = poses[f.camera] if H_inv is None else _pose_list(H_inv[f.timestep] @ c2w[f.camera])
        fr: dict[str, Any] = {"file_path": _rel(f.image_path, root), "transform_matrix": pose}
        if f.mask_path is not None:
            fr["mask_path"] = _rel(f.mask_path, root)
        fr.update(camera_index=f.camera, timestep_index=f.timestep, timestamp=float(f.timestamp))
        fr["time"] = f.timestep / (T - 1) if T > 1 else 0.0
        fr.update({k: v[f.camera] for k, v in per_cam.items() if k not in shared})
        if dist and not dist_shared:
            fr.update(zip(dist_keys, dist[f.camera], strict=True))
        frames.append(fr)
    out["frames"] = frames
    out.update(capture.metadata.get("nerfstudio_extra", {}))
    if capture.train_cameras is not None and capture.test_cameras is not None:
        test = set(capture.test_cameras)
        train = set(capture.train_cameras)
        out["train_filenames"] = [
            fr["file_path"] for fr, f in zip(frames, capture.frames, strict=True) if f.camera in train
        ]
        test_files = [
            fr["file_path"] for fr, f in zip(frames, capture.frames, strict=True) if f.camera in test
        ]
        out["val_filenames"] = test_files
        out["test_filenames"] = test_files
    nh: dict[str, Any] = {"version": FORMAT_VERSION, "fps": float(capture.fps)}
    if cams.names is not None:
        nh["camera_names"] = list(cams.names)
    if capture.drive is not None and drive_file is not None:
        nh["drive"] = drive_file
    if capture.audio_path is not None:
        nh["audio"] = _rel(capture.audio_path, root)
        nh["audio_offset"] = float(capture.audio_offset)
    if capture.train_cameras is not None:
        nh["train_cameras"] = list(capture.train_cameras)
    if capture.test_cameras is not None:
        nh["test_cameras"] = list(capture.test_cameras)
    if head_centred:
        nh["frame_poses"] = "head"
    meta = {k: v for k, v in capture.metadata.items() if k not in ("nerfstudio_extra", "ignored_frame_keys")}
    if meta:
        nh["metadata"] = meta
    out["nerfhead"] = nh
    return out


_NUMBER_ROW = re.compile(r"\[\n\s*([-0-9.eE+,\s]+?)\n\s*\]")


def dumps(d: dict) -> str:
    """Deterministic JSON text: 2-space indent, arrays of numbers on one line, no NaN, trailing newline."""
    text = json.dumps(d, indent=2, allow_nan=False)
    return (
        _NUMBER_ROW.sub(lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)
        + "\n"
    )


def write_transforms(capture: Capture, path: str | os.PathLike, drive_file: str | None = "drive.npz") -> Path:
    """Write ``capture`` as a ``transforms.json`` (atomic) plus, when it has a drive, ``drive_file`` beside it.

    Image, mask and audio files are referenced by relative paths; images and masks outside the JSON's folder
    are first hard-linked (copied across file systems) into ``images/`` there, since readers accept only paths
    inside a capture's folder (:meth:`Capture.contained`).

    Returns:
        the JSON path.
    """
    path = Path(path)
    if path.suffix != ".json":
        path = path / "transforms.json"
    path = path.absolute()
    capture = capture.contained(path.parent)
    d = transforms_dict(capture, path.parent, drive_file)
    atomic_write_text(path, dumps(d))
    if capture.drive is not None and drive_file is not None:
        capture.drive.save_npz(path.parent / drive_file)
    return path


def save_capture(capture: Capture, folder: str | os.PathLike) -> Path:
    """Write ``capture`` into ``folder`` as ``transforms.json`` (+ ``drive.npz``); returns the JSON path."""
    return write_transforms(capture, Path(folder) / "transforms.json")
