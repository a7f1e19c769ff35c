"""The expression-conditioned deformation network both heads use (:class:`ExpressionDeformation`), and the nerf
head's settings for it.

The nerf head (NeRSemble): a point in the head's unit box, deformed by the current expression (and the Drive's
latent, when the avatar uses one), to the canonical space where the hash ensemble lives; a fresh field is the
identity. The splat head (:mod:`nerfhead.models.deform`): per-Gaussian offsets and colour residuals from the
expression and head rotation, soft-limited and with the expression clamped to the training range.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nerfhead.components.hash_grid import HashGrid
from nerfhead.data.expressions import NUM_EXPRESSIONS
from nerfhead.ops.hash_grid_config import HashGridConfig, SpannedGrid


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

    def build(self, backend: str = "auto") -> ExpressionDeformation:
        """The field: canonical positions = head-box positions + offsets (:class:`ExpressionDeformation`)."""
        return ExpressionDeformation(
            self.grid(),
            NUM_EXPRESSIONS + max(self.latent_dim, 0),
            self.code_dim,
            self.hidden,
            residual=True,
            backend=backend,
        )


def drive_code(expression: Tensor, latent: Tensor | None, latent_dim: int) -> Tensor:
    """[T, 53 + latent_dim] conditioning of T timesteps (the latent is zero-padded or cut to ``latent_dim``)."""
    if latent_dim <= 0:
        return expression
    lat = torch.zeros(expression.shape[0], latent_dim, dtype=expression.dtype, device=expression.device)
    if latent is not None:
        k = min(latent_dim, latent.shape[1])
        lat[:, :k] = latent[:, :k].to(lat)
    return torch.cat([expression, lat], dim=-1)


class ExpressionDeformation(nn.Module):
    """The expression-conditioned deformation network of both heads: a hash grid encodes a position in the unit
    box, a linear layer projects the per-timestep conditioning (the 53 expression coefficients, then whatever a
    head appends: head rotation, a latent) to a short code, and a one-hidden-layer MLP maps both to ``out_dim``
    outputs. The output layer starts at zero, so a fresh network changes nothing.

    Args:
        grid: the position encoding's hash grid.
        conditioning_dim: width of the conditioning (53 + what the head appends).
        code_dim: width of its linear projection.
        hidden: hidden width of the MLP.
        out_dim: outputs per point.
        limits: soft limits (``m * tanh(o / m)``) of consecutive groups of three outputs (the splat head: offset
            and colour residual); empty: none.
        residual: return ``unit_x`` plus the (three) outputs (the nerf head: canonical positions).
        expression_margin: clamp the expression the network reads to the training range widened by this share
            of it (:meth:`set_expression_range`; the range is saved with the model); None: no clamp.
        backend: hash-grid backend (``"auto"|"cuda"|"cpu"|"torch"``).
    """

    def __init__(
        self,
        grid: HashGridConfig,
        conditioning_dim: int,
        code_dim: int,
        hidden: int,
        out_dim: int = 3,
        limits: tuple[float, ...] = (),
        residual: bool = False,
        expression_margin: float | None = None,
        backend: str = "auto",
    ):
        super().__init__()
        if residual and out_dim != 3:
            raise ValueError("a residual deformation has three outputs")
        if limits and len(limits) * 3 != out_dim:
            raise ValueError(f"{len(limits)} limits for {out_dim} outputs (one per group of three)")
        self.limits, self.residual, self.expression_margin = tuple(limits), residual, expression_margin
        self.grid = HashGrid(grid, backend=backend)
        self.code = nn.Linear(conditioning_dim, code_dim)
        # the hidden layer on [features, code], split so the code part is computed once per timestep
        self.hidden_pos = nn.Linear(self.grid.output_dim, hidden)
        self.hidden_code = nn.Linear(code_dim, hidden, bias=False)
        self.out = nn.Linear(hidden, out_dim)
        with torch.no_grad():
            self.out.weight.zero_()
            self.out.bias.zero_()
        if expression_margin is not None:
            self.register_buffer("expr_low", torch.zeros(NUM_EXPRESSIONS))
            self.register_buffer("expr_high", torch.ones(NUM_EXPRESSIONS))

    expr_low: Tensor
    expr_high: Tensor

    @torch.no_grad()
    def set_expression_range(self, expression: Tensor) -> None:
        """Clamp the network's expression input to the range of ``expression`` [N, 53] (the training frames'),
        widened by ``expression_margin`` of it on both sides."""
        if self.expression_margin is None:
            raise ValueError("this network was built without an expression range")
        lo, hi = expression.min(0).values.float(), expression.max(0).values.float()
        m = self.expression_margin * (hi - lo)
        self.expr_low.copy_((lo - m).clamp(0.0, 1.0))
        self.expr_high.copy_((hi + m).clamp(0.0, 1.0))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        for k in [k for k in state_dict if k.startswith(prefix + "expr.")]:  # the splat head's old name
            state_dict[prefix + "code." + k[len(prefix) + 5 :]] = state_dict.pop(k)
        if self.expression_margin is not None:
            for k in ("expr_low", "expr_high"):  # checkpoints from before the range: no clamp
                state_dict.setdefault(prefix + k, getattr(self, k).clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, unit_x: Tensor, conditioning: Tensor, time_index: Tensor | None = None) -> Tensor:
        """Outputs for N points.

        Args:
            unit_x: [N, 3] positions in the unit box.
            conditioning: [T, conditioning_dim] per timestep (expression first).
            time_index: [N] int64 timestep of every point; None: every point at every timestep.

        Returns:
            [N, out_dim] (with ``time_index``) or [T, N, out_dim]; with ``residual``, ``unit_x`` plus them
            (exactly ``unit_x`` at initialisation).
        """
        return self.from_positional(self.positional(unit_x), unit_x, conditioning, time_index)

    def positional(self, unit_x: Tensor) -> Tensor:
        """[N, hidden] the position half of the hidden layer (hash grid, then its linear map): it does not depend
        on the conditioning, so a caller posing the same points again and again can keep it (the viewer)."""
        feat = self.grid(unit_x.clamp(0.0, 1.0)).to(unit_x.dtype)  # [N, G]
        return self.hidden_pos(feat)  # [N, H]

    def hidden_of(self, conditioning: Tensor) -> Tensor:
        """[T, H] the conditioning half of the hidden layer (expressions clamped to the fitted range first)."""
        c = conditioning
        if self.expression_margin is not None:
            k = NUM_EXPRESSIONS
            e = torch.minimum(torch.maximum(c[:, :k], self.expr_low.to(c)), self.expr_high.to(c))
            c = torch.cat([e, c[:, k:]], dim=-1)
        return self.hidden_code(self.code(c))

    def from_positional(
        self, pos: Tensor, unit_x: Tensor, conditioning: Tensor, time_index: Tensor | None = None
    ) -> Tensor:
        """:meth:`forward` from :meth:`positional`'s output ``pos`` for the same ``unit_x``."""
        code = self.hidden_of(conditioning.to(unit_x.dtype))  # [T, H]
        h = pos + code[time_index] if time_index is not None else pos[None] + code[:, None]
        o = self.out(torch.relu(h))
        if self.limits:
            o = torch.cat(
                [m * torch.tanh(o[..., 3 * i : 3 * i + 3] / m) for i, m in enumerate(self.limits)], -1
            )
        return unit_x + o if self.residual else o

    def extra_repr(self) -> str:
        return f"limits={self.limits}, residual={self.residual}, expression_margin={self.expression_margin}"
