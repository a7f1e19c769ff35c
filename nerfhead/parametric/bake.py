"""Carry a scan's albedo onto the fitted ICT mesh: a texture in the atlas layout and dense vertex colours.

Each atlas texel of a face or head/neck triangle is placed on the fitted mesh (in the scan's own expression,
where it coincides with the scan), its closest point on the scan is found, and the scan's albedo is sampled
there. Texels of other parts interpolate the fixed part colours of :mod:`nerfhead.parametric.atlas`. Empty
texels take the colour of the nearest filled texel, so bilinear lookups at UV seams do not bleed background.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from nerfhead.parametric.atlas import atlas_uv, fixed_vertex_colors
from nerfhead.parametric.ict import PART_ID, ICTHead
from nerfhead.parametric.scan import MeshQuery, Scan, sample_image


def rasterize_2d(
    tri: np.ndarray, height: int, width: int, depth: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cover pixels with 2D triangles (pixel centres at +0.5); nearest ``depth`` wins where they overlap.

    Args:
        tri: [F, 3, 2] vertex positions in pixels (x right, y down).
        height, width: image size.
        depth: [F, 3] per-vertex depth (smaller is nearer), or None (the lowest triangle index wins).

    Returns:
        pix [N] flat pixel index (y * width + x), face [N] triangle index, bary [N, 3], one row per covered
        pixel.
    """
    x0 = np.clip(np.floor(tri[..., 0].min(1) - 0.5), 0, width - 1).astype(np.int64)
    x1 = np.clip(np.ceil(tri[..., 0].max(1) - 0.5), 0, width - 1).astype(np.int64)
    y0 = np.clip(np.floor(tri[..., 1].min(1) - 0.5), 0, height - 1).astype(np.int64)
    y1 = np.clip(np.ceil(tri[..., 1].max(1) - 0.5), 0, height - 1).astype(np.int64)
    nx, ny = np.maximum(x1 - x0 + 1, 0), np.maximum(y1 - y0 + 1, 0)
    count = nx * ny
    fid = np.repeat(np.arange(len(tri)), count)
    off = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    px = x0[fid] + off % nx[fid]
    py = y0[fid] + off // nx[fid]
    cx, cy = px + 0.5, py + 0.5
    a, b, c = tri[fid, 0], tri[fid, 1], tri[fid, 2]

    def edge(p: np.ndarray, q: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (q[:, 0] - p[:, 0]) * (y - p[:, 1]) - (q[:, 1] - p[:, 1]) * (x - p[:, 0])

    area = edge(a, b, c[:, 0], c[:, 1])
    safe = np.where(np.abs(area) < 1e-12, 1.0, area)
    w = np.stack([edge(b, c, cx, cy), edge(c, a, cx, cy), edge(a, b, cx, cy)], 1) / safe[:, None]
    ok = (w >= -1e-9).all(1) & (np.abs(area) >= 1e-12)
    pix, fid, w = py[ok] * width + px[ok], fid[ok], w[ok]
    key = (w * depth[fid]).sum(1) if depth is not None else fid.astype(np.float64)
    order = np.lexsort((key, pix))
    pix, fid, w = pix[order], fid[order], w[order]
    first = np.ones(len(pix), bool)
    first[1:] = pix[1:] != pix[:-1]
    return pix[first], fid[first], w[first]


def _scan_albedo_at(scan: Scan, query: MeshQuery, points_scan: np.ndarray) -> np.ndarray:
    """Albedo [N, 3] of the scan at the surface points closest to ``points_scan`` [N, 3] (scan frame)."""
    c = query.closest(points_scan)
    uv = (c.bary[:, :, None] * scan.uv[scan.faces[c.face]]).sum(1)
    H, W = scan.albedo.shape[:2]
    return sample_image(scan.albedo, uv[:, 0] * W, uv[:, 1] * H)  # trimesh uv: row = v * H


def _to_scan(points_canonical: np.ndarray, s: float, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    return (points_canonical - t) @ R / s


def bake_vertex_colors(
    head: ICTHead, fitted: np.ndarray, scan: Scan, s: float, R: np.ndarray, t: np.ndarray
) -> np.ndarray:
    """[V, 3] float32 colours: scan albedo at the skin vertices, fixed part colours elsewhere.

    Args:
        head: the (unbaked) ICT head, for parts and the neutral.
        fitted: [V, 3] fitted vertices in the scan's expression (canonical metres).
        scan: the scan; s, R, t: its similarity to canonical (``canonical = s R scan + t``).
    """
    colors = fixed_vertex_colors(fitted, head.vertex_part.numpy())
    skin = head.skin_mask.numpy()
    query = MeshQuery(scan.vertices, scan.faces)
    colors[skin] = _scan_albedo_at(scan, query, _to_scan(fitted[skin], s, R, t))
    return colors


def bake_texture(
    head: ICTHead,
    fitted: np.ndarray,
    vertex_colors: np.ndarray,
    scan: Scan,
    s: float,
    R: np.ndarray,
    t: np.ndarray,
    size: int = 1024,
) -> np.ndarray:
    """Albedo texture [size, size, 3] float32 in the atlas layout (row 0 is v = 1).

    Args:
        head: the (unbaked) ICT head.
        fitted: [V, 3] fitted vertices in the scan's expression (canonical metres).
        vertex_colors: [V, 3] used for the texels of non-skin parts.
        scan, s, R, t: the scan and its similarity to canonical.
        size: texture edge in texels.
    """
    faces = head.faces.numpy()
    face_part = head.face_part.numpy()
    uv, fuv = atlas_uv(head.uv.numpy(), head.faces_uv.numpy(), face_part)
    tri = np.stack([uv[fuv][..., 0] * size, (1.0 - uv[fuv][..., 1]) * size], -1)  # [F, 3, 2] texels
    pix, fid, bary = rasterize_2d(tri, size, size)
    skin = face_part[fid] <= PART_ID["head_and_neck"]
    img = np.zeros((size * size, 3), np.float32)
    pos = (bary[skin, :, None] * fitted[faces[fid[skin]]]).sum(1)
    img[pix[skin]] = _scan_albedo_at(scan, MeshQuery(scan.vertices, scan.faces), _to_scan(pos, s, R, t))
    other = ~skin
    img[pix[other]] = (bary[other, :, None] * vertex_colors[faces[fid[other]]]).sum(1)
    filled = np.zeros(size * size, bool)
    filled[pix] = True
    img = img.reshape(size, size, 3)
    nearest = np.asarray(
        ndimage.distance_transform_edt(
            ~filled.reshape(size, size), return_distances=False, return_indices=True
        )
    )
    return img[nearest[0], nearest[1]]
