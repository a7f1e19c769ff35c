"""Foreground masks of tracked frames: the fitted mesh's silhouette plus a person segmentation for what the
mesh does not model.

The ICT mesh covers the face, scalp, ears and neck of a bald head; it has no hair, no clothes and no shoulders.
So the mask combines two sources:

* **mesh**: the silhouette of the fitted head (opaque parts: skin, eyes, teeth), dilated by ``dilate_px``;
  exact where the fit is good, blind to hair and torso.
* **segmentation**: MediaPipe Selfie Segmentation (shipped in the ``mediapipe`` wheel), a per-pixel person
  probability. It labels hair, neck, clothes and shoulders as person alike.

Modes (``MaskConfig.mode``):

* ``"mesh"``: the mesh silhouette only. Hair is background (a bald head model); the neck is kept down to where
  ICT's neck ends; torso is background.
* ``"head"`` (default): the silhouette above the neck cut, OR the segmentation inside a head region
  (:func:`head_region`). Both are measured in the fitted head's frame, on the plane through the head centre
  facing the camera: the neck cut is ``neck_cut`` (13 cm below the head centre, about 5 cm under the chin);
  the head region is everything above ``chin_level`` (9 cm below the head centre, just under the chin) plus a
  neck strip ``neck_half_width`` (7 cm) either side of the head's axis down to the neck cut. Hair above the
  chin is foreground however wide; shoulders, collar and torso are background, and so is the mesh's neck
  below the cut. Long hair falling below the chin outside the neck strip is cut off.
* ``"person"``: silhouette OR segmentation everywhere: hair, neck, torso and shoulders are foreground.

Masks are float32 [H, W] in [0, 1] (docs/conventions.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

from nerfhead.geometry import axis_angle_to_matrix
from nerfhead.ops.rasterize_mesh import rasterize_visibility
from nerfhead.parametric.ict import ICTHead

MaskMode = Literal["mesh", "head", "person"]


@dataclass(frozen=True)
class MaskConfig:
    """How foreground masks are made."""

    mode: MaskMode = "head"
    """``mesh``: fitted mesh silhouette; ``head``: silhouette + segmentation above the neck cut (adds hair, not
    the torso); ``person``: silhouette + segmentation everywhere (hair and torso)."""
    dilate_px: int = 2
    """Grow the mesh silhouette by this many pixels (tracking error, skin beyond the mesh)."""
    threshold: float = 0.5
    """Person probability above which a pixel counts as foreground."""
    neck_cut: float = -0.13
    """Head-frame y (metres; head centre 0, chin about -0.08) below which ``head`` mode drops everything."""
    chin_level: float = -0.09
    """Head-frame y below which ``head`` mode keeps the segmentation only within ``neck_half_width``."""
    neck_half_width: float = 0.07
    """Half width (metres) of the neck strip kept between ``chin_level`` and ``neck_cut``."""


class PersonSegmenter:
    """MediaPipe Selfie Segmentation (context manager): person probability [H, W] of an RGB image."""

    def __init__(self) -> None:
        from nerfhead.track.landmarks import import_mediapipe

        mp = import_mediapipe()
        self._seg = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)

    def __enter__(self) -> PersonSegmenter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._seg.close()

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """[H, W] float32 person probability of a uint8 [H, W, 3] image."""
        res = self._seg.process(np.ascontiguousarray(rgb[..., :3]))
        if res.segmentation_mask is None:
            return np.zeros(rgb.shape[:2], np.float32)
        return np.clip(res.segmentation_mask.astype(np.float32), 0.0, 1.0)


class PosedHead(NamedTuple):
    """The posed head of a batch of frames, rasterized: what masks and the overlay are drawn from."""

    vertices: Tensor
    """[B, V, 3] world-space vertices."""
    vertices_cam: Tensor
    """[B, V, 3] camera-space vertices (OpenCV axes)."""
    triangle: Tensor
    """[B, H, W] int triangle id of the opaque head, -1 on background (``>= 0`` is the silhouette)."""
    depth: Tensor
    """[B, H, W] depth of the nearest surface, 0 on background."""


def pose_and_rasterize(
    head: ICTHead,
    expression: Tensor,
    rotation: Tensor,
    translation: Tensor,
    identity: Tensor | None,
    K: Tensor,
    viewmat: Tensor,
    width: int,
    height: int,
    backend: str = "auto",
) -> PosedHead:
    """Pose the head and rasterize its opaque triangles (visibility only).

    Args:
        head: ICT model.
        expression: [B, 53]; rotation, translation: [B, 3] (head to world); identity: [10] or None.
        K: [B, 3, 3]; viewmat: [B, 4, 4] world to camera.
        width, height: image size.
        backend: rasterizer backend.
    """
    with torch.no_grad():
        v = head(expression, rotation, translation, identity=identity).vertices
        vc = v @ viewmat[:, :3, :3].transpose(1, 2).to(v) + viewmat[:, None, :3, 3].to(v)
        faces = head.faces[head.render_face_mask]
        tri_id, depth = mesh_zbuffer(vc, faces, K.to(v), width, height, backend)
        return PosedHead(v, vc, tri_id, depth)


def mesh_zbuffer(
    verts_cam: Tensor, faces: Tensor, K: Tensor, width: int, height: int, backend: str = "auto"
) -> tuple[Tensor, Tensor]:
    """(triangle id [B, H, W], -1 on background; depth [B, H, W], 0 on background) of meshes in camera space
    ([B, V, 3], OpenCV axes) seen through ``K`` [B, 3, 3]: the visibility pass alone (no barycentrics), all that
    masks and the overlay's depth test need."""
    v = verts_cam.float()
    k = K.to(v)
    z = v[..., 2]
    zs = z.clamp_min(1e-9)
    u = k[:, 0, 0, None] * v[..., 0] / zs + k[:, 0, 2, None]
    w = k[:, 1, 1, None] * v[..., 1] / zs + k[:, 1, 2, None]
    return rasterize_visibility(torch.stack([u, w, z], -1), faces, width, height, 0.01, backend)


def dilate(mask: Tensor, px: int) -> Tensor:
    """Grow [B, H, W] bool masks by ``px`` pixels (square structuring element); only the box around what is
    set is computed."""
    if px <= 0 or not bool(mask.any()):
        return mask
    rows = torch.nonzero(mask.any(0).any(1))[:, 0]
    cols = torch.nonzero(mask.any(0).any(0))[:, 0]
    y0, y1 = max(0, int(rows[0]) - px), min(mask.shape[1], int(rows[-1]) + px + 1)
    x0, x1 = max(0, int(cols[0]) - px), min(mask.shape[2], int(cols[-1]) + px + 1)
    m = mask[:, y0:y1, x0:x1]
    for dim in (1, 2):  # the square is separable: a column then a row pass, each an OR of shifted copies
        g = m.clone()
        n = m.shape[dim]
        for d in range(1, min(px, n - 1) + 1):
            g.narrow(dim, d, n - d).logical_or_(m.narrow(dim, 0, n - d))
            g.narrow(dim, 0, n - d).logical_or_(m.narrow(dim, d, n - d))
        m = g
    out = torch.zeros_like(mask)
    out[:, y0:y1, x0:x1] = m
    return out


class HeadRegion(NamedTuple):
    """Where ``head`` mode keeps foreground ([B, H, W] bool each)."""

    segment: Tensor
    """Segmented pixels count here: above the chin level, and the neck strip down to the cut."""
    mesh: Tensor
    """Silhouette pixels count here: above the neck cut."""


def head_region(
    rotation: Tensor,
    translation: Tensor,
    K: Tensor,
    viewmat: Tensor,
    width: int,
    height: int,
    config: MaskConfig,
) -> HeadRegion:
    """Where ``head`` mode keeps the segmentation and the silhouette.

    Each pixel's ray meets the plane through the head centre facing the camera; that point, in the head frame
    (x to the subject's left, y up), must lie above ``config.neck_cut`` and, for the segmentation, below
    ``config.chin_level`` also within ``config.neck_half_width`` of the head's axis (the neck, not the shoulders).
    """
    dt = torch.float64
    R = axis_angle_to_matrix(rotation.to(dt))  # [B, 3, 3] head to world
    Vr, Vt = viewmat[:, :3, :3].to(dt), viewmat[:, :3, 3].to(dt)
    head_c = (Vr @ translation.to(dt)[..., None])[..., 0] + Vt  # head centre in camera space
    depth = head_c[:, 2].clamp_min(1e-3)
    Kd = K.to(dt)
    ys = torch.arange(height, dtype=dt) + 0.5
    xs = torch.arange(width, dtype=dt) + 0.5
    yn = (ys[None, :] - Kd[:, 1, 2, None]) / Kd[:, 1, 1, None]  # [B, H]
    xn = (xs[None, :] - Kd[:, 0, 2, None]) / Kd[:, 0, 0, None]  # [B, W]
    # camera -> world -> head: p_head = R^T (Vr^T (pc - Vt) - t), with pc = depth (xn, yn, 1) on the plane
    # z = depth: affine in (xn, yn), so each head coordinate is a row term plus a column term.
    M = R.transpose(1, 2) @ Vr.transpose(1, 2)  # [B, 3, 3]
    off = (M @ Vt[..., None])[..., 0] + (R.transpose(1, 2) @ translation.to(dt)[..., None])[..., 0]
    d = depth[:, None]

    def coord(i: int) -> Tensor:  # [B, H, W] (float32: millimetres are all that matter here)
        col = (M[:, i, 0, None] * xn * d)[:, None, :]
        row = (M[:, i, 1, None] * yn * d + M[:, i, 2, None] * d - off[:, i, None])[:, :, None]
        return row.float() + col.float()

    x, y = coord(0), coord(1)
    above = y >= config.neck_cut
    return HeadRegion(above & ((y >= config.chin_level) | (x.abs() <= config.neck_half_width)), above)


def combine(silhouette: Tensor, person: Tensor | None, keep: HeadRegion | None, config: MaskConfig) -> Tensor:
    """Final [B, H, W] float mask from the silhouette (bool), the person probability (float, or None) and the
    head region (from :func:`head_region`; needed in ``head`` mode), following ``config.mode``."""
    sil = dilate(silhouette, config.dilate_px)
    if config.mode == "mesh" or person is None:
        return sil.float()
    seg = person > config.threshold
    if config.mode == "head":
        if keep is None:
            return sil.float()
        return ((sil & keep.mesh) | (seg & keep.segment)).float()
    return (sil | seg).float()
