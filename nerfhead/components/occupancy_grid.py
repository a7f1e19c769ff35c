"""Multi-cascade occupancy grid for skipping empty space (instant-ngp's density grid, nerfacc's OccGridEstimator).

Layout: ``n_cascades`` cascades of ``resolution^3`` cells; cascade ``c`` covers the base aabb scaled by ``2^c`` about
its centre (cascades > 0 reach into the unbounded background). ``density`` [C, R, R, R] holds an EMA of the field's
density per cell (cell ``(c, i, j, k)``, ``i`` along x); ``bitfield`` [C * R^3 / 8] uint8 packs ``density > threshold``
with cell ``n = c R^3 + (i R + j) R + k`` at bit ``n & 7`` of byte ``n >> 3``: the layout the marching kernels read
(cuda_ext/csrc/ray_march.h).

Updates (every ``update_every`` steps): during warm-up every cell is evaluated; afterwards, per cascade, a random
``cells_fraction`` of all cells plus as many randomly chosen occupied cells. Each chosen cell is evaluated at a
random point inside it; then every cell decays, ``density = max(density * ema_decay, new)`` (``new`` is 0 for cells
not evaluated), and cells are occupied where ``density > min(threshold, mean density)``.

>>> grid = OccupancyGrid(OccupancyGridConfig(resolution=16))
>>> _ = grid.update(0, lambda x: (x.norm(dim=-1) < 0.5).float() * 10.0)
>>> bool(grid.is_occupied(torch.tensor([[0.0, 0.0, 0.0], [0.9, 0.9, 0.9]])).tolist() == [True, False])
True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nerfhead.errors import InputError
from nerfhead.ops._torch.ray_march import _occupied_at
from nerfhead.ops.ray_march import MarchConfig, PackedSamples, march_rays, pack_occupancy, ray_aabb_intersect


@dataclass(frozen=True)
class OccupancyGridConfig:
    """Occupancy grid shape and update rule."""

    resolution: int = 128
    """Cells per axis in each cascade (even)."""
    n_cascades: int = 1
    """Cascades; cascade c covers aabb scaled by 2^c about its centre."""
    aabb: tuple[float, float, float, float, float, float] = (-1.0, -1.0, -1.0, 1.0, 1.0, 1.0)
    """Base box (xmin, ymin, zmin, xmax, ymax, zmax), world units."""
    ema_decay: float = 0.95
    """Per-update decay of cell densities: density = max(density * ema_decay, new)."""
    threshold: float = 0.01
    """Density above which a cell is occupied (lowered to the grid's mean density when that is smaller)."""
    warmup_steps: int = 256
    """Before this step, updates evaluate every cell."""
    update_every: int = 16
    """Update period in training steps."""
    cells_fraction: float = 0.25
    """After warm-up, fraction of each cascade's cells evaluated uniformly per update (plus as many occupied)."""
    eval_chunk: int = 1 << 18
    """Points per call of the density function."""

    def __post_init__(self) -> None:
        if self.resolution < 2 or self.resolution % 2:
            raise InputError(
                "occupancy_grid.resolution", f"must be an even number >= 2, got {self.resolution}"
            )
        if self.n_cascades < 1:
            raise InputError("occupancy_grid.n_cascades", f"must be >= 1, got {self.n_cascades}")
        if len(self.aabb) != 6 or any(h <= l for l, h in zip(self.aabb[:3], self.aabb[3:], strict=False)):
            raise InputError(
                "occupancy_grid.aabb", f"must be (xmin, ymin, zmin, xmax, ymax, zmax), got {self.aabb}"
            )
        if not 0.0 <= self.ema_decay <= 1.0:
            raise InputError("occupancy_grid.ema_decay", f"must be in [0, 1], got {self.ema_decay}")
        if not 0.0 < self.cells_fraction <= 1.0:
            raise InputError("occupancy_grid.cells_fraction", f"must be in (0, 1], got {self.cells_fraction}")


DensityFn = Callable[[Tensor], Tensor]


class OccupancyGrid(nn.Module):
    """Multi-cascade occupancy grid with EMA density updates and a packed bitfield (see the module docstring).

    Buffers ``density`` [C, R, R, R] float32 and ``bitfield`` [C R^3 / 8] uint8 are saved with the module; a new
    grid has every cell occupied (``mark_all``) so that sampling works before the first update.
    """

    density: Tensor
    bitfield: Tensor
    aabb: Tensor

    def __init__(self, cfg: OccupancyGridConfig = OccupancyGridConfig()):
        super().__init__()
        self.cfg = cfg
        r, c = cfg.resolution, cfg.n_cascades
        self.register_buffer("density", torch.zeros(c, r, r, r))
        self.register_buffer("bitfield", torch.full((c * r**3 // 8,), 255, dtype=torch.uint8))
        self.register_buffer("aabb", torch.tensor(cfg.aabb, dtype=torch.float32), persistent=False)

    @property
    def resolution(self) -> int:
        """Cells per axis and cascade."""
        return self.cfg.resolution

    @property
    def n_cascades(self) -> int:
        """Number of cascades."""
        return self.cfg.n_cascades

    def cascade_aabb(self, cascade: int) -> Tensor:
        """[6] box of a cascade: the base aabb scaled by 2^cascade about its centre."""
        center = (self.aabb[:3] + self.aabb[3:]) * 0.5
        half = (self.aabb[3:] - self.aabb[:3]) * 0.5 * float(2**cascade)
        return torch.cat([center - half, center + half])

    @property
    def binary(self) -> Tensor:
        """[C, R, R, R] bool occupancy unpacked from the bitfield."""
        r, c = self.resolution, self.n_cascades
        shifts = torch.arange(8, device=self.bitfield.device, dtype=torch.uint8)
        bits = (self.bitfield[:, None] >> shifts) & 1
        return bits.reshape(-1)[: c * r**3].bool().reshape(c, r, r, r)

    @torch.no_grad()
    def set_binary(self, binary: Tensor) -> None:
        """Overwrite the occupancy with a boolean grid [C, R, R, R] (densities are left as they are)."""
        self.bitfield.copy_(pack_occupancy(binary.to(self.bitfield.device)))

    @torch.no_grad()
    def mark_all(self) -> None:
        """Mark every cell occupied (until the next update)."""
        self.bitfield.fill_(255)

    @torch.no_grad()
    def is_occupied(self, points: Tensor) -> Tensor:
        """Whether each point [N, 3] lies in an occupied cell of the smallest cascade holding it ([N] bool; False
        outside the outermost cascade)."""
        return _occupied_at(points.reshape(-1, 3), self.bitfield, self.aabb, self.resolution, self.n_cascades)

    def _cells_to_update(self, step: int, cascade: int, generator: torch.Generator | None) -> Tensor:
        n_cells = self.resolution**3
        dev = self.density.device
        if step < self.cfg.warmup_steps:
            return torch.arange(n_cells, device=dev)
        n = max(int(n_cells * self.cfg.cells_fraction), 1)
        uniform = torch.randint(n_cells, (n,), device=dev, generator=generator)
        occupied = torch.nonzero(self.binary[cascade].reshape(-1)).squeeze(-1)
        if occupied.numel() > n:
            occupied = occupied[torch.randint(occupied.numel(), (n,), device=dev, generator=generator)]
        return torch.cat([uniform, occupied])

    @torch.no_grad()
    def update(
        self, step: int, density_fn: DensityFn, generator: torch.Generator | None = None, force: bool = False
    ) -> bool:
        """EMA update of cell densities and the bitfield (only every ``update_every`` steps unless ``force``).

        Args:
            step: training step (selects warm-up and the update period).
            density_fn: world points [N, 3] -> densities [N] or [N, 1] (e.g. ``field.density(x)``; multiply by the
                step size for nerfacc's opacity-like threshold).
            generator: for the cell choice and the jitter inside cells.
            force: update whatever the step.

        Returns:
            True when the grid was updated.
        """
        if not force and step % self.cfg.update_every != 0:
            return False
        r, dev = self.resolution, self.density.device
        new = torch.zeros_like(self.density).reshape(self.n_cascades, -1)
        for c in range(self.n_cascades):
            idx = self._cells_to_update(step, c, generator)
            ijk = torch.stack([idx // (r * r), (idx // r) % r, idx % r], dim=-1).to(torch.float32)
            jitter = torch.rand(idx.shape[0], 3, device=dev, generator=generator)
            box = self.cascade_aabb(c)
            x = box[:3] + (ijk + jitter) / r * (box[3:] - box[:3])
            sigma = torch.cat(
                [density_fn(chunk).reshape(-1).float() for chunk in x.split(self.cfg.eval_chunk)]
            ).clamp_min(0.0)
            new[c].scatter_reduce_(0, idx, sigma, reduce="amax")
        self.density.copy_(torch.maximum(self.density * self.cfg.ema_decay, new.reshape(self.density.shape)))
        threshold = min(self.cfg.threshold, float(self.density.mean()))
        self.set_binary(self.density > threshold)
        return True

    def sample(
        self,
        origins: Tensor,
        dirs: Tensor,
        near: float = 0.0,
        far: float = 1e10,
        cfg: MarchConfig = MarchConfig(),
        stratified: bool = False,
        generator: torch.Generator | None = None,
        backend: str = "auto",
    ) -> PackedSamples:
        """Samples along rays in occupied cells, between ``near``, ``far`` and the outermost cascade's box.

        Args:
            origins: [R, 3] ray origins.
            dirs: [R, 3] unit directions.
            near, far: distance limits along the rays.
            cfg: step rule (see :class:`nerfhead.ops.ray_march.MarchConfig`).
            stratified: shift each ray's start by a random fraction of ``cfg.step_size`` (training).
            generator: for the stratified shift.
            backend: "auto" | "cuda" | "cpu" | "torch".

        Returns:
            PackedSamples (ray_indices, t_starts, t_ends, packed_info, t_resume).
        """
        t0, t1, _ = ray_aabb_intersect(origins, dirs, self.cascade_aabb(self.n_cascades - 1), backend=backend)
        t_min = t0.clamp_min(near)
        t_max = t1.clamp_max(far)
        if stratified:
            u = torch.rand(t_min.shape, device=t_min.device, generator=generator)
            t_min = t_min + u * cfg.step_size
        return march_rays(origins, dirs, t_min, t_max, self, cfg, backend=backend)
