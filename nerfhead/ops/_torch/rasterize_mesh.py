"""Pure-PyTorch twin of the mesh rasterizer (cuda_ext/csrc/rasterize_mesh.h): CPU fallback and test oracle.

Visibility is vectorised over (image, triangle) pairs: triangles are bucketed by the size of their pixel bounding
box (a power of two ``S``); each bucket enumerates its ``S x S`` candidate pixels in chunks, evaluates the same
float32 edge functions as the kernel (same operation order, so the same bits), and keeps per pixel the minimum
of the packed key ``(float bits of depth) << 32 | triangle id`` with ``scatter_reduce(amin)``.

Barycentrics and depth are recomputed differentiably from the triangle ids (:func:`_perspective_barycentrics`),
for both this twin and the compiled kernels, so gradients reach the vertex positions.
"""

from __future__ import annotations

import torch
from torch import Tensor

_KEY_NONE = torch.iinfo(torch.int64).max


def _project(verts_cam: Tensor, K: Tensor) -> Tensor:
    """Camera-space points [B, V, 3] and intrinsics [B, 3, 3] -> screen vertices [B, V, 3] = (u, v, z).

    ``(u, v)`` are continuous pixel coordinates (pixel (x, y) samples (x + 0.5, y + 0.5)) and ``z`` is the
    camera-space depth, unchanged. Points at z <= 0 get finite placeholder (u, v) (their triangles are dropped by
    the near plane), so no inf reaches autograd.
    """
    z = verts_cam[..., 2]
    zs = torch.where(z > 1e-12, z, torch.ones_like(z))
    xn = verts_cam[..., 0] / zs
    yn = verts_cam[..., 1] / zs
    Kx = K[:, None]
    u = Kx[..., 0, 0] * xn + Kx[..., 0, 1] * yn + Kx[..., 0, 2]
    v = Kx[..., 1, 1] * yn + Kx[..., 1, 2]
    return torch.stack([u, v, z], dim=-1)


def _edge(ax: Tensor, ay: Tensor, bx: Tensor, by: Tensor, px: Tensor, py: Tensor) -> Tensor:
    """Edge function of a->b at p with the end points in canonical (lexicographic) order, as ``rm_edge``."""
    swap = (ax > bx) | ((ax == bx) & (ay > by))
    cax, cay = torch.where(swap, bx, ax), torch.where(swap, by, ay)
    cbx, cby = torch.where(swap, ax, bx), torch.where(swap, ay, by)
    dx, dy = cbx - cax, cby - cay
    w = dx * (py - cay) - dy * (px - cax)
    return torch.where(swap, -w, w)


def _tie_owner(dx: Tensor, dy: Tensor) -> Tensor:
    """``rm_tie_owner``: which of the two triangles sharing an edge takes a pixel centre exactly on it."""
    return (dy > 0) | ((dy == 0) & (dx > 0))


def _pixel_range(a: Tensor, b: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Inclusive pixel range whose centres fall in [a, b], clamped to [0, n - 1] (``rm_pixel_range``)."""
    lo = torch.ceil(a - 0.5).clamp(0, n).long()
    hi = torch.floor(b - 0.5).clamp(-1, n - 1).long()
    return lo, hi


def _rasterize_mesh_visibility(
    verts_screen: Tensor, faces: Tensor, width: int, height: int, near: float, max_elems: int = 1 << 21
) -> tuple[Tensor, Tensor]:
    """Twin of the compiled ``rasterize_mesh_forward``: nearest triangle per pixel.

    Args:
        verts_screen: [B, V, 3] float32 (u, v, z) from :func:`_project`.
        faces: [F, 3] integer vertex indices.
        width, height: image size in pixels.
        near: triangles with a vertex at z < near are dropped.
        max_elems: candidate pixels evaluated per chunk (memory bound).

    Returns:
        tri_id: [B, H, W] int32, -1 for background.
        depth: [B, H, W] float32 camera-space z of the visible surface, 0 for background.
    """
    dev = verts_screen.device
    vs = verts_screen.detach().float()
    B = vs.shape[0]
    fl = faces.long()
    keys = torch.full((B * height * width,), _KEY_NONE, dtype=torch.int64, device=dev)
    if fl.shape[0] > 0 and B > 0 and width > 0 and height > 0:
        tri = vs[:, fl]  # [B, F, 3, 3]
        x, y, z = tri[..., 0], tri[..., 1], tri[..., 2]  # [B, F, 3]
        finite = torch.isfinite(tri).all(-1).all(-1)
        area = _edge(x[..., 0], y[..., 0], x[..., 1], y[..., 1], x[..., 2], y[..., 2])
        ok = finite & (z >= near).all(-1) & (area != 0) & torch.isfinite(area)
        xa, xb = _pixel_range(x.amin(-1), x.amax(-1), width)
        ya, yb = _pixel_range(y.amin(-1), y.amax(-1), height)
        ok &= (xb >= xa) & (yb >= ya)
        bi, fi = ok.nonzero(as_tuple=True)
        size = torch.maximum(xb - xa, yb - ya)[bi, fi] + 1
        bucket = torch.ceil(torch.log2(size.double())).long()
        for e in torch.unique(bucket).tolist():
            sel = (bucket == e).nonzero(as_tuple=True)[0]
            S = 1 << int(e)
            chunk = max(1, max_elems // (S * S))
            for s0 in range(0, sel.numel(), chunk):
                s = sel[s0 : s0 + chunk]
                _raster_chunk(keys, x, y, z, area, xa, xb, ya, yb, bi[s], fi[s], S, width, height)
    keys = keys.view(B, height, width)
    hit = keys != _KEY_NONE
    tri_id = torch.where(hit, keys & 0xFFFFFFFF, torch.full_like(keys, -1)).to(torch.int32)
    depth = torch.where(hit, (keys >> 32).to(torch.int32).view(torch.float32), torch.zeros((), device=dev))
    return tri_id, depth


def _raster_chunk(
    keys: Tensor,
    x: Tensor,
    y: Tensor,
    z: Tensor,
    area: Tensor,
    xa: Tensor,
    xb: Tensor,
    ya: Tensor,
    yb: Tensor,
    bi: Tensor,
    fi: Tensor,
    S: int,
    width: int,
    height: int,
) -> None:
    """Scan-convert N (image, triangle) pairs over their S x S candidate pixels into ``keys`` (amin)."""
    dev = keys.device
    off = torch.arange(S, device=dev)
    px = xa[bi, fi][:, None, None] + off[None, None, :]  # [N, 1, S]
    py = ya[bi, fi][:, None, None] + off[None, :, None]  # [N, S, 1]
    inside = (px <= xb[bi, fi][:, None, None]) & (py <= yb[bi, fi][:, None, None])  # [N, S, S]
    pxf = px.float() + 0.5
    pyf = py.float() + 0.5
    tx = x[bi, fi][:, :, None, None]  # [N, 3, 1, 1]
    ty = y[bi, fi][:, :, None, None]
    tz = z[bi, fi][:, :, None, None]
    ar = area[bi, fi][:, None, None]
    s = torch.where(ar > 0, 1.0, -1.0)
    order = ((1, 2), (2, 0), (0, 1))  # edge i is opposite vertex i
    ws = []
    for a, b in order:
        w = _edge(tx[:, a], ty[:, a], tx[:, b], ty[:, b], pxf, pyf)
        e = s * w
        tie = _tie_owner(s * (tx[:, b] - tx[:, a]), s * (ty[:, b] - ty[:, a]))
        inside &= (e > 0) | ((e == 0) & tie)
        ws.append(w)
    a0 = (ws[0] / ar) / tz[:, 0]
    a1 = (ws[1] / ar) / tz[:, 1]
    a2 = (ws[2] / ar) / tz[:, 2]
    inv = (a0 + a1) + a2
    inside &= inv > 0
    depth = 1.0 / inv
    n, r, c = inside.nonzero(as_tuple=True)
    d = depth[n, r, c]
    key = (d.view(torch.int32).long() << 32) | fi[n]
    lin = (bi[n] * height + py[n, r, 0]) * width + px[n, 0, c]
    keys.scatter_reduce_(0, lin, key, reduce="amin")


def _perspective_barycentrics(
    verts_screen: Tensor, faces: Tensor, tri_id: Tensor
) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor, Tensor, Tensor, Tensor]]:
    """Perspective-correct barycentrics and depth at the pixel centres, differentiable w.r.t. ``verts_screen``.

    With the edge functions ``w_i`` of the pixel centre (screen-space barycentrics times the doubled area),
    ``bary_i = (w_i / z_i) / sum_j (w_j / z_j)`` and ``depth = sum_j w_j / sum_j (w_j / z_j)``.

    Args:
        verts_screen: [B, V, 3] (u, v, z) from :func:`_project`.
        faces: [F, 3] integer vertex indices.
        tri_id: [B, H, W] integer, -1 for background.

    Returns:
        bary: [B, H, W, 3] weights of the triangle's 3 vertices (sum 1; 0 on background).
        depth: [B, H, W] camera-space z, 0 on background.
        pixels: the N covered pixels as flat lists (b, y, x, tri [N] int64, bary [N, 3]), row-major.
    """
    B, H, W = tri_id.shape
    V = verts_screen.shape[1]
    flat = tri_id.reshape(-1)
    idx = (flat >= 0).nonzero().squeeze(1)  # [N] into B*H*W
    f = flat[idx].long()
    b = idx // (H * W)
    rem = idx - b * (H * W)
    py = rem // W
    px = rem - py * W
    vi = faces.long().index_select(0, f) + (b * V)[:, None]  # [N, 3] rows of the flattened vertex table
    vs = verts_screen.reshape(B * V, 3)
    # Corner-wise gathers and explicit 3-term sums: much faster on CPU than [N, 3, 3] gathers and small sums.
    v0, v1, v2 = (vs.index_select(0, vi[:, k]) for k in range(3))  # [N, 3] each
    pxf = px.to(vs.dtype) + 0.5
    pyf = py.to(vs.dtype) + 0.5

    def edge(a: Tensor, c: Tensor) -> Tensor:  # edge function of a->c at the pixel centres
        return (c[:, 0] - a[:, 0]) * (pyf - a[:, 1]) - (c[:, 1] - a[:, 1]) * (pxf - a[:, 0])

    w0, w1, w2 = edge(v1, v2), edge(v2, v0), edge(v0, v1)  # edge opposite each vertex
    a0, a1, a2 = w0 / v0[:, 2], w1 / v1[:, 2], w2 / v2[:, 2]
    s = a0 + a1 + a2
    bary_v = torch.stack([a0 / s, a1 / s, a2 / s], -1)
    depth_v = (w0 + w1 + w2) / s
    bary = verts_screen.new_zeros(B * H * W, 3).index_put((idx,), bary_v).view(B, H, W, 3)
    depth = verts_screen.new_zeros(B * H * W).index_put((idx,), depth_v).view(B, H, W)
    return bary, depth, (b, py, px, f, bary_v)


def _rasterize_mesh(
    verts_cam: Tensor, faces: Tensor, K: Tensor, width: int, height: int, near: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Pure-PyTorch ``rasterize_mesh``: (tri_id [B,H,W] int32, bary [B,H,W,3], depth [B,H,W])."""
    screen = _project(verts_cam, K)
    tri_id, _ = _rasterize_mesh_visibility(screen.detach(), faces, width, height, near)
    bary, depth, _ = _perspective_barycentrics(screen, faces, tri_id)
    return tri_id, bary, depth
