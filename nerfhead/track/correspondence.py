"""Which point of the ICT-FaceKit surface each MediaPipe face-mesh landmark sits on.

The table (``scenes/assets/tracking/mediapipe_to_ict.npz``) is built by ``scripts/make_mediapipe_correspondence.py``,
not typed by hand: the script renders the rigged head from several yaws, pitches and mouth openings, runs
MediaPipe on every render, and

1. looks up the triangle and barycentrics under each landmark in the rasterizer's output, maps that surface
   point back to the neutral canonical head and keeps per landmark the *medoid* of its views
   (:func:`aggregate_views`): the **anchor**, a point of the mesh that moves with the expressions;
2. triangulates, over all views at once (the poses are known), the 3D point that best explains MediaPipe's
   2D positions, as an **offset** from the anchor (:func:`triangulate_offsets`), then re-anchors to the surface
   point nearest that 3D point. MediaPipe's landmarks are the vertices of its own regressed mesh, not points
   painted on the skin: on the cheeks and the jaw they behave as if they sat a few millimetres off the surface,
   and without the offset a fit turns the head too far (about 25 % too much yaw in tests);
3. weights each landmark by how well one 3D point explains all views (the RMS reprojection residual in mm):
   contour (face-oval) points slide with the view and get a low weight or are dropped.

Each row is a landmark ``landmark[m]`` at ``bary[m]`` on triangle ``face[m]`` of ``ICTHead.faces`` plus
``offset[m]`` (canonical head frame, metres), with a fitting weight ``weight[m]`` in (0, 1].
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from nerfhead.atomic import atomic_open
from nerfhead.errors import InputError

ASSET = "tracking/mediapipe_to_ict.npz"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Correspondence:
    """MediaPipe landmark -> barycentric point on an ICT triangle.

    Attributes:
        landmark: [M] int64 MediaPipe landmark indices (0..477), increasing.
        face: [M] int64 rows of ``ICTHead.faces``.
        bary: [M, 3] float32 barycentric weights (sum 1) of that triangle's vertices.
        weight: [M] float32 in (0, 1]: 1 for stable points, less for view-dependent (contour) ones.
        spread_mm: [M] float32 inconsistency over the build's views (mm): the RMS triangulation residual (or,
            before triangulation, the median distance of the per-view surface points from the anchor).
        num_vertices: vertex count of the ICT topology the table refers to.
        offset: [M, 3] float32 canonical-frame offset (metres) from the surface point to the landmark.
    """

    landmark: np.ndarray
    face: np.ndarray
    bary: np.ndarray
    weight: np.ndarray
    spread_mm: np.ndarray
    num_vertices: int
    offset: np.ndarray | None = None

    @property
    def offsets(self) -> np.ndarray:
        """[M, 3] float32 offsets (zeros when the table has none)."""
        return np.zeros((len(self), 3), np.float32) if self.offset is None else self.offset

    def __len__(self) -> int:
        return int(self.landmark.shape[0])

    def vertex_ids(self, faces: Tensor | np.ndarray) -> np.ndarray:
        """[M, 3] int64 vertex indices of each landmark's triangle."""
        f = faces.cpu().numpy() if isinstance(faces, Tensor) else np.asarray(faces)
        return f[self.face].astype(np.int64)

    def points(self, vertices: Tensor, faces: Tensor, rotation: Tensor | None = None) -> Tensor:
        """3D landmarks of meshes: barycentric blends plus the offsets.

        Args:
            vertices: [B, V, 3] meshes in ICT topology (canonical, or posed with ``rotation``).
            faces: [F, 3] ``ICTHead.faces``.
            rotation: [B, 3] axis-angle head rotation of posed meshes (rotates the offsets); None for
                canonical meshes.

        Returns:
            [B, M, 3].
        """
        from nerfhead.geometry import axis_angle_to_matrix

        idx = torch.as_tensor(self.vertex_ids(faces), device=vertices.device)
        w = torch.as_tensor(self.bary, device=vertices.device, dtype=vertices.dtype)
        p = (vertices[:, idx] * w[None, :, :, None]).sum(-2)
        off = torch.as_tensor(self.offsets, device=vertices.device, dtype=vertices.dtype)
        if rotation is None:
            return p + off
        R = axis_angle_to_matrix(rotation.to(vertices.dtype))
        return p + off @ R.transpose(-1, -2)

    def select(self, keep: np.ndarray) -> Correspondence:
        """Rows where the [M] bool ``keep`` is True."""
        return Correspondence(
            self.landmark[keep],
            self.face[keep],
            self.bary[keep],
            self.weight[keep],
            self.spread_mm[keep],
            self.num_vertices,
            None if self.offset is None else self.offset[keep],
        )

    def save(self, path: str | os.PathLike, **extra: np.ndarray) -> Path:
        """Write an uncompressed npz (no pickle) with the table and ``extra`` arrays (build provenance)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path, "wb") as f:
            np.savez(
                f,
                version=np.int64(FORMAT_VERSION),
                landmark=self.landmark.astype(np.int64),
                face=self.face.astype(np.int64),
                bary=self.bary.astype(np.float32),
                weight=self.weight.astype(np.float32),
                spread_mm=self.spread_mm.astype(np.float32),
                num_vertices=np.int64(self.num_vertices),
                offset=self.offsets.astype(np.float32),
                **extra,
            )
        return path


def load_correspondence(
    path: str | os.PathLike | None = None, num_faces: int | None = None
) -> Correspondence:
    """Read a correspondence table (default: the bundled one).

    Args:
        path: npz written by :meth:`Correspondence.save`.
        num_faces: when given, face indices must be below it (the ICT topology in use).

    Raises:
        InputError: missing file, missing keys, wrong version or out-of-range indices.
    """
    if path is None:
        from nerfhead.assets import asset_path

        path = asset_path(ASSET)
    path = Path(path)
    if not path.is_file():
        raise InputError(
            path,
            "landmark correspondence table not found",
            hint="run scripts/make_mediapipe_correspondence.py",
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise InputError(path, f"not a readable npz ({type(e).__name__}: {e})") from None
    keys = ("version", "landmark", "face", "bary", "weight", "spread_mm", "num_vertices", "offset")
    missing = [k for k in keys if k not in d]
    if missing:
        raise InputError(path, f"correspondence table lacks {', '.join(missing)}")
    if int(d["version"]) != FORMAT_VERSION:
        raise InputError(path, f"unsupported correspondence version {int(d['version'])}")
    M = d["landmark"].shape[0]
    if (
        d["face"].shape != (M,)
        or d["bary"].shape != (M, 3)
        or d["weight"].shape != (M,)
        or d["offset"].shape != (M, 3)
    ):
        raise InputError(path, "inconsistent correspondence table shapes")
    if num_faces is not None and M and int(d["face"].max()) >= num_faces:
        raise InputError(path, f"face index {int(d['face'].max())} out of range for {num_faces} triangles")
    return Correspondence(
        d["landmark"].astype(np.int64),
        d["face"].astype(np.int64),
        d["bary"].astype(np.float32),
        d["weight"].astype(np.float32),
        d["spread_mm"].astype(np.float32),
        int(d["num_vertices"]),
        d["offset"].astype(np.float32),
    )


@dataclass(frozen=True)
class AggregateConfig:
    """How per-view surface points become one table row."""

    min_views: int = 4
    """A landmark needs a surface point in at least this many views."""
    strong_mm: float = 1.5
    """Spread (mm) up to which a landmark has weight 1."""
    drop_mm: float = 6.0
    """Landmarks with a larger spread are dropped."""
    weak_weight: float = 0.25
    """Weight cap of landmarks MediaPipe puts on the face contour (face oval): their position depends on the
    silhouette, which a mesh point cannot follow."""


def aggregate_views(
    faces_per_view: np.ndarray,
    bary_per_view: np.ndarray,
    canonical: np.ndarray,
    num_vertices: int,
    contour: np.ndarray | None = None,
    config: AggregateConfig | None = None,
) -> Correspondence:
    """Robust per-landmark choice among the surface points seen in several views.

    Args:
        faces_per_view: [N, P] int64 triangle under landmark p in view n, -1 where it has none.
        bary_per_view: [N, P, 3] barycentrics of those points.
        canonical: [N, P, 3] the same surface points on the neutral canonical head (metres).
        num_vertices: ICT vertex count (stored in the table).
        contour: optional [P] bool marking contour landmarks (weight capped at ``config.weak_weight``).
        config: thresholds.

    Returns:
        the table: for every landmark with enough views and a small enough spread, the view's point that is
        the medoid (smallest summed distance to the others); weight ``min(1, (strong_mm / spread)^2)``.
    """
    config = config or AggregateConfig()
    N, P = faces_per_view.shape
    rows: list[tuple[int, int, np.ndarray, float, float]] = []
    for p in range(P):
        ok = faces_per_view[:, p] >= 0
        if ok.sum() < config.min_views:
            continue
        c = canonical[ok, p]
        d = np.linalg.norm(c[:, None] - c[None], axis=-1)
        i = int(d.sum(1).argmin())
        spread = float(np.median(d[i])) * 1000.0
        if spread > config.drop_mm:
            continue
        w = min(1.0, (config.strong_mm / max(spread, 1e-6)) ** 2)
        if contour is not None and contour[p]:
            w = min(w, config.weak_weight)
        views = np.nonzero(ok)[0]
        rows.append((p, int(faces_per_view[views[i], p]), bary_per_view[views[i], p], w, spread))
    if not rows:
        raise ValueError("no landmark was seen consistently in enough views")
    return Correspondence(
        landmark=np.array([r[0] for r in rows], np.int64),
        face=np.array([r[1] for r in rows], np.int64),
        bary=np.stack([r[2] for r in rows]).astype(np.float32),
        weight=np.array([r[3] for r in rows], np.float32),
        spread_mm=np.array([r[4] for r in rows], np.float32),
        num_vertices=int(num_vertices),
    )


def triangulate_offsets(
    anchors: np.ndarray, P: np.ndarray, xy: np.ndarray, valid: np.ndarray, iters: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Per landmark, the canonical offset that best explains its 2D positions in all views.

    View n sees the landmark at ``project(P[n] @ (anchors[n] + offset, 1))``, where the anchor already holds
    that view's expression. Solved as a depth-normalised linear least-squares problem (re-weighted ``iters``
    times with the current depths, then with Huber weights on the residual).

    Args:
        anchors: [N, M, 3] anchor points of each view, canonical head frame, metres.
        P: [N, 3, 4] projection matrices of canonical head points (``K @ [R | t]`` with the view's head pose).
        xy: [N, M, 2] MediaPipe pixels.
        valid: [N, M] bool.
        iters: re-weighting rounds.

    Returns:
        offsets [M, 3] (metres) and the RMS reprojection residual [M] (pixels).
    """
    N, M = xy.shape[:2]
    offsets = np.zeros((M, 3))
    rms = np.full(M, np.inf)
    for m in range(M):
        ok = valid[:, m]
        if ok.sum() < 3:
            continue
        Pm, c, x = P[ok], anchors[ok, m].astype(np.float64), xy[ok, m].astype(np.float64)
        rows_u = x[:, 0:1] * Pm[:, 2] - Pm[:, 0]  # [n, 4]
        rows_v = x[:, 1:2] * Pm[:, 2] - Pm[:, 1]
        A = np.concatenate([rows_u[:, :3], rows_v[:, :3]])
        ch = np.concatenate([c, np.ones((len(c), 1))], 1)
        b = -np.concatenate([(rows_u * ch).sum(1), (rows_v * ch).sum(1)])
        w = np.ones(2 * len(c))
        d = np.zeros(3)
        for _ in range(iters + 2):
            depth = (Pm[:, 2, :3] * (c + d)).sum(1) + Pm[:, 2, 3]
            ww = w / np.tile(np.maximum(depth, 1e-6), 2)
            d = np.linalg.lstsq(A * ww[:, None], b * ww, rcond=None)[0]
            proj = (Pm @ np.concatenate([c + d, np.ones((len(c), 1))], 1)[..., None])[..., 0]
            r = np.linalg.norm(proj[:, :2] / proj[:, 2:] - x, axis=1)
            k = max(1.5 * float(np.median(r)), 1e-3)
            w = np.tile(np.where(r <= k, 1.0, k / np.maximum(r, 1e-12)), 2)
        offsets[m] = d
        rms[m] = float(np.sqrt(np.mean(r**2)))
    return offsets.astype(np.float32), rms.astype(np.float32)
