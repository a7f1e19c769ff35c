"""Render 3D Gaussians: the one entry point nerfhead uses for splatting.

CUDA tensors go to gsplat's ``rasterization`` (imported lazily); CPU tensors go to nerfhead's compiled C++
kernel (``nerfhead._C``, OpenMP) or to the pure-PyTorch twin. All backends share gsplat's conventions and
semantics (see ``nerfhead.ops._torch.rasterize_gaussians`` for the exact rules).
"""

from __future__ import annotations

from types import ModuleType

import torch
from torch import Tensor

from nerfhead._backend import INSTALL_HINT, get_ext, warn_once
from nerfhead.ops._dispatch import BACKENDS
from nerfhead.ops._torch.rasterize_gaussians import (
    Projected,
    _check_inputs,
    _project_and_shade,
    _rasterize_gaussians,
)

OP = "rasterize_gaussians"
TILE_SIZE = 16
MAX_CHANNELS = 4  # channels the compiled kernel composites per call
GSPLAT_HINT = "install gsplat (`pip install nerfhead[gsplat]`) to render Gaussians on CUDA"


def rasterize_gaussians(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    backgrounds: Tensor | None = None,
    render_mode: str = "RGB",
    eps2d: float = 0.3,
    sh_degree: int | None = None,
    backend: str = "auto",
) -> tuple[Tensor, Tensor, dict]:
    """Rasterize N 3D Gaussians into C pinhole cameras (gsplat's ``rasterization``, classic mode).

    Args:
        means: centres in world space. [N, 3]
        quats: rotations as w, x, y, z quaternions (normalised inside). [N, 4]
        scales: standard deviations along the rotated axes, not log. [N, 3]
        opacities: in [0, 1], not logit. [N]
        colors: post-activation features [N, D], or SH coefficients [N, K, 3] when ``sh_degree`` is given
            (evaluated towards each camera centre, then +0.5 and clamped at 0, as gsplat).
        viewmats: world-to-camera transforms, OpenCV axes (x right, y down, z forward). [C, 4, 4]
        Ks: pinhole intrinsics; pixel centres at +0.5. [C, 3, 3]
        width, height: image size in pixels.
        near_plane, far_plane: Gaussians whose camera depth is outside are culled.
        backgrounds: colours behind the Gaussians, ``render + (1 - alpha) * bg``. [C, D] or None (black)
        render_mode: "RGB", "RGB+ED" (expected depth ``sum w z / sum w`` appended), "RGB+D" (accumulated depth
            ``sum w z``), "ED" or "D".
        eps2d: added to the diagonal of the projected covariance (pixels²).
        sh_degree: active SH degree (0..3) when ``colors`` holds SH coefficients, else None.
        backend: "auto" (gsplat on CUDA; the compiled kernel on CPU if built, else the torch twin), "cuda"
            (gsplat), "cpu" (the compiled C++ kernel) or "torch" (the twin, any device).

    Returns:
        ``(render [C, H, W, D'], alphas [C, H, W, 1], meta)`` with D' = D (+1 with a depth mode, or 1 for
        "D"/"ED"). ``meta`` holds the per-camera projection [C, N, ...]: ``means2d`` (call ``retain_grad()`` on it
        for densification), ``conics``, ``depths``, ``radii`` (int32, 0 = culled), ``opacities``, plus ``width``,
        ``height``, ``n_cameras`` and ``backend``.

    Example:
        >>> import torch
        >>> from nerfhead.ops.rasterize_gaussians import rasterize_gaussians
        >>> means = torch.tensor([[0.0, 0.0, 2.0]])
        >>> quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
        >>> scales, opac = torch.full((1, 3), 0.05), torch.tensor([0.8])
        >>> K = torch.tensor([[[50.0, 0.0, 16.5], [0.0, 50.0, 16.5], [0.0, 0.0, 1.0]]])
        >>> img, alpha, _ = rasterize_gaussians(means, quats, scales, opac, torch.ones(1, 3),
        ...                                     torch.eye(4)[None], K, 32, 32, backend="torch")
        >>> round(float(alpha[0, 16, 16, 0]), 4)
        0.8
    """
    kind = _choose_backend(backend, means.device)
    if kind == "cuda":
        return _rasterize_gsplat(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height, near_plane, far_plane,
            backgrounds, render_mode, eps2d, sh_degree,
        )  # fmt: skip
    cpu = kind == "cpu"
    render, alphas, meta = _rasterize_gaussians(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height, near_plane, far_plane,
        backgrounds, render_mode, eps2d, sh_degree,
        project_fn=_project_and_shade_cpu if cpu else None, raster_fn=_rasterize_to_pixels_cpu if cpu else None,
    )  # fmt: skip
    meta["backend"] = kind
    return render, alphas, meta


def _choose_backend(backend: str, device: torch.device) -> str:
    """The backend for this op: "cuda" (gsplat), "cpu" (compiled kernel) or "torch". The generic dispatcher
    would map "cuda" to nerfhead's own CUDA kernels, which this op does not have, so the choice is made here."""
    if backend not in BACKENDS:
        raise ValueError(f"{OP}: backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "torch":
        return "torch"
    if backend == "cuda" or (backend == "auto" and device.type == "cuda"):
        if device.type != "cuda":
            raise ValueError(f"{OP}: backend='cuda' needs CUDA tensors, got {device}")
        if _gsplat() is None:
            raise RuntimeError(f"{OP}: gsplat is not installed; {GSPLAT_HINT}")
        return "cuda"
    if backend == "cpu":
        if device.type != "cpu":
            raise ValueError(f"{OP}: backend='cpu' needs CPU tensors, got {device}")
        if not _has_kernel():
            raise RuntimeError(f"{OP}: compiled CPU kernel not available; {INSTALL_HINT}")
        return "cpu"
    if device.type == "cpu" and _has_kernel():
        return "cpu"
    warn_once(
        f"{OP}:{device.type}",
        f"{OP}: compiled CPU kernel not available, using the torch twin; {INSTALL_HINT}",
    )
    return "torch"


def _has_kernel() -> bool:
    ext = get_ext()
    return ext is not None and hasattr(ext, f"{OP}_forward")


def _gsplat() -> ModuleType | None:
    try:
        import gsplat
    except ImportError:
        return None
    return gsplat


def _rasterize_gsplat(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    near_plane: float,
    far_plane: float,
    backgrounds: Tensor | None,
    render_mode: str,
    eps2d: float,
    sh_degree: int | None,
) -> tuple[Tensor, Tensor, dict]:
    """gsplat on CUDA tensors (never a CPU tensor), unpacked so that meta holds [C, N, ...] like the CPU paths."""
    _check_inputs(means, quats, scales, opacities, colors, viewmats, Ks, backgrounds, render_mode, sh_degree)
    named = {"means": means, "quats": quats, "scales": scales, "opacities": opacities, "colors": colors}
    named |= {"viewmats": viewmats, "Ks": Ks} | ({} if backgrounds is None else {"backgrounds": backgrounds})
    for name, t in named.items():
        if t.device.type != "cuda":
            raise ValueError(f"{OP}: gsplat needs CUDA tensors, but {name} is on {t.device}")
    gsplat = _gsplat()
    assert gsplat is not None
    render, alphas, meta = gsplat.rasterization(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height,
        near_plane=near_plane, far_plane=far_plane, eps2d=eps2d, sh_degree=sh_degree, packed=False,
        backgrounds=backgrounds, render_mode=render_mode, rasterize_mode="classic",
    )  # fmt: skip
    meta["n_cameras"] = viewmats.shape[0]
    meta["backend"] = "cuda"
    return render, alphas, meta


class _ProjectCPU(torch.autograd.Function):
    """Autograd wrapper of the compiled ``rasterize_gaussians_project_forward`` / ``_backward``."""

    @staticmethod
    def forward(
        ctx, means, quats, scales, opacities, sh, viewmats, Ks, width, height, eps2d, near, far, degree
    ):  # type: ignore[override]
        ext = get_ext()
        assert ext is not None
        args = tuple(t.contiguous() for t in (means, quats, scales, viewmats, Ks, sh))
        m2, conics, depths, radii, colors = ext.rasterize_gaussians_project_forward(
            *args[:3], opacities.contiguous(), *args[3:], degree, width, height, eps2d, near, far
        )
        ctx.save_for_backward(*args, radii)
        ctx.config = (degree, width, height, eps2d, near, far)
        ctx.mark_non_differentiable(radii)
        return m2, conics, depths, radii, colors

    @staticmethod
    def backward(ctx, v_m2, v_conics, v_depths, v_radii, v_colors):  # type: ignore[override]
        ext = get_ext()
        assert ext is not None
        means, quats, scales, viewmats, Ks, sh, radii = ctx.saved_tensors
        degree, width, height, eps2d, near, far = ctx.config
        C, N = radii.shape[:2]
        z = means.new_zeros

        def grad(v: Tensor | None, shape: tuple[int, ...]) -> Tensor:
            return z(shape) if v is None else v.contiguous()

        g_means, g_quats, g_scales, g_sh = ext.rasterize_gaussians_project_backward(
            means, quats, scales, viewmats, Ks, sh, degree, width, height, eps2d, near, far, radii,
            grad(v_m2, (C, N, 2)), grad(v_conics, (C, N, 3)), grad(v_depths, (C, N)),
            grad(v_colors, (C, N, 3)) if degree >= 0 else z(0),
        )  # fmt: skip
        g_sh = g_sh if degree >= 0 else None
        return g_means, g_quats, g_scales, None, g_sh, None, None, None, None, None, None, None, None


def _project_and_shade_cpu(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    eps2d: float,
    near_plane: float,
    far_plane: float,
    sh_degree: int | None,
) -> tuple[Projected, Tensor]:
    """Compiled twin of ``_project_and_shade`` (same arguments). Camera gradients are not computed there, so
    trainable ``viewmats`` / ``Ks`` use the torch version."""
    if viewmats.requires_grad or Ks.requires_grad:
        return _project_and_shade(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height, eps2d, near_plane, far_plane,
            sh_degree,
        )  # fmt: skip
    sh = colors if sh_degree is not None else means.new_zeros(0)
    degree = -1 if sh_degree is None else sh_degree
    m2, conics, depths, radii, feats = _ProjectCPU.apply(
        means, quats, scales, opacities, sh, viewmats, Ks, width, height, eps2d, near_plane, far_plane, degree
    )
    if sh_degree is None:
        feats = torch.broadcast_to(colors, (viewmats.shape[0], means.shape[0], colors.shape[-1]))
    return Projected(m2, conics, depths, radii), feats


class _RasterizeToPixelsCPU(torch.autograd.Function):
    """Autograd wrapper of the compiled ``rasterize_gaussians_forward`` / ``_backward``."""

    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, depths, radii, width, height):  # type: ignore[override]
        ext = get_ext()
        assert ext is not None
        args = (means2d.contiguous(), conics.contiguous(), colors.contiguous(), opacities.contiguous())
        render, alphas, t_final, last, offsets, ids = ext.rasterize_gaussians_forward(
            *args, depths.detach().contiguous(), radii.contiguous(), width, height, TILE_SIZE
        )
        ctx.save_for_backward(*args, radii, t_final, last, offsets, ids)
        ctx.size = (width, height)
        return render, alphas

    @staticmethod
    def backward(ctx, v_render, v_alphas):  # type: ignore[override]
        ext = get_ext()
        assert ext is not None
        means2d, conics, colors, opacities, radii, t_final, last, offsets, ids = ctx.saved_tensors
        width, height = ctx.size
        C, D = colors.shape[0], colors.shape[-1]
        if v_render is None:
            v_render = colors.new_zeros(C, height, width, D)
        if v_alphas is None:
            v_alphas = colors.new_zeros(C, height, width, 1)
        grads = ext.rasterize_gaussians_backward(
            means2d, conics, colors, opacities, radii, t_final, last, offsets, ids,
            v_render.contiguous(), v_alphas.contiguous(), width, height, TILE_SIZE,
        )  # fmt: skip
        return (*grads, None, None, None, None)


def _rasterize_to_pixels_cpu(
    means2d: Tensor,
    conics: Tensor,
    colors: Tensor,
    opacities: Tensor,
    depths: Tensor,
    radii: Tensor,
    width: int,
    height: int,
) -> tuple[Tensor, Tensor]:
    """Compiled twin of ``nerfhead.ops._torch.rasterize_gaussians._rasterize_to_pixels`` (same arguments).
    The kernel composites up to 4 channels at a time; wider colours go through in chunks."""
    chunks = [
        _RasterizeToPixelsCPU.apply(means2d, conics, part, opacities, depths, radii, width, height)
        for part in colors.split(MAX_CHANNELS, dim=-1)
    ]
    return torch.cat([c[0] for c in chunks], dim=-1), chunks[0][1]
