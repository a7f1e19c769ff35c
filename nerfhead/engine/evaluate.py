"""Held-out evaluation of a trained avatar: PSNR / SSIM per camera and per timestep, and a picture grid.

``evaluate_avatar`` renders every (camera, timestep) frame of the chosen cameras and compares it with the
capture's image composited over the background with its mask (when the capture has masks), exactly as in
training; with ``full_frame`` (a model that learned its camera's backdrop, e.g. a splat head fitted to a
monocular video) the avatar renders over its own background and the frames are compared as they are, and, with
masks, ``psnr_mask`` is also measured inside the mask. Runs fitted to a monocular capture record the held-out
timesteps (``test_timesteps`` in ``avatar.json``), which are the ones evaluated. :func:`grid_image` makes the
picture grid (rows: one per camera at the middle timestep; columns: ground truth | render | error x4).
:func:`nerfhead.models.run_eval.evaluate_run` does all of this for a run folder (it loads the avatar, so it
lives with the models).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nerfhead.data.capture import Capture
from nerfhead.engine.metrics import psnr, ssim
from nerfhead.engine.targets import target_image
from nerfhead.errors import InputError


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


@torch.no_grad()
def evaluate_avatar(
    model: Any,
    capture: Capture,
    cameras: list[int],
    background: Tensor,
    timesteps: list[int] | None = None,
    device: str | torch.device = "cpu",
    keep_renders_at: int | None = None,
    full_frame: bool = False,
) -> tuple[dict[str, Any], list[tuple[Tensor, Tensor]]]:
    """PSNR / SSIM of ``model`` against ``capture`` on ``cameras`` x ``timesteps`` (default: all timesteps).

    Args:
        model: an Avatar (``render(cameras, drive, background)``).
        capture: the capture with its drive.
        cameras: camera indices to evaluate.
        background: [3] background colour (as in training).
        timesteps: timesteps (default all).
        device: where to render.
        keep_renders_at: also return (ground truth, render) pairs of this timestep, one per camera.
        full_frame: render with the avatar's own background (``background`` unused) and compare with the
            images as they are; with masks, ``mean`` also holds ``psnr_mask``, the PSNR inside the masks.

    Returns:
        (metrics, pairs): metrics holds ``mean`` {psnr, ssim, frames}, ``per_camera`` {name: {psnr, ssim}} and
        ``per_timestep`` {t: {psnr, ssim}}.
    """
    if capture.drive is None:
        raise InputError(None, "the capture has no drive to evaluate with")
    ts = list(range(capture.num_timesteps)) if timesteps is None else list(timesteps)
    drive = capture.drive.to(device, torch.float32)
    cams = capture.cameras.to(device, torch.float32)
    bg = background.to(device, torch.float32)
    per_cam: dict[int, dict[str, list[float]]] = {c: {"psnr": [], "ssim": []} for c in cameras}
    per_t: dict[int, dict[str, list[float]]] = {t: {"psnr": [], "ssim": []} for t in ts}
    pairs: list[tuple[Tensor, Tensor]] = []
    mask_se, mask_n = 0.0, 0.0
    for t in ts:
        cs = [c for c in cameras if capture.frame_index(c, t) is not None]
        if not cs:
            continue
        out = model.render(cams[torch.tensor(cs)], drive[t], None if full_frame else bg)
        for k, c in enumerate(cs):
            f = capture.frame_index(c, t)
            gt, m = target_image(capture, f, bg.cpu(), composite=not full_frame)  # type: ignore[arg-type]
            gt = gt.to(device)
            pred = out.rgb[k].clamp(0, 1)
            if full_frame and m is not None:
                m = m.to(device)
                mask_se += float((((pred - gt) ** 2) * m).sum())
                mask_n += float(m.sum()) * 3
            p, s = psnr(pred, gt), ssim(pred, gt)
            per_cam[c]["psnr"].append(p)
            per_cam[c]["ssim"].append(s)
            per_t[t]["psnr"].append(p)
            per_t[t]["ssim"].append(s)
            if keep_renders_at == t:
                pairs.append((gt.cpu(), pred.cpu()))
    names = capture.cameras.names
    all_p = [v for d in per_cam.values() for v in d["psnr"]]
    all_s = [v for d in per_cam.values() for v in d["ssim"]]
    mean: dict[str, Any] = {"psnr": _mean(all_p), "ssim": _mean(all_s), "frames": len(all_p)}
    if mask_n > 0:  # pooled over the masked pixels of every frame
        mean["psnr_mask"] = -10.0 * math.log10(max(mask_se / mask_n, 1e-20))
    metrics = {
        "mean": mean,
        "per_camera": {
            (names[c] if names else str(c)): {"psnr": _mean(d["psnr"]), "ssim": _mean(d["ssim"])}
            for c, d in per_cam.items()
            if d["psnr"]
        },
        "per_timestep": {
            str(t): {"psnr": _mean(d["psnr"]), "ssim": _mean(d["ssim"])}
            for t, d in per_t.items()
            if d["psnr"]
        },
    }
    return metrics, pairs


def grid_image(pairs: list[tuple[Tensor, Tensor]], error_gain: float = 4.0) -> Tensor:
    """Rows of ground truth | render | error (mean absolute error x ``error_gain``, grey). Returns [H, W, 3]."""
    rows = []
    for gt, pred in pairs:
        err = ((gt - pred).abs().mean(-1, keepdim=True) * error_gain).clamp(0, 1).expand_as(gt)
        rows.append(torch.cat([gt, pred, err], dim=1))
    return torch.cat(rows, dim=0)


# ------------------------------------------------------------------------------------- lip sync of renders

LIPS_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409)
"""MediaPipe Face Mesh outer-lip contour (20 points)."""
LIPS_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415)
"""MediaPipe Face Mesh inner-lip contour (20 points)."""
LIPS = LIPS_OUTER + LIPS_INNER
INNER_LIP_PAIR = (13, 14)
"""Mid points of the upper and lower inner lip: their distance is the inner-lip gap."""


def lip_distance(real: np.ndarray, other: np.ndarray, part: tuple[int, ...] = LIPS) -> np.ndarray:
    """Per-frame landmark distance (LMD) of the lips: the mean Euclidean distance (pixels) between the 40 lip
    landmarks of two [N, P, 2] Face Mesh point sets, each frame's set centred on its own mean (as the
    talking-head papers report it). [N] (NaN where either set is missing). ``part``: average over these
    landmarks only (e.g. ``LIPS_INNER``; the centring stays that of all 40)."""
    a, b = real[:, LIPS], other[:, LIPS]
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    keep = [LIPS.index(i) for i in part]
    return np.linalg.norm(a[:, keep] - b[:, keep], axis=-1).mean(1)


def inner_lip_gap(points: np.ndarray) -> np.ndarray:
    """[N] distance (pixels) between the inner upper and lower lip mid points of [N, P, 2] Face Mesh points."""
    return np.linalg.norm(points[:, INNER_LIP_PAIR[0]] - points[:, INNER_LIP_PAIR[1]], axis=-1)


def lip_sync_scores(real: np.ndarray, render: np.ndarray) -> dict[str, Any]:
    """LMD (mean over the frames where both faces were found; also over the outer and the inner contour
    alone), the inner-lip gap ratio (mean render gap / mean real gap over those frames), the frames used and
    the per-frame LMD (NaN where a face is missing), of renders against the real frames ([N, P, 2] each)."""
    ok = np.isfinite(real).all((1, 2)) & np.isfinite(render).all((1, 2))
    per_frame = [float(x) for x in lip_distance(real, render)]
    if not ok.any():
        nan = float("nan")
        return {"lmd": nan, "lmd_outer": nan, "lmd_inner": nan, "gap_ratio": nan, "gap_px": nan, "frames": 0}
    gap_real, gap = float(inner_lip_gap(real[ok]).mean()), float(inner_lip_gap(render[ok]).mean())
    return {
        "lmd": float(lip_distance(real[ok], render[ok]).mean()),
        "lmd_outer": float(lip_distance(real[ok], render[ok], LIPS_OUTER).mean()),
        "lmd_inner": float(lip_distance(real[ok], render[ok], LIPS_INNER).mean()),
        "gap_ratio": gap / gap_real if gap_real > 0 else float("nan"),
        "gap_px": gap,
        "frames": int(ok.sum()),
        "lmd_per_frame": per_frame,
    }


def face_points(images: list[np.ndarray] | list[Tensor]) -> np.ndarray:
    """Face Mesh points [N, 478, 2] (pixels) of each image (NaN where no face is found), each image on its own
    (static mode: a render and a real frame are measured alike)."""
    from nerfhead.track.landmarks import FaceMeshDetector, LandmarkConfig

    out = []
    with FaceMeshDetector(LandmarkConfig(static=True)) as det:
        for img in images:
            a = img.detach().cpu().numpy() if isinstance(img, Tensor) else np.asarray(img)
            p = det(a)
            out.append(np.full((det.num_points, 2), np.nan, np.float32) if p is None else p)
    return np.stack(out)
