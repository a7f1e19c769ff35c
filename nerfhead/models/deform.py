"""The splat head's small deformation / colour network, conditioned on the Drive.

A hash grid encodes each Gaussian's canonical position (on the neutral mesh, normalised to the head's box); the
Drive's 53 expression coefficients and head rotation (axis-angle: shading under world-fixed light changes with
pose) are projected to a short code; a one-hidden-layer MLP maps both to a per-Gaussian offset of the local mean
(in triangle units, so it moves with its triangle) and an RGB residual added to the SH DC term. The output
layer starts at zero, so a fresh network changes nothing. Outside the training expressions it holds still: its
expression input is clamped to the range the fit saw and its outputs are soft-limited (tanh).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nerfhead.components.hash_grid import HashGrid
from nerfhead.data.expressions import NUM_EXPRESSIONS
from nerfhead.ops.hash_grid_config import SpannedGrid


@dataclass(frozen=True)
class DeformConfig(SpannedGrid):
    """Deformation / colour network settings."""

    enabled: bool = True
    """Use the network (off: Gaussians follow their triangles only)."""
    n_levels: int = 8
    """Hash-grid levels over the canonical head box."""
    n_features_per_level: int = 2
    """Features per level."""
    log2_hashmap_size: int = 14
    """Log2 of the entries per level."""
    base_resolution: int = 8
    """Coarsest grid resolution."""
    finest_resolution: int = 256
    """Finest grid resolution (over the head's box, about 1 mm)."""
    expression_code: int = 16
    """Width of the linear projection of the 53 expression coefficients and the 3 rotation components."""
    hidden: int = 32
    """Hidden width of the MLP."""
    max_offset: float = 1.0
    """Offsets are soft-limited to this (triangle units, ``m * tanh(o / m)``): an expression the fit never saw
    cannot throw Gaussians off their triangles."""
    max_rgb: float = 0.5
    """Colour residuals are soft-limited to this (``m * tanh(c / m)``)."""
    expression_margin: float = 0.1
    """The expression the network reads is clamped to the training range widened by this share of it (set by
    the training task, :meth:`DeformNet.set_expression_range`); the mesh still follows the full expression."""


class DeformNet(nn.Module):
    """Expression-conditioned per-Gaussian offsets and colour residuals.

    Args:
        cfg: settings.
        backend: hash-grid backend (``"auto"|"cuda"|"cpu"|"torch"``).
    """

    def __init__(self, cfg: DeformConfig, backend: str = "auto"):
        super().__init__()
        self.cfg = cfg
        self.grid = HashGrid(cfg.grid(), backend=backend)
        self.expr = nn.Linear(NUM_EXPRESSIONS + 3, cfg.expression_code)
        # the hidden layer on [features, code], split so the code part is computed once per timestep
        self.hidden_pos = nn.Linear(self.grid.output_dim, cfg.hidden)
        self.hidden_code = nn.Linear(cfg.expression_code, cfg.hidden, bias=False)
        self.out = nn.Linear(cfg.hidden, 6)
        with torch.no_grad():
            self.out.weight.zero_()
            self.out.bias.zero_()
        self.register_buffer("expr_low", torch.zeros(NUM_EXPRESSIONS))
        self.register_buffer("expr_high", torch.ones(NUM_EXPRESSIONS))

    expr_low: Tensor
    expr_high: Tensor

    @torch.no_grad()
    def set_expression_range(self, expression: Tensor) -> None:
        """Clamp the network's expression input to the range of ``expression`` [N, 53] (the training frames'),
        widened by ``expression_margin`` of it on both sides."""
        lo, hi = expression.min(0).values.float(), expression.max(0).values.float()
        m = self.cfg.expression_margin * (hi - lo)
        self.expr_low.copy_((lo - m).clamp(0.0, 1.0))
        self.expr_high.copy_((hi + m).clamp(0.0, 1.0))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        for k in ("expr_low", "expr_high"):  # checkpoints from before the range: no clamp
            state_dict.setdefault(prefix + k, getattr(self, k).clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, unit_positions: Tensor, expression: Tensor, rotation: Tensor) -> tuple[Tensor, Tensor]:
        """Offsets and colour residuals for T timesteps.

        Args:
            unit_positions: [N, 3] canonical positions in [0, 1]^3.
            expression: [T, 53] expression coefficients.
            rotation: [T, 3] head rotation (axis-angle).

        Returns:
            (offsets [T, N, 3] in triangle units, rgb residuals [T, N, 3]).
        """
        feat = self.grid(unit_positions.clamp(0.0, 1.0)).to(expression.dtype)  # [N, G]
        e = torch.minimum(
            torch.maximum(expression, self.expr_low.to(expression)), self.expr_high.to(expression)
        )
        code = self.hidden_code(self.expr(torch.cat([e, rotation.to(expression)], dim=-1)))  # [T, H]
        o = self.out(torch.relu(self.hidden_pos(feat)[None] + code[:, None]))  # [T, N, 6]
        mo, mc = self.cfg.max_offset, self.cfg.max_rgb
        return mo * torch.tanh(o[..., :3] / mo), mc * torch.tanh(o[..., 3:] / mc)
