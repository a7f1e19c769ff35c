"""Pure-PyTorch twin of the ray-marching kernels (cuda_ext/csrc/ray_march.h): the CPU fallback and test oracle.

The twin is vectorised over rays and loops over steps: every iteration advances each live ray by one step of the
kernel's loop, with the same float32 operations in the same order, so it reproduces the compiled samples bit for
bit. Rays that finish are compacted away, so an iteration costs O(live rays).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _grid_frame(aabb: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
    """Centre and half size (float32 [3]) of the base aabb, computed as the kernels do."""
    box = aabb.detach().to(device=device, dtype=torch.float32).reshape(6)
    return (box[:3] + box[3:]) * 0.5, (box[3:] - box[:3]) * 0.5


def _locate(u: Tensor, resolution: int, n_cascades: int) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Cascade, grid coordinates and cell of normalised points ``u = (x - centre) / half`` [N, 3].

    Returns:
        cascade [N] int64, inv_scale [N] float32 (2^-cascade), g [N, 3] float32 grid coordinates,
        cell [N, 3] int64 (clamped), outside [N] bool (beyond the last cascade).
    """
    m = u.abs().amax(dim=-1)
    cascade = torch.zeros_like(m, dtype=torch.int64)
    for k in range(n_cascades - 1):
        cascade += (m > float(2**k)).long()
    outside = m > float(2 ** (n_cascades - 1))
    inv_table = torch.tensor([2.0**-k for k in range(n_cascades)], dtype=torch.float32, device=u.device)
    inv_scale = inv_table[cascade]
    g = (u * inv_scale[:, None] + 1.0) * (0.5 * resolution)
    cell = torch.floor(g).long().clamp(0, resolution - 1)
    return cascade, inv_scale, g, cell, outside


def _flat_cell(cascade: Tensor, cell: Tensor, resolution: int) -> Tensor:
    """Flat bitfield index ``c * res^3 + (i * res + j) * res + k`` [N] int64."""
    r = resolution
    return cascade * (r * r * r) + (cell[:, 0] * r + cell[:, 1]) * r + cell[:, 2]


def _test_bits(bitfield: Tensor, index: Tensor) -> Tensor:
    """Bit ``index & 7`` of byte ``index >> 3`` [N] bool."""
    byte = bitfield[index >> 3].long()
    return ((byte >> (index & 7)) & 1).bool()


def _occupied_at(points: Tensor, bitfield: Tensor, aabb: Tensor, resolution: int, n_cascades: int) -> Tensor:
    """Whether each point [N, 3] lies in an occupied cell of its cascade (False outside the grid) [N] bool."""
    center, half = _grid_frame(aabb, points.device)
    u = (points.to(torch.float32) - center) / half
    cascade, _, _, cell, outside = _locate(u, resolution, n_cascades)
    return _test_bits(bitfield, _flat_cell(cascade, cell, resolution)) & ~outside


def _ray_aabb_intersect(origins: Tensor, dirs: Tensor, aabb: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Slab test against one box; twin of ``ray_aabb_intersect`` (see nerfhead.ops.ray_march)."""
    box = aabb.detach().to(device=origins.device, dtype=torch.float32).reshape(6)
    lo, hi = box[:3], box[3:]
    o, d = origins.float(), dirs.float()
    zero = d == 0
    p = (lo - o) / d
    q = (hi - o) / d
    inf = torch.tensor(float("inf"), device=o.device)
    near = torch.where(zero, -inf, torch.minimum(p, q)).amax(dim=-1)
    far = torch.where(zero, inf, torch.maximum(p, q)).amin(dim=-1)
    miss = (zero & ((o < lo) | (o > hi))).any(dim=-1)
    t0 = torch.where(miss, inf, near)
    t1 = torch.where(miss, -inf, far)
    return t0, t1, (t1 >= t0) & (t1 > 0)


def _ray_march(
    origins: Tensor,
    dirs: Tensor,
    t_min: Tensor,
    t_max: Tensor,
    bitfield: Tensor,
    aabb: Tensor,
    resolution: int,
    n_cascades: int,
    step_size: float,
    cone_angle: float,
    dt_max: float,
    max_samples: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Twin of ``ray_march_forward``.

    Returns:
        packed_info [R, 2] int64, ray_indices [S] int64, t_starts [S], t_ends [S], t_resume [R].
    """
    dev = origins.device
    f32 = torch.float32
    n_rays = origins.shape[0]
    center, half = _grid_frame(aabb, dev)
    step_t = torch.tensor(step_size, dtype=f32, device=dev)
    cone_t = torch.tensor(cone_angle, dtype=f32, device=dev)
    dtmax_t = torch.tensor(dt_max, dtype=f32, device=dev)
    inf = torch.tensor(float("inf"), dtype=f32, device=dev)
    hr = 0.5 * resolution
    bits = bitfield.reshape(-1)

    t_resume = t_min.to(f32).clone()
    counts = torch.zeros(n_rays, dtype=torch.int64, device=dev)
    ids = torch.nonzero(t_resume < t_max.to(f32)).squeeze(-1)
    limit = max(int(max_samples), 0)
    o, d = origins.to(f32)[ids], dirs.to(f32)[ids]
    t, tmax = t_resume[ids], t_max.to(f32)[ids]
    n = torch.zeros_like(ids)
    out_ids, out_t0, out_t1 = [], [], []
    while ids.numel() > 0:
        dt = torch.minimum(torch.maximum(t * cone_t, step_t), dtmax_t)
        tm = t + 0.5 * dt
        x = o + tm[:, None] * d
        u = (x - center) / half
        cascade, inv_scale, g, cell, outside = _locate(u, resolution, n_cascades)
        occ = _test_bits(bits, _flat_cell(cascade, cell, resolution)) & ~outside
        t_end = t + dt
        out_ids.append(ids[occ])
        out_t0.append(t[occ])
        out_t1.append(t_end[occ])
        n = n + occ.long()
        # Empty cell: jump to where the ray leaves it (per-axis DDA), at least to the midpoint.
        b = (cell + (d > 0).long()).to(f32)
        rate = d / half * inv_scale[:, None] * hr
        tk = torch.where(d == 0, inf, tm[:, None] + (b - g) / rate)
        t_skip = torch.maximum(tk.amin(dim=-1), tm)
        t_next = torch.where(occ, t_end, torch.where(outside, tm, t_skip))
        t_next = torch.where(t_next > t, t_next, tmax)
        t = t_next
        t_resume[ids] = t
        live = t < tmax
        if limit > 0:
            live &= n < limit
        counts[ids] = n
        if not bool(live.all()):
            ids, o, d, t, tmax, n = ids[live], o[live], d[live], t[live], tmax[live], n[live]

    if out_ids:
        ray_ids = torch.cat(out_ids)
        order = torch.sort(ray_ids, stable=True).indices
        ray_ids, t0, t1 = ray_ids[order], torch.cat(out_t0)[order], torch.cat(out_t1)[order]
    else:
        ray_ids = torch.zeros(0, dtype=torch.int64, device=dev)
        t0 = t1 = torch.zeros(0, dtype=f32, device=dev)
    starts = torch.cumsum(counts, 0) - counts
    return torch.stack([starts, counts], dim=-1), ray_ids, t0, t1, t_resume
