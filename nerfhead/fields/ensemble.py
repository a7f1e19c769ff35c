"""NeRSemble's hash ensemble: K hash grids over the canonical box, blended per timestep, with density and
view-dependent colour heads.

The blend weights are ``softmax(MLP(expression [+ latent]))`` (NeRSemble learns a per-frame code; conditioning
on the Drive makes the weights available for unseen drives). The blended features feed a density MLP (density
``exp`` of its first output, plus geometry features) and a colour MLP on the geometry features and the
spherical-harmonics encoding of the view direction (in the head frame).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from nerfhead.components.hash_grid import HashGrid
from nerfhead.data.expressions import NUM_EXPRESSIONS
from nerfhead.ops.hash_grid_config import SpannedGrid


@dataclass(frozen=True)
class EnsembleConfig(SpannedGrid):
    """Hash-ensemble settings."""

    n_grids: int = 4
    """Hash grids K in the ensemble (NeRSemble uses 32; 16 gives comparable quality)."""
    n_levels: int = 12
    """Levels per grid."""
    n_features_per_level: int = 2
    """Features per level."""
    log2_hashmap_size: int = 16
    """Log2 of the entries per level."""
    base_resolution: int = 16
    """Coarsest resolution over the canonical box."""
    finest_resolution: int = 512
    """Finest resolution over the canonical box."""
    latent_dim: int = 0
    """Width of the Drive's latent the blend reads (0: expression only)."""
    blend_hidden: int = 32
    """Hidden width of the blend-weight MLP."""
    geo_features: int = 15
    """Geometry features passed from the density MLP to the colour MLP."""
    hidden: int = 64
    """Hidden width of the density and colour MLPs."""
    sh_degree: int = 3
    """Spherical-harmonics degree of the direction encoding (0..3)."""
    density_bias: float = 1.0
    """Added to the raw density before ``exp`` (1: a fresh field is half transparent over 15 cm)."""


def sh_encode(dirs: Tensor, degree: int) -> Tensor:
    """Real spherical harmonics of unit directions (the 3DGS / tiny-cuda-nn constants).

    Args:
        dirs: [N, 3] unit vectors.
        degree: 0..3.

    Returns:
        [N, (degree + 1)^2] coefficients.
    """
    x, y, z = dirs.unbind(-1)
    xx, yy, zz = x * x, y * y, z * z
    out = [torch.full_like(x, 0.28209479177387814)]
    if degree >= 1:
        out += [-0.4886025119029199 * y, 0.4886025119029199 * z, -0.4886025119029199 * x]
    if degree >= 2:
        out += [
            1.0925484305920792 * x * y,
            -1.0925484305920792 * y * z,
            0.31539156525252005 * (2 * zz - xx - yy),
            -1.0925484305920792 * x * z,
            0.5462742152960396 * (xx - yy),
        ]
    if degree >= 3:
        out += [
            -0.5900435899266435 * y * (3 * xx - yy),
            2.890611442640554 * x * y * z,
            -0.4570457994644658 * y * (4 * zz - xx - yy),
            0.3731763325901154 * z * (2 * zz - 3 * xx - 3 * yy),
            -0.4570457994644658 * x * (4 * zz - xx - yy),
            1.445305721320277 * z * (xx - yy),
            -0.5900435899266435 * x * (xx - 3 * yy),
        ]
    return torch.stack(out, dim=-1)


class _TruncExp(torch.autograd.Function):
    """``exp`` with its gradient clamped (instant-ngp's trunc_exp), stable for large raw densities."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return g * torch.exp(x.clamp(-15.0, 15.0))


class HashEnsemble(nn.Module):
    """K blended hash grids with density and colour heads.

    Args:
        cfg: settings.
        backend: hash-grid backend.
    """

    def __init__(self, cfg: EnsembleConfig = EnsembleConfig(), backend: str = "auto"):
        super().__init__()
        self.cfg = cfg
        self.grids = nn.ModuleList([HashGrid(cfg.grid(), backend=backend) for _ in range(cfg.n_grids)])
        feat = cfg.grid().output_dim
        code = NUM_EXPRESSIONS + max(cfg.latent_dim, 0)
        self.blend = nn.Sequential(
            nn.Linear(code, cfg.blend_hidden), nn.ReLU(), nn.Linear(cfg.blend_hidden, cfg.n_grids)
        )
        with torch.no_grad():  # uniform weights at the start
            self.blend[-1].weight.zero_()  # type: ignore[index]
            self.blend[-1].bias.zero_()  # type: ignore[index]
        self.density_net = nn.Sequential(
            nn.Linear(feat, cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, 1 + cfg.geo_features)
        )
        n_sh = (cfg.sh_degree + 1) ** 2
        self.color_net = nn.Sequential(
            nn.Linear(cfg.geo_features + n_sh, cfg.hidden),
            nn.ReLU(),
            nn.Linear(cfg.hidden, cfg.hidden),
            nn.ReLU(),
            nn.Linear(cfg.hidden, 3),
        )

    def blend_weights(self, conditioning: Tensor) -> Tensor:
        """[T, K] blend weights (rows sum to 1) of T timesteps' conditioning [T, 53 + latent_dim]."""
        return torch.softmax(self.blend(conditioning), dim=-1)

    def features(self, x: Tensor, weights: Tensor) -> Tensor:
        """Blended grid features [N, F] of canonical points ``x`` [N, 3] in [0, 1]^3 with per-point weights [N, K]."""
        x = x.clamp(0.0, 1.0)
        out = None
        for k, grid in enumerate(self.grids):
            f = grid(x).to(weights.dtype) * weights[:, k : k + 1]
            out = f if out is None else out + f
        assert out is not None
        return out

    def density(self, x: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
        """Density [N] (per metre of the head box's scale) and geometry features [N, geo_features]."""
        h = self.density_net(self.features(x, weights))
        sigma = _TruncExp.apply(h[:, 0] + self.cfg.density_bias)
        return sigma, h[:, 1:]  # type: ignore[return-value]

    def forward(self, x: Tensor, dirs: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
        """Colour and density of N points.

        Args:
            x: [N, 3] canonical positions in [0, 1]^3.
            dirs: [N, 3] unit view directions (head frame).
            weights: [N, K] blend weights.

        Returns:
            (rgb [N, 3] in [0, 1], sigma [N]).
        """
        sigma, geo = self.density(x, weights)
        rgb = torch.sigmoid(self.color_net(torch.cat([geo, sh_encode(dirs, self.cfg.sh_degree)], dim=-1)))
        return rgb, sigma
