"""nerfstudio ``camera_path.json`` as ``ns-render camera-path`` reads it, resampled at a drive's frame times.

What nerfstudio (1.1.x, ``nerfstudio/cameras/camera_paths.py: get_path_from_json`` and ``scripts/render.py``) does
with the file, and what we do the same way:

- ``camera_path``: one entry per rendered frame, each a flattened 4x4 OpenGL ``camera_to_world`` and a vertical
  ``fov`` in degrees (focal = (render_height / 2) / tan(fov / 2)); the principal point is the image centre.
- Timing: entry ``i`` is shown at ``i / fps`` seconds where ``fps = len(camera_path) / seconds``
  (``seconds`` from the file; else its ``fps``; else the drive's frame rate, one entry per drive frame).
  A drive frame at time ``t`` takes the pose between the two entries around ``t * fps``: rotation slerped,
  position and fov linearly interpolated; past the path's end the last camera holds.
- ``camera_type``: ``perspective`` (the default when absent); fisheye / equirectangular / omnidirectional /
  vr180 are refused with one line.
- A path drawn in nerfstudio's viewer lives in the dataparser's normalised frame. Given the run's
  ``dataparser_transforms.json`` (``{"transform": 3x4, "scale": s}``; nerfstudio maps world poses by
  ``c2w' = transform @ c2w`` then ``t' *= scale``) the inverse brings the path back to the capture's frame.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from nerfhead.data.cameras import Cameras
from nerfhead.errors import InputError
from nerfhead.export.talk import CameraFn
from nerfhead.geometry import matrix_to_quaternion, quaternion_to_matrix

SUPPORTED_CAMERA_TYPES = ("perspective",)
OTHER_CAMERA_TYPES = ("fisheye", "equirectangular", "omnidirectional", "vr180")


@dataclass(frozen=True)
class CameraPath:
    """Per-entry OpenGL camera-to-world poses [N, 4, 4] (float64), vertical fovs [N] (degrees), image size and
    the path's frame rate (entries per second)."""

    c2w: Tensor
    fov: Tensor
    width: int
    height: int
    fps: float

    def __len__(self) -> int:
        return self.c2w.shape[0]

    @property
    def seconds(self) -> float:
        return len(self) / self.fps

    def at_time(self, t: float) -> tuple[Tensor, float]:
        """OpenGL camera-to-world [4, 4] (float64) and vertical fov (degrees) at ``t`` seconds."""
        u = min(max(t * self.fps, 0.0), len(self) - 1.0)
        i = min(int(math.floor(u)), len(self) - 1)
        j = min(i + 1, len(self) - 1)
        w = u - i
        out = torch.eye(4, dtype=torch.float64)
        out[:3, :3] = _slerp_rot(self.c2w[i, :3, :3], self.c2w[j, :3, :3], w)
        out[:3, 3] = (1 - w) * self.c2w[i, :3, 3] + w * self.c2w[j, :3, 3]
        return out, float((1 - w) * self.fov[i] + w * self.fov[j])

    def camera_at_time(self, t: float) -> Cameras:
        """A single pinhole camera (nerfhead's OpenCV view matrix) at ``t`` seconds."""
        from nerfhead.data.nerfstudio import opengl_c2w_to_viewmat

        c2w, fov = self.at_time(t)
        f = 0.5 * self.height / math.tan(math.radians(fov) / 2)
        K = torch.tensor([[f, 0, self.width / 2], [0, f, self.height / 2], [0, 0, 1]], dtype=torch.float32)
        view = opengl_c2w_to_viewmat(c2w[None]).float()
        return Cameras(K[None], view, torch.tensor([self.width]), torch.tensor([self.height]))


def _slerp_rot(Ra: Tensor, Rb: Tensor, w: float) -> Tensor:
    """Rotation matrix a fraction ``w`` of the way from ``Ra`` to ``Rb`` (shortest arc)."""
    if w <= 0.0:
        return Ra.clone()
    if w >= 1.0:
        return Rb.clone()
    qa, qb = matrix_to_quaternion(Ra.double()), matrix_to_quaternion(Rb.double())
    d = float((qa * qb).sum())
    if d < 0:
        qb, d = -qb, -d
    if d > 0.9995:
        q = qa + w * (qb - qa)
    else:
        th = math.acos(min(1.0, d))
        q = (math.sin((1 - w) * th) * qa + math.sin(w * th) * qb) / math.sin(th)
    return quaternion_to_matrix(q / q.norm())


def read_dataparser_transform(path: str | os.PathLike) -> tuple[Tensor, float]:
    """nerfstudio's ``dataparser_transforms.json``: the 4x4 transform (float64) and the scale.

    Raises:
        InputError: missing file, not JSON, no 3x4 ``transform`` or non-positive ``scale``.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "dataparser transforms not found")
    try:
        d = json.loads(p.read_text())
        T = torch.tensor(d["transform"], dtype=torch.float64).reshape(-1, 4)
        s = float(d["scale"])
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
        raise InputError(
            p, f"not a nerfstudio dataparser_transforms.json ({type(e).__name__}: {e})"
        ) from None
    if T.shape[0] not in (3, 4) or not torch.isfinite(T).all() or not (math.isfinite(s) and s > 0):
        raise InputError(p, "dataparser transform must be a finite 3x4 matrix and scale a positive number")
    M = torch.eye(4, dtype=torch.float64)
    M[:3] = T[:3]
    return M, s


def to_dataparser_frame(c2w: Tensor, transform: Tensor, scale: float) -> Tensor:
    """World camera-to-world [..., 4, 4] → nerfstudio's normalised frame (what its dataparser does)."""
    out = transform @ c2w
    out[..., :3, 3] = out[..., :3, 3] * scale
    return out


def from_dataparser_frame(c2w: Tensor, transform: Tensor, scale: float) -> Tensor:
    """Inverse of :func:`to_dataparser_frame`."""
    x = c2w.clone()
    x[..., :3, 3] = x[..., :3, 3] / scale
    return torch.linalg.inv(transform) @ x


def read_camera_path(
    path: str | os.PathLike, default_fps: float, dataparser_transforms: str | os.PathLike | None = None
) -> CameraPath:
    """Read a nerfstudio ``camera_path.json`` (see the module notes for timing and frames).

    Raises:
        InputError: unreadable file, missing keys, unsupported camera_type, non-positive seconds / fps,
            non-finite or degenerate poses.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "camera path not found")
    try:
        data = json.loads(p.read_text())
        keys = data["camera_path"]
        w, h = int(data["render_width"]), int(data["render_height"])
        ctype = str(data.get("camera_type", "perspective")).lower()
        c2w = torch.tensor([k["camera_to_world"] for k in keys], dtype=torch.float64).reshape(-1, 4, 4)
        fov = torch.tensor([float(k.get("fov", 50.0)) for k in keys], dtype=torch.float64)
        seconds = data.get("seconds")
        fps_key = data.get("fps")
        seconds = None if seconds is None else float(seconds)
        fps_key = None if fps_key is None else float(fps_key)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
        raise InputError(p, f"not a nerfstudio camera_path.json ({e.__class__.__name__}: {e})") from None
    if ctype not in SUPPORTED_CAMERA_TYPES:
        raise InputError(p, f"camera_type {ctype!r} is not supported (perspective only)")
    if len(keys) == 0 or not torch.isfinite(c2w).all() or not torch.isfinite(fov).all():
        raise InputError(p, "camera path is empty or has non-finite values")
    if w < 1 or h < 1:
        raise InputError(p, f"render size {w}x{h} must be positive")
    if ((fov <= 0) | (fov >= 180)).any():
        raise InputError(p, "fov must lie in (0, 180) degrees")
    if (torch.linalg.det(c2w[:, :3, :3]) < 0.5).any():
        raise InputError(p, "camera path has a degenerate rotation")
    if seconds is not None:
        if not (math.isfinite(seconds) and seconds > 0):
            raise InputError(p, f"seconds must be positive, got {seconds}")
        fps = len(keys) / seconds
    elif fps_key is not None:
        if not (math.isfinite(fps_key) and fps_key > 0):
            raise InputError(p, f"fps must be positive, got {fps_key}")
        fps = fps_key
    else:
        fps = float(default_fps)
    if dataparser_transforms is not None:
        M, s = read_dataparser_transform(dataparser_transforms)
        c2w = from_dataparser_frame(c2w, M, s)
    return CameraPath(c2w, fov, w, h, fps)


def camera_path_cameras(
    path: str | os.PathLike, fps: float, dataparser_transforms: str | os.PathLike | None = None
) -> tuple[CameraFn, int]:
    """Camera for drive frame ``i`` (at ``i / fps`` seconds) from a camera_path.json, and the image height."""
    cp = read_camera_path(path, fps, dataparser_transforms)

    def at(i: int) -> Cameras:
        return cp.camera_at_time(i / fps)

    return at, cp.height
