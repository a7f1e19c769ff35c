"""The splat head's settings for its deformation / colour network (the one network both heads use:
:class:`nerfhead.fields.deformation.ExpressionDeformation`), conditioned on the Drive.

A hash grid encodes each Gaussian's canonical position (on the neutral mesh, normalised to the head's box); the
Drive's 53 expression coefficients and head rotation (axis-angle: shading under world-fixed light changes with
pose) are projected to a short code; a one-hidden-layer MLP maps both to a per-Gaussian offset of the local mean
(in triangle units, so it moves with its triangle) and an RGB residual added to the SH DC term. The output
layer starts at zero, so a fresh network changes nothing. Outside the training expressions it holds still: its
expression input is clamped to the range the fit saw and its outputs are soft-limited (tanh).
"""

from __future__ import annotations

from dataclasses import dataclass

from nerfhead.data.expressions import NUM_EXPRESSIONS
from nerfhead.fields.deformation import ExpressionDeformation
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
    the training task, :meth:`ExpressionDeformation.set_expression_range`); the mesh still follows the full
    expression."""

    def build(self, backend: str = "auto") -> ExpressionDeformation:
        """The network: input [expression (53), rotation (3)], outputs [offset (3), colour residual (3)]."""
        return ExpressionDeformation(
            self.grid(),
            NUM_EXPRESSIONS + 3,
            self.expression_code,
            self.hidden,
            out_dim=6,
            limits=(self.max_offset, self.max_rgb),
            expression_margin=self.expression_margin,
            backend=backend,
        )
