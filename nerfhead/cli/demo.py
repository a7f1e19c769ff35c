"""``nerfhead demo``: the README's main job on the bundled default scene.

Synthesises the default rig capture (cached), fits a splat head on a CPU budget, drives it with bundled speech
and writes into OUT: ``run/`` (the fitted avatar, usable by ``nerfhead view|drive|export``), ``talk.mp4`` (with
the speech muxed), ``curves.csv`` and ``drive.npz``, ``avatar.ply`` (3DGS layout) and ``summary.json``.
"""

from __future__ import annotations

from pathlib import Path


def main(
    out: Path = Path("out/demo"),
    port: int = 8080,
    minutes: float = 5.0,
    audio: Path | None = None,
    refit: bool = False,
    device: str = "auto",
) -> None:
    """Run the main job on the bundled default scene and write its results into OUT.

    Args:
        out: output folder.
        port: port printed in the suggested `nerfhead view` command.
        minutes: wall-clock budget of the fit.
        audio: speech to drive the avatar with (default: the bundled LJ Speech clip).
        refit: fit again even when OUT/run already holds a finished fit.
        device: auto, cpu or cuda.
    """
    import json
    import time

    from rich.console import Console

    from nerfhead.assets import asset_path
    from nerfhead.cli.checks import check_device, check_out_dir
    from nerfhead.cli.drive import run_drive
    from nerfhead.cli.fit import run_fit
    from nerfhead.engine.checkpoint import atomic_write_json
    from nerfhead.export.ply import export_run_ply
    from nerfhead.synth.default_scene import default_capture

    check_device(device)
    check_out_dir(out, "--out")
    con = Console()
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    con.rule("[bold]nerfhead demo[/bold]: 1/4 default scene")
    capture = default_capture()
    con.print(f"capture: {capture}")
    run = out / "run"
    con.rule("2/4 fit a splat head")
    fit_json = run / "fit.json"
    if fit_json.is_file() and not refit:
        fit = json.loads(fit_json.read_text())
        con.print(f"reusing the finished fit in {run} (--refit to fit again)")
    else:
        fit = run_fit(capture, run, model="splat", preset="default", max_minutes=minutes, device=device)
    con.rule("3/4 drive it with speech")
    speech = audio or asset_path("audio/en_ljspeech_LJ050-0131.wav")
    talk = run_drive(run, speech, out / "talk.mp4", camera="fixed", res=256, device=device)
    con.rule("4/4 export")
    ply = export_run_ply(run, out / "avatar.ply")
    summary = {
        "capture": str(capture),
        "run": str(run),
        "fit": {k: fit.get(k) for k in ("steps", "seconds", "eval", "device")},
        "talk": talk,
        "ply": [str(p) for p in ply],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    atomic_write_json(out / "summary.json", summary)
    ev = fit.get("eval") or {}
    con.print(
        f"held-out PSNR {ev.get('psnr', float('nan')):.2f} dB, SSIM {ev.get('ssim', float('nan')):.4f}; "
        f"wrote {out}/talk.mp4, curves.csv, drive.npz, avatar.ply, summary.json in {summary['seconds']:.0f} s"
    )
    con.print(f"view it:  nerfhead view {run} --port {port}")
