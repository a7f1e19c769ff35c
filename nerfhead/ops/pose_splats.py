"""The viewer's pose step for Gaussians bound to mesh triangles, fused with viser's packing: from the posed
vertices to the 32-byte Gaussians a browser-side splat renderer draws (``GaussianSplatHandle.buffer``).

Each Gaussian ``i`` sits in the frame of its triangle ``tri[i]`` (:func:`nerfhead.splats.binding.triangle_frames`:
rotation ``R``, scale ``k``, centroid ``c``): centre ``c + R (k mean)``, covariance ``(k R L)(k R L)^T`` with its
local ``L = R_local S``. The optional deformation head (the last layers of
:class:`nerfhead.fields.deformation.ExpressionDeformation`) first moves the mean and shifts the colour:
``o = W relu(pos + code) + bias``, ``mean += l0 tanh(o[:3] / l0)``, ``colour += gain l1 tanh(o[3:] / l1)``.
Forward only (the viewer poses; fitting differentiates :meth:`SplatHead.world_splats`).

The compiled CPU kernel does it in one pass (no [N, 3, 3] or [N, H] intermediates); the torch twin is the oracle
and runs on any device.
"""

from __future__ import annotations

from torch import Tensor

from nerfhead._backend import get_ext
from nerfhead.ops._dispatch import resolve_backend
from nerfhead.ops._torch import pose_splats as _twin

OP = "pose_splats"


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
    backend: str = "auto",
) -> Tensor:
    """Posed, packed Gaussians: [N, 8] int32 (view as uint32 for viser).

    Args:
        verts: [V, 3] posed mesh vertices.
        tri: [N, 3] int64 vertex indices of each Gaussian's triangle.
        means: [N, 3] local means (in units of the triangle's scale).
        local: [N, 3, 3] local ``R S`` of each Gaussian.
        rgb: [N, 3] colours before the residual (clipped to [0, 1] after it).
        opacities: [N] in [0, 1].
        pos, code, weight, bias, gain: the optional deformation head: [N, H] position half of the hidden layer,
            [H] the conditioning's half, [6, H] and [6] the output layer, [N] colour residual gain.
        limit_pos, limit_rgb: tanh limits of the two output halves (0: none).
        backend: ``"auto"`` (the compiled CPU kernel for CPU tensors when built, else the twin), ``"cpu"`` or
            ``"torch"``; CUDA tensors always take the twin (there is no CUDA kernel for this op).
    """
    args = (
        verts,
        tri,
        means,
        local,
        rgb,
        opacities,
        pos,
        code,
        weight,
        bias,
        gain,
        float(limit_pos),
        float(limit_rgb),
    )
    if backend != "torch" and not (backend == "auto" and verts.is_cuda):
        if resolve_backend(backend, verts.device, OP) == "cpu":
            return get_ext().pose_splats_forward(*args)  # type: ignore[union-attr]
    return _twin.pose_splats(*args)
