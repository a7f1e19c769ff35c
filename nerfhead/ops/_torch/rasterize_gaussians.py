"""Pure-PyTorch twin of ``nerfhead.ops.rasterize_gaussians`` (gsplat's ``rasterization`` semantics).

Pipeline, shared with the compiled CPU path (which swaps only the pixel compositing step):

1. ``_project_gaussians``: world → camera (OpenCV, world-to-camera ``viewmats``), EWA projection of the 3D
   covariance ``J W Σ Wᵀ Jᵀ + eps2d·I`` (gsplat's "classic" mode: no antialiasing compensation), conics (the
   inverse 2D covariance as ``(a, b, c)``), depths, and integer pixel radii from gsplat's opacity-aware 3.33-sigma
   box. A Gaussian is culled (radii 0) outside ``[near_plane, far_plane]``, with a degenerate 2D covariance,
   with opacity below 1/255 or with its box off the image.
2. Colours: post-activation values, or SH coefficients evaluated towards the camera centre, then +0.5 and
   clamped at 0 (as gsplat / 3DGS).
3. ``_rasterize_to_pixels``: per pixel, front-to-back compositing of the Gaussians whose box holds the pixel
   centre (``x + 0.5``), sorted by depth: ``alpha = min(0.999, o · exp(-σ))`` with
   ``σ = ½(a dx² + c dy²) + b dx dy`` and ``d = mean2d − pixel``; pairs with ``σ < 0`` or ``alpha < 1/255`` are
   skipped; a pixel stops (exclusive) at the first Gaussian that would bring its transmittance to ≤ 1e-4.
4. Background ``+ (1 − alpha) · bg`` and depth modes (``"ED"`` divides the accumulated depth by alpha).

The compositing step here enumerates (Gaussian, pixel) pairs inside each Gaussian's box, sorts them by
(pixel, depth) and composites with a segmented log-transmittance cumsum (in float64), all differentiable by
autograd. Memory is proportional to the number of pairs (≈ 100 bytes per pair with autograd).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from nerfhead.geometry import quaternion_to_matrix
from nerfhead.ops._torch.sh import _spherical_harmonics

ALPHA_MIN = 1.0 / 255.0
ALPHA_MAX = 0.999
TRANSMITTANCE_MIN = 1e-4
BOX_SIGMAS = 3.33
RENDER_MODES = ("RGB", "D", "ED", "RGB+D", "RGB+ED")

RasterFn = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, int, int], tuple[Tensor, Tensor]]
ProjectFn = Callable[..., tuple["Projected", Tensor]]


class Projected(NamedTuple):
    """Per-camera 2D Gaussians. Entries with ``radii == 0`` are culled and hold placeholder values."""

    means2d: Tensor  # [C, N, 2] pixel coordinates
    conics: Tensor  # [C, N, 3] inverse 2D covariance (a, b, c)
    depths: Tensor  # [C, N] camera-space z
    radii: Tensor  # [C, N, 2] int32 half-widths of the pixel box; 0 = culled


def _quat_to_rotmat(quats: Tensor) -> Tensor:
    """Rotation matrices from (not necessarily unit) wxyz quaternions. [..., 4] -> [..., 3, 3]"""
    return quaternion_to_matrix(quats)


def _project_gaussians(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
) -> Projected:
    """EWA projection of 3D Gaussians into C pinhole cameras (differentiable; radii are not).

    Args:
        means: centres. [N, 3]
        quats: rotations, wxyz, normalised here. [N, 4]
        scales: standard deviations along the rotated axes (not log). [N, 3]
        opacities: in [0, 1] (not logit); used for the opacity-aware box and culling. [N]
        viewmats: world-to-camera, OpenCV axes. [C, 4, 4]
        Ks: intrinsics. [C, 3, 3]
        width, height: image size in pixels.
        eps2d: added to the 2D covariance diagonal (low-pass filter).
        near_plane, far_plane: depth range kept.

    Returns:
        ``Projected`` with [C, N, ...] tensors.
    """
    rot, trans = viewmats[:, :3, :3], viewmats[:, :3, 3]
    means_c = torch.einsum("cij,nj->cni", rot, means) + trans[:, None, :]  # [C, N, 3]
    # Camera-space covariance factor A = W R S (Σ_c = A Aᵀ), one GEMM for all cameras.
    a_mat = torch.einsum("cij,njk->cnik", rot, _quat_to_rotmat(quats) * scales[:, None, :])  # [C, N, 3, 3]
    tx, ty, tz = means_c.unbind(-1)
    in_depth = (tz >= near_plane) & (tz <= far_plane)
    tz = torch.where(in_depth, tz, torch.ones_like(tz))  # keeps culled entries finite (and their grads 0)

    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    u, v = tx / tz, ty / tz
    # The Jacobian uses a frustum-clamped direction (as 3DGS / gsplat), the mean the true one.
    tan_x, tan_y = 0.5 * width / fx, 0.5 * height / fy
    uc = torch.minimum(torch.maximum(u, -(cx / fx + 0.3 * tan_x)), (width - cx) / fx + 0.3 * tan_x)
    vc = torch.minimum(torch.maximum(v, -(cy / fy + 0.3 * tan_y)), (height - cy) / fy + 0.3 * tan_y)
    # J = [[fx/z, 0, -fx uc/z], [0, fy/z, -fy vc/z]]; rows of J A, then Σ2d = (J A)(J A)ᵀ.
    inv_z = 1.0 / tz
    row0 = (fx * inv_z)[..., None] * (a_mat[..., 0, :] - uc[..., None] * a_mat[..., 2, :])
    row1 = (fy * inv_z)[..., None] * (a_mat[..., 1, :] - vc[..., None] * a_mat[..., 2, :])
    c00 = (row0 * row0).sum(-1) + eps2d
    c11 = (row1 * row1).sum(-1) + eps2d
    c01 = (row0 * row1).sum(-1)
    det = c00 * c11 - c01 * c01
    valid = in_depth & (det > 0)
    det = torch.where(valid, det, torch.ones_like(det))
    conics = torch.stack([c11 / det, -c01 / det, c00 / det], dim=-1)
    means2d = torch.stack([fx * u + cx, fy * v + cy], dim=-1)

    with torch.no_grad():
        op = torch.broadcast_to(opacities.detach(), tz.shape)
        valid = valid & (op >= ALPHA_MIN)  # not in place: torch.where above saved ``valid``
        extend = torch.sqrt(2.0 * torch.log(op.clamp_min(ALPHA_MIN) / ALPHA_MIN)).clamp_max(BOX_SIGMAS)
        rx = torch.ceil(extend * torch.sqrt(c00.detach().clamp_min(0)))
        ry = torch.ceil(extend * torch.sqrt(c11.detach().clamp_min(0)))
        m2 = means2d.detach()
        valid &= (m2[..., 0] + rx > 0) & (m2[..., 0] - rx < width)
        valid &= (m2[..., 1] + ry > 0) & (m2[..., 1] - ry < height)
        valid &= torch.isfinite(m2).all(-1) & (rx > 0) & (ry > 0)
        radii = torch.where(valid[..., None], torch.stack([rx, ry], dim=-1), torch.zeros_like(m2)).to(
            torch.int32
        )
    return Projected(means2d, conics, means_c[..., 2], radii)


def _pixel_boxes(means2d: Tensor, radii: Tensor, width: int, height: int) -> tuple[Tensor, ...]:
    """Inclusive pixel ranges whose centres lie within each box, clamped to the image (same arithmetic as the
    C++ kernel's ``rg_pixel_range``). Empty when ``x1 < x0``; all empty for culled entries.

    Args:
        means2d: [..., 2]; radii: [..., 2] int.

    Returns:
        x0, x1, y0, y1 as int64 tensors. [...]
    """
    m = means2d.detach()
    r = radii.to(m.dtype)
    x0 = torch.ceil((m[..., 0] - r[..., 0]) - 0.5).clamp(0, width)
    x1 = torch.floor((m[..., 0] + r[..., 0]) - 0.5).clamp(-1, width - 1)
    y0 = torch.ceil((m[..., 1] - r[..., 1]) - 0.5).clamp(0, height)
    y1 = torch.floor((m[..., 1] + r[..., 1]) - 0.5).clamp(-1, height - 1)
    culled = (radii <= 0).any(-1) | ~torch.isfinite(m).all(-1)
    x1 = torch.where(culled, torch.full_like(x1, -1), x1)
    return x0.long(), x1.long(), y0.long(), y1.long()


@torch.no_grad()
def _pairs(means2d: Tensor, depths: Tensor, radii: Tensor, width: int, height: int) -> tuple[Tensor, Tensor]:
    """(Gaussian, pixel) pairs sorted by pixel then depth (stable in the Gaussian index).

    Returns:
        flat Gaussian index ``c * N + g`` [P] and flat pixel index ``(c * H + y) * W + x`` [P], both int64.
    """
    C, N = depths.shape
    x0, x1, y0, y1 = _pixel_boxes(means2d, radii, width, height)
    nx, ny = (x1 - x0 + 1).clamp_min(0), (y1 - y0 + 1).clamp_min(0)
    counts = (nx * ny).reshape(-1)
    owners = torch.nonzero(counts > 0).squeeze(1)  # flat c * N + g
    counts = counts[owners]
    dev = depths.device
    if owners.numel() == 0:
        empty = torch.empty(0, dtype=torch.long, device=dev)
        return empty, empty
    pair_owner = torch.repeat_interleave(owners, counts)
    starts = torch.cumsum(counts, 0) - counts
    local = torch.arange(pair_owner.numel(), device=dev) - torch.repeat_interleave(starts, counts)
    nxo = nx.reshape(-1).index_select(0, pair_owner)
    py_local = torch.div(local, nxo, rounding_mode="floor")
    px = x0.reshape(-1).index_select(0, pair_owner) + (local - py_local * nxo)
    py = y0.reshape(-1).index_select(0, pair_owner) + py_local
    cam = pair_owner // N
    pix = (cam * height + py) * width + px
    order = torch.sort(depths.detach(), dim=1, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(N, device=dev).expand(C, N).contiguous())
    key = pix * N + rank.reshape(-1).index_select(0, pair_owner)
    key, perm = torch.sort(key)
    return pair_owner.index_select(0, perm), torch.div(key, N, rounding_mode="floor")


def _rasterize_to_pixels(
    means2d: Tensor,
    conics: Tensor,
    colors: Tensor,
    opacities: Tensor,
    depths: Tensor,
    radii: Tensor,
    width: int,
    height: int,
) -> tuple[Tensor, Tensor]:
    """Front-to-back alpha compositing of projected Gaussians, without background (autograd twin of the
    compiled ``rasterize_gaussians_forward`` / ``_backward``).

    Args:
        means2d: [C, N, 2]; conics: [C, N, 3]; colors: [C, N, D]; opacities: [C, N];
        depths: sort keys [C, N]; radii: [C, N, 2] int (0 = culled); width, height: image size.

    Returns:
        colors [C, H, W, D] and alphas [C, H, W, 1].
    """
    C, N = depths.shape
    D = colors.shape[-1]
    n_pix = C * height * width
    gid, pix = _pairs(means2d, depths, radii, width, height)
    out_c = colors.new_zeros(n_pix, D)
    out_a = colors.new_zeros(n_pix)
    if gid.numel() > 0:
        m = means2d.reshape(-1, 2).index_select(0, gid)
        con = conics.reshape(-1, 3).index_select(0, gid)
        x = (pix % width).to(m.dtype) + 0.5
        y = ((pix // width) % height).to(m.dtype) + 0.5
        dx, dy = m[:, 0] - x, m[:, 1] - y
        sigma = 0.5 * (con[:, 0] * dx * dx + con[:, 2] * dy * dy) + con[:, 1] * dx * dy
        alpha = torch.clamp_max(opacities.reshape(-1).index_select(0, gid) * torch.exp(-sigma), ALPHA_MAX)
        ok = (sigma >= 0) & (alpha >= ALPHA_MIN)
        alpha = torch.where(ok, alpha, torch.zeros_like(alpha))
        log_t = torch.log1p(-alpha).double()  # float64: the cumsum runs across all pixels' segments
        csum = torch.cat([log_t.new_zeros(1), torch.cumsum(log_t, 0)])
        with torch.no_grad():
            idx = torch.arange(pix.numel(), device=pix.device)
            is_start = torch.ones_like(ok)
            is_start[1:] = pix[1:] != pix[:-1]
            seg_start = torch.cummax(torch.where(is_start, idx, torch.zeros_like(idx)), 0).values
        base = csum.index_select(0, seg_start)  # log-transmittance in front of each pixel's first Gaussian
        with torch.no_grad():
            keep = ok & (torch.exp(csum[1:] - base) > TRANSMITTANCE_MIN)
        trans = torch.exp(csum[:-1] - base).to(alpha.dtype)
        weights = torch.where(keep, alpha * trans, torch.zeros_like(alpha))
        out_c = out_c.index_add(0, pix, weights[:, None] * colors.reshape(-1, D).index_select(0, gid))
        out_a = out_a.index_add(0, pix, weights)
    return out_c.reshape(C, height, width, D), out_a.reshape(C, height, width, 1)


def _project_and_shade(
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
    """Per-Gaussian stage: projection and per-camera colours.

    Returns:
        ``Projected`` and colours [C, N, D]: ``colors`` broadcast over cameras, or the SH evaluated towards each
        camera centre, +0.5, clamped at 0.
    """
    C, N = viewmats.shape[0], means.shape[0]
    proj = _project_gaussians(
        means, quats, scales, opacities, viewmats, Ks, width, height, eps2d, near_plane, far_plane
    )
    if sh_degree is None:
        return proj, torch.broadcast_to(colors, (C, N, colors.shape[-1]))
    campos = -torch.einsum("cji,cj->ci", viewmats[:, :3, :3], viewmats[:, :3, 3])  # [C, 3]
    dirs = means[None] - campos[:, None]
    return proj, torch.clamp_min(_spherical_harmonics(sh_degree, dirs, colors) + 0.5, 0.0)


def _rasterize_gaussians(
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
    *,
    project_fn: ProjectFn | None = None,
    raster_fn: RasterFn | None = None,
) -> tuple[Tensor, Tensor, dict]:
    """Render 3D Gaussians into C cameras; see ``nerfhead.ops.rasterize_gaussians`` for the arguments.

    ``project_fn`` and ``raster_fn`` replace the per-Gaussian stage (``_project_and_shade``) and the compositing
    step (``_rasterize_to_pixels``); the compiled CPU path passes its autograd functions here so that every
    backend shares the modes, background and checks.
    """
    N = means.shape[0]
    C = viewmats.shape[0]
    _check_inputs(means, quats, scales, opacities, colors, viewmats, Ks, backgrounds, render_mode, sh_degree)
    project = project_fn if project_fn is not None else _project_and_shade
    proj, feats = project(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height, eps2d, near_plane, far_plane,
        sh_degree,
    )  # fmt: skip
    if render_mode in ("RGB+D", "RGB+ED"):
        feats = torch.cat([feats, proj.depths[..., None]], dim=-1)
    elif render_mode in ("D", "ED"):
        feats = proj.depths[..., None]
    opac = torch.broadcast_to(opacities, (C, N))
    fn = raster_fn if raster_fn is not None else _rasterize_to_pixels
    render, alphas = fn(proj.means2d, proj.conics, feats, opac, proj.depths, proj.radii, width, height)
    if backgrounds is not None:
        bg = backgrounds
        if render_mode in ("RGB+D", "RGB+ED"):
            bg = torch.cat([bg, bg.new_zeros(C, 1)], dim=-1)
        elif render_mode in ("D", "ED"):
            bg = bg.new_zeros(C, 1)
        render = render + (1.0 - alphas) * bg[:, None, None, :]
    if render_mode in ("ED", "RGB+ED"):
        render = torch.cat([render[..., :-1], render[..., -1:] / alphas.clamp_min(1e-10)], dim=-1)
    meta = {
        "means2d": proj.means2d,
        "conics": proj.conics,
        "depths": proj.depths,
        "radii": proj.radii,
        "opacities": opac,
        "width": width,
        "height": height,
        "n_cameras": C,
    }
    return render, alphas, meta


def _check_inputs(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    backgrounds: Tensor | None,
    render_mode: str,
    sh_degree: int | None,
) -> None:
    """Shape checks shared by every backend (ValueError on a mismatch)."""
    N = means.shape[0]
    C = viewmats.shape[0]

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise ValueError(f"rasterize_gaussians: {what}")

    need(means.dim() == 2 and means.shape[1] == 3, f"means must be [N, 3], got {tuple(means.shape)}")
    need(quats.shape == (N, 4), f"quats must be [N, 4] (wxyz), got {tuple(quats.shape)}")
    need(scales.shape == (N, 3), f"scales must be [N, 3], got {tuple(scales.shape)}")
    need(opacities.shape == (N,), f"opacities must be [N], got {tuple(opacities.shape)}")
    need(
        viewmats.dim() == 3 and viewmats.shape[1:] == (4, 4),
        f"viewmats must be [C, 4, 4], got {tuple(viewmats.shape)}",
    )
    need(Ks.shape == (C, 3, 3), f"Ks must be [C, 3, 3], got {tuple(Ks.shape)}")
    need(render_mode in RENDER_MODES, f"render_mode must be one of {RENDER_MODES}, got {render_mode!r}")
    if sh_degree is None:
        need(colors.dim() == 2 and colors.shape[0] == N, f"colors must be [N, D], got {tuple(colors.shape)}")
        d = colors.shape[1]
    else:
        need(
            colors.dim() == 3 and colors.shape[0] == N and colors.shape[2] == 3,
            f"SH colors must be [N, K, 3], got {tuple(colors.shape)}",
        )
        need(0 <= sh_degree <= 3, f"sh_degree must be 0..3, got {sh_degree}")
        need(
            colors.shape[1] >= (sh_degree + 1) ** 2,
            f"sh_degree {sh_degree} needs K >= {(sh_degree + 1) ** 2}",
        )
        d = 3
    if backgrounds is not None:
        need(backgrounds.shape == (C, d), f"backgrounds must be [C, {d}], got {tuple(backgrounds.shape)}")
