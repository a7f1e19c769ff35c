"""Ray-box intersection and occupancy-grid ray marching into packed samples (nerfacc's layout).

Stepping rule (instant-ngp style, one rule for the CUDA, C++ CPU and torch backends; see
cuda_ext/csrc/ray_march.h): from ``t = t_min`` while ``t < t_max``,
``dt = clamp(t * cone_angle, step_size, dt_max)`` and the interval ``[t, t + dt]`` is a sample when the grid cell
holding its midpoint is occupied; otherwise the ray jumps to where it leaves that cell. Cascade ``c`` of the grid
covers the base aabb scaled by ``2^c`` about its centre; a point is looked up in the smallest cascade holding it.

Samples come back packed: ray ``r`` owns ``t_starts[s:s+n]`` with ``(s, n) = packed_info[r]``, front to back, and
``ray_indices`` names the ray of every sample. All three backends give bit-identical samples for the same inputs.

Early termination (inference): :func:`render_rays_early_stop` marches in rounds of at most ``samples_per_round``
samples per live ray, composites each round, and drops rays whose transmittance fell below a threshold; each ray
resumes at its ``t_resume``, so without termination the rounds produce exactly the samples of one full march.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple, Protocol

import torch
from torch import Tensor

from nerfhead._backend import get_ext
from nerfhead.ops._dispatch import resolve_backend
from nerfhead.ops._torch.ray_march import _ray_aabb_intersect, _ray_march
from nerfhead.ops.composite import composite


@dataclass(frozen=True)
class MarchConfig:
    """Step rule of :func:`march_rays`."""

    step_size: float = 2e-3 * 3**0.5
    """Smallest step (dt_min), world units; the step everywhere when ``cone_angle`` is 0."""
    cone_angle: float = 0.0
    """Step grows with distance: ``dt = clamp(t * cone_angle, step_size, dt_max)`` (instant-ngp uses 1/256 for
    unbounded scenes)."""
    dt_max: float = 1e10
    """Largest step."""
    max_samples: int = 0
    """Stop each ray after this many samples (0: no limit); the ray's next start is returned as ``t_resume``."""


class PackedSamples(NamedTuple):
    """Samples of a batch of R rays, packed ray after ray (S samples in all)."""

    ray_indices: Tensor
    """[S] int64, the ray of each sample (non-decreasing)."""
    t_starts: Tensor
    """[S] float32."""
    t_ends: Tensor
    """[S] float32."""
    packed_info: Tensor
    """[R, 2] int64, (first sample, sample count) per ray."""
    t_resume: Tensor
    """[R] float32, where each ray stopped (``>= t_max`` when it reached its end)."""


class GridBits(Protocol):
    """What marching needs of an occupancy grid (``nerfhead.components.occupancy_grid.OccupancyGrid`` has it)."""

    @property
    def bitfield(self) -> Tensor:
        """[ceil(n_cascades * resolution^3 / 8)] uint8 (layout: cuda_ext/csrc/ray_march.h)."""
        ...

    @property
    def aabb(self) -> Tensor:
        """[6] float32, the base cascade's box (lo xyz, hi xyz)."""
        ...

    @property
    def resolution(self) -> int:
        """Cells per axis and cascade."""
        ...

    @property
    def n_cascades(self) -> int:
        """Number of cascades."""
        ...


class OccupancyBits(NamedTuple):
    """Plain-tensor occupancy grid for :func:`march_rays` (satisfies :class:`GridBits`)."""

    bitfield: Tensor
    """[ceil(n_cascades * resolution^3 / 8)] uint8."""
    aabb: Tensor
    """[6] float32, the base cascade's box."""
    resolution: int
    """Cells per axis and cascade."""
    n_cascades: int
    """Number of cascades."""


def pack_occupancy(binary: Tensor) -> Tensor:
    """Pack a boolean occupancy grid [C, R, R, R] (cell ``(c, i, j, k)``, ``i`` along x) into the bitfield the
    kernels read: cell ``n = c R^3 + (i R + j) R + k`` is bit ``n & 7`` of byte ``n >> 3``.

    Returns:
        [ceil(C R^3 / 8)] uint8.

    >>> b = torch.zeros(1, 2, 2, 2, dtype=torch.bool); b[0, 0, 1, 1] = True  # n = 3
    >>> pack_occupancy(b).tolist()
    [8]
    """
    flat = binary.reshape(-1).to(torch.int32)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    weights = 2 ** torch.arange(8, device=binary.device, dtype=torch.int32)
    return (flat.reshape(-1, 8) * weights).sum(-1).to(torch.uint8)


def _as_aabb(aabb: Tensor | Sequence[float], device: torch.device) -> Tensor:
    box = torch.as_tensor(aabb, dtype=torch.float32, device=device).reshape(-1)
    if box.numel() != 6:
        raise ValueError(f"aabb must have 6 values (lo xyz, hi xyz), got {box.numel()}")
    return box


def _check_rays(origins: Tensor, dirs: Tensor) -> tuple[Tensor, Tensor]:
    if origins.ndim != 2 or origins.shape[-1] != 3 or dirs.shape != origins.shape:
        raise ValueError(
            f"origins and dirs must both be [R, 3], got {tuple(origins.shape)}, {tuple(dirs.shape)}"
        )
    return origins.detach().float().contiguous(), dirs.detach().float().contiguous()


def ray_aabb_intersect(
    origins: Tensor, dirs: Tensor, aabb: Tensor | Sequence[float], backend: str = "auto"
) -> tuple[Tensor, Tensor, Tensor]:
    """Where rays enter and leave an axis-aligned box (slab test).

    Args:
        origins: [R, 3] ray origins.
        dirs: [R, 3] ray directions (any length; distances are in units of it).
        aabb: [6] box (xmin, ymin, zmin, xmax, ymax, zmax).
        backend: "auto" | "cuda" | "cpu" | "torch".

    Returns:
        t_min [R], t_max [R] (float32; raw, possibly negative; ``t_min = inf, t_max = -inf`` for a ray parallel to
        a slab it lies outside), and hit [R] bool (``t_max >= t_min`` and ``t_max > 0``).

    >>> o = torch.tensor([[0.0, 0.0, -3.0]]); d = torch.tensor([[0.0, 0.0, 1.0]])
    >>> t0, t1, hit = ray_aabb_intersect(o, d, [-1, -1, -1, 1, 1, 1], backend="torch")
    >>> t0.item(), t1.item(), hit.item()
    (2.0, 4.0, True)
    """
    origins, dirs = _check_rays(origins, dirs)
    box = _as_aabb(aabb, origins.device)
    be = resolve_backend(backend, origins.device, "ray_march")
    if be == "torch":
        return _ray_aabb_intersect(origins, dirs, box)
    return tuple(get_ext().ray_aabb_intersect(origins, dirs, box))  # type: ignore[union-attr,return-value]


def march_rays(
    origins: Tensor,
    dirs: Tensor,
    t_min: Tensor,
    t_max: Tensor,
    grid: GridBits,
    cfg: MarchConfig = MarchConfig(),
    backend: str = "auto",
) -> PackedSamples:
    """Samples along rays through the occupied cells of a multi-cascade occupancy grid.

    Args:
        origins: [R, 3] ray origins.
        dirs: [R, 3] ray directions (unit length for world-unit steps).
        t_min: [R] where each ray starts (add a random fraction of ``step_size`` for stratified training samples).
        t_max: [R] where each ray stops; keep it inside the outermost cascade (``OccupancyGrid.sample`` does).
        grid: the occupancy bits (an ``OccupancyGrid`` or anything with its four attributes).
        cfg: step rule.
        backend: "auto" | "cuda" | "cpu" | "torch".

    Returns:
        PackedSamples; sample ``i`` covers ``[t_starts[i], t_ends[i]]`` (it may end past ``t_max``).
    """
    origins, dirs = _check_rays(origins, dirs)
    n = origins.shape[0]
    t_min = t_min.detach().float().reshape(n).contiguous()
    t_max = t_max.detach().float().reshape(n).contiguous()
    if cfg.step_size <= 0:
        raise ValueError(f"step_size must be positive, got {cfg.step_size}")
    bits = grid.bitfield.reshape(-1).contiguous()
    box = _as_aabb(grid.aabb, origins.device)
    args = (origins, dirs, t_min, t_max, bits, box, int(grid.resolution), int(grid.n_cascades))
    step = (float(cfg.step_size), float(cfg.cone_angle), float(cfg.dt_max), int(cfg.max_samples))
    be = resolve_backend(backend, origins.device, "ray_march")
    if be == "torch":
        packed, ray_ids, t0, t1, t_resume = _ray_march(*args, *step)
    else:
        packed, ray_ids, t0, t1, t_resume = get_ext().ray_march_forward(*args, *step)  # type: ignore[union-attr]
    return PackedSamples(ray_ids, t0, t1, packed, t_resume)


RgbSigmaFn = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]


@torch.no_grad()
def render_rays_early_stop(
    origins: Tensor,
    dirs: Tensor,
    t_min: Tensor,
    t_max: Tensor,
    grid: GridBits,
    rgb_sigma_fn: RgbSigmaFn,
    cfg: MarchConfig = MarchConfig(),
    samples_per_round: int = 16,
    min_transmittance: float = 1e-4,
    backend: str = "auto",
) -> tuple[Tensor, Tensor, Tensor, int]:
    """Inference rendering that stops rays once they are opaque (instant-ngp's marching in rounds).

    Each round marches every live ray for at most ``samples_per_round`` samples from where it stopped, evaluates
    ``rgb_sigma_fn(t_starts, t_ends, ray_indices)`` on them (``ray_indices`` index the full batch), composites the
    round, and folds it in front to back: ``rgb += T * rgb_round``, ``T *= 1 - opacity_round``. Rays whose
    transmittance ``T`` fell to ``min_transmittance`` or below, or that reached ``t_max``, drop out.
    With ``min_transmittance=0`` the result equals one full march + composite (up to float rounding).

    Args:
        origins, dirs, t_min, t_max, grid, cfg: as :func:`march_rays` (``cfg.max_samples`` is ignored).
        rgb_sigma_fn: (t_starts [S], t_ends [S], ray_indices [S]) -> (rgbs [S, C], sigmas [S]).
        samples_per_round: samples per live ray and round.
        min_transmittance: termination threshold.
        backend: for marching and compositing.

    Returns:
        rgb [R, C] (C = 3 when no ray had a sample), opacity [R, 1], depth [R, 1] (unnormalised, like
        :func:`composite`), and the number of samples evaluated.
    """
    n = origins.shape[0]
    dev = origins.device
    t_cur = t_min.detach().float().reshape(n).clone()
    t_end = t_max.detach().float().reshape(n)
    trans = torch.ones(n, device=dev)
    depth = torch.zeros(n, device=dev)
    rgb: Tensor | None = None
    alive = torch.nonzero(t_cur < t_end).squeeze(-1)
    round_cfg = replace(cfg, max_samples=max(int(samples_per_round), 1))
    n_evaluated = 0
    while alive.numel() > 0:
        s = march_rays(origins[alive], dirs[alive], t_cur[alive], t_end[alive], grid, round_cfg, backend)
        if s.t_starts.numel() > 0:
            rgbs, sigmas = rgb_sigma_fn(s.t_starts, s.t_ends, alive[s.ray_indices])
            out = composite(sigmas, rgbs, s.t_starts, s.t_ends, packed_info=s.packed_info, backend=backend)
            if rgb is None:
                rgb = torch.zeros(n, out.rgb.shape[-1], device=dev, dtype=out.rgb.dtype)
            t_alive = trans[alive]
            rgb[alive] += t_alive[:, None] * out.rgb
            depth[alive] += t_alive * out.depth[:, 0]
            trans[alive] = t_alive * (1.0 - out.opacity[:, 0])
            n_evaluated += s.t_starts.numel()
        t_cur[alive] = s.t_resume
        keep = (s.t_resume < t_end[alive]) & (trans[alive] > min_transmittance)
        alive = alive[keep]
    if rgb is None:
        rgb = torch.zeros(n, 3, device=dev)
    return rgb, (1.0 - trans)[:, None], depth[:, None], n_evaluated
