"""Pure-PyTorch twin of the compositing kernels (cuda_ext/csrc/composite.h): the CPU fallback and test oracle.

Vectorised over samples: the per-ray exclusive sum of optical depth comes from one global cumulative sum, taken
in float64 so that subtracting a ray's offset loses nothing; gradients come from autograd.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _packed_to_ray_indices(packed_info: Tensor, n_samples: int) -> Tensor:
    """[S] int64 ray of every sample from packed_info [R, 2] (start, count)."""
    counts = packed_info[:, 1]
    rays = torch.arange(packed_info.shape[0], device=packed_info.device)
    out = torch.repeat_interleave(rays, counts, output_size=n_samples)
    return out


def _composite(
    sigmas: Tensor, rgbs: Tensor, t_starts: Tensor, t_ends: Tensor, ray_indices: Tensor, n_rays: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Twin of ``composite``: front-to-back compositing of packed samples (sorted by ray, in order).

    Args:
        sigmas: [S] densities.
        rgbs: [S, C] colours (or any per-sample features).
        t_starts, t_ends: [S] sample intervals.
        ray_indices: [S] int64, non-decreasing.
        n_rays: R.

    Returns:
        rgb [R, C], opacity [R, 1], depth [R, 1] (sum of w * interval midpoint, not normalised), weights [S].
    """
    dt = t_ends - t_starts
    tau = sigmas * dt
    incl = torch.cumsum(tau.to(torch.float64), 0)
    # Inclusive sum at the last sample before each ray's first sample: subtract it to restart the sum per ray.
    counts = torch.bincount(ray_indices, minlength=n_rays)
    ends = torch.cumsum(counts, 0)
    before = torch.cat([incl.new_zeros(1), incl])[ends - counts]
    excl = incl - tau.to(torch.float64) - before[ray_indices]
    trans = torch.exp(-excl).to(sigmas.dtype)
    weights = trans * -torch.expm1(-tau)
    mid = (t_starts + t_ends) * 0.5
    rgb = torch.zeros(n_rays, rgbs.shape[-1], dtype=rgbs.dtype, device=rgbs.device)
    rgb = rgb.index_add(0, ray_indices, weights[:, None] * rgbs)
    opacity = torch.zeros(n_rays, dtype=weights.dtype, device=weights.device).index_add(
        0, ray_indices, weights
    )
    depth = torch.zeros(n_rays, dtype=weights.dtype, device=weights.device).index_add(
        0, ray_indices, weights * mid
    )
    return rgb, opacity[:, None], depth[:, None], weights
