"""Real spherical harmonics up to degree 3, with the constants and sign conventions of 3DGS and gsplat.

Colours from SH coefficients are ``sum_k coeffs[k] * Y_k(dir)`` over the ``(degree + 1) ** 2`` active bases,
with ``dir`` the unit vector from the camera centre to the Gaussian. The renderer then adds 0.5 and clamps at
0 (``nerfhead.ops._torch.rasterize_gaussians``), as gsplat does to match the original 3DGS code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (
    1.0925484305920792,
    -1.0925484305920792,
    0.31539156525252005,
    -1.0925484305920792,
    0.5462742152960396,
)
SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)
MAX_SH_DEGREE = 3


def num_sh_bases(degree: int) -> int:
    """Number of SH bases of a given degree: ``(degree + 1) ** 2``."""
    return (degree + 1) ** 2


def _sh_bases(degree: int, dirs: Tensor) -> Tensor:
    """SH basis values at unit directions.

    Args:
        degree: 0..3.
        dirs: unit directions. [..., 3]

    Returns:
        Basis values in 3DGS order. [..., (degree + 1) ** 2]
    """
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f"sh degree must be in [0, {MAX_SH_DEGREE}], got {degree}")
    x, y, z = dirs.unbind(-1)
    xx, yy, zz = x * x, y * y, z * z
    out = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        out += [
            SH_C2[0] * x * y,
            SH_C2[1] * y * z,
            SH_C2[2] * (2.0 * zz - xx - yy),
            SH_C2[3] * x * z,
            SH_C2[4] * (xx - yy),
        ]
    if degree >= 3:
        out += [
            SH_C3[0] * y * (3.0 * xx - yy),
            SH_C3[1] * x * y * z,
            SH_C3[2] * y * (4.0 * zz - xx - yy),
            SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy),
            SH_C3[4] * x * (4.0 * zz - xx - yy),
            SH_C3[5] * z * (xx - yy),
            SH_C3[6] * x * (xx - 3.0 * yy),
        ]
    return torch.stack(out, dim=-1)


def _spherical_harmonics(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """Evaluate SH colours (differentiable in ``dirs`` and ``coeffs``).

    Args:
        degree: active SH degree, 0..3; ``(degree + 1) ** 2 <= K``. Higher coefficients are ignored.
        dirs: view directions, not necessarily normalised (normalised here). [..., 3]
        coeffs: SH coefficients. [..., K, 3]

    Returns:
        Colours before the renderer's +0.5 offset, ``dirs`` and ``coeffs`` broadcast (at every degree,
        0 included). [..., 3]
    """
    k = num_sh_bases(degree)
    if coeffs.shape[-2] < k:
        raise ValueError(f"sh degree {degree} needs {k} coefficients, got {coeffs.shape[-2]}")
    if degree == 0:  # view-independent, but broadcast over ``dirs`` like the other degrees
        shape = torch.broadcast_shapes(dirs.shape[:-1], coeffs.shape[:-2]) + coeffs.shape[-1:]
        return torch.broadcast_to(SH_C0 * coeffs[..., 0, :], shape)
    bases = _sh_bases(degree, F.normalize(dirs, dim=-1))  # [..., k]
    return (bases[..., None] * coeffs[..., :k, :]).sum(dim=-2)
