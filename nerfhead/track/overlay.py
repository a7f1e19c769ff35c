"""Overlay video of a track: the fitted mesh's wireframe and the landmarks drawn on the frames.

Per frame: the visible edges of the fitted face (edges of the ICT face part whose sample points pass the depth
test against the rasterized head) in translucent white, MediaPipe's landmarks in green and the fitted mesh's
corresponding points in red. The video is written as H.264 mp4 through imageio-ffmpeg, with the capture's
soundtrack muxed in when given.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from nerfhead.parametric.ict import PART_ID, ICTHead

WIRE_RGB = np.array([255, 255, 255], np.float32)
OBSERVED_RGB = np.array([40, 230, 70], np.uint8)
FITTED_RGB = np.array([240, 40, 40], np.uint8)


def wire_edges(head: ICTHead) -> Tensor:
    """[E, 2] unique vertex pairs (smaller index first) of the face part's quad edges, each quad's diagonal left out."""
    return quad_edges(head.faces[head.face_part == PART_ID["face"]])


def quad_edges(faces: Tensor) -> Tensor:
    """[E, 2] unique sorted vertex pairs of the mesh edges of ``faces`` [F, 3], without the diagonals of quads.

    Quads were split as (a, b, c), (a, c, d) into adjacent rows (:func:`nerfhead.parametric.triangulate_quads`):
    a row and the next that share ``a`` and the edge (a, c) are one quad, and (a, c) is its diagonal.
    """
    f = faces.long()
    e = torch.cat([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]], 0)
    e = torch.unique(torch.sort(e, dim=1).values, dim=0)
    pair = (f[:-1, 0] == f[1:, 0]) & (f[:-1, 2] == f[1:, 1])
    diag = torch.unique(torch.sort(f[:-1][pair][:, [0, 2]], dim=1).values, dim=0)
    if len(diag) == 0:
        return e
    n = int(max(int(e.max()), int(diag.max()))) + 1
    is_diag = torch.isin(e[:, 0] * n + e[:, 1], diag[:, 0] * n + diag[:, 1])
    return e[~is_diag]


def draw_wireframe(
    img: np.ndarray, verts_cam: Tensor, K: Tensor, edges: Tensor, zbuf: Tensor, alpha: float = 0.35
) -> None:
    """Blend the visible edges into ``img`` in place.

    Each edge is sampled about once per pixel; a sample is drawn where it is not behind the nearest surface
    (``zbuf``, 4 mm of slack).

    Args:
        img: [H, W, 3] uint8.
        verts_cam: [V, 3] camera-space vertices.
        K: [3, 3] intrinsics.
        edges: [E, 2] vertex pairs.
        zbuf: [H, W] depth of the nearest surface (0 = background).
        alpha: opacity of the lines.
    """
    H, W = img.shape[:2]
    v = verts_cam.detach().double().numpy()
    k = K.detach().double().numpy()
    z = np.maximum(v[:, 2], 1e-6)
    uv = np.stack([k[0, 0] * v[:, 0] / z + k[0, 2], k[1, 1] * v[:, 1] / z + k[1, 2]], -1).astype(np.float32)
    z = z.astype(np.float32)
    e = edges.numpy()
    a, b = uv[e[:, 0]], uv[e[:, 1]]
    n = np.clip(np.ceil(np.linalg.norm(b - a, axis=-1)), 1, 64).astype(
        np.int64
    )  # samples per edge, ~1 per pixel
    eid = np.repeat(np.arange(len(e)), n)
    s = (np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)).astype(np.float32) / n[eid].astype(
        np.float32
    )
    p = a[eid] + (b[eid] - a[eid]) * s[:, None]
    za, zb_ = z[e[eid, 0]], z[e[eid, 1]]
    zp = za + (zb_ - za) * s
    x, y = np.floor(p[:, 0]).astype(np.int64), np.floor(p[:, 1]).astype(np.int64)
    ok = (x >= 0) & (x < W) & (y >= 0) & (y < H)
    x, y, zp = x[ok], y[ok], zp[ok]
    d = zbuf.detach().numpy()[y, x]
    vis = (d > 0) & (zp <= d + 0.004)
    x, y = x[vis], y[vis]
    img[y, x] = (img[y, x] * np.float32(1 - alpha) + WIRE_RGB * np.float32(alpha)).astype(np.uint8)


def draw_points(img: np.ndarray, xy: np.ndarray, rgb: np.ndarray, radius: int = 1) -> None:
    """Paint square dots of side ``2 radius + 1`` at continuous pixel positions [P, 2] (NaN skipped)."""
    H, W = img.shape[:2]
    xy = xy[np.isfinite(xy).all(-1)]
    c = np.floor(xy).astype(np.int64)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            x, y = c[:, 0] + dx, c[:, 1] + dy
            ok = (x >= 0) & (x < W) & (y >= 0) & (y < H)
            img[y[ok], x[ok]] = rgb


def overlay_frame(
    rgb: np.ndarray,
    verts_cam: Tensor,
    K: Tensor,
    edges: Tensor,
    zbuf: Tensor,
    observed: np.ndarray | None = None,
    fitted: np.ndarray | None = None,
) -> np.ndarray:
    """One overlay image.

    Args:
        rgb: [H, W, 3] uint8 frame.
        verts_cam: [V, 3] fitted vertices in the frame's camera space.
        K: [3, 3] intrinsics of the frame's camera.
        edges: from :func:`wire_edges`.
        zbuf: [H, W] depth of the head's opaque triangles (0 = background), e.g.
            :func:`nerfhead.track.masks.pose_and_rasterize`'s ``depth``: the wireframe's depth test.
        observed: [P, 2] landmarks found in the frame, or None.
        fitted: [M, 2] the fitted mesh's landmark points projected, or None.

    Returns:
        [H, W, 3] uint8 copy with the drawing.
    """
    img = np.array(rgb[..., :3], dtype=np.uint8, copy=True)
    H, W = img.shape[:2]
    draw_wireframe(img, verts_cam, K.double(), edges, zbuf)
    radius = max(1, round(min(H, W) / 400))
    if observed is not None:
        draw_points(img, observed, OBSERVED_RGB, radius)
    if fitted is not None:
        draw_points(img, fitted, FITTED_RGB, radius)
    return img
