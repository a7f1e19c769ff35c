"""Multi-resolution hash-grid encoding (Instant-NGP; tiny-cuda-nn's ``HashGrid``), as a config and an nn.Module.

The table is one flat parameter laid out level by level (tiny-cuda-nn's layout): level ``l`` occupies entries
``offsets[l] .. offsets[l+1]``, each with ``n_features_per_level`` values. Coarse levels whose grid fits in the
level's budget are stored densely; finer ones use the CoherentPrime hash. ``HashGridConfig.levels`` computes this
layout once, and every implementation (C++, CUDA, torch twin) reads it from there.
"""

from __future__ import annotations

import torch
from torch import nn

from nerfhead.ops.hash_grid import hash_grid_encode
from nerfhead.ops.hash_grid_config import MAX_LEVELS, HashGridConfig, HashGridLevels

__all__ = ["MAX_LEVELS", "HashGrid", "HashGridConfig", "HashGridLevels"]


class HashGrid(nn.Module):
    """Hash-grid encoding with its table as one flat parameter.

    Args:
        cfg: the grid's settings.
        backend: ``"auto"|"cuda"|"cpu"|"torch"`` (see :func:`nerfhead.ops.hash_grid.hash_grid_encode`).
        dtype: table dtype: float32 (default), float16 (CUDA kernel or torch twin), float64 (CPU, for tests).

    Example:
        >>> grid = HashGrid(HashGridConfig(n_input_dims=2, n_levels=4, log2_hashmap_size=12))
        >>> grid(torch.rand(5, 2)).shape
        torch.Size([5, 8])
    """

    def __init__(self, cfg: HashGridConfig, backend: str = "auto", dtype: torch.dtype = torch.float32):
        super().__init__()
        self.cfg = cfg
        self.backend = backend
        self.table = nn.Parameter(torch.empty(cfg.n_params, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform in [-1e-4, 1e-4], as tiny-cuda-nn initialises its grids."""
        with torch.no_grad():
            self.table.uniform_(-1e-4, 1e-4)

    @property
    def output_dim(self) -> int:
        """Features per point: ``n_levels * n_features_per_level``."""
        return self.cfg.output_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode points.

        Args:
            x: [..., D] positions in [0, 1]^D.

        Returns:
            [..., n_levels * n_features_per_level] features, in the table's dtype.
        """
        return hash_grid_encode(x, self.table, self.cfg, backend=self.backend)

    def extra_repr(self) -> str:
        c = self.cfg
        return (
            f"dims={c.n_input_dims}, levels={c.n_levels}, features={c.n_features_per_level}, "
            f"log2_hashmap_size={c.log2_hashmap_size}, base_resolution={c.base_resolution}, "
            f"per_level_scale={c.per_level_scale:g}, interpolation={c.interpolation}, params={c.n_params}"
        )
