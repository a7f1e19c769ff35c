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
def mesh_coverage(model: SplatHead, drive: Drive, camera: Cameras, supersample: int = 2) -> Tensor:
    """[H, W] share of each pixel of ``camera`` (one camera) that the posed mesh's triangles carrying Gaussians
    cover at timestep 0 of ``drive``: z-buffered at ``supersample`` times the resolution per axis and
    box-filtered down, as the synthetic captures' masks are."""
    s = max(1, int(supersample))
    verts = model.posed_vertices(drive[:1])[0]
    faces, _ = model._bindings()
    pix, z = camera.project(verts)
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
def cropped_to_head(model: SplatHead, drive: Drive, camera: Cameras, margin: int = 4) -> Cameras:
    """``camera`` (one) with its image cut to the posed mesh's bounding box at timestep 0 of ``drive`` plus
    ``margin`` pixels (the principal point moves; the focal length and pixel size stay), so a view costs
    the head's pixels, whatever the capture's resolution."""
    import dataclasses

    pix, _ = camera.project(model.posed_vertices(drive[:1])[0])
    lo = pix[0].amin(0).floor() - margin
    hi = pix[0].amax(0).ceil() + margin
    K = camera.K.clone()
    K[0, 0, 2] -= lo[0]
    K[0, 1, 2] -= lo[1]
    size = (hi - lo).long()
    return dataclasses.replace(camera, K=K, width=size[:1].clone(), height=size[1:].clone())


def novel_camera(
    model: SplatHead,
    camera: Cameras,
    drive: Drive,
    generator: torch.Generator,
    max_yaw_deg: float,
    max_pitch_deg: float,
) -> Cameras:
    """``camera`` (one, e.g. the step's training camera) orbited about the head at timestep 0 of ``drive`` by a
    yaw uniform in ±``max_yaw_deg`` (about the head's up axis) and a pitch uniform in ±``max_pitch_deg``,
    both drawn from ``generator``, its image cut to the head (:func:`cropped_to_head`)."""
    u = torch.rand(2, generator=generator).tolist()
    d = drive[:1].to(model.neutral.device, torch.float32)
    centre = d.translation[0].cpu()
    up = axis_angle_to_matrix(d.rotation[0].double().cpu()) @ torch.tensor(
        [0.0, 1.0, 0.0], dtype=torch.float64
    )
    cam = orbited(camera.to("cpu"), centre, up, (2 * u[0] - 1) * max_yaw_deg, (2 * u[1] - 1) * max_pitch_deg)
    return cropped_to_head(model, d, cam.to(model.neutral.device, torch.float32))


def silhouette_l1(model: SplatHead, drive: Drive, camera: Cameras, alpha: Tensor) -> Tensor:
    """Mean absolute difference between ``alpha`` [H, W] (the Gaussians', seen by ``camera``, one) and the
    mesh's coverage there (:func:`mesh_coverage`) at timestep 0 of ``drive``."""
    return (alpha - mesh_coverage(model, drive[:1].to(alpha.device, torch.float32), camera)).abs().mean()


def novel_silhouette_loss(
    model: SplatHead,
    camera: Cameras,
    drive: Drive,
    generator: torch.Generator,
    max_yaw_deg: float,
    max_pitch_deg: float,
) -> Tensor:
    """:func:`silhouette_l1` from a :func:`novel_camera` (the Gaussians posed and rendered for it alone;
    training takes its alpha from the step's render: ``SplatHead.render_views(alpha_cameras=...)``)."""
    cam = novel_camera(model, camera, drive, generator, max_yaw_deg, max_pitch_deg)
    d = drive[:1].to(model.neutral.device, torch.float32)
    _, metas = model.render_views(cam, d, torch.ones(3), alpha_cameras=cam)
    return silhouette_l1(model, d, cam, metas[0]["alpha_views"][0])
