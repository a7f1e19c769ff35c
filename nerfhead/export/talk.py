"""Render an avatar along a Drive from a fixed, orbiting or scripted (nerfstudio camera_path.json) camera,
streaming frames in chunks so clip length does not grow memory."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import Tensor

from nerfhead.data.cameras import Cameras
from nerfhead.data.drive import Drive
from nerfhead.errors import InputError

CameraFn = Callable[[int], Cameras]
"""Frame index → a single camera."""


def head_centre(base: Drive) -> Tensor:
    """World position of the head (mean drive translation) [3]."""
    return base.translation.float().mean(0)


def fixed_camera(
    target: Tensor, res: int, distance: float = 1.0, fov_deg: float = 18.0, yaw_deg: float = 0.0
):
    """A camera ``distance`` metres in front of ``target`` (the face looks toward +z), rotated by ``yaw_deg``."""
    f = 0.5 * res / math.tan(math.radians(fov_deg) / 2)
    yaw = math.radians(yaw_deg)
    eye = target + distance * torch.tensor([math.sin(yaw), 0.0, math.cos(yaw)])
    return Cameras.from_look_at(eye[None], target, torch.tensor([0.0, 1.0, 0.0]), f, res, res)


def constant_camera(camera: Cameras) -> CameraFn:
    """The same camera for every frame."""

    def at(i: int) -> Cameras:
        return camera

    return at


def orbit_cameras(
    target: Tensor, res: int, n_frames: int, fps: float, amplitude_deg: float = 35.0
) -> CameraFn:
    """A camera swinging left-right around the head, one period every 8 seconds."""

    def at(i: int) -> Cameras:
        yaw = amplitude_deg * math.sin(2 * math.pi * i / (8.0 * fps))
        return fixed_camera(target, res, yaw_deg=yaw)

    return at


def camera_path_cameras(path: str | os.PathLike, n_frames: int) -> tuple[CameraFn, int]:
    """Cameras from a nerfstudio ``camera_path.json`` (OpenGL camera_to_world, vertical fov in degrees),
    resampled over ``n_frames``. Returns the camera function and the image height.

    Raises:
        InputError: unreadable file, missing keys, non-finite or degenerate poses.
    """
    from nerfhead.data.nerfstudio import opengl_c2w_to_viewmat

    p = Path(path)
    if not p.is_file():
        raise InputError(p, "camera path not found")
    try:
        data = json.loads(p.read_text())
        keys = data["camera_path"]
        w, h = int(data["render_width"]), int(data["render_height"])
        c2w = torch.tensor([k["camera_to_world"] for k in keys], dtype=torch.float64).reshape(-1, 4, 4)
        fov = torch.tensor([float(k.get("fov", 50.0)) for k in keys], dtype=torch.float64)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(p, f"not a nerfstudio camera_path.json ({e.__class__.__name__}: {e})") from None
    if len(keys) == 0 or not torch.isfinite(c2w).all() or not torch.isfinite(fov).all():
        raise InputError(p, "camera path is empty or has non-finite values")
    if (torch.linalg.det(c2w[:, :3, :3]) < 0.5).any():
        raise InputError(p, "camera path has a degenerate rotation")
    viewmats = opengl_c2w_to_viewmat(c2w).float()

    def at(i: int) -> Cameras:
        j = min(len(keys) - 1, round(i * (len(keys) - 1) / max(1, n_frames - 1)))
        f = 0.5 * h / math.tan(math.radians(float(fov[j])) / 2)
        K = torch.tensor([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]], dtype=torch.float32)
        return Cameras(K[None], viewmats[j : j + 1], torch.tensor([w]), torch.tensor([h]))

    return at, h


@torch.no_grad()
def render_frames(
    avatar, drive: Drive, camera_at: CameraFn, chunk: int = 8, background: Tensor | None = None
) -> Iterator[Tensor]:
    """Yield [H, W, 3] frames of ``avatar`` along ``drive``, ``chunk`` timesteps per render call.

    Consecutive frames that share one camera are batched; memory stays bounded by ``chunk``.
    """
    T = len(drive)
    for a in range(0, T, chunk):
        b = min(T, a + chunk)
        cams = [camera_at(i) for i in range(a, b)]
        if all(torch.equal(c.viewmat, cams[0].viewmat) and torch.equal(c.K, cams[0].K) for c in cams):
            out = avatar.render(cams[0], drive[a:b], background=background)
            yield from out.rgb
        else:
            for i, c in enumerate(cams):
                yield avatar.render(c, drive[a + i : a + i + 1], background=background).rgb[0]
