"""The mesh's silhouette from views a monocular video never shows: a geometry prior of the monocular splat fit.

One view constrains the Gaussians' outline only where that view sees it. Seen from the side, discs on the
triangles that curve away from the video's camera, and their soft tails, spill past the mesh's outline by about
a pixel all round (the mono->rig diagnosis in BENCHMARKS.md, session 7: 50-65% of the error off-axis lies in
the 2 px just outside the true silhouette). The surface the Gaussians sit on is the tracked mesh, so its
coverage is known from every side: :func:`novel_silhouette_loss` renders the Gaussians' alpha from a camera
orbited about the head by a random angle and holds it to the posed mesh's anti-aliased coverage
(:func:`mesh_coverage`) there. Applied by :class:`nerfhead.models.splat_train.SplatFit` on monocular fits only
(``SurfaceConfig.novel_silhouette_weight``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from nerfhead.data.cameras import Cameras
from nerfhead.data.drive import Drive
from nerfhead.geometry import axis_angle_to_matrix
from nerfhead.models.splat_head import SplatHead
from nerfhead.ops.rasterize_mesh import rasterize_visibility


@torch.no_grad()
def mesh_coverage(model: SplatHead, vertices: Tensor, camera: Cameras, supersample: int = 2) -> Tensor:
    """[H, W] share of each pixel of ``camera`` (one camera) that the triangles carrying Gaussians of the mesh
    posed at ``vertices`` [V, 3] (``model.posed_vertices``) cover: z-buffered at ``supersample`` times the
    resolution per axis and box-filtered down, as the synthetic captures' masks are."""
    s = max(1, int(supersample))
    faces, _ = model._bindings()
    pix, z = camera.project(vertices)
    w, h = int(camera.width[0]), int(camera.height[0])
    _, depth = rasterize_visibility(torch.cat([pix * s, z[..., None]], -1), faces, s * w, s * h)
    return F.avg_pool2d((depth > 0).float()[:, None], s)[0, 0]


def orbited(camera: Cameras, centre: Tensor, up: Tensor, yaw_deg: float, pitch_deg: float) -> Cameras:
    """``camera`` (one) moved about ``centre`` by ``yaw_deg`` around ``up`` and then ``pitch_deg`` around its
    own right axis (world vectors), still looking at the head the same way
    (:func:`nerfhead.models.run_eval.orbit_camera` twice)."""
    from nerfhead.models.run_eval import orbit_camera

    turned = orbit_camera(camera, 0, centre, up, yaw_deg)
    right = turned.viewmat[0, 0, :3]  # the camera's x axis in world coordinates
    return orbit_camera(turned, 0, centre, right, pitch_deg)


@torch.no_grad()
def cropped_to_head(
    model: SplatHead, vertices: Tensor, camera: Cameras, margin: int = 4, max_size: int = 0
) -> Cameras:
    """``camera`` (one) with its image cut to the bounding box of the triangles carrying Gaussians of the mesh
    posed at ``vertices`` [V, 3] plus ``margin`` pixels (the principal point moves), so a view costs the
    head's pixels, whatever the capture's resolution; with ``max_size`` > 0 the view is also scaled down
    (focal length and principal point) until its longer side is at most that many pixels."""
    import dataclasses

    faces, _ = model._bindings()
    pix, _ = camera.project(vertices[torch.unique(faces)])
    lo = pix[0].amin(0).floor() - margin
    hi = pix[0].amax(0).ceil() + margin
    k = 1.0 if max_size <= 0 else min(1.0, max_size / float((hi - lo).max()))
    K = camera.K.clone()
    K[0, :2, :2] *= k
    K[0, 0, 2] = k * (K[0, 0, 2] - lo[0])
    K[0, 1, 2] = k * (K[0, 1, 2] - lo[1])
    size = (k * (hi - lo)).ceil().long()
    return dataclasses.replace(camera, K=K, width=size[:1].clone(), height=size[1:].clone())


def novel_camera(
    model: SplatHead,
    vertices: Tensor,
    camera: Cameras,
    drive: Drive,
    generator: torch.Generator,
    max_yaw_deg: float,
    max_pitch_deg: float,
    max_size: int = 0,
) -> Cameras:
    """``camera`` (one, e.g. the step's training camera) orbited about the head at timestep 0 of ``drive`` (its
    mesh posed at ``vertices`` [V, 3]) by a yaw uniform in ±``max_yaw_deg`` (about the head's up axis) and a
    pitch uniform in ±``max_pitch_deg``, both drawn from ``generator``, its image cut to the head and at most
    ``max_size`` pixels on its longer side (:func:`cropped_to_head`)."""
    u = torch.rand(2, generator=generator).tolist()
    d = drive[:1].to(model.neutral.device, torch.float32)
    centre = d.translation[0].cpu()
    up = axis_angle_to_matrix(d.rotation[0].double().cpu()) @ torch.tensor(
        [0.0, 1.0, 0.0], dtype=torch.float64
    )
    cam = orbited(camera.to("cpu"), centre, up, (2 * u[0] - 1) * max_yaw_deg, (2 * u[1] - 1) * max_pitch_deg)
    return cropped_to_head(model, vertices, cam.to(model.neutral.device, torch.float32), max_size=max_size)


def silhouette_l1(model: SplatHead, vertices: Tensor, camera: Cameras, alpha: Tensor) -> Tensor:
    """Mean absolute difference between ``alpha`` [H, W] (the Gaussians', seen by ``camera``, one) and the
    coverage of the mesh posed at ``vertices`` [V, 3] there (:func:`mesh_coverage`)."""
    return (alpha - mesh_coverage(model, vertices, camera)).abs().mean()


def novel_silhouette_loss(
    model: SplatHead,
    camera: Cameras,
    drive: Drive,
    generator: torch.Generator,
    max_yaw_deg: float,
    max_pitch_deg: float,
    max_size: int = 0,
) -> Tensor:
    """:func:`silhouette_l1` from a :func:`novel_camera` at timestep 0 of ``drive`` (the Gaussians posed and
    rendered for it alone; training takes its alpha from the step's render:
    ``SplatHead.render_views(alpha_cameras=...)``)."""
    d = drive[:1].to(model.neutral.device, torch.float32)
    with torch.no_grad():
        verts = model.posed_vertices(d)[0]
    cam = novel_camera(model, verts, camera, d, generator, max_yaw_deg, max_pitch_deg, max_size)
    _, metas = model.render_views(cam, d, torch.ones(3), alpha_cameras=cam)
    return silhouette_l1(model, verts, cam, metas[0]["alpha_views"][0])
