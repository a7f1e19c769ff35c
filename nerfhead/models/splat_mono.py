"""The monocular priors of the splat fit: what one fixed view cannot constrain, held by the surface.

A monocular capture shows each triangle from one side at most. :class:`SurfaceConfig` keeps the Gaussians thin,
opaque discs on their triangles; :func:`projected_colours` gives every triangle the colour the training views show
it (or its mirror image's) and how well they show it; :func:`colour_prior_loss` holds the Gaussians the views barely
saw to that colour and opaque. :class:`nerfhead.models.splat_train.SplatFit` applies them on monocular splits only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from nerfhead.models.splat_head import INTERIOR_COLOURS, SplatHead
from nerfhead.ops.rasterize_mesh import rasterize_visibility
from nerfhead.parametric.ict import PART_ID
from nerfhead.splats.binding import triangle_frames
from nerfhead.splats.gaussians import sh0_to_rgb

if TYPE_CHECKING:
    from nerfhead.data.capture import Capture
    from nerfhead.models.splat_train import SplatFit


@dataclass(frozen=True)
class SurfaceConfig:
    """Monocular captures: the Gaussians stay thin, opaque discs on their triangles (GaussianAvatars-style bounds,
    enforced by projection after every optimiser step), small enough at the outline, with colours that change
    only as far as the views show them, so what one view fits is the surface other views see. Multi-view
    captures are not affected (BENCHMARKS.md, issue 14: the monocular fit seen from the 16-camera rig)."""

    enabled: bool = True
    """Apply everything below (monocular captures only); off: the Gaussians are free as on a rig."""
    max_offset: float = 0.1
    """Largest distance of a local mean from its triangle's plane (triangle units)."""
    max_normal_scale: float = 0.05
    """Largest scale along the triangle's normal (triangle units); the rotation turns about the normal only."""
    max_scale: float = 1.0
    """Largest in-plane scale (triangle units)."""
    min_scale: float = 0.0
    """Smallest in-plane scale of a skin Gaussian (triangle units, shared as ``max_scale``; the init scale is
    0.5); 0: none. Without it the Gaussians the video shows outside the mask (the neck below a tracked mask's
    lower edge, the ear's rim where the wall band cut the mask) shrink to dots, since opacity is held: dotted
    and see-through from the side. Measured (BENCHMARKS.md, issue 14, session 8): 0.4 takes a GRID orbit's
    see-through share at ±35° from 12-14% to 8-10%, but the neck stays dotted (bigger dots) and swiz3n's colour
    outliers at -35° rose to 0.54% in a default fit, so it stays off."""
    eps2d: float = 0.1
    """The model's low-pass filter (``SplatHeadConfig.eps2d``, pixels^2; 0.3 elsewhere): a smaller one keeps
    the silhouette of Gaussians seen edge-on from views the fit never saw as sharp as the image's (a 0.3 px^2
    blur makes every outline about a pixel wider, which one view can only hide at its own outline)."""
    seen_colour_steps: bool = True
    """Scale each Gaussian's colour step by how well the training views saw its triangle (the colour prior's
    confidence, the largest squared cosine of a view ray on its normal): a triangle the video sees edge-on
    or not at all keeps its projected (or mirrored) colour instead of learning the background at the
    outline, which other views show as pale and red streaks."""
    opacity_weight: float = 1.0
    """Weight of the skin Gaussians' mean transparency (``1 - opacity``; not the mouth interior's), so the
    surface is opaque from every side instead of faint layers that only add up from the fitted view."""
    seen_colour_residual: bool = True
    """Scale the deformation network's colour residual of each Gaussian by the same confidence
    (``SplatHead.colour_residual_gain``, stored in the run): the residual comes from a hash grid whose cells
    the unseen neck, ears and scalp share with seen skin, so unconstrained it paints them in whatever
    colours the seen skin's expressions needed (the dotted neck and ear speckles of a ±35° orbit)."""
    unseen_colour_diffusion: int = 500
    """Steps of diffusion over the mesh that colour the triangles no training view saw from their seen
    neighbours (:func:`projected_colours`), starting from the mirror rule; 0: the mirror rule alone. The mirror
    rule gives each unseen triangle the colour of whichever seen triangle lies nearest its mirror image, a
    patchwork of pale, pink and wall-tinted pieces behind the ears and under the chin from other views."""
    large_triangle_ratio: float = 2.0
    """Triangles larger than this multiple of the median skin triangle carry several smaller Gaussians
    (``SplatHeadConfig.large_triangle_ratio``), so the scalp's silhouette is as sharp as the face's."""
    novel_silhouette_weight: float = 1.0
    """Weight of the silhouette the video never shows (:func:`nerfhead.models.splat_silhouette.novel_silhouette_loss`):
    each step the Gaussians' alpha from the step's camera orbited about the head by a random angle is held
    to the posed mesh's coverage there, so the outline does not spill past the mesh from the side; 0: off."""
    novel_silhouette_every: int = 2
    """Draw that view on every this-many-th step only, at this many times the weight (the same pull on the
    outline over a fit; the alpha render costs about as much as the step's own render, so on every step it
    made a GRID step about 1.3x as slow and default fits stopped at the budget short of their steps)."""
    novel_max_yaw_deg: float = 60.0
    """Largest yaw of those views about the head's up axis (degrees, either side)."""
    novel_max_pitch_deg: float = 25.0
    """Largest pitch of those views (degrees, up or down)."""
    novel_max_size: int = 160
    """Those views are cut to the head and scaled down until their longer side is at most this many pixels
    (their cost then does not grow with the capture's resolution; 0: the capture's pixel size)."""


@torch.no_grad()
def diffuse_colours(faces: Tensor, colour: Tensor, known: Tensor, steps: int) -> Tensor:
    """[U, 3] ``colour`` of the triangles ``faces`` [U, 3] where ``known`` [U] bool, and elsewhere ``steps``
    Jacobi steps of diffusion from them over the mesh (each unknown triangle takes the mean of its corners,
    a corner the mean of the triangles around it), starting from the given colours: harmonic interpolation
    of the known colours into the unknown regions as ``steps`` grows; regions no known triangle reaches keep
    their start."""
    U = int(faces.shape[0])
    if steps <= 0 or U == 0 or bool(known.all()):
        return colour
    verts, corner = torch.unique(faces.reshape(-1), return_inverse=True)
    rows = torch.arange(U, device=faces.device).repeat_interleave(3)
    inc = torch.sparse_coo_tensor(
        torch.stack([rows, corner]),
        torch.ones(3 * U, device=faces.device),
        (U, int(verts.shape[0])),
        check_invariants=False,  # built from valid indices above
    ).coalesce()
    inc_t = inc.t().coalesce()
    deg = torch.sparse.sum(inc_t, 1).to_dense().clamp_min(1)[:, None]
    x = colour.clone()
    for _ in range(steps):
        y = torch.sparse.mm(inc, torch.sparse.mm(inc_t, x) / deg) / 3.0
        x = torch.where(known[:, None], colour, y)
    return x


@torch.no_grad()
def projected_colours(fit: SplatFit, capture: Capture, max_frames: int = 24) -> tuple[Tensor, Tensor]:
    """Each mesh triangle's colour as the training frames show it (GaussianAvatars-style colour init from the
    views, with visibility), and how well they show it.

    For up to ``max_frames`` training frames the posed mesh (the triangles that carry Gaussians) is
    z-buffered; a triangle is seen in a frame when its centroid passes the depth test and falls inside the
    mask (without the wall at its edge: ``monocular_wall_band``) eroded by 2 pixels (so the wall at the
    silhouette is never sampled). Its colour is the mean of the
    frames' pixels at the centroid, weighted by the squared cosine between the normal and the view ray.
    Triangles no frame saw take the colour of the seen triangle nearest to their mirror image (x -> -x on
    the neutral: the other cheek, the other ear), which is the nearest seen one when the mirror is unseen too;
    then, with the surface prior, ``SurfaceConfig.unseen_colour_diffusion`` steps of diffusion over the skin
    (:func:`diffuse_colours`) smooth them into their seen neighbours' colours (the mouth interior is kept out).

    Returns:
        (colour [F, 3] in [0, 1], confidence [F] in [0, 1]: the largest squared cosine over the frames, 0 for
        unseen triangles, 1 for triangles without Gaussians and the mouth interior, which keep their own).
    """
    model = fit.model
    dev = fit.device
    faces = model.faces.to(dev)
    F = int(faces.shape[0])
    used = torch.unique(model.splats.binding).to(dev)
    acc = torch.zeros(F, 3, device=dev)
    wsum = torch.zeros(F, device=dev)
    conf = torch.zeros(F, device=dev)
    for c, t in fit.training_views(max_frames):
        cam = fit.cameras[c]
        verts = model.posed_vertices(fit.drive[t])[0]  # [V, 3]
        fr = triangle_frames(verts[None], faces[used])
        cen, normal = fr.centroid[0], fr.rotation[0][:, :, 2]
        pix, z = cam.project(verts)
        w, h = int(cam.width[0]), int(cam.height[0])
        _, depth = rasterize_visibility(torch.cat([pix, z[..., None]], -1), faces[used], w, h)
        cpix, cz = cam.project(cen)
        cpix, cz = cpix[0], cz[0]
        ix, iy = cpix[:, 0].floor().long(), cpix[:, 1].floor().long()
        inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h) & (cz > 0)
        ix, iy = ix.clamp(0, w - 1), iy.clamp(0, h - 1)
        d = depth[0][iy, ix]
        fx = float(cam.K[0, 0, 0])
        seen = inside & (d > 0) & (cz <= d + 0.003 + 2.0 * d / fx)
        img, mask = fit.target(capture.frame_index(c, t))  # type: ignore[arg-type]
        if mask is not None:
            m = mask.reshape(1, 1, h, w).float()
            m = -torch.nn.functional.max_pool2d(-m, 5, stride=1, padding=2)  # erode by 2 px
            seen = seen & (m[0, 0][iy, ix] > 0.5)
        ray = cam.centers[0] - cen
        cos = (normal * ray).sum(-1).abs() / ray.norm(dim=-1).clamp_min(1e-9)
        wt = torch.where(seen, cos.square(), torch.zeros_like(cos))
        acc.index_add_(0, used, wt[:, None] * img[iy, ix])
        wsum.index_add_(0, used, wt)
        conf[used] = torch.maximum(conf[used], wt)
    colour = torch.full((F, 3), 0.5, device=dev)
    ok = wsum > 1e-4
    colour[ok] = (acc[ok] / wsum[ok, None]).clamp(0, 1)
    # unseen triangles: the seen triangle nearest to their mirror image on the neutral
    cen0 = model.neutral.to(dev)[faces].mean(1)
    seen_ids = ok.nonzero()[:, 0]
    unseen = used[~ok[used]]
    if len(seen_ids) and len(unseen):
        mirror = cen0[unseen] * torch.tensor([-1.0, 1.0, 1.0], device=dev)
        near = torch.cat([torch.cdist(q, cen0[seen_ids]).argmin(1) for q in mirror.split(2048)])
        colour[unseen] = colour[seen_ids[near]]
    inner = torch.tensor([PART_ID[p] for p in INTERIOR_COLOURS], device=dev)
    steps = fit.surface.unseen_colour_diffusion if fit.surface is not None else 0
    if steps > 0 and len(unseen):  # the skin's unseen triangles smoothed into their seen neighbours
        skin = used[~torch.isin(model.ict.face_part.to(dev)[used], inner)]
        colour[skin] = diffuse_colours(faces[skin], colour[skin], ok[skin], steps)
    keep = torch.ones(F, dtype=torch.bool, device=dev)
    keep[used] = False
    keep |= torch.isin(model.ict.face_part.to(dev), inner)
    conf[keep] = 1.0
    return colour, conf.clamp(0, 1)


def colour_prior_loss(
    model: SplatHead, colour: Tensor, conf: Tensor, colour_weight: float, opacity_weight: float
) -> Tensor:
    """The colour prior (``SplatLossConfig.colour_prior_weight``): each Gaussian's squared distance from its
    triangle's projected ``colour``, weighted by ``1 - conf``; plus (``unseen_opacity_weight``) the transparency
    of the shell's Gaussians (scalp, ears, neck), weighted alike, so the side the views barely show stays opaque."""
    b = model.splats.binding
    d = (sh0_to_rgb(model.splats["sh0"][:, 0]) - colour[b]).square().sum(-1)
    loss = colour_weight * ((1.0 - conf[b]) * d).mean()
    if opacity_weight > 0:
        opa = torch.sigmoid(model.splats["opacities"]).reshape(-1)
        # the outer shell other views see in silhouette (scalp, ears, neck), not the face, whose
        # lips and eyelids fold over what must stay hidden
        shell = model.ict.face_part.to(b.device)[b] == PART_ID["head_and_neck"]
        loss = loss + opacity_weight * ((1.0 - conf[b]) * shell * (1.0 - opa)).mean()
    return loss
