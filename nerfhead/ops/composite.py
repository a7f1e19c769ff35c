"""Volume rendering of packed samples: weights, colour, opacity and depth per ray (nerfacc's
``render_weight_from_density`` + ``accumulate_along_rays`` in one op).

For the samples of one ray, front to back, with ``dt_i = t_end_i - t_start_i``::

    T_i = exp(-sum_{j<i} sigma_j dt_j)       w_i = T_i (1 - exp(-sigma_i dt_i))
    rgb = sum_i w_i rgb_i    opacity = sum_i w_i    depth = sum_i w_i (t_start_i + t_end_i) / 2

``depth`` is not normalised (a ray through empty space has depth 0); ``depth / opacity.clamp_min(eps)`` is the
expected depth of the visible surface. Gradients flow to ``sigmas`` and ``rgbs`` (not to the sample intervals).
The compiled backward is a reverse scan per ray (O(samples)).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from nerfhead._backend import get_ext
from nerfhead.ops._dispatch import resolve_backend
from nerfhead.ops._torch.composite import _composite, _packed_to_ray_indices


class CompositeOutput(NamedTuple):
    """Per-ray results of :func:`composite` (R rays, S samples, C channels)."""

    rgb: Tensor
    """[R, C]."""
    opacity: Tensor
    """[R, 1]."""
    depth: Tensor
    """[R, 1], sum of weight * interval midpoint (not normalised)."""
    weights: Tensor
    """[S]."""


class _CompositeFn(torch.autograd.Function):
    """Compiled forward/backward (CPU or CUDA kernels of nerfhead._C)."""

    @staticmethod
    def forward(ctx, sigmas, rgbs, t_starts, t_ends, packed_info):  # type: ignore[override]
        ext = get_ext()
        rgb, opacity, depth, weights, trans = ext.composite_forward(  # type: ignore[union-attr]
            sigmas, rgbs, t_starts, t_ends, packed_info
        )
        ctx.save_for_backward(sigmas, rgbs, t_starts, t_ends, packed_info, weights, trans)
        return rgb, opacity, depth, weights

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_rgb, g_opacity, g_depth, g_weights):  # type: ignore[override]
        sigmas, rgbs, t_starts, t_ends, packed_info, weights, trans = ctx.saved_tensors
        g_sigmas, g_rgbs = get_ext().composite_backward(  # type: ignore[union-attr]
            g_rgb.contiguous(),
            g_opacity.contiguous(),
            g_depth.contiguous(),
            g_weights.contiguous(),
            sigmas,
            rgbs,
            t_starts,
            t_ends,
            packed_info,
            weights,
            trans,
        )
        return (
            g_sigmas if ctx.needs_input_grad[0] else None,
            g_rgbs if ctx.needs_input_grad[1] else None,
            None,
            None,
            None,
        )


def packed_info_from_ray_indices(ray_indices: Tensor, n_rays: int) -> Tensor:
    """[R, 2] int64 (start, count) per ray from sorted ray indices [S]."""
    counts = torch.bincount(ray_indices.long(), minlength=n_rays)
    return torch.stack([torch.cumsum(counts, 0) - counts, counts], dim=-1)


def composite(
    sigmas: Tensor,
    rgbs: Tensor,
    t_starts: Tensor,
    t_ends: Tensor,
    ray_indices: Tensor | None = None,
    packed_info: Tensor | None = None,
    n_rays: int | None = None,
    backend: str = "auto",
) -> CompositeOutput:
    """Composite packed samples front to back into per-ray colour, opacity and depth.

    Samples must be grouped by ray and ordered front to back within a ray (as :func:`march_rays` returns them).
    Give ``packed_info`` or ``ray_indices`` (with ``n_rays``); given both, ``packed_info`` is used by the compiled
    kernels and ``ray_indices`` by the twin.

    Args:
        sigmas: [S] (or [S, 1]) densities, float32 or float64.
        rgbs: [S, C] colours or features.
        t_starts: [S] sample starts.
        t_ends: [S] sample ends.
        ray_indices: [S] int64 ray of every sample (non-decreasing).
        packed_info: [R, 2] int64 (first sample, count) per ray.
        n_rays: R; required with ``ray_indices`` alone.
        backend: "auto" | "cuda" | "cpu" | "torch".

    Returns:
        CompositeOutput(rgb [R, C], opacity [R, 1], depth [R, 1], weights [S]).

    >>> s = torch.tensor([1.0, 2.0]); c = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    >>> out = composite(s, c, torch.tensor([0.0, 1.0]), torch.tensor([1.0, 2.0]),
    ...                 packed_info=torch.tensor([[0, 2]]), backend="torch")
    >>> round(out.opacity.item(), 4)  # 1 - exp(-3)
    0.9502
    """
    if sigmas.ndim == 2 and sigmas.shape[-1] == 1:
        sigmas = sigmas[:, 0]
    n_samples = sigmas.shape[0]
    if rgbs.ndim != 2 or rgbs.shape[0] != n_samples:
        raise ValueError(f"rgbs must be [S, C] with S={n_samples}, got {tuple(rgbs.shape)}")
    if t_starts.shape != (n_samples,) or t_ends.shape != (n_samples,):
        raise ValueError("t_starts and t_ends must be [S]")
    if packed_info is None:
        if ray_indices is None or n_rays is None:
            raise ValueError("composite needs packed_info, or ray_indices with n_rays")
        packed_info = packed_info_from_ray_indices(ray_indices, n_rays)
    n_rays = packed_info.shape[0]
    dtype = torch.promote_types(sigmas.dtype, rgbs.dtype)
    sigmas, rgbs = sigmas.to(dtype), rgbs.to(dtype)
    t_starts, t_ends = t_starts.detach().to(dtype), t_ends.detach().to(dtype)
    be = resolve_backend(backend, sigmas.device, "composite")
    if be == "torch":
        if ray_indices is None:
            ray_indices = _packed_to_ray_indices(packed_info, n_samples)
        return CompositeOutput(*_composite(sigmas, rgbs, t_starts, t_ends, ray_indices.long(), n_rays))
    out = _CompositeFn.apply(
        sigmas.contiguous(),
        rgbs.contiguous(),
        t_starts.contiguous(),
        t_ends.contiguous(),
        packed_info.long().contiguous(),
    )
    return CompositeOutput(*out)
