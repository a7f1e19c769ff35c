"""Rendering speed of fitted avatars (splat head, NeRF head): ms per frame and FPS at a given resolution.

    python scripts/bench_render.py --run out/demo/run                  # 512x512, the run's own device
    python scripts/bench_render.py --run RUN_A --run RUN_B --res 256 --repeats 20

Like GaussianAvatars' FPS benchmark, one frame is the model's whole ``render(cameras, drive)`` (drive → posed
Gaussians or deformed samples → image) for one camera in front of the face at one timestep; file I/O and the
first (warm-up) call are excluded. On a GPU frames are timed with CUDA events, on the CPU with the wall clock
(median of ``--repeats``). The reference in the same run is the model rendered with the pure-PyTorch twins of
every op (``backend="torch"``), at ``--ref-res`` (default: the same resolution) so the twin stays affordable.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from nerfhead.cli.checks import check_device
from nerfhead.data.cameras import Cameras
from nerfhead.data.drive import Drive
from nerfhead.models.avatar import load_avatar
from nerfhead.viewer.renderable import AvatarRenderable


def set_backend(model: torch.nn.Module, backend: str) -> None:
    """Point the model and every submodule that picks an op backend at ``backend``."""
    for m in model.modules():
        cfg = getattr(m, "cfg", None)
        if dataclasses.is_dataclass(cfg) and hasattr(cfg, "backend"):
            m.cfg = dataclasses.replace(cfg, backend=backend)  # type: ignore[assignment]
        if isinstance(getattr(m, "backend", None), str):
            m.backend = backend  # type: ignore[assignment]


def front_camera(model: Any, drive: Drive, res: int, device: torch.device) -> Cameras:
    """A camera in front of the face at the first timestep, the head filling most of a ``res`` square."""
    fr = AvatarRenderable(model, drive, device=device).framing()
    fov = math.radians(30.0)
    eye = torch.tensor(fr.eye(fov, margin=1.1))
    f = 0.5 * res / math.tan(fov / 2)
    return Cameras.from_look_at(eye[None], torch.tensor(fr.center), torch.tensor(fr.up), f, res, res)


def time_render(model: Any, cams: Cameras, drive: Drive, device: torch.device, repeats: int) -> dict:
    """Median ms per frame (CUDA events on a GPU, wall clock on the CPU) after one warm-up call."""

    def once() -> Any:
        with torch.inference_mode():
            return model.render(cams, drive)

    out = once()
    if device.type == "cuda":
        torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            once()
            b.record()
            torch.cuda.synchronize()
            times.append(a.elapsed_time(b))
        else:
            t0 = time.perf_counter()
            once()
            times.append(1e3 * (time.perf_counter() - t0))
    ms = sorted(times)[len(times) // 2]
    alpha = float(out.alpha.float().mean()) if getattr(out, "alpha", None) is not None else None
    return {"ms": round(ms, 3), "fps": round(1e3 / ms, 2), "repeats": repeats, "mean_alpha": alpha}


def bench_run(run: Path, res: int, ref_res: int, repeats: int, ref_repeats: int, device: str) -> dict:
    dev = torch.device(check_device(device))
    model: Any = load_avatar(run, device=dev)  # an nn.Module (both heads are)
    drive_path = run / "drive.npz"
    drive = Drive.load_npz(drive_path) if drive_path.is_file() else Drive.neutral(1)
    drive = drive[len(drive) // 2 : len(drive) // 2 + 1].to(dev, torch.float32)
    spec = json.loads((run / "avatar.json").read_text())
    row: dict[str, Any] = {"run": str(run), "kind": spec.get("kind"), "device": str(dev), "res": res}
    if hasattr(model, "splats"):
        row["gaussians"] = len(model.splats)
    set_backend(model, "auto")
    row["compiled"] = time_render(model, front_camera(model, drive, res, dev).to(dev), drive, dev, repeats)
    set_backend(model, "torch")
    ref = time_render(model, front_camera(model, drive, ref_res, dev).to(dev), drive, dev, ref_repeats)
    row["torch_twin"] = {**ref, "res": ref_res}
    # speed-up per pixel (the two may differ in resolution)
    per_px = (ref["ms"] / ref_res**2) / (row["compiled"]["ms"] / res**2)
    row["speedup_vs_twin_per_pixel"] = round(per_px, 2)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="append", type=Path, default=None, help="run folder (repeatable)")
    ap.add_argument("--res", type=int, default=512)
    ap.add_argument("--ref-res", type=int, default=None, help="resolution of the torch-twin reference")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--ref-repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    runs = args.run or [Path("out/demo/run")]
    for r in runs:
        if not (r / "avatar.json").is_file():
            print(
                f"error: {r}: not a run folder (no avatar.json); fit one with nerfhead fit", file=sys.stderr
            )
            return 2
    rows = [
        bench_run(r, args.res, args.ref_res or args.res, args.repeats, args.ref_repeats, args.device)
        for r in runs
    ]
    info = {
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "load_avg": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    print(json.dumps({"info": info, "results": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
