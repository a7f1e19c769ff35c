"""Render an avatar along a Drive from a fixed, orbiting or scripted (nerfhead.export.camera_path) camera,
streaming frames in chunks so clip length does not grow memory."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from nerfhead.data.cameras import Cameras
from nerfhead.data.drive import Drive

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


def swinging_camera(
    target: Tensor, res: int, n_frames: int, fps: float, amplitude_deg: float = 35.0
) -> CameraFn:
    """A camera swinging left-right around the head, one period every 8 seconds."""

    def at(i: int) -> Cameras:
        yaw = amplitude_deg * math.sin(2 * math.pi * i / (8.0 * fps))
        return fixed_camera(target, res, yaw_deg=yaw)

    return at


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
