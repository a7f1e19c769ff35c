"""Accuracy of an exported head mesh against a synthetic capture's ground-truth surface.

The capture rig (``nerfhead synth``) films the rigged real-scan head (:func:`nerfhead.parametric.load_rigged_head`)
posed by the capture's drive, drawing the triangles of ``head.render_face_mask``; :func:`ground_truth_mesh` rebuilds
that surface for one frame (world frame, metres). The compared region is the face skin (ICT part ``face``, ears
included) facing at least one training camera: :func:`surface_distances` measures nearest-surface distances both
ways on that region, with exact point-to-triangle distances (:class:`nerfhead.parametric.scan.MeshQuery`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from nerfhead.data.capture import Capture
from nerfhead.errors import InputError
from nerfhead.export.mesh import Mesh


def ground_truth_mesh(capture: Capture, frame: int) -> tuple[Mesh, np.ndarray]:
    """The surface the rig rendered at timestep ``frame``, and its compared region.

    Returns:
        (mesh in world metres, [F] bool: the narrow-face skin triangles facing a training camera).

    Raises:
        InputError: the capture is not a synthetic one or has no drive, or ``frame`` is out of range.
    """
    from nerfhead.parametric import load_rigged_head
    from nerfhead.parametric.ict import PART_ID

    if capture.drive is None or "synth" not in capture.metadata:
        raise InputError(None, "mesh accuracy needs a synthetic capture (nerfhead synth) with its drive")
    if not 0 <= frame < len(capture.drive):
        raise InputError("--frame", f"must be in [0, {len(capture.drive) - 1}], got {frame}")
    rig = load_rigged_head()
    keep = rig.head.render_face_mask
    with torch.no_grad():
        verts = rig.drive(capture.drive[frame : frame + 1].to("cpu", torch.float32)).vertices[0]
    faces = rig.faces[keep]
    tri = verts[faces]  # [F, 3, 3]
    normal = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    centre = tri.mean(1)
    cams = capture.cameras
    train = list(capture.train_cameras) if capture.train_cameras is not None else list(range(len(cams)))
    facing = torch.zeros(faces.shape[0], dtype=torch.bool)
    for c in train:
        V = cams.viewmat[c].float()
        eye = -V[:3, :3].T @ V[:3, 3]
        facing |= ((eye - centre) * normal).sum(-1) > 0
    narrow = rig.head.narrow_face_mask[faces].all(-1)
    region = (rig.head.face_part[keep] == PART_ID["face"]) & narrow & facing
    mesh = Mesh(vertices=verts.numpy().astype(np.float32), faces=faces.numpy().astype(np.int64))
    return mesh, region.numpy()


def sample_surface(mesh: Mesh, n: int, faces: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """``n`` points [n, 3] spread uniformly by area over ``mesh`` (or over its triangles ``faces``)."""
    rng = np.random.default_rng(seed)
    f = mesh.faces if faces is None else mesh.faces[faces]
    tri = mesh.vertices[f].astype(np.float64)
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    pick = rng.choice(len(f), size=n, p=area / area.sum())
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    t = tri[pick]
    return t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])


def _stats(d: np.ndarray) -> dict[str, float]:
    mm = 1000.0 * d
    return {
        "mean_mm": float(mm.mean()),
        "median_mm": float(np.median(mm)),
        "p90_mm": float(np.percentile(mm, 90)),
    }


def surface_distances(
    pred: Mesh, gt: Mesh, region: np.ndarray, n_samples: int = 20000, seed: int = 0
) -> dict[str, Any]:
    """Nearest-surface distances (mm) between ``pred`` and ``gt`` on ``gt``'s region.

    ``gt_to_pred``: points spread over the region's triangles, to the closest point of ``pred`` (completeness);
    ``pred_to_gt``: points spread over ``pred`` whose closest ground-truth point lies on the region, to that point
    (accuracy; floaters in front of the face count). Each has mean, median and 90th percentile; ``chamfer_mm`` is
    the mean of the two means.
    """
    from nerfhead.parametric.scan import MeshQuery

    if not region.any():
        raise InputError(None, "the ground-truth region is empty")
    gt_pts = sample_surface(gt, n_samples, np.nonzero(region)[0], seed)
    to_pred = MeshQuery(pred.vertices, pred.faces).closest(gt_pts).distance
    pred_pts = sample_surface(pred, 4 * n_samples, None, seed + 1)
    near = MeshQuery(gt.vertices, gt.faces).closest(pred_pts)
    on_region = region[near.face]
    if not on_region.any():
        raise InputError(None, "no part of the exported mesh lies near the ground-truth region")
    to_gt = near.distance[on_region]
    a, b = _stats(to_pred), _stats(to_gt)
    return {
        "gt_to_pred": a,
        "pred_to_gt": b,
        "chamfer_mm": 0.5 * (a["mean_mm"] + b["mean_mm"]),
        "samples": {"gt": int(len(gt_pts)), "pred": int(on_region.sum())},
    }
