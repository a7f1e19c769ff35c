"""Pure-PyTorch twin of the hash-grid encoding: the CPU fallback and the oracle of the compiled kernels.

Vectorised over points, looping over levels (each level gathers its ``2**D`` corners with one ``index_select``).
Autograd supplies the gradients to the table and to the inputs (and higher orders, which the kernels do not).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from nerfhead.ops.hash_grid_config import HashGridConfig

PRIMES = (1, 2654435761, 805459861, 3674653429)
"""tiny-cuda-nn's CoherentPrime hash factors, one per input dimension."""

_UINT32 = 0xFFFFFFFF


def _corner_bits(dims: int, device: torch.device) -> torch.Tensor:
    """[2**D, D] int64: bit d of corner c (1 = the upper neighbour along dimension d)."""
    c = torch.arange(2**dims, device=device)
    return (c[:, None] >> torch.arange(dims, device=device)) & 1


def _grid_index(
    coords: torch.Tensor, resolution: int, size: int, hashed: bool, primes: torch.Tensor
) -> torch.Tensor:
    """Entry index inside a level (uint32 arithmetic, as the kernels), for integer vertex coords [..., D]."""
    if hashed:
        h = coords * primes
        index = h[..., 0]
        for d in range(1, coords.shape[-1]):
            index = torch.bitwise_xor(index, h[..., d])
    else:
        strides = resolution ** torch.arange(coords.shape[-1], device=coords.device)
        index = (coords * strides).sum(-1)
    return (index & _UINT32) % size


def _hash_grid_encode(x: torch.Tensor, table: torch.Tensor, cfg: HashGridConfig) -> torch.Tensor:
    """Hash-grid encoding in plain PyTorch.

    Args:
        x: [N, D] positions, expected in [0, 1]^D (not clamped).
        table: [cfg.n_params] flat table (float16/32/64).
        cfg: grid settings.

    Returns:
        [N, n_levels * n_features_per_level] in the table's dtype (computed in ``x``'s dtype, at least float32).
    """
    lv = cfg.levels
    n, dims = x.shape
    feats = cfg.n_features_per_level
    compute = torch.promote_types(x.dtype, torch.float32)
    x = x.to(compute)
    bits = _corner_bits(dims, x.device)  # [C, D]
    upper = bits.bool()
    primes = torch.tensor(PRIMES[:dims], dtype=torch.int64, device=x.device)
    rows = table.view(-1, feats)
    outs = []
    for level in range(cfg.n_levels):
        pos = x * lv.scales[level] + 0.5
        cell = torch.floor(pos)
        f = pos - cell  # d f / d x = scale (floor has zero gradient)
        w = f * f * (3.0 - 2.0 * f) if cfg.interpolation == "smoothstep" else f
        coords = cell.to(torch.int64)[:, None, :] + bits  # [N, C, D]
        size = lv.offsets[level + 1] - lv.offsets[level]
        index = _grid_index(coords, lv.resolutions[level], size, lv.hashed[level], primes) + lv.offsets[level]
        weight = torch.where(upper, w[:, None, :], 1.0 - w[:, None, :]).prod(-1)  # [N, C]
        values = rows.index_select(0, index.reshape(-1)).view(n, -1, feats).to(compute)  # [N, C, F]
        outs.append((weight[..., None] * values).sum(1))
    return torch.cat(outs, dim=-1).to(table.dtype)
