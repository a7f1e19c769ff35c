"""NeRSemble-style deformation field: a point in the head's unit box, deformed by the current expression, to the
canonical space where the hash ensemble lives.

A hash grid encodes the (posed-head-frame) position in ``[0, 1]^3``; the Drive's 53 expression coefficients (and
its latent, when the avatar uses one) are projected to a short code; a one-hidden-layer MLP maps both to an offset
in unit-box units. The output layer starts at zero, so a fresh field is the identity.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nerfhead.components.hash_grid import HashGrid
from nerfhead.data.expressions import NUM_EXPRESSIONS
from nerfhead.ops.hash_grid_config import SpannedGrid


@dataclass(frozen=True)
class DeformationConfig(SpannedGrid):
    """Deformation field settings."""

    enabled: bool = True
    """Use the field (off: the canonical space is the head frame)."""
    n_levels: int = 8
    """Hash-grid levels over the head box."""
    n_features_per_level: int = 2
    """Features per level."""
    log2_hashmap_size: int = 15
    """Log2 of the entries per level."""
    base_resolution: int = 8
    """Coarsest grid resolution."""
    finest_resolution: int = 128
    """Finest grid resolution."""
    latent_dim: int = 0
    """Width of the Drive's latent the field reads (0: expression only)."""
    code_dim: int = 16
    """Width of the linear projection of the expression (+ latent)."""
    hidden: int = 32
    """Hidden width of the MLP."""


def drive_code(expression: Tensor, latent: Tensor | None, latent_dim: int) -> Tensor:
    """[T, 53 + latent_dim] conditioning of T timesteps (the latent is zero-padded or cut to ``latent_dim``)."""
    if latent_dim <= 0:
        return expression
    lat = torch.zeros(expression.shape[0], latent_dim, dtype=expression.dtype, device=expression.device)
    if latent is not None:
        k = min(latent_dim, latent.shape[1])
        lat[:, :k] = latent[:, :k].to(lat)
    return torch.cat([expression, lat], dim=-1)


class DeformationField(nn.Module):
    """Expression-conditioned offsets from the posed head box to the canonical box.

    Args:
        cfg: settings.
        backend: hash-grid backend (``"auto"|"cuda"|"cpu"|"torch"``).
    """

    def __init__(self, cfg: DeformationConfig = DeformationConfig(), backend: str = "auto"):
        super().__init__()
        self.cfg = cfg
        self.grid = HashGrid(cfg.grid(), backend=backend)
        self.code = nn.Linear(NUM_EXPRESSIONS + max(cfg.latent_dim, 0), cfg.code_dim)
        # the hidden layer on [features, code], split so the code part is computed once per timestep
        self.hidden_pos = nn.Linear(self.grid.output_dim, cfg.hidden)
        self.hidden_code = nn.Linear(cfg.code_dim, cfg.hidden, bias=False)
        self.out = nn.Linear(cfg.hidden, 3)
        with torch.no_grad():
            self.out.weight.zero_()
            self.out.bias.zero_()

    def forward(self, unit_x: Tensor, conditioning: Tensor, time_index: Tensor) -> Tensor:
        """Canonical positions of N points.

        Args:
            unit_x: [N, 3] positions in the posed head's unit box.
            conditioning: [T, 53 + latent_dim] per-timestep conditioning (:func:`drive_code`).
            time_index: [N] int64 timestep of every point.

        Returns:
            [N, 3] canonical positions (``unit_x`` plus the offset; exactly ``unit_x`` at initialisation).
        """
        if not self.cfg.enabled:
            return unit_x
        feat = self.grid(unit_x.clamp(0.0, 1.0)).to(unit_x.dtype)  # [N, G]
        code = self.hidden_code(self.code(conditioning.to(unit_x.dtype)))  # [T, H]
        h = torch.relu(self.hidden_pos(feat) + code[time_index])
        return unit_x + self.out(h)
