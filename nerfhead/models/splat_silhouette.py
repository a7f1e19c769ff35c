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

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from nerfhead.data.cameras import Cameras
from nerfhead.data.drive import Drive
from nerfhead.geometry import axis_angle_to_matrix
from nerfhead.models.splat_head import SplatHead
from nerfhead.ops.rasterize_mesh import rasterize_visibility

if TYPE_CHECKING:
    from nerfhead.data.capture import Capture
    from nerfhead.models.splat_train import SplatFit


@torch.no_grad()
def silhouette_target(
    model: SplatHead,
    vertices: Tensor,
    camera: Cameras,
    exclude: Tensor | None = None,
    supersample: int = 2,
) -> tuple[Tensor, Tensor]:
    """The Gaussians' alpha a view of the mesh posed at ``vertices`` [V, 3] should show: (target [H, W], the
    share of each pixel of ``camera`` (one) that the triangles carrying Gaussians cover, z-buffered at
    ``supersample`` times the resolution per axis and box-filtered down as the synthetic captures' masks are;
    weight [H, W], the share of the pixel not taken by triangles of ``exclude`` [F] bool, whose pixels are left
    out of both: parts the capture's masks call background, e.g. a tracked video's neck below the mask's cut)."""
    s = max(1, int(supersample))
    faces, _ = model._bindings()
    pix, z = camera.project(vertices)
    w, h = int(camera.width[0]), int(camera.height[0])
    tri, _ = rasterize_visibility(torch.cat([pix * s, z[..., None]], -1), faces, s * w, s * h)
    hit = tri >= 0
    if exclude is None:
        return F.avg_pool2d(hit.float()[:, None], s)[0, 0], torch.ones(h, w, device=pix.device)
    used = torch.unique(model.splats.binding).to(tri.device)
    out = torch.zeros_like(hit)
    out[hit] = exclude.to(tri.device)[used[tri[hit].long()]]
    keep = F.avg_pool2d((~out).float()[:, None], s)[0, 0]
    inc = F.avg_pool2d((hit & ~out).float()[:, None], s)[0, 0]
    return inc / keep.clamp_min(1e-6), keep


def mesh_coverage(model: SplatHead, vertices: Tensor, camera: Cameras, supersample: int = 2) -> Tensor:
    """[H, W] share of each pixel of ``camera`` (one camera) that the triangles carrying Gaussians of the mesh
    posed at ``vertices`` [V, 3] (``model.posed_vertices``) cover (:func:`silhouette_target`'s target)."""
    return silhouette_target(model, vertices, camera, supersample=supersample)[0]


@torch.no_grad()
def masked_out_triangles(fit: SplatFit, capture: Capture, max_frames: int = 8, dilate_px: int = 2) -> Tensor:
    """[F] bool: the triangles carrying Gaussians that the training frames show mostly outside their masks
    dilated by ``dilate_px`` (e.g. a tracked video's neck below the mask's cut: the video calls it background,
    so other views must not ask for it), from up to ``max_frames`` z-buffered training frames; a triangle no
    frame shows goes with the seen triangle nearest to it on the neutral mesh."""
    model, dev = fit.model, fit.device
    faces = model.faces.to(dev)
    used = torch.unique(model.splats.binding).to(dev)
    n = int(faces.shape[0])
    seen = torch.zeros(n, device=dev)
    inside = torch.zeros(n, device=dev)
    for c, t in fit.training_views(max_frames):
        _, mask = fit.target(capture.frame_index(c, t))  # type: ignore[arg-type]
        if mask is None:
            continue
        cam = fit.cameras[c]
        w, h = int(cam.width[0]), int(cam.height[0])
        pix, z = cam.project(model.posed_vertices(fit.drive[t])[0])
        tri, _ = rasterize_visibility(torch.cat([pix, z[..., None]], -1), faces[used], w, h)
        k = 2 * dilate_px + 1
        m = F.max_pool2d(mask.reshape(1, 1, h, w).float(), k, stride=1, padding=dilate_px)[0, 0] > 0.5
        hit = tri[0] >= 0
        ids = used[tri[0][hit].long()]
        seen.index_add_(0, ids, torch.ones_like(ids, dtype=seen.dtype))
        inside.index_add_(0, ids, m[hit].to(seen.dtype))
    out = (seen > 0) & (inside < 0.5 * seen)
    # triangles no frame showed take the label of the seen triangle nearest to them on the neutral (the back
    # of a neck whose front and sides the masks cut off goes with them; the back of the scalp stays in)
    seen_ids = used[seen[used] > 0]
    unseen = used[seen[used] == 0]
    if len(seen_ids) and len(unseen) and bool(out.any()):
        cen = model.neutral.to(dev)[faces].mean(1)
        near = torch.cat([torch.cdist(q, cen[seen_ids]).argmin(1) for q in cen[unseen].split(2048)])
        out[unseen] = out[seen_ids[near]]
    return out


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


def silhouette_l1(
    model: SplatHead, vertices: Tensor, camera: Cameras, alpha: Tensor, exclude: Tensor | None = None
) -> Tensor:
    """Mean absolute difference between ``alpha`` [H, W] (the Gaussians', seen by ``camera``, one) and the
    coverage of the mesh posed at ``vertices`` [V, 3] there, without the pixels of the triangles of
    ``exclude`` [F] bool (:func:`silhouette_target`)."""
    target, weight = silhouette_target(model, vertices, camera, exclude)
    return (weight * (alpha - target).abs()).mean()


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
    return silhouette_l1(model, verts, cam, model.render(cam, d, torch.ones(3)).alpha[0, ..., 0])


@torch.no_grad()
def see_through(
    model: SplatHead, vertices: Tensor, camera: Cameras, alpha: Tensor, erode_px: int = 1
) -> tuple[Tensor, Tensor]:
    """Holes in the surface seen by ``camera`` (one): (holes [H, W] bool, interior [H, W] bool). The interior
    is the pixels that the mesh posed at ``vertices`` [V, 3] (the triangles carrying Gaussians,
    :func:`mesh_coverage`) covers whole, ``erode_px`` pixels or more inside its outline; holes are the interior
    pixels where the Gaussians' ``alpha`` [H, W] is below 0.5, showing what lies behind the head (discs the fit
    shrank to dots, gaps by the ear), which a colour measure does not count."""
    cov = mesh_coverage(model, vertices, camera)
    k = 2 * max(0, erode_px) + 1
    interior = -F.max_pool2d(-cov[None, None], k, stride=1, padding=max(0, erode_px))[0, 0] >= 1.0
    return interior & (alpha.to(cov.device) < 0.5), interior


def see_through_share(model: SplatHead, vertices: Tensor, camera: Cameras, alpha: Tensor) -> float:
    """Share of the interior pixels of the posed mesh that are holes (:func:`see_through`); 0 when the
    view shows no interior."""
    holes, interior = see_through(model, vertices, camera, alpha)
    return float(holes.sum()) / max(int(interior.sum()), 1)
