"""The one interface every avatar offers (splat head, nerf head, any registered model).

Pairing of cameras and timesteps in :meth:`Avatar.render`: with N cameras and a drive of T timesteps the output
holds ``B = max(N, T)`` images; image ``b`` shows camera ``b`` at timestep ``b``, where a side of length 1 is
broadcast (one camera over a whole drive for a video, every camera at one timestep for a rig view). N and T must
be equal when neither is 1 (see :func:`pair_indices`).

The model's tensors in a checkpoint are its ``model.*`` entries (:data:`MODEL_PREFIX`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from torch import Tensor

if TYPE_CHECKING:
    from nerfhead.data.cameras import Cameras
    from nerfhead.data.drive import Drive

MODEL_PREFIX = "model."


@dataclass(frozen=True)
class RenderOutput:
    """Images rendered by an avatar.

    Attributes:
        rgb: [B, H, W, 3] colour in [0, 1], composited over the background.
        alpha: [B, H, W, 1] accumulated opacity.
        depth: [B, H, W, 1] expected depth (camera z, metres) of the visible surface; 0 where alpha is 0.
    """

    rgb: Tensor
    alpha: Tensor
    depth: Tensor


@runtime_checkable
class Avatar(Protocol):
    """A drivable head: cameras + drive in, images out."""

    def render(self, cameras: Cameras, drive: Drive, background: Tensor | None = None) -> RenderOutput:
        """Render camera ``b`` at timestep ``b`` for b < max(N, T) (see the module docstring).

        Args:
            cameras: N cameras (all of one image size).
            drive: T timesteps.
            background: [3] or [B, 3] colour behind the head; None uses the avatar's own.
        """
        ...

    def eval(self) -> Avatar:
        """Inference mode (``torch.nn.Module.eval``); returns the avatar."""
        ...


def pair_indices(n_cameras: int, n_timesteps: int) -> tuple[list[int], list[int]]:
    """Camera and timestep index of each output image (the broadcasting rule of :meth:`Avatar.render`).

    >>> pair_indices(3, 1)
    ([0, 1, 2], [0, 0, 0])

    Raises:
        ValueError: N and T differ and neither is 1.
    """
    if n_cameras < 1 or n_timesteps < 1:
        raise ValueError("render needs at least one camera and one timestep")
    if n_cameras != n_timesteps and 1 not in (n_cameras, n_timesteps):
        raise ValueError(f"cannot pair {n_cameras} cameras with {n_timesteps} timesteps (one side must be 1)")
    b = max(n_cameras, n_timesteps)
    return ([i if n_cameras > 1 else 0 for i in range(b)], [i if n_timesteps > 1 else 0 for i in range(b)])


class GaussianAvatar(Avatar, Protocol):
    """An avatar of 3D Gaussians (the ``gaussians`` capability): PLY export and the browser-side viewer."""

    def world_splats(self, drive: Drive, sh_degree: int | None = None) -> dict[str, Tensor]:
        """World-space Gaussians of each drive timestep, pre-activation (a 3DGS PLY's values)."""
        ...

    def posed_splats(self, drive: Drive) -> dict[str, Tensor]:
        """Activated world Gaussians of timestep 0 with their view-independent colour (``means``,
        ``covariances``, ``rgb``, ``opacities``): one fast pose for a browser-side renderer."""
        ...


class DensityFieldAvatar(Avatar, Protocol):
    """An avatar that is a density field (the ``density_field`` capability): iso-surface mesh export."""

    def conditioning(self, drive: Drive) -> Tensor:
        """Per-timestep conditioning of the field."""
        ...

    def density(self, x_head: Tensor, cond: Tensor) -> Tensor:
        """Density at head-space points under ``cond``."""
        ...


class MeshAvatar(Avatar, Protocol):
    """An avatar carrying the rigged ICT mesh (the ``parametric_mesh`` capability): glTF export, framing."""

    def posed_vertices(self, drive: Drive) -> Tensor:
        """[T, V, 3] world vertices of the mesh for each timestep."""
        ...
