"""Fit the ICT head to a textured scan: similarity and identity (scan expression held fixed), then offsets.

Stages (all CPU, about 40 s of CPU time for the bundled scan):

1. Initial similarity from two automatic landmarks: the nose tip (the scan's most forward point in its upper
   60 %) and the crown (its highest point), matched to ICT's nose-tip landmark and crown. The scan must already
   be roughly upright and facing +z (true for the bundled LeePerrySmith bust).
2. ICP on the outer skin (face + head and neck) with point-to-plane + point-to-point residuals, rejecting
   pairs farther than a shrinking threshold or with disagreeing normals: first the scan's similarity only
   (scale, rotation, translation), then also ICT's 10 identity coefficients (L2 prior); Gauss-Newton, one
   linear solve per round. The scan's own expression is held fixed (``ScanFitConfig.scan_expression``: closed
   eyes for LeePerrySmith); it is NOT part of the person's neutral afterwards.
3. Per-vertex offsets on the connected skin parts (face, head/neck, mouth and eye sockets), data term on the
   outer skin only, regularised by a uniform-Laplacian smoothness term with a decreasing weight. Teeth, gums,
   eyeballs etc. never see the scan: they follow the skin's offsets (rigidly per part for eyeballs, teeth,
   gums and tongue; interpolated from the nearest skin for lashes and eye-surface helpers).

The scan moves into ICT's canonical frame, ``canonical = s * R @ scan + t``; ICT is never rescaled, so ``s``
is the scan's metric scale (metres per scan unit) as implied by ICT's metric head size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import spsolve
from scipy.spatial import cKDTree

from nerfhead.geometry import axis_angle_to_matrix, matrix_to_axis_angle, skew
from nerfhead.parametric.ict import PART_ID, ICTHead
from nerfhead.parametric.scan import MeshQuery, Scan


@dataclass(frozen=True)
class ScanFitConfig:
    """Settings of :func:`fit_scan`."""

    rigid_iters: int = 6
    """ICP rounds that move only the scan's similarity."""
    shape_iters: int = 16
    """ICP rounds that also fit the identity."""
    identity_prior: float = 0.05
    """Weight of ||identity||^2 (coefficients ~ N(0, 1)) against the mean squared residual in mm^2."""
    scan_expression: tuple[tuple[str, float], ...] = (("eyeBlink_L", 1.0), ("eyeBlink_R", 1.0))
    """The scan's own expression, held fixed while fitting (LeePerrySmith has closed eyes). Fitting the 53
    weights freely let them absorb identity (asymmetric mouthLeft/Right, noseSneer) and still left the eyes open,
    because open ICT lids also lie on the scan's closed-lid surface."""
    max_dist_mm: tuple[float, float] = (30.0, 8.0)
    """Correspondence rejection distance at the first and last ICP round (mm)."""
    min_normal_cos: float = 0.5
    """Reject pairs whose normals disagree more than this (cosine)."""
    point_weight: float = 0.1
    """Weight of the point-to-point residual next to the point-to-plane one."""
    head_weight: float = 0.5
    """Data weight of the head-and-neck part relative to the face."""
    laplacian_weights: tuple[float, ...] = (300.0, 100.0, 30.0, 10.0)
    """Smoothness weight of each offset round (one closest-point update per entry)."""
    offset_max_dist_mm: float = 6.0
    """Correspondence rejection distance in the offset rounds (mm)."""
    offset_damping: float = 1e-3
    """Weight of ||offset||^2 in the offset rounds (keeps vertices without data in place)."""


@dataclass(frozen=True)
class ScanFit:
    """Result of :func:`fit_scan`. Arrays are numpy float64 unless noted.

    Attributes:
        scan_scale: metres per scan unit.
        scan_rotation: [3] axis-angle taking scan axes to canonical axes.
        scan_translation: [3] metres.
        identity: [10] ICT identity coefficients.
        expression: [53] the scan's own expression weights (e.g. closed eyes); not part of the person.
        offsets: [V, 3] canonical per-vertex offsets (metres) on top of neutral + identity.
        metrics: distances in mm (see :func:`fit_metrics`).
    """

    scan_scale: float
    scan_rotation: np.ndarray
    scan_translation: np.ndarray
    identity: np.ndarray
    expression: np.ndarray
    offsets: np.ndarray
    metrics: dict[str, float] = field(default_factory=dict)

    def rotation_matrix(self) -> np.ndarray:
        """[3, 3] scan-to-canonical rotation."""
        return axis_angle_to_matrix(torch.as_tensor(self.scan_rotation, dtype=torch.float64)).numpy()

    def scan_to_canonical(self, points: np.ndarray) -> np.ndarray:
        """Scan-frame points [N, 3] -> canonical metres [N, 3]."""
        return self.scan_scale * points @ self.rotation_matrix().T + self.scan_translation


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals [V, 3] (zero for unused vertices)."""
    tri = vertices[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    vn = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(vn, faces[:, k], fn)
    return vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-30)


def uniform_laplacian(faces: np.ndarray, n: int) -> sp.csr_matrix:
    """Uniform graph Laplacian ``I - D^-1 A`` [n, n] over the edges of ``faces`` (rows of isolated vertices 0)."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e = np.concatenate([e, e[:, ::-1]])
    A = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n)).tocsr()
    A.data[:] = 1.0  # duplicate edges summed -> 1
    deg = np.asarray(A.sum(1)).ravel()
    inv = np.where(deg > 0, 1.0 / np.maximum(deg, 1), 0.0)
    return sp.csr_matrix(sp.diags((deg > 0).astype(float)) - sp.diags(inv) @ A)


def initial_similarity(head: ICTHead, scan: Scan) -> tuple[float, np.ndarray]:
    """Scale and translation (rotation = identity) matching the scan's nose tip and crown to ICT's."""
    v = scan.vertices
    y0, y1 = v[:, 1].min(), v[:, 1].max()
    upper = v[v[:, 1] > y0 + 0.4 * (y1 - y0)]
    nose_s = upper[upper[:, 2].argmax()]
    crown_s = v[v[:, 1].argmax()]
    n = head.neutral.double().numpy()
    nose_c = n[int(head.landmark_idx[30])]
    crown_c = n[head.skin_mask.numpy()][:, 1].max()
    s = float((crown_c - nose_c[1]) / (crown_s[1] - nose_s[1]))
    return s, nose_c - s * nose_s


class _Correspondences:
    """Closest scan points for model vertices under the current similarity (fixed during a round)."""

    def __init__(
        self,
        query: MeshQuery,
        verts_c: np.ndarray,
        normals_c: np.ndarray,
        s: float,
        R: np.ndarray,
        t: np.ndarray,
        max_dist_m: float,
        min_cos: float,
    ):
        x_s = (verts_c - t) @ R / s  # canonical -> scan frame
        c = query.closest(x_s)
        n_c = c.normal @ R.T
        ok = (c.distance * s < max_dist_m) & ((n_c * normals_c).sum(1) > min_cos)
        self.ok = ok
        self.points_scan = c.points
        self.normals_scan = c.normal
        self.distance_m = c.distance * s


def _fit_params(
    head: ICTHead,
    cfg: ScanFitConfig,
    query: MeshQuery,
    expression: np.ndarray,
    s0: float,
    t0: np.ndarray,
    log: bool,
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """ICP by Gauss-Newton on the scan similarity (+ identity after ``rigid_iters`` rounds).

    Per round: closest points, then one linearised solve of the 7 (or 17) unknowns
    (log-scale step, rotation step, translation step [, identity]) for the point-to-plane + point-to-point
    residuals of the outer skin; the identity carries a ``identity_prior * |c|^2`` term.
    """
    idx = np.nonzero(head.skin_mask.numpy())[0]
    faces = head.faces.numpy()
    region_w = np.where(head.vertex_part.numpy()[idx] == PART_ID["face"], 1.0, cfg.head_weight)
    with torch.no_grad():
        full_v = head.canonical(torch.as_tensor(expression[None], dtype=torch.float32))[0].double().numpy()
    v0 = full_v[idx].copy()  # [M, 3] neutral + expression
    B = head.id_basis.double().numpy()[:, idx].transpose(1, 2, 0)  # [M, 3, K]
    K = B.shape[2]
    s, R, t = s0, np.eye(3), np.asarray(t0, np.float64).copy()
    c = np.zeros(K)
    total = cfg.rigid_iters + cfg.shape_iters
    mm = 1000.0  # residuals in mm keep the priors readable
    for it in range(total):
        shape = it >= cfg.rigid_iters
        frac = it / max(total - 1, 1)
        max_d = (cfg.max_dist_mm[0] * (1 - frac) + cfg.max_dist_mm[1] * frac) / 1000
        v = v0 + B @ c
        full_v[idx] = v
        normals = vertex_normals(full_v, faces)[idx]
        corr = _Correspondences(query, v, normals, s, R, t, max_d, cfg.min_normal_cos)
        w = region_w * corr.ok
        p = s * corr.points_scan @ R.T  # scan points, rotated and scaled, before translation
        n = corr.normals_scan @ R.T
        r = (v - p - t) * mm  # [M, 3] residual vectors
        # Jacobian of the residual vector w.r.t. (log-scale, rotation, translation[, identity]): [M, 3, P]
        # r = v - (1 + a) exp(w) p - t  =>  dr/da = -p, dr/dw = [p]x (since w x p = -[p]x w), dr/dt = -I
        J = [
            -p[:, :, None] * mm,
            skew(torch.as_tensor(p)).numpy() * mm,
            np.broadcast_to(-np.eye(3) * mm, (len(p), 3, 3)),
        ]
        if shape:
            J.append(B * mm)
        J = np.concatenate(J, 2)
        Jn = np.einsum("mi,mip->mp", n, J)  # point-to-plane rows
        rn = (n * r).sum(1)
        P = J.shape[2]
        H = np.einsum("m,mp,mq->pq", w, Jn, Jn) + cfg.point_weight * np.einsum("m,mip,miq->pq", w, J, J)
        g = np.einsum("m,mp,m->p", w, Jn, rn) + cfg.point_weight * np.einsum("m,mip,mi->p", w, J, r)
        H, g = H / w.sum(), g / w.sum()
        if shape:
            H[7:, 7:] += cfg.identity_prior * np.eye(K)
            g[7:] += cfg.identity_prior * c
        step = -np.linalg.solve(H + 1e-9 * np.eye(P), g)
        s *= float(np.exp(step[0]))
        dR = axis_angle_to_matrix(torch.as_tensor(step[1:4])).numpy()
        R = dR @ R
        t = t + step[4:7]  # the scale/rotation step acts on s R q only, so t just adds
        if shape:
            c = c + step[7:]
        if log:
            d = corr.distance_m[corr.ok] * 1000
            print(f"  icp {it:2d}: scale {s:.5f} m/unit, pairs {corr.ok.mean():.2f}, mean {d.mean():.2f} mm")
    aa = matrix_to_axis_angle(torch.as_tensor(R)).numpy()
    return s, aa, t, c


def _fit_offsets(
    head: ICTHead,
    cfg: ScanFitConfig,
    query: MeshQuery,
    base: np.ndarray,
    s: float,
    R: np.ndarray,
    t: np.ndarray,
    log: bool,
) -> np.ndarray:
    """Offsets [V, 3] of the connected skin parts, zero elsewhere (propagated later)."""
    part = head.vertex_part.numpy()
    conn = part <= PART_ID["eye_socket_right"]  # face, head/neck, mouth socket, eye sockets: one surface
    n = int(conn.sum())  # these parts are the first n vertices
    assert conn[:n].all()
    faces = head.faces.numpy()
    fconn = faces[(faces < n).all(1)]
    L = uniform_laplacian(fconn, n)
    LtL3 = sp.kron(L.T @ L, sp.eye(3), format="csr")
    skin = head.skin_mask.numpy()[:n]
    region_w = np.where(part[:n] == PART_ID["face"], 1.0, cfg.head_weight) * skin
    d = np.zeros((n, 3))
    all_faces = faces
    for lam in cfg.laplacian_weights:
        cur = base.copy()
        cur[:n] += d
        normals = vertex_normals(cur, all_faces)[:n]
        corr = _Correspondences(
            query, cur[:n], normals, s, R, t, cfg.offset_max_dist_mm / 1000, cfg.min_normal_cos
        )
        w = region_w * corr.ok
        q = (s * corr.points_scan @ R.T + t - base[:n]) * 1000  # target offsets, mm
        nn_ = corr.normals_scan @ R.T
        # per-vertex 3x3 blocks w (n n^T + a I)
        blk = w[:, None, None] * (nn_[:, :, None] * nn_[:, None, :] + cfg.point_weight * np.eye(3)[None])
        blk = blk + cfg.offset_damping * np.eye(3)[None]
        rows = np.repeat(np.arange(3 * n).reshape(n, 3), 3, axis=1).ravel()
        cols = np.tile(np.arange(3 * n).reshape(n, 3), (1, 3)).ravel()
        A = sp.coo_matrix((blk.ravel(), (rows, cols)), shape=(3 * n, 3 * n)).tocsr() + lam * LtL3
        rhs = np.einsum("nij,nj->ni", blk - cfg.offset_damping * np.eye(3)[None], q).ravel()
        d = spsolve(A.tocsc(), rhs).reshape(n, 3) / 1000
        if log:
            dist = corr.distance_m[corr.ok] * 1000
            print(
                f"  offsets lambda {lam:g}: pairs {corr.ok[skin].mean():.2f}, mean {dist.mean():.2f} mm, "
                f"max |offset| {np.linalg.norm(d, axis=1).max() * 1000:.1f} mm"
            )
    out = np.zeros_like(base)
    out[:n] = d
    return out


RIGID_PARTS = ("gums_and_tongue", "teeth", "eyeball_left", "eyeball_right")
"""Parts that follow the skin rigidly (one translation each) instead of deforming."""


def propagate_offsets(head: ICTHead, offsets: np.ndarray, k: int = 8) -> np.ndarray:
    """Give the parts off the connected skin surface the offsets of their nearest skin vertices.

    Args:
        head: the ICT head (its ``neutral`` positions define nearness).
        offsets: [V, 3]; rows of the connected parts (face .. eye sockets) are used, the rest replaced.
        k: neighbours for inverse-distance weighting.

    Returns:
        [V, 3] offsets: inverse-distance interpolated for lashes, lacrimal fluid and eye helpers; the mean of
        that interpolation for each part in ``RIGID_PARTS``.
    """
    part = head.vertex_part.numpy()
    src = part <= PART_ID["eye_socket_right"]
    n = int(src.sum())
    v = head.neutral.double().numpy()
    out = offsets.copy()
    dist, nb = cKDTree(v[:n]).query(v[n:], k=k)
    w = 1.0 / np.maximum(dist, 1e-6)
    out[n:] = (w[..., None] * offsets[:n][nb]).sum(1) / w.sum(1, keepdims=True)
    for name in RIGID_PARTS:
        sl = head.part_slice(name)
        out[sl] = out[sl].mean(0)
    return out


def boundary_vertices(faces: np.ndarray, n: int) -> np.ndarray:
    """[n] bool: vertices on an open edge (an edge used by exactly one triangle)."""
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), 1)
    uniq, count = np.unique(e, axis=0, return_counts=True)
    out = np.zeros(n, bool)
    out[uniq[count == 1].ravel()] = True
    return out


def fit_metrics(
    fitted: np.ndarray, head: ICTHead, scan_canonical: np.ndarray, scan_faces: np.ndarray
) -> dict:
    """Distances (mm) between a fitted ICT mesh and the scan, both in canonical metres.

    ``fit_to_scan_*``: vertices of the region to the scan surface. ``scan_to_fit_*``: scan vertices whose
    closest point on the fitted outer skin lies inside a triangle of the region (not on the skin's open
    border: neck cut, eye and mouth openings), within 2 cm and with a compatible normal (cosine > 0.5; this
    drops the scan's hidden inner surfaces: LeePerrySmith has eye and mouth cavities behind the closed lids
    and lips), to the fitted surface. ``scan_to_fit_kept_*`` is the fraction of candidates kept.
    Regions: ``face`` (ICT's face part, with ears and the front of the neck) and ``narrow`` (ICT's narrow face
    area: brows to chin, cheek to cheek).
    """
    q_scan = MeshQuery(scan_canonical, scan_faces)
    faces = head.faces.numpy()
    skin_faces = faces[head.face_part.numpy() <= PART_ID["head_and_neck"]]
    border = boundary_vertices(skin_faces, len(fitted))
    c = MeshQuery(fitted, skin_faces).closest(scan_canonical)
    tri = skin_faces[c.face]
    used = c.bary > 1e-9
    on_border = ((border[tri] | ~used).all(1)) & (used.sum(1) <= 2)
    facing = (vertex_normals(scan_canonical, scan_faces) * c.normal).sum(1) > 0.5
    out = {}
    for name, vmask in (("face", head.face_mask.numpy()), ("narrow", head.narrow_face_mask.numpy())):
        d = q_scan.closest(fitted[vmask]).distance * 1000
        out[f"fit_to_scan_mean_mm_{name}"] = float(d.mean())
        out[f"fit_to_scan_p95_mm_{name}"] = float(np.percentile(d, 95))
        cand = vmask[tri].all(1) & (c.distance < 0.02) & ~on_border
        on = cand & facing
        d2 = c.distance[on] * 1000
        out[f"scan_to_fit_kept_{name}"] = float(on.sum() / max(cand.sum(), 1))
        out[f"scan_to_fit_mean_mm_{name}"] = float(d2.mean())
        out[f"scan_to_fit_p95_mm_{name}"] = float(np.percentile(d2, 95))
    return out


def fit_scan(head: ICTHead, scan: Scan, cfg: ScanFitConfig = ScanFitConfig(), log: bool = False) -> ScanFit:
    """Fit ``head`` (unbaked) to ``scan``; see the module docstring for the stages.

    Returns:
        ScanFit with the similarity, identity, the scan's expression, offsets and metrics.
    """
    query = MeshQuery(scan.vertices, scan.faces)
    s0, t0 = initial_similarity(head, scan)
    if log:
        print(f"initial scale {s0:.5f} m/unit")
    expr = np.zeros(head.num_expressions)
    for name, value in cfg.scan_expression:
        expr[head.expression_names.index(name)] = value
    s, aa, t, ident = _fit_params(head, cfg, query, expr, s0, t0, log)
    R = axis_angle_to_matrix(torch.as_tensor(aa)).numpy()
    with torch.no_grad():
        base = head.canonical(torch.as_tensor(expr[None]), torch.as_tensor(ident)).double()[0].numpy()
    offsets = _fit_offsets(head, cfg, query, base, s, R, t, log)
    offsets = propagate_offsets(head, offsets)
    fit = ScanFit(s, aa, t, ident, expr, offsets)
    scan_c = fit.scan_to_canonical(scan.vertices)
    metrics = fit_metrics(base + offsets, head, scan_c, scan.faces)
    # the same distances for the parametric fit alone (similarity + identity, no offsets)
    metrics.update({f"param_{k}": v for k, v in fit_metrics(base, head, scan_c, scan.faces).items()})
    metrics["scan_scale_m_per_unit"] = s
    return ScanFit(s, aa, t, ident, expr, offsets, metrics)
