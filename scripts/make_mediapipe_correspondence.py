"""Build scenes/assets/tracking/mediapipe_to_ict.npz: MediaPipe face-mesh landmark -> point on the ICT surface.

Renders the rigged real-scan head (``nerfhead.parametric.load_rigged_head``; ``--head ict`` uses the plain ICT
mean face with a flat skin colour) from a grid of yaws and pitches, with the mouth closed and open, runs
MediaPipe Face Mesh on each render, and reads the triangle id and barycentrics under each landmark from the
rasterizer's fragments. Landmarks that land off the skin (in an eye opening, between the lips) take the nearest
skin pixel within ``--search-px``. Each surface point is mapped back to the neutral canonical head and
:func:`nerfhead.track.correspondence.aggregate_views` keeps the per-landmark medoid (the anchor). Then
:func:`nerfhead.track.correspondence.triangulate_offsets` finds, over all views, the 3D point that explains
MediaPipe's positions best; the landmark is re-anchored at the skin point nearest to it (plus the remaining
offset), triangulated once more, and weighted by its RMS residual in mm.

    .venv/bin/python scripts/make_mediapipe_correspondence.py            # 70 views, ~1.5 min on 2 CPU cores
    .venv/bin/python scripts/make_mediapipe_correspondence.py --head ict --out /tmp/c.npz

Prints a JSON summary (landmarks kept, spread percentiles, per-view detection).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nerfhead.data import EXPRESSION_INDEX, Cameras
from nerfhead.geometry import axis_angle_to_matrix
from nerfhead.parametric import PART_ID, ICTHead, load_rigged_head
from nerfhead.render import MeshRenderConfig, MeshRenderer, ShadingConfig, TexturedMesh
from nerfhead.track.correspondence import (
    ASSET,
    AggregateConfig,
    Correspondence,
    aggregate_views,
    triangulate_offsets,
)
from nerfhead.track.landmarks import NUM_MESH_LANDMARKS, FaceMeshDetector, LandmarkConfig

SKIN_PARTS = (PART_ID["face"], PART_ID["head_and_neck"])


def build_renderer(kind: str, supersample: int) -> tuple[ICTHead, MeshRenderer, np.ndarray]:
    """(head, renderer of its opaque triangles, [F_render] rows of head.faces drawn)."""
    if kind == "rigged":
        rig = load_rigged_head()
        head = rig.head
        keep = head.render_face_mask
        mesh = TexturedMesh(head.faces[keep], uv=rig.uv, faces_uv=rig.faces_uv[keep], texture=rig.texture)
    else:
        head = ICTHead()
        keep = head.render_face_mask
        skin = torch.tensor([0.82, 0.64, 0.54]).expand(head.num_vertices, 3)
        mesh = TexturedMesh(head.faces[keep], vertex_colors=skin)
    shading = ShadingConfig(ambient=0.55, diffuse=0.45, light_dir=(0.2, -0.3, 1.0))
    cfg = MeshRenderConfig(background=(0.35, 0.38, 0.42), shading=shading, supersample=supersample)
    return head, MeshRenderer(mesh, cfg), keep.nonzero()[:, 0].numpy()


def _closest_on_triangles(p: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Closest points [K, 3] to p [3] on triangles [K, 3, 3] (plane projection, else the nearest edge point)."""
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    n = np.cross(b - a, c - a)
    n = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-20)
    q = p - ((p - a) * n).sum(1, keepdims=True) * n
    inside = np.ones(len(tri), bool)
    for u, v in ((a, b), (b, c), (c, a)):
        inside &= (np.cross(v - u, q - u) * n).sum(1) >= 0
    best = q.copy()
    dist = np.where(inside, np.linalg.norm(q - p, axis=1), np.inf)
    for u, v in ((a, b), (b, c), (c, a)):
        e = v - u
        t = np.clip(((p - u) * e).sum(1) / np.maximum((e * e).sum(1), 1e-20), 0.0, 1.0)
        s = u + t[:, None] * e
        d = np.linalg.norm(s - p, axis=1)
        better = (~inside) & (d < dist)
        best[better], dist[better] = s[better], d[better]
    return best


def snap_to_skin(head: ICTHead, points: np.ndarray, candidates: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Nearest point of the neutral skin surface to canonical points [M, 3]: (rows of head.faces, bary)."""
    faces = head.faces.numpy()
    skin_rows = np.nonzero(np.isin(head.face_part.numpy(), SKIN_PARTS))[0]
    tris = head.neutral.numpy().astype(np.float64)[faces[skin_rows]]  # [F, 3, 3]
    centroids = tris.mean(1)
    rows = np.zeros(len(points), np.int64)
    bary = np.zeros((len(points), 3))
    for m, p in enumerate(points.astype(np.float64)):
        near = np.argpartition(np.linalg.norm(centroids - p, axis=1), candidates)[:candidates]
        q = _closest_on_triangles(p, tris[near])
        k = int(np.linalg.norm(q - p, axis=1).argmin())
        t = tris[near[k]]
        # barycentrics of q in triangle t
        v0, v1, v2 = t[1] - t[0], t[2] - t[0], q[k] - t[0]
        d00, d01, d11 = v0 @ v0, v0 @ v1, v1 @ v1
        d20, d21 = v2 @ v0, v2 @ v1
        den = d00 * d11 - d01 * d01
        w1 = (d11 * d20 - d01 * d21) / den
        w2 = (d00 * d21 - d01 * d20) / den
        w = np.clip(np.array([1.0 - w1 - w2, w1, w2]), 0.0, None)
        rows[m], bary[m] = skin_rows[near[k]], w / w.sum()
    return rows, bary


def lookup(
    xy: np.ndarray, tri: np.ndarray, bary: np.ndarray, ok_tri: np.ndarray, search: int
) -> tuple[np.ndarray, np.ndarray]:
    """Triangle and barycentrics under continuous pixel positions xy [P, 2] in a fragment map.

    tri [H, W] (render-face rows, -1 background), bary [H, W, 3], ok_tri [F_render] bool (skin triangles).
    A landmark whose pixel is not on an allowed triangle takes the nearest allowed pixel within ``search``.
    """
    H, W = tri.shape
    allowed = (tri >= 0) & ok_tri[np.maximum(tri, 0)]
    P = xy.shape[0]
    out_f = np.full(P, -1, np.int64)
    out_b = np.zeros((P, 3), np.float32)
    r = np.arange(-search, search + 1)
    dy, dx = np.meshgrid(r, r, indexing="ij")
    order = np.argsort((dx**2 + dy**2).ravel(), kind="stable")
    dx, dy = dx.ravel()[order], dy.ravel()[order]
    for p in range(P):
        x, y = int(math.floor(xy[p, 0])), int(math.floor(xy[p, 1]))
        xs, ys = x + dx, y + dy
        inside = (xs >= 0) & (xs < W) & (ys >= 0) & (ys < H)
        xs, ys = xs[inside], ys[inside]
        hit = np.nonzero(allowed[ys, xs])[0]
        if hit.size:
            j = hit[0]
            out_f[p] = tri[ys[j], xs[j]]
            out_b[p] = bary[ys[j], xs[j]]
    return out_f, out_b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--head", choices=("rigged", "ict"), default="rigged")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "scenes/assets" / ASSET)
    ap.add_argument("--size", type=int, default=640, help="render width = height (pixels)")
    ap.add_argument("--supersample", type=int, default=2)
    ap.add_argument("--yaws", type=float, nargs="+", default=[-30, -20, -10, 0, 10, 20, 30])
    ap.add_argument("--pitches", type=float, nargs="+", default=[-15, -7, 0, 7, 15])
    ap.add_argument("--jaw-open", type=float, nargs="+", default=[0.0, 0.35])
    ap.add_argument("--search-px", type=int, default=8, help="search radius at render resolution")
    ap.add_argument("--strong-mm", type=float, default=1.0, help="RMS residual with weight 1")
    ap.add_argument("--drop-mm", type=float, default=4.0, help="drop landmarks with a larger RMS residual")
    ap.add_argument("--save-renders", type=Path, default=None, help="folder for the renders (debugging)")
    args = ap.parse_args()
    t0 = time.time()
    head, renderer, face_rows = build_renderer(args.head, args.supersample)
    faces = head.faces.numpy()
    ok_tri = np.isin(head.face_part.numpy()[face_rows], SKIN_PARTS)
    S = args.size
    focal = (
        1.7 * S
    )  # ~33 degree field of view: the head (0.25 m tall) fills about 80 % of the frame at 0.55 m
    cam = Cameras.from_look_at(
        torch.tensor([[0.0, 0.0, 0.55]]), torch.zeros(3), torch.tensor([0.0, 1.0, 0.0]), focal, S, S
    ).to(dtype=torch.float32)
    s = args.supersample
    neutral = head.neutral.numpy().astype(np.float64)
    P = NUM_MESH_LANDMARKS
    all_f, all_b, all_c, all_xy, all_P, all_e, views = [], [], [], [], [], [], []
    with FaceMeshDetector(LandmarkConfig(static=True, refine=True)) as det:
        for jaw in args.jaw_open:
            for pitch in args.pitches:
                for yaw in args.yaws:
                    expr = torch.zeros(1, 53)
                    expr[0, EXPRESSION_INDEX["jawOpen"]] = jaw
                    rot = torch.tensor([[math.radians(pitch), math.radians(yaw), 0.0]])
                    with torch.no_grad():
                        verts = head(expr, rot, torch.zeros(1, 3)).vertices[0]
                        out = renderer.render(verts, cam.viewmat, cam.K, S, S)
                    rgb = (out.rgb[0].clamp(0, 1) * 255 + 0.5).byte().numpy()
                    if args.save_renders is not None:
                        import imageio.v3 as iio

                        args.save_renders.mkdir(parents=True, exist_ok=True)
                        iio.imwrite(args.save_renders / f"jaw{jaw:g}_p{pitch:g}_y{yaw:g}.png", rgb)
                    xy = det(rgb)
                    views.append({"yaw": yaw, "pitch": pitch, "jawOpen": jaw, "detected": xy is not None})
                    if xy is None:
                        continue
                    tri = out.fragments.tri_id[0].numpy()
                    bary = out.fragments.bary[0].numpy()
                    f_r, b = lookup(xy[:P] * s, tri, bary, ok_tri, args.search_px * s)
                    f = np.where(f_r >= 0, face_rows[np.maximum(f_r, 0)], -1)
                    c = (neutral[faces[np.maximum(f, 0)]] * b[..., None]).sum(1)
                    all_f.append(f)
                    all_b.append(b)
                    all_c.append(c)
                    all_xy.append(xy[:P])
                    all_e.append(expr[0].numpy())
                    Rt = cam.viewmat[0].double().clone()
                    Rt[:3, :3] = Rt[:3, :3] @ axis_angle_to_matrix(rot[0].double())
                    all_P.append((cam.K[0].double() @ Rt[:3]).numpy())
    import mediapipe as mp

    contour = np.zeros(P, bool)
    for a, b in mp.solutions.face_mesh.FACEMESH_FACE_OVAL:
        contour[[a, b]] = True
    faces_v, bary_v = np.stack(all_f), np.stack(all_b)
    medoid = aggregate_views(
        faces_v, bary_v, np.stack(all_c), head.num_vertices, contour, AggregateConfig(drop_mm=8.0)
    )
    Pm = np.stack(all_P)
    xy_v = np.stack(all_xy)[:, medoid.landmark]
    valid = faces_v[:, medoid.landmark] >= 0
    expressed = [head.canonical(torch.from_numpy(e)[None])[0].numpy() for e in all_e]  # [V, 3] per view

    def anchors(face: np.ndarray, bary: np.ndarray) -> np.ndarray:  # [N, M, 3]
        return np.stack([(v[faces[face]] * bary[..., None]).sum(1) for v in expressed])

    off, _ = triangulate_offsets(anchors(medoid.face, medoid.bary), Pm, xy_v, valid)
    target = (neutral[faces[medoid.face]] * medoid.bary[..., None]).sum(1) + off
    face2, bary2 = snap_to_skin(head, target)
    off2, rms_px = triangulate_offsets(anchors(face2, bary2), Pm, xy_v, valid)
    mm_per_px = 0.55 / focal * 1000.0
    spread = rms_px * mm_per_px
    weight = np.minimum(1.0, (args.strong_mm / np.maximum(spread, 1e-6)) ** 2)
    weight = np.where(contour[medoid.landmark], np.minimum(weight, 0.25), weight)
    keep = spread <= args.drop_mm
    corr = Correspondence(
        medoid.landmark, face2, bary2.astype(np.float32), weight.astype(np.float32),
        spread.astype(np.float32), head.num_vertices, off2,
    ).select(keep)  # fmt: skip
    corr.save(
        args.out,
        views_json=np.array(json.dumps(views)),
        head=np.array(args.head),
        mediapipe_version=np.array(mp.__version__),
    )
    sp = corr.spread_mm
    print(
        json.dumps(
            {
                "out": str(args.out),
                "views": len(views),
                "views_detected": int(sum(v["detected"] for v in views)),
                "landmarks_kept": len(corr),
                "of": P,
                "weight_1": int((corr.weight >= 0.999).sum()),
                "contour_kept": int(contour[corr.landmark].sum()),
                "spread_mm_p50_p90_max": [round(float(np.percentile(sp, q)), 3) for q in (50, 90, 100)],
                "offset_mm_p50_p90_max": [
                    round(float(np.percentile(np.linalg.norm(corr.offsets, axis=1) * 1000, q)), 2)
                    for q in (50, 90, 100)
                ],
                "seconds": round(time.time() - t0, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
