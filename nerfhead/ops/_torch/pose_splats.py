"""Torch twin of the ``pose_splats`` op (formulas: ``cuda_ext/csrc/pose_splats.h``) and viser's 32-byte packing."""

from __future__ import annotations

import torch
from torch import Tensor

from nerfhead.splats.binding import triangle_frames

_TRIU = (0, 1, 2, 4, 5, 8)  # upper-triangle entries of a flattened 3 x 3


def alpha_bytes(opacities: Tensor) -> Tensor:
    """[N] uint8 alpha byte of each Gaussian as :func:`pack_viser` packs it (``trunc(255 x opacity)``, clipped)."""
    return (opacities.reshape(-1).to(torch.float32) * 255.0).clamp(0, 255).to(torch.uint8)


def pack_viser(centers: Tensor, covariances: Tensor, rgbs: Tensor, opacities: Tensor) -> Tensor:
    """viser's [N, 8] Gaussian buffer (``GaussianSplatHandle.buffer``) as int32, bit-identical to viser's own
    packing: centre 3 x float32, 4 reserved bytes (zero), covariance upper triangle 6 x float16, RGBA 4 x uint8
    (``trunc(255 x value)``, clipped). ``rgbs`` [N, 3] and ``opacities`` [N, 1] or [N]."""
    n = int(centers.shape[0])
    rgba = torch.cat([rgbs, opacities.reshape(n, 1)], dim=1).to(torch.float32) * 255.0
    rgba = rgba.clamp(0, 255).to(torch.uint8)
    out = torch.zeros(n, 8, dtype=torch.int32)
    out[:, 0:3] = centers.to(torch.float32).contiguous().view(torch.int32)
    out[:, 4:7] = covariances.reshape(n, 9)[:, list(_TRIU)].to(torch.float16).contiguous().view(torch.int32)
    out[:, 7] = rgba.contiguous().view(torch.int32)[:, 0]
    return out


def deform_head(
    pos: Tensor, code: Tensor, weight: Tensor, bias: Tensor, limit_pos: float, limit_rgb: float
) -> tuple[Tensor, Tensor]:
    """Offsets [N, 3] and colour residuals [N, 3] of the deformation network's last layers:
    ``o = W relu(pos + code) + bias``, each half squashed as ``l tanh(o / l)`` (``l = 0``: not squashed)."""
    o = torch.addmm(bias, torch.relu(pos + code), weight.T)
    halves = []
    for h, lim in zip(o.split(3, -1), (limit_pos, limit_rgb), strict=True):
        halves.append(lim * torch.tanh(h / lim) if lim > 0 else h)
    return halves[0], halves[1]


def bound_to_world(verts: Tensor, tri: Tensor, means: Tensor, local: Tensor) -> tuple[Tensor, Tensor]:
    """World centres [N, 3] and covariances [N, 3, 3] of Gaussians bound to triangles ``tri`` [N, 3] of ``verts``
    [V, 3]: centre ``c + R (k mean)``, covariance ``(k R L)(k R L)^T`` in each triangle's frame (rotation ``R``,
    scale ``k``, centroid ``c``: :func:`nerfhead.splats.binding.triangle_frames`) with the local ``L = R S``: the
    viewer's covariance form of :func:`nerfhead.splats.binding.bind_to_world` (quaternions and scales)."""
    fr = triangle_frames(verts, tri)
    rot, k, centroid = fr.rotation[0], fr.scale[0][:, None], fr.centroid[0]
    centres = torch.baddbmm(centroid[..., None], rot, (k * means)[..., None])[..., 0]
    m = torch.bmm(rot, local) * k[..., None]
    return centres, torch.bmm(m, m.transpose(1, 2))


def pose_splats(
    verts: Tensor,
    tri: Tensor,
    means: Tensor,
    local: Tensor,
    rgb: Tensor,
    opacities: Tensor,
    pos: Tensor | None = None,
    code: Tensor | None = None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    gain: Tensor | None = None,
    limit_pos: float = 0.0,
    limit_rgb: float = 0.0,
) -> Tensor:
    """See :func:`nerfhead.ops.pose_splats.pose_splats`."""
    if pos is not None:
        assert code is not None and weight is not None and bias is not None and gain is not None
        offset, residual = deform_head(pos, code, weight, bias, limit_pos, limit_rgb)
        means, rgb = means + offset, rgb + gain[:, None] * residual
    centres, covariances = bound_to_world(verts, tri, means, local)
    return pack_viser(centres, covariances, rgb.clamp(0.0, 1.0), opacities)
