"""A tiny deterministic head for tests and ``nerfhead view --mock``: an ellipsoid ray-cast analytically in torch.

The head frame is ICT-FaceKit's (metres, y up, the face looking along +z). The lower half of the ellipsoid
stretches down with ``jawOpen``; eyes, brows and the mouth are painted on the front and follow ``eyeBlink_*``,
``browInnerUp_*``, ``jawOpen`` and ``mouthSmile_*``; ``jawOpen`` also warms the skin colour. Head pose follows the
drive (``x_world = R(rotation) x_head + translation``). No learned weights, so every pixel is reproducible.

>>> import torch
>>> from nerfhead.data import Cameras, Drive
>>> head = MockHead()
>>> cams = Cameras.from_look_at(torch.tensor([[0.0, 0.0, 0.6]]), torch.zeros(3), torch.tensor([0.0, 1.0, 0.0]),
...                             focal=120.0, width=64, height=64)
>>> out = head.render(cams, Drive.neutral(1))
>>> float(out.alpha[0, 32, 32, 0]), float(out.alpha[0, 0, 0, 0])
(1.0, 0.0)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from nerfhead.data.cameras import Cameras, pixel_centers
from nerfhead.data.drive import Drive
from nerfhead.data.expressions import EXPRESSION_INDEX
from nerfhead.geometry import axis_angle_to_matrix
from nerfhead.models.interface import RenderOutput, pair_indices
from nerfhead.viewer.renderable import Framing

RADII = (0.075, 0.10, 0.09)
"""Ellipsoid semi-axes (x, y, z) in metres with the jaw closed."""
JAW_DROP = 0.04
"""Extra lower semi-axis (metres) at ``jawOpen = 1``."""
SKIN = (0.86, 0.66, 0.56)
BACKGROUND = (0.93, 0.94, 0.96)
"""Default background colour of the mock head's images."""

_E = EXPRESSION_INDEX


def _ray_ellipsoid(o: Tensor, d: Tensor, radii: Tensor) -> Tensor:
    """Nearest positive hit distance of rays (o [R, 3], d [R, 3]) on an origin-centred ellipsoid; inf for a miss."""
    oo, dd = o / radii, d / radii
    a = (dd * dd).sum(-1)
    b = 2 * (oo * dd).sum(-1)
    c = (oo * oo).sum(-1) - 1
    disc = b * b - 4 * a * c
    sq = torch.sqrt(disc.clamp_min(0))
    t0, t1 = (-b - sq) / (2 * a), (-b + sq) / (2 * a)
    t = torch.where(t0 > 0, t0, t1)
    return torch.where((disc >= 0) & (t > 0), t, torch.full_like(t, math.inf))


def _inside(x: Tensor, y: Tensor, cx: float, cy: float, rx: float, ry: float) -> Tensor:
    return ((x - cx) / rx) ** 2 + ((y - cy) / max(ry, 1e-6)) ** 2 <= 1


class MockHead:
    """The analytic test head (a :class:`~nerfhead.viewer.renderable.Renderable`).

    Args:
        frames: length of the default timeline (a jaw opening and closing twice a second, with blinks).
        fps: its frame rate.
        background: colour behind the head.
    """

    name = "mock head"

    def __init__(
        self, frames: int = 50, fps: float = 25.0, background: tuple[float, float, float] = BACKGROUND
    ):
        self.frames = frames
        self.fps = fps
        self.background = torch.tensor(background, dtype=torch.float32)

    def default_drive(self) -> Drive:
        d = Drive.neutral(self.frames, self.fps)
        t = torch.arange(self.frames, dtype=torch.float32) / self.fps
        d.expression[:, _E["jawOpen"]] = 0.5 - 0.5 * torch.cos(2 * math.pi * 2.0 * t)
        blink = (((t - 1.0) % 1.6) < 0.12).float()  # eyes open at frame 0
        d.expression[:, _E["eyeBlink_L"]] = blink
        d.expression[:, _E["eyeBlink_R"]] = blink
        return d

    def framing(self) -> Framing:
        return Framing(center=(0.0, -0.01, 0.0), radius=0.13)

    def describe(self) -> dict[str, str]:
        return {"model": "MockHead (analytic)", "backend": "torch", "device": "cpu"}

    def render(self, cameras: Cameras, drive: Drive) -> RenderOutput:
        """Render camera ``b`` at timestep ``b`` (``pair_indices`` broadcasting); all cameras of one size.

        Returns:
            RenderOutput: rgb [B, H, W, 3], alpha [B, H, W, 1] (0 or 1), depth [B, H, W, 1] (camera z, 0 off).
        """
        cam_idx, t_idx = pair_indices(len(cameras), len(drive))
        cams = cameras.to("cpu", torch.float32)
        d = drive.to("cpu", torch.float32)
        outs = [self._render_one(cams[c], d[t]) for c, t in zip(cam_idx, t_idx, strict=True)]
        return RenderOutput(*(torch.stack([o[i] for o in outs]) for i in range(3)))

    def _render_one(self, cam: Cameras, drive: Drive) -> tuple[Tensor, Tensor, Tensor]:
        W, H = int(cam.width[0]), int(cam.height[0])
        origins, dirs = cam.generate_rays(0, pixel_centers(H, W).reshape(-1, 2))
        R = axis_angle_to_matrix(drive.rotation[0])
        o = (origins - drive.translation[0]) @ R  # world -> head: R^T (x - t), rows as vectors
        dv = dirs @ R
        e = drive.expression[0].clamp(0, 1)
        jaw = float(e[_E["jawOpen"]])
        upper = torch.tensor(RADII)
        lower = torch.tensor((RADII[0], RADII[1] + JAW_DROP * jaw, RADII[2]))
        tu, tl = _ray_ellipsoid(o, dv, upper), _ray_ellipsoid(o, dv, lower)
        tu = torch.where((o + tu[:, None] * dv)[:, 1] >= 0, tu, torch.full_like(tu, math.inf))
        tl = torch.where((o + tl[:, None] * dv)[:, 1] < 0, tl, torch.full_like(tl, math.inf))
        t = torch.minimum(tu, tl)
        hit = torch.isfinite(t)
        t = torch.where(hit, t, torch.zeros_like(t))
        p = o + t[:, None] * dv
        radii = torch.where(p[:, 1:2] >= 0, upper, lower)
        n = p / radii**2
        n = n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        light = torch.tensor([0.3, 0.5, 1.0]) / math.sqrt(1.34)
        shade = 0.35 + 0.65 * (n @ light).clamp_min(0)
        skin = torch.tensor(SKIN) + torch.tensor([0.08, -0.1, -0.1]) * jaw
        rgb = skin[None] * shade[:, None]
        rgb = self._paint(rgb, p, n, e, jaw)
        bg = self.background
        rgb = torch.where(hit[:, None], rgb.clamp(0, 1), bg[None].expand_as(rgb))
        alpha = hit.float()[:, None]
        depth = (t[:, None] * (dirs @ cam.viewmat[0, :3, :3].T)[:, 2:3]) * alpha
        return rgb.reshape(H, W, 3), alpha.reshape(H, W, 1), depth.reshape(H, W, 1)

    @staticmethod
    def _paint(rgb: Tensor, p: Tensor, n: Tensor, e: Tensor, jaw: float) -> Tensor:
        """Eyes, brows and mouth on the front of the head (head-frame hit points p [R, 3], normals n)."""
        x, y = p[:, 0], p[:, 1]
        front = n[:, 2] > 0.3
        dark = torch.tensor([0.12, 0.1, 0.1])
        lips = torch.tensor([0.55, 0.12, 0.15])
        for side, sx in (("L", 0.03), ("R", -0.03)):
            blink = float(e[_E[f"eyeBlink_{side}"]])
            brow = float(e[_E[f"browInnerUp_{side}"]])
            eye = front & _inside(x, y, sx, 0.02, 0.013, 0.009 * (1 - 0.9 * blink))
            rgb = torch.where(eye[:, None], dark, rgb)
            br = front & _inside(x, y, sx, 0.045 + 0.015 * brow, 0.018, 0.0035)
            rgb = torch.where(br[:, None], dark * 2, rgb)
        smile = 0.5 * float(e[_E["mouthSmile_L"]] + e[_E["mouthSmile_R"]])
        mouth_y = -0.045 - 0.5 * JAW_DROP * jaw
        mouth = front & _inside(x, y, 0.0, mouth_y, 0.024 + 0.01 * smile, 0.004 + 0.018 * jaw)
        return torch.where(mouth[:, None], lips * (1 - 0.6 * jaw), rgb)
