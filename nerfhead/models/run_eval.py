"""Evaluation of a run folder: load its avatar and capture, evaluate the held-out split
(:func:`nerfhead.engine.evaluate.evaluate_avatar`) and write ``eval.json`` and ``eval_grid.png``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from nerfhead.atomic import atomic_write_json
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
    capture = load_capture(capture_path)
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
