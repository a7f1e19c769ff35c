"""The nerf head: NeRSemble's deformation field + hash ensemble, rendered by occupancy-grid ray marching.

Space: every ray is moved into the posed head's frame with the inverse of the Drive's rigid head pose
(``x_head = R^T (x_world - t)``; distances are kept, so densities are per metre). The head box ``cfg.aabb``
(head frame, metres) maps to the unit box; the deformation field, conditioned on the timestep's expression
(+ latent), offsets a unit-box point to canonical space, where the hash ensemble (grids blended with weights
predicted from the same conditioning) gives density and a view-dependent colour. An occupancy grid over the head
box skips empty space; it is updated during training from the density at random timesteps (so it covers the
union of all expressions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from nerfhead.components.occupancy_grid import OccupancyGrid, OccupancyGridConfig
from nerfhead.data.cameras import Cameras, pixel_centers
from nerfhead.data.drive import Drive
from nerfhead.fields.deformation import DeformationConfig, drive_code
from nerfhead.fields.ensemble import EnsembleConfig, HashEnsemble
from nerfhead.geometry import axis_angle_to_matrix
from nerfhead.models.interface import RenderOutput, pair_indices
from nerfhead.ops.composite import composite, packed_info_from_ray_indices
from nerfhead.ops.ray_march import MarchConfig, ray_aabb_intersect, render_rays_early_stop

KIND = "nerf_head"
"""``avatar.json["kind"]`` of this model."""


@dataclass(frozen=True)
class NerfHeadConfig:
    """Nerf head settings."""

    aabb: tuple[float, float, float, float, float, float] = (-0.14, -0.25, -0.14, 0.14, 0.13, 0.15)
    """Head box (xmin, ymin, zmin, xmax, ymax, zmax) in the head frame, metres."""
    deformation: DeformationConfig = field(default_factory=DeformationConfig)
    """Deformation field."""
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    """Hash ensemble."""
    occupancy_resolution: int = 64
    """Occupancy-grid cells per axis over the head box."""
    occupancy_threshold: float = 0.01
    """Opacity (density times step) above which a cell is occupied."""
    render_steps: int = 256
    """Samples along the head box's diagonal (sets the marching step)."""
    chunk: int = 8192
    """Rays per chunk when rendering images."""
    min_transmittance: float = 1e-3
    """Training drops the samples a cheap no-grad density pass finds behind this transmittance (they add at most
    this much to a pixel); rendering stops each ray there. 0 keeps every sample."""
    backend: str = "auto"
    """Backend of the hash grids, marching and compositing."""

    def occupancy(self, **kw: Any) -> OccupancyGridConfig:
        """The occupancy-grid config (``kw`` overrides the update rule, e.g. ``warmup_steps``)."""
        return OccupancyGridConfig(
            resolution=self.occupancy_resolution, aabb=self.aabb, threshold=self.occupancy_threshold, **kw
        )

    @property
    def step_size(self) -> float:
        """Marching step in metres."""
        lo, hi = torch.tensor(self.aabb[:3]), torch.tensor(self.aabb[3:])
        return float((hi - lo).norm()) / max(self.render_steps, 1)


class NerfHead(nn.Module):
    """A drivable NeRF head (an :class:`nerfhead.models.avatar.Avatar`).

    Args:
        cfg: settings.
        background: [3] default background colour in [0, 1] (white when None).
        occupancy: the occupancy grid's update rule (training only; the layout comes from ``cfg``).
    """

    background: Tensor

    def __init__(
        self,
        cfg: NerfHeadConfig = NerfHeadConfig(),
        background: Any = None,
        occupancy: OccupancyGridConfig | None = None,
    ):
        super().__init__()
        self.cfg = cfg
        self.deformation = cfg.deformation.build(cfg.backend)
        self.ensemble = HashEnsemble(cfg.ensemble, backend=cfg.backend)
        self.grid = OccupancyGrid(occupancy if occupancy is not None else cfg.occupancy())
        bg = (
            torch.ones(3)
            if background is None
            else torch.as_tensor(background, dtype=torch.float32).reshape(3)
        )
        self.register_buffer("background", bg.clone())
        self.march = MarchConfig(step_size=cfg.step_size)

    # ----------------------------------------------------------------- fields
    def conditioning(self, drive: Drive) -> Tensor:
        """[T, 53 + latent_dim] conditioning of the deformation field and the blend weights."""
        dim = max(self.cfg.deformation.latent_dim, self.cfg.ensemble.latent_dim)
        code = drive_code(drive.expression.float(), drive.latent, dim)
        return code

    def _cond(self, cond: Tensor, which: str) -> Tensor:
        dim = self.cfg.deformation.latent_dim if which == "deformation" else self.cfg.ensemble.latent_dim
        return cond[
            :, : cond.shape[1] - max(self.cfg.deformation.latent_dim, self.cfg.ensemble.latent_dim) + dim
        ]

    def unit(self, x_head: Tensor) -> Tensor:
        """Head-frame points [N, 3] (metres) in the head box's unit coordinates."""
        box = self.grid.aabb.to(x_head)
        return (x_head - box[:3]) / (box[3:] - box[:3])

    def canonical(self, x_head: Tensor, cond: Tensor, time_index: Tensor) -> Tensor:
        """Canonical unit-box positions [N, 3] of head-frame points [N, 3] at timesteps ``time_index`` [N]."""
        x = self.unit(x_head)
        if not self.cfg.deformation.enabled:
            return x
        return self.deformation(x, self._cond(cond, "deformation"), time_index)

    def query(
        self, x_head: Tensor, dirs_head: Tensor, cond: Tensor, time_index: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Colour [N, 3] and density [N] at head-frame points (unit view directions [N, 3], timesteps [N])."""
        w = self.ensemble.blend_weights(self._cond(cond, "ensemble"))[time_index]
        return self.ensemble(self.canonical(x_head, cond, time_index), dirs_head, w)

    def density_at(self, x_head: Tensor, cond: Tensor, time_index: Tensor) -> Tensor:
        """Density [N] at head-frame points [N, 3] at timesteps ``time_index`` [N] (rows of ``cond``)."""
        w = self.ensemble.blend_weights(self._cond(cond, "ensemble"))[time_index]
        return self.ensemble.density(self.canonical(x_head, cond, time_index), w)[0]

    def density(self, x_head: Tensor, cond: Tensor) -> Tensor:
        """Density [N] at head-frame points for one timestep's conditioning ``cond`` [1, C]."""
        t = torch.zeros(x_head.shape[0], dtype=torch.long, device=x_head.device)
        w = self.ensemble.blend_weights(self._cond(cond, "ensemble"))[t]
        return self.ensemble.density(self.canonical(x_head, cond, t), w)[0]

    # -------------------------------------------------------------- rendering
    @staticmethod
    def to_head(
        origins: Tensor, dirs: Tensor, rotation: Tensor, translation: Tensor
    ) -> tuple[Tensor, Tensor]:
        """World rays [R, 3] to the head frame of per-ray poses (rotation, translation [R, 3] or [1, 3])."""
        R = axis_angle_to_matrix(rotation.to(origins))  # head to world
        o = ((origins - translation.to(origins))[:, None, :] @ R)[:, 0]  # R^T (o - t)
        d = (dirs[:, None, :] @ R)[:, 0]
        return o, d

    def render_rays(
        self,
        origins: Tensor,
        dirs: Tensor,
        time_index: Tensor,
        cond: Tensor,
        stratified: bool = False,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, int]:
        """Composite head-frame rays (no background).

        Args:
            origins: [R, 3] head-frame origins.
            dirs: [R, 3] unit head-frame directions.
            time_index: [R] int64 timestep of every ray (rows of ``cond``).
            cond: [T, C] conditioning (:meth:`conditioning`).
            stratified: jitter the samples' start (training).
            generator: for the jitter.

        With gradients on, a no-grad density pass first drops the samples behind transmittance
        ``cfg.min_transmittance``; without, rays are marched in rounds and stop there (both change a pixel by
        at most that much).

        Returns:
            rgb [R, 3], opacity [R, 1], depth along the ray [R, 1] (0 where empty), number of samples.
        """
        be = self.cfg.backend
        n = origins.shape[0]
        eps = self.cfg.min_transmittance
        if not torch.is_grad_enabled() and eps > 0:
            return self._render_rays_early_stop(origins, dirs, time_index, cond)
        s = self.grid.sample(
            origins, dirs, cfg=self.march, stratified=stratified, generator=generator, backend=be
        )
        ri, t0, t1, packed = s.ray_indices, s.t_starts, s.t_ends, s.packed_info
        if eps > 0 and t0.numel() > 0:
            keep = self._visible(origins, dirs, time_index, cond, ri, t0, t1, packed, eps)
            ri, t0, t1 = ri[keep], t0[keep], t1[keep]
            packed = packed_info_from_ray_indices(ri, n)
        if t0.numel() == 0:
            z = origins.new_zeros(n, 1)
            return origins.new_zeros(n, 3) + 0.0 * cond.sum(), z, z, 0
        x = origins[ri] + dirs[ri] * (0.5 * (t0 + t1))[:, None]
        rgb, sigma = self.query(x, dirs[ri], cond, time_index[ri])
        out = composite(sigma, rgb, t0, t1, ray_indices=ri, packed_info=packed, n_rays=n, backend=be)
        return out.rgb, out.opacity, out.depth, int(ri.numel())

    @torch.no_grad()
    def _visible(
        self,
        origins: Tensor,
        dirs: Tensor,
        time_index: Tensor,
        cond: Tensor,
        ri: Tensor,
        t0: Tensor,
        t1: Tensor,
        packed: Tensor,
        eps: float,
    ) -> Tensor:
        """[S] bool: samples whose transmittance (from a no-grad density pass) is above ``eps``."""
        x = origins[ri] + dirs[ri] * (0.5 * (t0 + t1))[:, None]
        tau = self.density_at(x, cond, time_index[ri]).double() * (t1 - t0).double()
        tau = torch.nan_to_num(tau, nan=0.0, posinf=50.0).clamp(
            0.0, 50.0
        )  # exp(-50): opaque; sums stay exact
        before = torch.cumsum(tau, 0) - tau  # optical depth before each sample, summed over the whole batch
        first = packed[:, 0].clamp_max(max(tau.shape[0] - 1, 0))[ri]  # the first sample of each sample's ray
        return torch.exp(-(before - before[first])) > eps

    def _render_rays_early_stop(
        self, origins: Tensor, dirs: Tensor, time_index: Tensor, cond: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, int]:
        """Inference: march in rounds and drop rays once opaque (``cfg.min_transmittance``)."""
        t_min, t_max, _ = ray_aabb_intersect(
            origins, dirs, self.grid.cascade_aabb(self.grid.n_cascades - 1), backend=self.cfg.backend
        )

        def rgb_sigma(t0: Tensor, t1: Tensor, ri: Tensor) -> tuple[Tensor, Tensor]:
            x = origins[ri] + dirs[ri] * (0.5 * (t0 + t1))[:, None]
            rgb, sigma = self.query(x, dirs[ri], cond, time_index[ri])
            return rgb, sigma

        rgb, a, depth, n_samples = render_rays_early_stop(
            origins,
            dirs,
            t_min.clamp_min(0.0),
            t_max,
            self.grid,
            rgb_sigma,
            cfg=self.march,
            samples_per_round=32,
            min_transmittance=self.cfg.min_transmittance,
            backend=self.cfg.backend,
        )
        return rgb, a, depth, n_samples

    def render(self, cameras: Cameras, drive: Drive, background: Tensor | None = None) -> RenderOutput:
        """Render camera ``b`` at timestep ``b`` (a side of length 1 broadcasts; see ``nerfhead.models.avatar``),
        ``cfg.chunk`` rays at a time.

        Args:
            cameras: N cameras of one image size.
            drive: T timesteps.
            background: [3] or [B, 3] colour, or None for the avatar's background.

        Returns:
            RenderOutput with B = max(N, T) images.
        """
        cam_idx, t_idx = pair_indices(len(cameras), len(drive))
        dev = self.background.device
        cameras = cameras.to(dev, torch.float32)
        drive = drive.to(dev, torch.float32)
        bg = self.background if background is None else background.to(dev, torch.float32)
        bgs = bg.reshape(-1, 3).expand(len(cam_idx), 3)
        cond = self.conditioning(drive)
        h, w = int(cameras.height[0]), int(cameras.width[0])
        pix = pixel_centers(h, w, dev).reshape(-1, 2)
        rgbs, alphas, depths = [], [], []
        for b, (c, t) in enumerate(zip(cam_idx, t_idx, strict=True)):
            o_w, d_w = cameras.generate_rays(c, pix)
            o, d = self.to_head(o_w, d_w, drive.rotation[t : t + 1], drive.translation[t : t + 1])
            tix = torch.full((o.shape[0],), t, dtype=torch.long, device=dev)
            parts = [
                self.render_rays(
                    o[i : i + self.cfg.chunk], d[i : i + self.cfg.chunk], tix[i : i + self.cfg.chunk], cond
                )
                for i in range(0, o.shape[0], max(self.cfg.chunk, 1))
            ]
            rgb = torch.cat([p[0] for p in parts])
            a = torch.cat([p[1] for p in parts])
            dep = torch.cat([p[2] for p in parts]) * (d_w @ cameras.viewmat[c, 2, :3])[:, None]  # camera z
            rgbs.append((rgb + (1 - a) * bgs[b]).reshape(h, w, 3))
            alphas.append(a.reshape(h, w, 1))
            depths.append(dep.reshape(h, w, 1))
        return RenderOutput(rgb=torch.stack(rgbs), alpha=torch.stack(alphas), depth=torch.stack(depths))

    def extra_repr(self) -> str:
        e = self.cfg.ensemble
        return f"grids={e.n_grids}, levels={e.n_levels}, aabb={list(self.cfg.aabb)}, step={self.cfg.step_size:.4g}"


def from_checkpoint(
    spec: dict[str, Any], tensors: dict[str, Tensor], device: str | torch.device = "cpu"
) -> NerfHead:
    """Rebuild a :class:`NerfHead` from ``avatar.json`` and a checkpoint's model tensors."""
    from nerfhead.engine.config import from_dict

    cfg = from_dict(NerfHeadConfig, spec.get("config", {}))
    model = NerfHead(cfg, background=spec.get("background"))
    model.load_state_dict(dict(tensors))
    return model.to(device)
