"""What the viewer needs from a head: the :class:`Renderable` protocol, and an adapter for any trained avatar.

The viewer talks only to this protocol, never to a concrete model class. :class:`AvatarRenderable` wraps any
object with ``render(cameras, drive, background=None) -> RenderOutput`` (the :class:`~nerfhead.models.avatar.Avatar`
interface); :func:`load_renderable` loads a run folder written by ``nerfhead fit``.
"""

from __future__ import annotations

import inspect
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from nerfhead.data.cameras import Cameras
from nerfhead.data.drive import Drive
from nerfhead.geometry import axis_angle_to_matrix, quaternion_to_matrix
from nerfhead.models.interface import GaussianAvatar, RenderOutput
from nerfhead.models.registry import GAUSSIANS, PARAMETRIC_MESH, has

SH_C0 = 0.28209479177387814
"""Degree-0 spherical-harmonic constant (colour = 0.5 + SH_C0 * dc)."""


@dataclass(frozen=True)
class Framing:
    """Where the head is, for the viewer's first camera.

    Attributes:
        center: head centre, world metres.
        radius: radius of a sphere around the head, metres.
        up: world direction that is up for the head.
        forward: world direction the face looks along (the first camera sits on this side).
    """

    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    radius: float = 0.15
    up: tuple[float, float, float] = (0.0, 1.0, 0.0)
    forward: tuple[float, float, float] = (0.0, 0.0, 1.0)

    def eye(self, fov: float, margin: float = 1.25) -> tuple[float, float, float]:
        """Camera position in front of the face that fits the head's sphere in a vertical ``fov``."""
        dist = margin * self.radius / math.sin(fov / 2.0)
        return tuple(c + dist * f for c, f in zip(self.center, self.forward, strict=True))  # type: ignore[return-value]


@dataclass(frozen=True)
class BrowserSplats:
    """Gaussians for viser's in-browser splat renderer (numpy-ready float32 tensors on the CPU).

    Attributes:
        centers: [N, 3] positions (world, or head coordinates when ``rotation`` is given).
        covariances: [N, 3, 3] covariances, in the same frame.
        rgbs: [N, 3] colours in [0, 1].
        opacities: [N, 1] in [0, 1].
        rotation: [3, 3] head-to-world rotation of head-coordinate Gaussians, or None (world already).
        translation: [3] head-to-world translation (with ``rotation``).
    """

    centers: Tensor
    covariances: Tensor
    rgbs: Tensor
    opacities: Tensor
    rotation: Tensor | None = None
    translation: Tensor | None = None

    def to_world(self) -> BrowserSplats:
        """The same Gaussians in world coordinates."""
        if self.rotation is None:
            return self
        R = self.rotation.to(self.centers)
        t = torch.zeros(3) if self.translation is None else self.translation
        centers = self.centers @ R.T + t.to(self.centers)
        return BrowserSplats(centers, R @ self.covariances @ R.T, self.rgbs, self.opacities)


@runtime_checkable
class Renderable(Protocol):
    """A head the viewer can show. Optional extra: ``gaussians_at(drive, head_frame=False) -> BrowserSplats``
    (one timestep) lets the browser draw the head itself; with ``head_frame`` the Gaussians may come in head
    coordinates with the head's rigid transform (:class:`BrowserSplats`; ``scripts/bench_viewer.py`` measures
    with it how much of the head a speech frame moves). A second, ``packed_at(drive, min_alpha=0) -> ndarray``,
    returns the same world Gaussians already packed as viser's [M, 8] uint32 buffer (the pusher then poses
    with it: the splat head's fused kernel, :func:`nerfhead.ops.pose_splats.pose_splats`)."""

    name: str
    """Shown in the viewer's title and stats."""

    def render(self, cameras: Cameras, drive: Drive) -> RenderOutput:
        """Images of ``cameras`` (N) at ``drive`` (T), paired as in ``nerfhead.models.avatar.pair_indices``."""
        ...

    def default_drive(self) -> Drive:
        """The timeline shown first (at least one timestep)."""
        ...

    def framing(self) -> Framing:
        """Where to put the first camera."""
        ...

    def describe(self) -> dict[str, str]:
        """Short facts for the stats panel, e.g. ``{"backend": "torch", "device": "cpu"}``."""
        ...


class AvatarRenderable:
    """Any avatar (``render(cameras, drive, background=None)``) as a :class:`Renderable`.

    Args:
        avatar: the model (e.g. from ``nerfhead.models.avatar.load_avatar``).
        drive: default timeline (e.g. the drive the avatar was fitted on); neutral one frame if None.
        name: display name.
        device: where rendering happens; cameras and drives are moved there.
        background: [3] colour behind the head, or None for the avatar's own.
    """

    def __init__(
        self,
        avatar: Any,
        drive: Drive | None = None,
        name: str = "avatar",
        device: str | torch.device = "cpu",
        background: Tensor | None = None,
    ):
        self.avatar = avatar
        self.name = name
        self.device = torch.device(device)
        self.background = background
        self._drive = drive if drive is not None else Drive.neutral(1)
        if has(avatar, GAUSSIANS):
            self.gaussians_at = self._gaussians_at
            if hasattr(avatar, "packed_splats"):
                self.packed_at = self._packed_at

    def render(self, cameras: Cameras, drive: Drive) -> RenderOutput:
        with torch.inference_mode():
            out = self.avatar.render(
                cameras.to(self.device, torch.float32), drive.to(self.device, torch.float32), self.background
            )
        return out

    def default_drive(self) -> Drive:
        return self._drive

    def framing(self) -> Framing:
        d = self._drive[0].to("cpu", torch.float32)
        R = axis_angle_to_matrix(d.rotation[0])
        center, radius = d.translation[0], 0.15
        if has(self.avatar, PARAMETRIC_MESH):
            with torch.inference_mode():
                v = self.avatar.posed_vertices(d.to(self.device))[0].float().cpu()
            lo, hi = v.min(0).values, v.max(0).values
            center, radius = (lo + hi) / 2, float((hi - lo).norm()) / 2
        return Framing(tuple(center.tolist()), radius, tuple(R[:, 1].tolist()), tuple(R[:, 2].tolist()))  # type: ignore[arg-type]

    def describe(self) -> dict[str, str]:
        cfg = getattr(self.avatar, "cfg", None)
        backend = str(getattr(cfg, "backend", "n/a"))
        return {"model": type(self.avatar).__name__, "backend": backend, "device": str(self.device)}

    def _gaussians_at(self, drive: Drive, head_frame: bool = False) -> BrowserSplats:
        """Activated Gaussians of timestep 0 of ``drive``: the avatar's fast pose step
        (:meth:`GaussianAvatar.posed_splats`, which the ``gaussians`` capability promises), in world coordinates,
        or with ``head_frame`` in head coordinates with the head's transform when the avatar offers that."""
        avatar = cast(GaussianAvatar, self.avatar)
        d = drive[0].to(self.device, torch.float32)
        with torch.inference_mode():
            if head_frame and "head_frame" in inspect.signature(avatar.posed_splats).parameters:
                s = cast(Any, avatar).posed_splats(d, head_frame=True)
            else:
                s = avatar.posed_splats(d)
        rot, trans = s.get("rotation"), s.get("translation")
        return BrowserSplats(
            s["means"].float().cpu(),
            s["covariances"].float().cpu(),
            s["rgb"].float().cpu(),
            s["opacities"].float().reshape(-1, 1).cpu(),
            None if rot is None else rot.float().cpu(),
            None if trans is None else trans.float().cpu(),
        )

    def _packed_at(self, drive: Drive, min_alpha: int = 0) -> np.ndarray:
        """:meth:`_gaussians_at` (world) already packed as viser's [M, 8] uint32 Gaussian buffer, without the
        Gaussians whose alpha byte is below ``min_alpha``: the avatar's fused pose-and-pack step."""
        d = drive[0].to(self.device, torch.float32)
        with torch.inference_mode():
            packed = cast(Any, self.avatar).packed_splats(d, min_alpha)
        return packed.cpu().numpy().view(np.uint32)


def reference_gaussians(avatar: Any, drive: Drive) -> BrowserSplats:
    """Timestep 0 of ``avatar.world_splats(drive, sh_degree=0)`` as browser Gaussians (quaternions and log-scales
    to covariances): the reference the fast pose step is tested against."""
    with torch.inference_mode():
        s = avatar.world_splats(drive[0], sh_degree=0)
    R = quaternion_to_matrix(s["quats"][0].float())
    S2 = torch.exp(2 * s["log_scales"][0].float())
    cov = R @ (S2[..., None] * R.transpose(-1, -2))
    rgb = (0.5 + SH_C0 * s["sh"][0, :, 0].float()).clamp(0, 1)
    opac = torch.sigmoid(s["opacity_logits"].float()).reshape(-1, 1)
    return BrowserSplats(s["means"][0].float().cpu(), cov.cpu(), rgb.cpu(), opac.cpu())


def load_renderable(run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> AvatarRenderable:
    """The avatar of a run folder with its fitted drive (``drive.npz``, when present) as the timeline.

    Raises:
        InputError: the folder holds no loadable avatar or a bad drive file.
    """
    from nerfhead.models.avatar import load_avatar

    run = Path(run_dir)
    avatar = load_avatar(run, device=device)
    drive = Drive.load_npz(run / "drive.npz") if (run / "drive.npz").is_file() else None
    return AvatarRenderable(avatar, drive, name=run.name, device=device)
