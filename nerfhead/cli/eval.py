"""``nerfhead eval``: held-out PSNR / SSIM of a trained avatar, per camera and per timestep."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import tyro

from nerfhead.engine.runlock import locks_run


@locks_run("run", "eval", create=False)
def main(
    run: Annotated[Path, tyro.conf.Positional],
    capture: Path | None = None,
    out: Path | None = None,
    device: str = "auto",
) -> None:
    """Render the run's held-out cameras at every timestep and compare with the capture; writes eval.json
    (mean, per camera, per timestep) and eval_grid.png (ground truth | render | error x4). A monocular run is
    scored on its held-out timesteps (speaking blocks by default). With ``--capture`` naming another capture
    of the same performance (e.g. ``nerfhead synth --rig nersemble16`` for a ``--rig mono`` fit) every camera
    is evaluated and ``per_angle`` reports PSNR by camera yaw (0, ±15, ±30, ±45 degrees).

    Args:
        run: run folder written by ``nerfhead fit``.
        capture: capture to evaluate on (default: the one the run was fitted to).
        out: folder for eval.json and eval_grid.png (default: the run folder).
        device: auto, cpu or cuda.
    """
    from nerfhead.cli.checks import check_device, check_out_dir, check_run
    from nerfhead.models.run_eval import evaluate_run

    dev = check_device(device)
    check_run(run)
    check_out_dir(run if out is None else out, "--out")
    m = evaluate_run(run, capture, out, device=dev)
    extra = {k: m[k] for k in ("per_angle", "split_policy") if k in m}
    print(json.dumps({"split": m["split"], **m["mean"], "per_camera": m["per_camera"], **extra}, indent=2))
