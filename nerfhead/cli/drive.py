"""``nerfhead drive``: speech in, a talking avatar out (mp4 with the audio muxed, ARKit curves, drive.npz)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import tyro


def run_drive(
    run: Path,
    audio: Path,
    out: Path,
    *,
    camera: str = "fixed",
    res: int = 256,
    fps: float = 25.0,
    device: str = "auto",
    chunk: int = 8,
    driver: str = "auto",
    pose: str = "hold",
    calibrate: bool = True,
    lag: bool = True,
    camera_transforms: Path | None = None,
) -> dict:
    """The work of ``nerfhead drive``; returns a summary (paths, frame count, seconds)."""
    import time

    import torch

    from nerfhead.audio.speech import CalibrationConfig, Speech, SpeechConfig, check_config
    from nerfhead.cli.checks import check_device, check_drive_out, check_run
    from nerfhead.errors import InputError
    from nerfhead.export.camera_path import camera_path_cameras
    from nerfhead.export.curves import write_curves_csv
    from nerfhead.export.talk import (
        constant_camera,
        fixed_camera,
        head_centre,
        render_frames,
        swinging_camera,
    )
    from nerfhead.media.audio import load_audio
    from nerfhead.media.video import write_video
    from nerfhead.models.avatar import load_avatar

    t0 = time.perf_counter()
    dev = check_device(device)
    check_run(run)
    check_drive_out(out)
    if res < 16 or res > 4096:
        raise InputError("--res", f"resolution {res} out of range [16, 4096]")
    if not fps > 0:
        raise InputError("--fps", f"fps must be positive, got {fps}")
    cfg = SpeechConfig(driver=driver, pose=pose, calibration=CalibrationConfig.of(calibrate, lag))  # type: ignore[arg-type]
    check_config(cfg)
    wave, sr = load_audio(audio)  # validates the file (one clean line on bad audio)
    avatar = load_avatar(run, device=dev)
    speech = Speech.for_run(run, cfg)
    drive = speech.drive(wave, sr, fps)
    T = len(drive)
    target = head_centre(drive)
    if camera == "fixed":
        camera_at = constant_camera(fixed_camera(target, res))
    elif camera == "orbit":
        camera_at = swinging_camera(target, res, T, fps)
    else:
        camera_at, _ = camera_path_cameras(camera, fps, camera_transforms)
    moved = drive.to(dev)

    frames = render_frames(avatar, moved, lambda i: camera_at(i).to(dev, torch.float32), chunk=chunk)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_video(frames, out, fps, audio_path=audio)
    curves = write_curves_csv(drive, out.with_name("curves.csv"))
    drive.save_npz(out.with_name("drive.npz"))
    return {
        "video": str(out),
        "curves": str(curves),
        "drive": str(out.with_name("drive.npz")),
        "frames": T,
        "driver": speech.driver_name,
        "calibrated": speech.calibration() is not None,
        "lag_s": getattr(speech.calibration(), "lag_s", 0.0),
        "pose": pose,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def main(
    run: Annotated[Path, tyro.conf.Positional],
    audio: Path,
    out: Path = Path("talk.mp4"),
    camera: str = "fixed",
    res: int = 256,
    fps: float = 25.0,
    device: str = "auto",
    driver: str = "auto",
    pose: str = "hold",
    calibrate: bool = True,
    lag: bool = True,
    camera_transforms: Path | None = None,
) -> None:
    """Render the avatar in RUN speaking AUDIO: an H.264 + AAC mp4 plus curves.csv (ARKit, Live Link Face
    layout) and drive.npz next to it.

    Args:
        run: run folder written by `nerfhead fit`.
        audio: speech (wav/flac/ogg/mp3/m4a or a video's soundtrack).
        out: mp4 to write.
        camera: fixed, orbit, or a nerfstudio camera_path.json (timed by its seconds/fps, poses slerped).
        res: image size (square) for fixed/orbit cameras.
        fps: video frame rate.
        device: auto, cpu or cuda.
        driver: speech to Drive: "network" (RUN/audio_to_drive.safetensors from `nerfhead eval-drive CAPTURE
            --save-run RUN`, else the bundled prior), "rules" (phoneme/energy viseme rules), or "auto" (network
            when one is found, else rules).
        pose: head pose: "hold" (the capture's first rotation plus the network's small rotation residual, at
            the mean position) or "tracked" (the capture's tracked head pose at each frame's time: with the
            capture's own audio and camera, the render lines up with the video).
        calibrate: map the driver's expression into the person's (regression on the capture's audio at the
            fit's training frames, the mouth kept in the subspace and range the capture used).
        lag: with calibrate, also find the audio-visual lag on the training frames (the shift within ±0.12 s
            whose predicted mouth opening correlates best with the tracked one) and read the audio that much
            later; off: lag 0.
        camera_transforms: nerfstudio dataparser_transforms.json of the run the camera path was drawn in
            (its normalised frame is mapped back to the capture's).
    """
    import json

    print(
        json.dumps(
            run_drive(
                run,
                audio,
                out,
                camera=camera,
                res=res,
                fps=fps,
                device=device,
                driver=driver,
                pose=pose,
                calibrate=calibrate,
                lag=lag,
                camera_transforms=camera_transforms,
            )
        )
    )
