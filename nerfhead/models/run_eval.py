"""Evaluation of a run folder: load its avatar and capture, evaluate the held-out split
(:func:`nerfhead.engine.evaluate.evaluate_avatar`) and write ``eval.json`` and ``eval_grid.png``."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from nerfhead.atomic import atomic_write_json
from nerfhead.engine.chroma import BINS, ChromaModel, chroma_bin, head_like_bins
from nerfhead.engine.evaluate import evaluate_avatar, grid_image
from nerfhead.errors import InputError


def evaluate_run(
    run_dir: str | os.PathLike,
    capture_path: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Evaluate a run folder on its capture's held-out cameras; write ``eval.json`` and ``eval_grid.png``.

    Args:
        run_dir: folder written by ``nerfhead fit``.
        capture_path: the capture (default: the one recorded in ``avatar.json``).
        out_dir: where to write (default: ``run_dir``).
        device: where to render.

    Returns:
        The metrics written to ``eval.json`` (plus ``split``: "held-out cameras", "held-out timesteps" or
        "training cameras").
    """
    from nerfhead.data.images import save_image
    from nerfhead.data.loaders import load_capture
    from nerfhead.models.avatar import load_avatar, read_avatar_json

    run_dir = Path(run_dir)
    spec = read_avatar_json(run_dir)
    if capture_path is None:
        capture_path = spec.get("capture")
        if capture_path is None:
            raise InputError(run_dir / "avatar.json", "names no capture", hint="pass --capture")
    outside = bool((spec.get("fit_settings") or {}).get("allow_outside_paths"))  # as the fit was allowed
    capture = load_capture(capture_path, allow_outside_paths=outside)
    model = load_avatar(run_dir, device=device)
    other = spec.get("capture") is not None and _resolved(capture_path) != _resolved(spec["capture"])
    test = spec.get("test_cameras") or list(capture.test_cameras or ())
    split = "held-out cameras"
    if not test:
        test = spec.get("train_cameras") or list(range(capture.num_cameras))
        split = "training cameras"
    timesteps = spec.get("test_timesteps")
    full_frame = bool(spec.get("full_frame", False))
    if other:  # another capture of the performance (e.g. the 16-camera rig of a monocular fit): every view
        test, timesteps, full_frame = list(range(capture.num_cameras)), None, False
        split = "every camera of another capture"
    if timesteps:
        split = "held-out timesteps"
        timesteps = [int(t) for t in timesteps if 0 <= int(t) < capture.num_timesteps]
        if not timesteps:
            raise InputError(capture_path, "has none of the run's held-out timesteps")
    bg = torch.tensor(spec.get("background", [1.0, 1.0, 1.0]), dtype=torch.float32)
    mid = timesteps[len(timesteps) // 2] if timesteps else capture.num_timesteps // 2
    metrics, pairs = evaluate_avatar(
        model,
        capture,
        list(test),
        bg,
        timesteps=timesteps or None,
        device=device,
        keep_renders_at=mid,
        full_frame=full_frame,
    )
    metrics = {"split": split, "capture": str(capture_path), **metrics}
    if other:
        metrics.update(per_angle(capture, metrics["per_camera"]))
    if timesteps:  # which frames: the run's policy (speaking blocks or the tail) and the timesteps themselves
        metrics["split_policy"] = spec.get("split_policy", "tail")
        metrics["test_timesteps"] = timesteps
    out = Path(out_dir) if out_dir is not None else run_dir
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "eval.json", metrics)
    if pairs:
        save_image(out / "eval_grid.png", grid_image(pairs))
    return metrics


def _resolved(p: str | os.PathLike) -> Path:
    return Path(p).expanduser().resolve()


ANGLES_DEG = (-45, -30, -15, 0, 15, 30, 45)
"""Camera yaw angles reported by :func:`per_angle` (each bin ±7.5°)."""


def camera_yaw_deg(capture) -> list[float]:
    """Yaw of each camera around the head (degrees; 0 = in front of the face, + = the head's left, i.e. the
    camera at +x): the angle of the camera centre about the head's mean position, in the head's mean frame."""
    from nerfhead.geometry import axis_angle_to_matrix

    drive = capture.drive
    centre = drive.translation.double().mean(0) if drive is not None else torch.zeros(3, dtype=torch.float64)
    rot = (
        axis_angle_to_matrix(drive.rotation.double().mean(0))
        if drive is not None
        else torch.eye(3, dtype=torch.float64)
    )
    vm = capture.cameras.viewmat.double()
    R, t = vm[:, :3, :3], vm[:, :3, 3]
    eye = -(R.transpose(1, 2) @ t[..., None])[..., 0]  # camera centres (world)
    d = (eye - centre) @ rot  # into the head frame
    return [float(v) for v in torch.rad2deg(torch.atan2(d[:, 0], d[:, 2]))]


def per_angle(capture, per_camera: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Mean PSNR / SSIM of the cameras near each of :data:`ANGLES_DEG` (within 7.5°), and each camera's yaw."""
    names = capture.cameras.names or [str(c) for c in range(capture.num_cameras)]
    yaw = camera_yaw_deg(capture)
    bins: dict[str, Any] = {}
    for a in ANGLES_DEG:
        cams = [names[c] for c in range(len(yaw)) if abs(yaw[c] - a) <= 7.5 and names[c] in per_camera]
        if cams:
            bins[str(a)] = {
                "psnr": sum(per_camera[n]["psnr"] for n in cams) / len(cams),
                "ssim": sum(per_camera[n]["ssim"] for n in cams) / len(cams),
                "cameras": cams,
            }
    return {"per_angle": bins, "camera_yaw_deg": {names[c]: round(y, 2) for c, y in enumerate(yaw)}}


@torch.no_grad()
def evaluate_lipsync(
    run_dir: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    driver: str = "auto",
    calibrate: bool = True,
    normalise: bool = True,
    lag: bool = True,
) -> dict[str, Any]:
    """Lip sync of renders on a monocular run's held-out timesteps (speaking blocks by default).

    At the capture's own camera and tracked head pose, renders every held-out timestep (a) with the tracked
    drive and (b) with the speech drive that ``nerfhead drive RUN --audio CAPTURE_AUDIO --pose tracked`` makes
    (the speech policy, calibrated on the run's training timesteps only); finds MediaPipe Face Mesh points on
    the real frames and on both renders; reports LMD and the inner-lip gap ratio (render / real) of each, and
    of a frozen mouth (the real frame of the first training timestep, repeated). Writes ``eval_lipsync.json``
    and ``lipsync.png`` (real | tracked | speech at the held-out frame with the widest real mouth).

    Raises:
        InputError: the run has no held-out timesteps, or its capture no audio or drive.
    """
    import numpy as np

    from nerfhead.audio.speech import CalibrationConfig, Speech, SpeechConfig
    from nerfhead.data.images import save_image
    from nerfhead.data.loaders import load_capture
    from nerfhead.engine.evaluate import face_points, inner_lip_gap, lip_sync_scores
    from nerfhead.engine.targets import target_image
    from nerfhead.media.audio import load_audio
    from nerfhead.models.avatar import load_avatar, read_avatar_json

    run_dir = Path(run_dir)
    spec = read_avatar_json(run_dir)
    if spec.get("capture") is None:
        raise InputError(run_dir / "avatar.json", "names no capture")
    capture = load_capture(spec["capture"])
    test = [int(t) for t in spec.get("test_timesteps") or []]
    train = [int(t) for t in spec.get("train_timesteps") or []]
    if not test or not train:
        raise InputError(run_dir / "avatar.json", "has no held-out timesteps (a monocular fit records them)")
    if capture.audio_path is None or capture.drive is None:
        raise InputError(spec["capture"], "needs audio and a tracked drive for a lip-sync evaluation")
    model = load_avatar(run_dir, device=device)
    full = bool(spec.get("full_frame", False))
    bg = torch.tensor(spec.get("background", [1.0, 1.0, 1.0]), dtype=torch.float32, device=device)
    cams = capture.cameras.to(device, torch.float32)
    cfg = SpeechConfig(
        driver=driver,  # type: ignore[arg-type]
        pose="tracked",
        calibration=CalibrationConfig.of(calibrate, lag),
        normalise=normalise,
    )
    speech = Speech.for_run(run_dir, cfg)
    wave, sr = load_audio(capture.audio_path, 16000)
    fps = float(capture.drive.fps)
    said = speech.drive(wave, sr, fps)
    cal = speech.calibration()
    stamps = capture.timestamps.double() - float(capture.audio_offset)
    frame_of = [min(max(round(float(stamps[t]) * fps), 0), len(said) - 1) for t in test]
    tracked = capture.drive.to(device, torch.float32)
    said = said.to(device, torch.float32)

    def frame_and_camera(t: int) -> tuple[int, int]:
        f = capture.frames_at(t)[0]
        return f, capture.frames[f].camera

    def render(c: int, d) -> torch.Tensor:
        return model.render(cams[c], d, None if full else bg).rgb[0].clamp(0, 1).cpu()

    real, r_track, r_speech = [], [], []
    for t, j in zip(test, frame_of, strict=True):
        f, c = frame_and_camera(t)
        real.append(target_image(capture, f, bg.cpu(), composite=not full)[0])
        r_track.append(render(c, tracked[t]))
        r_speech.append(render(c, said[j]))
    frozen_f, _ = frame_and_camera(train[0])
    frozen_img = target_image(capture, frozen_f, bg.cpu(), composite=not full)[0]
    pts = face_points([*real, *r_track, *r_speech, frozen_img])
    n = len(test)
    p_real, p_track, p_speech = pts[:n], pts[n : 2 * n], pts[2 * n : 3 * n]
    p_frozen = np.repeat(pts[3 * n :], n, axis=0)
    report: dict[str, Any] = {
        "run": str(run_dir),
        "capture": str(spec["capture"]),
        "split_policy": spec.get("split_policy", "tail"),
        "timesteps": test,
        "driver": speech.driver_name,
        "calibrated": cal is not None,
        "lag_s": cal.lag_s if cal is not None else 0.0,
        "real_gap_px": float(np.nanmean(inner_lip_gap(p_real)))
        if np.isfinite(p_real).any()
        else float("nan"),
        "faces_found": {
            "real": int(np.isfinite(p_real).all((1, 2)).sum()),
            "tracked": int(np.isfinite(p_track).all((1, 2)).sum()),
            "speech": int(np.isfinite(p_speech).all((1, 2)).sum()),
        },
        "tracked": lip_sync_scores(p_real, p_track),
        "speech": lip_sync_scores(p_real, p_speech),
        "frozen": lip_sync_scores(p_real, p_frozen),
    }
    tr, sp = report["tracked"]["lmd"], report["speech"]["lmd"]
    report["speech_over_tracked_lmd"] = sp / tr if tr > 0 else float("nan")
    out = Path(out_dir) if out_dir is not None else run_dir
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "eval_lipsync.json", report)
    gaps = inner_lip_gap(p_real)
    k = int(np.nanargmax(gaps)) if np.isfinite(gaps).any() else 0
    save_image(out / "lipsync.png", torch.cat([real[k], r_track[k], r_speech[k]], dim=1))
    return report


def head_reference(
    views: list[tuple[Tensor, Tensor, Tensor]],
    core_px: int = 6,
    wall_px: int = 4,
    share: float = 0.999,
    bins: int = BINS,
) -> tuple[ChromaModel, float]:
    """The colour-outlier reference of a real capture: its head pixels without the backdrop's colours.

    A tracked mask's edge takes in some wall, so the head pixels (inside the mask and under the avatar) are
    filtered by colour: the **head** chroma density comes from the mask eroded by ``core_px`` pixels (no wall
    there), the **backdrop** density from the pixels farther than ``wall_px`` from the mask (wall, torso,
    hair the mask left out); both are normalised and smoothed over the 3x3 neighbouring bins. A head pixel
    enters the reference only when the head density of its chroma bin is at least the backdrop's, so the
    wall's colours never do (and a render showing them on the head counts them as outliers), while the head's
    own edge colours (ears, hairline) stay in (:mod:`nerfhead.engine.chroma`).

    Args:
        views: (image [H, W, 3] in [0, 1], mask [H, W] bool, cover [H, W] bool: the avatar's head at that view).
        core_px: erosion of the mask for the head density.
        wall_px: distance from the mask of the backdrop pixels.
        share: highest-density share of :class:`ChromaModel`.
        bins: histogram bins per chroma axis.

    Returns:
        (the :class:`ChromaModel` of the kept head pixels, the share of head pixels left out as backdrop-like).
    """
    head_like = head_like_bins(((img, mask) for img, mask, _ in views), core_px, wall_px, bins)
    pix = torch.cat([img[mask & cover] for img, mask, cover in views])
    keep = head_like[chroma_bin(pix, bins)]
    left_out = 1.0 - float(keep.double().mean()) if len(pix) else 0.0
    return ChromaModel(pix[keep], share, bins), left_out


def orbit_camera(cameras, index: int, centre: Tensor, axis: Tensor, degrees: float):
    """Camera ``index`` of ``cameras`` moved on a circle about ``centre`` around ``axis`` (world) by ``degrees``
    (it keeps looking at the head the same way)."""
    from nerfhead.geometry import axis_angle_to_matrix

    R = axis_angle_to_matrix(-torch.deg2rad(torch.tensor(degrees, dtype=torch.float64)) * axis.double())
    M = torch.eye(4, dtype=torch.float64)
    M[:3, :3] = R
    M[:3, 3] = centre.double() - R @ centre.double()
    cam = cameras[index]
    return dataclasses.replace(cam, viewmat=(cam.viewmat.double() @ M).to(cam.viewmat.dtype))


@torch.no_grad()
def evaluate_orbit(
    run_dir: str | os.PathLike,
    angles: tuple[float, ...] = (-35.0, 0.0, 35.0),
    n_timesteps: int = 4,
    out_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Colour outliers of a monocular avatar seen from novel views (no ground truth needed).

    The capture's camera orbits the head by each of ``angles`` (degrees, about the head's up axis) at
    ``n_timesteps`` training timesteps spread over the fit; head pixels are those the avatar covers (alpha >
    0.5, colour un-premultiplied). Their **colour-outlier share** is the share whose chroma (Cb, Cr) lies
    outside the 99.9% highest-density region (:class:`ChromaModel`) of the training frames' head pixels without
    the backdrop's colours (:func:`head_reference`: real pixels inside the mask and under the avatar's head at
    the capture's camera, where their chroma is at least as frequent inside the eroded mask as outside the
    mask): 0.1% for pixels like the video's head, more for speckles or the wall's colour stuck to the head.
    A splat head also gets its **see-through share** per angle: the share of the pixels its posed mesh covers
    whole (a pixel inside the outline) where the render's alpha is below 0.5 (:func:`see_through`: holes that
    show the background, e.g. discs shrunk to dots, which the colour measure cannot see).
    Writes ``eval_orbit.json`` and ``orbit.png`` (one row per timestep: each angle, with outliers in magenta
    and holes in cyan below).
    """
    from nerfhead.data.images import save_image
    from nerfhead.data.loaders import load_capture
    from nerfhead.geometry import axis_angle_to_matrix
    from nerfhead.models.avatar import load_avatar, read_avatar_json
    from nerfhead.models.splat_head import SplatHead
    from nerfhead.models.splat_silhouette import see_through

    run_dir = Path(run_dir)
    spec = read_avatar_json(run_dir)
    if spec.get("capture") is None:
        raise InputError(run_dir / "avatar.json", "names no capture")
    capture = load_capture(spec["capture"])
    if capture.drive is None or not capture.has_masks:
        raise InputError(spec["capture"], "needs a drive and masks for the colour-outlier measure")
    train = [int(t) for t in spec.get("train_timesteps") or range(capture.num_timesteps)]
    ts = [
        train[round(i * (len(train) - 1) / max(n_timesteps - 1, 1))]
        for i in range(min(n_timesteps, len(train)))
    ]
    model = load_avatar(run_dir, device=device)
    drive = capture.drive.to(device, torch.float32)
    cams = capture.cameras.to(device, torch.float32)
    black = torch.zeros(3, device=device)
    # reference: the real head pixels of up to 12 training frames (inside the mask and under the avatar's
    # head) without the backdrop's colours
    views = []
    for t in [train[round(i * (len(train) - 1) / 11)] for i in range(min(12, len(train)))]:
        for f in capture.frames_at(t):
            m = capture.mask(f)
            if m is None:
                continue
            cover = model.render(cams[capture.frames[f].camera], drive[t], black).alpha[0, ..., 0].cpu()
            views.append((capture.image(f), m > 0.5, cover > 0.5))
    ref, left_out = head_reference(views)
    per_angle: dict[str, list[float]] = {str(a): [] for a in angles}
    holes_at: dict[str, list[float]] = {str(a): [] for a in angles}  # the splat head's see-through pixels
    splat = model if isinstance(model, SplatHead) else None
    rows = []
    for t in ts:
        f = capture.frames_at(t)[0]
        c = capture.frames[f].camera
        centre = drive.translation[t].double().cpu()
        axis = axis_angle_to_matrix(drive.rotation[t].double().cpu()) @ torch.tensor(
            [0.0, 1.0, 0.0], dtype=torch.float64
        )
        verts = None if splat is None else splat.posed_vertices(drive[t : t + 1])[0]
        row = []
        for a in angles:
            cam = orbit_camera(capture.cameras, c, centre, axis, a).to(device, torch.float32)
            out = model.render(cam, drive[t], black)
            rgb, alpha = out.rgb[0].clamp(0, 1).cpu(), out.alpha[0, ..., 0].cpu()
            sel = alpha > 0.5
            colour = (rgb[sel] / alpha[sel, None]).clamp(0, 1)
            per_angle[str(a)].append(ref.outside(colour))
            bad = torch.zeros_like(alpha, dtype=torch.bool)
            bad[sel] = ref.is_outlier(colour)
            marked = rgb.clone()
            marked[bad] = torch.tensor([1.0, 0.0, 1.0])
            if splat is not None and verts is not None:
                holes, interior = see_through(splat, verts, cam, out.alpha[0, ..., 0])
                holes_at[str(a)].append(float(holes.sum()) / max(int(interior.sum()), 1))
                marked[holes.cpu()] = torch.tensor([0.0, 1.0, 1.0])
            row.append(torch.cat([rgb, marked], dim=0))
        rows.append(torch.cat(row, dim=1))
    shares = {a: sum(v) / len(v) for a, v in per_angle.items()}
    novel = [v for a, v in shares.items() if float(a) != 0.0] or list(shares.values())
    report = {
        "run": str(run_dir),
        "angles_deg": list(angles),
        "timesteps": ts,
        "region_bins": int(ref.inside.sum()),
        "reference_backdrop_like_share": left_out,
        "outlier_share": shares,
        "outlier_share_max": max(novel),
        "outlier_share_mean": sum(novel) / len(novel),
    }
    if splat is not None:  # holes: the posed mesh's interior pixels where the render's alpha is below 0.5
        see = {a: sum(v) / len(v) for a, v in holes_at.items()}
        report["see_through_share"] = see
        report["see_through_share_max"] = max(v for a, v in see.items() if float(a) != 0.0 or len(see) == 1)
    out = Path(out_dir) if out_dir is not None else run_dir
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "eval_orbit.json", report)
    save_image(out / "orbit.png", torch.cat(rows, dim=0))
    return report
