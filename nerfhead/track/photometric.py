"""Optional photometric refinement of a landmark fit: align the rendered face to the pixels, not only to the
landmarks.

Appearance model: one colour per vertex of ICT's narrow face area (no eyes, no mouth interior), estimated from
the frames themselves: every covered pixel of the current fit splats its colour onto its triangle's three
vertices with its barycentric weights, averaged over all observations (re-estimated every ``colour_every``
steps, so lighting is baked in and the colours follow the refined fit).

Each Adam step renders a random batch of observations with :func:`nerfhead.ops.rasterize_mesh` (gradients reach
the vertices through the barycentrics of covered pixels; there are no silhouette gradients) and minimises a
Huber colour error over the covered pixels, plus the landmark term of the fit (which keeps the fit from
drifting), expression sparsity and the temporal smoothness terms. Identity and the per-landmark offsets stay
as the landmark fit left them.

Measured on the rigged head's monocular rig capture (50 frames, 256 px, MediaPipe landmarks, 400 steps of 16
images, about 45 s on 2 CPU cores with the compiled rasterizer): pose error 3.9 -> 2.1-2.6 degrees (the
landmark fit inherits MediaPipe's pitch bias; pixels do not), jawOpen correlation 0.89 -> 0.97, mouthSmile
0.90 -> 0.96-0.98, mouthFunnel/Pucker 0.70 -> 0.95, eyeBlink 0.65 -> 0.75-0.93, 2D landmark error 1.54 -> 1.19
px. Off by default (``iters = 0``); more steps drift (photometric-only frames with no anchor).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nerfhead.data.drive import Drive
from nerfhead.ops.rasterize_mesh import rasterize_mesh
from nerfhead.parametric.ict import NARROW_FACE_END, PART_ID, ICTHead
from nerfhead.render.mesh import Packed, interpolate_packed, pack
from nerfhead.track.correspondence import Correspondence
from nerfhead.track.fit import (
    LandmarkModel,
    LandmarkTerm,
    Observations,
    TrackFitConfig,
    TrackFitResult,
    smoothness,
)
from nerfhead.track.projection import head_to_camera


@dataclass(frozen=True)
class PhotometricConfig:
    """Photometric refinement after the landmark fit."""

    iters: int = 0
    """Adam steps (0 = off). Each step renders ``batch`` images."""
    batch: int = 16
    """Observations rendered per step."""
    max_size: int = 256
    """Images are box-downscaled so their longer side is at most this many pixels."""
    colour_every: int = 10
    """Re-estimate the vertex colours every this many steps."""
    lr_rotation: float = 0.004
    """Adam step size of the rotation (radians)."""
    lr_translation: float = 0.0005
    """Adam step size of the translation (metres)."""
    lr_expression: float = 0.02
    """Adam step size of the expression coefficients."""
    huber: float = 0.1
    """Huber threshold of the colour error (colours in [0, 1])."""
    w_photo: float = 1.0
    """Weight of the mean colour error (x 1000)."""
    w_landmarks: float = 0.03
    """Weight of the landmark term (relative to the fit's)."""
    backend: str = "auto"
    """Rasterizer backend."""


class _FaceMesh:
    """The narrow face area of the ICT head (vertices [0, NARROW_FACE_END), face-part triangles) for a fixed
    identity: canonical vertices for expressions [B, 53] -> [B, NV, 3]."""

    def __init__(self, head: ICTHead, identity: Tensor):
        nv = NARROW_FACE_END
        keep = (head.face_part == PART_ID["face"]) & (head.faces.max(1).values < nv)
        self.faces = head.faces[keep]
        self.num_vertices = nv
        with torch.no_grad():
            self.neutral = head.canonical(None, identity.to(head.neutral))[0, :nv]
        self.basis = head.expr_basis[:, :nv].reshape(head.num_expressions, -1)

    def __call__(self, expression: Tensor) -> Tensor:
        return self.neutral[None] + (expression @ self.basis).view(-1, self.num_vertices, 3)


def _load_images(image: Callable[[int], np.ndarray], n: int, sizes: list[tuple[int, int]]) -> list[Tensor]:
    """uint8 images [h, w, 3] of the n observations at their render sizes (box-downscaled)."""
    from PIL import Image

    out = []
    for i in range(n):
        rgb = image(i)
        w, h = sizes[i]
        if (rgb.shape[1], rgb.shape[0]) != (w, h):
            rgb = np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.BOX))
        out.append(torch.from_numpy(np.ascontiguousarray(rgb)))
    return out


def refine_photometric(
    result: TrackFitResult,
    obs: Observations,
    image: Callable[[int], np.ndarray],
    head: ICTHead,
    corr: Correspondence,
    fit_config: TrackFitConfig,
    config: PhotometricConfig,
    progress: Callable[[int, int, float], None] | None = None,
    seed: int = 0,
) -> TrackFitResult:
    """Refine pose and expression of a landmark fit against the images.

    Args:
        result: the landmark fit (its cameras, identity and per-landmark offsets are kept).
        obs: the observations it was fitted to.
        image: observation index -> its uint8 RGB image [H, W, 3] at the camera's resolution.
        head: the ICT model.
        corr: the correspondence table of the fit.
        fit_config: the fit's weights (landmark robust scale, smoothness and sparsity).
        config: refinement options (``config.iters == 0`` returns ``result`` unchanged).
        progress: called as ``progress(step, total, loss)`` every step.
        seed: seed of the batch sampling.

    Returns:
        a :class:`TrackFitResult` with the refined drive and landmark reprojection errors.
    """
    if config.iters <= 0:
        return result
    dt = torch.float32
    N = len(obs)
    cams = result.cameras.to(dtype=dt)
    # per-observation render size and intrinsics, downscaled to max_size
    W0, H0 = cams.width[obs.camera], cams.height[obs.camera]
    s = (config.max_size / torch.maximum(W0, H0).to(dt)).clamp(max=1.0)
    Wr, Hr = torch.round(W0 * s).long(), torch.round(H0 * s).long()
    K = cams.K[obs.camera].clone()
    K[:, 0] *= (Wr.to(dt) / W0.to(dt))[:, None]
    K[:, 1] *= (Hr.to(dt) / H0.to(dt))[:, None]
    sizes = [(int(w), int(h)) for w, h in zip(Wr, Hr, strict=True)]
    images = _load_images(image, N, sizes)
    viewmat = cams.viewmat[obs.camera]

    face = _FaceMesh(head, result.identity)
    model = LandmarkModel(head, corr).to(dt)
    off = result.landmark_offset if result.landmark_offset is not None else torch.zeros(len(corr), 3)
    term = LandmarkTerm(obs, torch.as_tensor(corr.weight, dtype=dt))
    d = result.drive
    rotation = nn.Parameter(d.rotation.clone().to(dt))
    translation = nn.Parameter(d.translation.clone().to(dt))
    expression = nn.Parameter(d.expression.clone().to(dt))
    identity = result.identity.to(dt)

    def render(idx: list[int], verts_cam: Tensor) -> list[tuple[Packed, Tensor]]:
        """Covered pixels of the observations ``idx`` (rendered in groups of one image size) and their image
        colours [n, 3] in [0, 1]."""
        out = []
        for w, h in sorted({sizes[i] for i in idx}):
            sel = [j for j, i in enumerate(idx) if sizes[i] == (w, h)]
            Ks = K[[idx[j] for j in sel]]
            frags = rasterize_mesh(verts_cam[sel], face.faces, Ks, w, h, backend=config.backend)
            p = pack(frags)
            stack = torch.stack([images[idx[j]] for j in sel])
            out.append((p, stack[p.b, p.y, p.x].to(dt) / 255.0))
        return out

    def posed(idx: list[int]) -> Tensor:
        t = obs.timestep[idx]
        canon = face(expression[t])
        return head_to_camera(canon, rotation[t], translation[t], viewmat[idx], torch.arange(len(idx)))

    def estimate_colours() -> tuple[Tensor, Tensor]:
        acc = torch.zeros(face.num_vertices, 3)
        wsum = torch.zeros(face.num_vertices)
        with torch.no_grad():
            for a in range(0, N, config.batch):
                idx = list(range(a, min(a + config.batch, N)))
                for p, pix in render(idx, posed(idx)):
                    vid = face.faces[p.tri]
                    for k in range(3):
                        acc.index_add_(0, vid[:, k], pix * p.bary[:, k : k + 1])
                        wsum.index_add_(0, vid[:, k], p.bary[:, k])
        return acc / wsum.clamp_min(1e-6)[:, None], wsum

    opt = torch.optim.Adam(
        [
            {"params": [rotation], "lr": config.lr_rotation},
            {"params": [translation], "lr": config.lr_translation},
            {"params": [expression], "lr": config.lr_expression},
        ]
    )
    n = config.iters
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: 0.1 + 0.45 * (1 + math.cos(math.pi * min(i / n, 1.0)))
    )
    gen = torch.Generator().manual_seed(seed)
    colours, seen = estimate_colours()
    fc = fit_config
    for step in range(config.iters):
        if step and step % config.colour_every == 0:
            colours, seen = estimate_colours()
        idx = torch.randperm(N, generator=gen)[: config.batch].tolist()
        opt.zero_grad(set_to_none=True)
        photo = torch.zeros((), dtype=dt)
        count = 0
        for p, pix in render(idx, posed(idx)):
            ok = seen[face.faces[p.tri]].min(1).values > 0.5
            c = interpolate_packed(colours, face.faces, p)[ok]
            photo = photo + F.huber_loss(c, pix[ok], delta=config.huber, reduction="sum")
            count += int(ok.sum())
        photo = photo / max(count, 1) * 1000.0
        lm = term(model(expression, identity) + off, rotation, translation, cams.K, fc.robust_scale)
        loss = (
            config.w_photo * photo
            + config.w_landmarks * lm
            + fc.w_expression_l1 * expression.sum(-1).mean()
            + fc.w_expression_smooth * smoothness(expression)
            + fc.w_rotation_smooth * smoothness(rotation)
            + fc.w_translation_smooth * smoothness(translation)
        )
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            expression.clamp_(0.0, 1.0)
        if progress is not None:
            progress(step + 1, config.iters, float(loss.detach()))
    with torch.no_grad():
        reproj = term.reprojection_px(model(expression, identity) + off, rotation, translation, cams.K)
    drive = Drive(rotation.detach(), translation.detach(), expression.detach(), None, d.fps)
    loss_val = float(loss.detach()) if config.iters else math.nan
    return TrackFitResult(drive, result.identity, result.cameras, reproj, loss_val, result.landmark_offset)
