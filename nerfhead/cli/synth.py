"""``nerfhead synth``: render a synthetic capture of the rigged real-scan head with ground truth."""

from __future__ import annotations

from pathlib import Path


def main(
    rig: str = "nersemble16",
    frames: int | None = None,
    res: int = 256,
    out: Path = Path("out/synth"),
    seed: int = 0,
    drive: Path | None = None,
    audio: Path | None = None,
    preview: bool = False,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
    supersample: int = 2,
) -> None:
    """Film the rigged head (ICT-FaceKit fitted to the LeePerrySmith scan) with a camera rig and write a capture
    (transforms.json, images, masks, ground-truth drive.npz) that ``nerfhead`` and nerfstudio read.

    Args:
        rig: camera rig: ``nersemble16`` (16 cameras on a frontal arc at 1 m, 12 train + 4 held out) or ``mono``
            (one hand-held camera, gently moving).
        frames: timesteps to render (default 50, or the whole drive file).
        res: image width and height in pixels.
        out: output folder (``--preview`` writes ``out/preview.png``).
        seed: seed of the built-in performance (talking, blinks, brows, smiles, head turns) and camera shake.
        drive: a drive file (.npz from ``Drive.save_npz``) to perform instead of the built-in script.
        audio: an audio file to copy into the capture (e.g. the speech the drive was tracked from).
        preview: only write a PNG sheet of expressions (neutral, jawOpen, smile, blink, ...) from two views.
        background: RGB in [0, 1] behind the head.
        supersample: anti-aliasing factor per axis (1 = hard edges).
    """
    import time

    from nerfhead.cli.checks import check_not_run_folder, check_out_dir
    from nerfhead.errors import InputError
    from nerfhead.synth import RigConfig, SynthConfig, load_drive_file, render_capture, render_preview

    check_out_dir(out, "--out")
    check_not_run_folder(out, "--out")

    cfg = SynthConfig(
        rig=RigConfig(name=rig, width=res, height=res),
        frames=50 if frames is None else frames,
        seed=seed,
        background=tuple(float(c) for c in background),  # type: ignore[arg-type]
        supersample=supersample,
    )
    cfg.check()
    if preview:
        path = render_preview(out / "preview.png", size=res, cfg=cfg)
        print(f"wrote {path}")
        return
    d = None
    if drive is not None:
        d = load_drive_file(drive)
        if frames is not None:
            if frames > len(d):
                raise InputError(drive, f"the drive has {len(d)} timesteps, fewer than --frames {frames}")
            d = d[:frames]
    t0 = time.perf_counter()
    capture = render_capture(out, cfg, drive=d, audio=audio)
    dt = time.perf_counter() - t0
    print(
        f"wrote {out / 'transforms.json'}: {capture.num_cameras} cameras x {capture.num_timesteps} timesteps "
        f"({len(capture)} images, {res}x{res}) in {dt:.1f} s"
    )
