"""A textured scan (the bundled LeePerrySmith head) and closest-point queries on it, in numpy.

UV convention: trimesh's glTF loader already flips V (``visual.uv = (u, 1 - v_gltf)``), so with trimesh's UVs
the albedo pixel is at row ``v * H``, column ``u * W``. This equals sampling the image at (u, 1 - v) with the raw
glTF v, the three.js convention the asset's SOURCE.md states (checked by rendering: eyes, lips and ears land
where they belong).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from nerfhead.errors import InputError


@dataclass(frozen=True)
class Scan:
    """A triangle mesh with a UV-mapped albedo, in its own units and axes.

    Attributes:
        vertices: [N, 3] float64.
        faces: [F, 3] int64.
        uv: [N, 2] float64, row = v * H (see module docstring).
        albedo: [H, W, 3] float32 RGB in [0, 1].
    """

    vertices: np.ndarray
    faces: np.ndarray
    uv: np.ndarray
    albedo: np.ndarray


def load_scan(mesh_path: str | os.PathLike, albedo_path: str | os.PathLike) -> Scan:
    """Load a single-mesh glTF/GLB (or any trimesh format with UVs) and its albedo image."""
    import imageio.v3 as iio
    import trimesh

    try:
        loaded = trimesh.load(str(mesh_path))
    except Exception as e:  # trimesh raises many types for bad files
        raise InputError(mesh_path, f"cannot read the scan mesh: {e}") from None
    mesh = loaded.to_geometry() if isinstance(loaded, trimesh.Scene) else loaded
    if not isinstance(mesh, trimesh.Trimesh):
        raise InputError(mesh_path, "the scan is not a triangle mesh")
    uv = getattr(mesh.visual, "uv", None)
    if uv is None or len(uv) != len(mesh.vertices):
        raise InputError(mesh_path, "the scan mesh has no per-vertex UVs (TEXCOORD_0)")
    try:
        img = iio.imread(str(albedo_path))
    except Exception as e:
        raise InputError(albedo_path, f"cannot read the scan albedo: {e}") from None
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, -1)
    albedo = img[..., :3].astype(np.float32) / (65535.0 if img.dtype == np.uint16 else 255.0)
    return Scan(
        vertices=np.asarray(mesh.vertices, np.float64),
        faces=np.asarray(mesh.faces, np.int64),
        uv=np.asarray(uv, np.float64),
        albedo=albedo,
    )


def sample_image(img: np.ndarray, col: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Bilinear lookup at continuous pixel coordinates (pixel centres at +0.5), clamped at the border.

    Args:
        img: [H, W, C].
        col, row: [...] continuous x and y in pixels.

    Returns:
        [..., C] float32.
    """
    H, W = img.shape[:2]
    x = np.clip(col - 0.5, 0, W - 1)
    y = np.clip(row - 0.5, 0, H - 1)
    x0 = np.minimum(np.floor(x).astype(np.int64), W - 2 if W > 1 else 0)
    y0 = np.minimum(np.floor(y).astype(np.int64), H - 2 if H > 1 else 0)
    fx = (x - x0)[..., None]
    fy = (y - y0)[..., None]
    x1 = np.minimum(x0 + 1, W - 1)
    y1 = np.minimum(y0 + 1, H - 1)
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bot = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return (top * (1 - fy) + bot * fy).astype(np.float32)


def _closest_on_triangles(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Barycentric coordinates [M, 3] of the closest point on triangles (a, b, c) to points p (all [M, 3])."""
    # Ericson, Real-Time Collision Detection 5.1.5, vectorised over all regions at once
    ab, ac, ap = b - a, c - a, p - a
    d1, d2 = (ab * ap).sum(1), (ac * ap).sum(1)
    bp = p - b
    d3, d4 = (ab * bp).sum(1), (ac * bp).sum(1)
    cp = p - c
    d5, d6 = (ab * cp).sum(1), (ac * cp).sum(1)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    out = np.zeros((len(p), 3))
    eps = 1e-30
    # interior
    denom = va + vb + vc
    denom = np.where(np.abs(denom) < eps, eps, denom)
    v_in, w_in = vb / denom, vc / denom
    out[:] = np.stack([1 - v_in - w_in, v_in, w_in], 1)
    done = np.zeros(len(p), bool)

    def put(mask: np.ndarray, bary: np.ndarray) -> None:
        m = mask & ~done
        out[m] = bary[m]
        done[m] = True

    one = np.ones(len(p))
    zero = np.zeros(len(p))
    put((d1 <= 0) & (d2 <= 0), np.stack([one, zero, zero], 1))  # vertex a
    put((d3 >= 0) & (d4 <= d3), np.stack([zero, one, zero], 1))  # vertex b
    put((d6 >= 0) & (d5 <= d6), np.stack([zero, zero, one], 1))  # vertex c
    v = d1 / np.where(np.abs(d1 - d3) < eps, eps, d1 - d3)
    put((vc <= 0) & (d1 >= 0) & (d3 <= 0), np.stack([1 - v, v, zero], 1))  # edge ab
    w = d2 / np.where(np.abs(d2 - d6) < eps, eps, d2 - d6)
    put((vb <= 0) & (d2 >= 0) & (d6 <= 0), np.stack([1 - w, zero, w], 1))  # edge ac
    den = (d4 - d3) + (d5 - d6)
    w = (d4 - d3) / np.where(np.abs(den) < eps, eps, den)
    put((va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0), np.stack([zero, 1 - w, w], 1))  # edge bc
    return out


@dataclass(frozen=True)
class Closest:
    """Closest points on a mesh. points [M, 3], distance [M], face [M] int64, bary [M, 3], normal [M, 3]."""

    points: np.ndarray
    distance: np.ndarray
    face: np.ndarray
    bary: np.ndarray
    normal: np.ndarray


class MeshQuery:
    """Exact closest point on a triangle mesh among the ``k`` triangles with the nearest centroids.

    Exact whenever the true closest triangle is among those ``k`` (always for points near a mesh of even
    triangle size, which is all we query); no rtree needed.

    Args:
        vertices: [N, 3]; faces: [F, 3].
        k: candidate triangles per query point.
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, k: int = 12):
        self.vertices = np.asarray(vertices, np.float64)
        self.faces = np.asarray(faces, np.int64)
        tri = self.vertices[self.faces]
        self.tree = cKDTree(tri.mean(1))
        n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        self.face_normals = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-30)
        self.k = min(k, len(self.faces))

    def closest(self, points: np.ndarray, chunk: int = 65536) -> Closest:
        """Closest surface points to ``points`` [M, 3]."""
        points = np.asarray(points, np.float64)
        parts = [self._closest(points[i : i + chunk]) for i in range(0, len(points), chunk)]
        return Closest(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in Closest.__dataclass_fields__)
        )

    def _closest(self, p: np.ndarray) -> Closest:
        _, cand = self.tree.query(p, k=self.k)
        cand = cand.reshape(len(p), self.k)
        tri = self.vertices[self.faces[cand]]  # [M, k, 3, 3]
        pp = np.repeat(p, self.k, 0)
        t = tri.reshape(-1, 3, 3)
        bary = _closest_on_triangles(pp, t[:, 0], t[:, 1], t[:, 2])
        q = (bary[:, :, None] * t).sum(1)
        d2 = ((q - pp) ** 2).sum(1).reshape(len(p), self.k)
        best = d2.argmin(1)
        rows = np.arange(len(p))
        sel = rows * self.k + best
        face = cand[rows, best]
        return Closest(
            points=q[sel],
            distance=np.sqrt(d2[rows, best]),
            face=face,
            bary=bary[sel],
            normal=self.face_normals[face],
        )
