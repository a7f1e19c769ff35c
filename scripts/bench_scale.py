"""Scale benchmark: tracking and training memory / speed against video length, and the data-parallel speedup.

Prints one JSON object (and writes it to ``--out``)::

    tracking:  per "WxH/frames": seconds_per_frame, frames_per_second, peak_rss_mb, stages (per-stage rates);
               per resolution: rss_slope_mb_per_frame between the shortest and the longest video
    training:  per model and capture length: store_build_s (first open: decode to the uint8 frame store),
               load_s (task construction with the store in place), step_s, peak_rss_mb; and the ratio of the
               peak RSS of the longest to the shortest capture
    data_parallel: seconds per step of ``nerfhead fit`` on 1 process and under ``torchrun`` with 2 (gloo on
               the CPU; NCCL with --device cuda): the NeRF head's speedup = s/step(1) / s/step(2) on the same
               global batch; the splat head on a monocular capture trains one view per rank per step, so its
               figure is the ratio of views per second

Videos are synthesised from the bundled GRID clip (360x288, 75 frames at 25 fps) by scaling (bicubic) and looping
(forwards then backwards, so the head does not jump), encoded once with libx264 into ``--work``. Training runs on
the 360x288 trackings of the 75- and the longest video. Every figure comes from a subprocess, its peak RSS from
``os.wait4`` (``ru_maxrss`` of that process alone).

    flock /tmp/nerfhead-cpu.lock env OMP_NUM_THREADS=2 .venv/bin/python scripts/bench_scale.py --out scale.json
    .venv/bin/python scripts/bench_scale.py --quick           # 360x288 only, 75 and 300 frames
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GRID = ROOT / "scenes" / "assets" / "video_grid" / "grid_bbaf2n.mpg"
RESOLUTIONS = {"360x288": (360, 288), "720p": (1280, 720), "1080p": (1920, 1080)}


def run_measured(
    cmd: list[str], env: dict[str, str] | None = None, timeout: float = 3600
) -> tuple[float, float, int]:
    """Run ``cmd``; (wall seconds, peak RSS of that process in MB, exit code)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    deadline = t0 + timeout
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            p.kill()
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0 and p.stderr is not None:
        sys.stderr.write(p.stderr.read().decode(errors="replace")[-3000:])
    return wall, ru.ru_maxrss / 1024.0, code


def synth_video(path: Path, size: tuple[int, int], frames: int) -> Path:
    """GRID scaled to ``size`` and looped forwards/backwards to ``frames`` frames (cached in ``path``)."""
    if path.is_file():
        return path
    import imageio_ffmpeg
    import numpy as np
    from PIL import Image

    from nerfhead.track.video import read_video

    src = read_video(GRID).frames
    scaled = [np.asarray(Image.fromarray(f).resize(size, Image.Resampling.BICUBIC)) for f in src]
    order = list(range(len(scaled))) + list(range(len(scaled) - 2, 0, -1))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.mp4")
    w = imageio_ffmpeg.write_frames(
        str(tmp),
        size,
        fps=25,
        codec="libx264",
        quality=8,
        macro_block_size=1,
        output_params=["-preset", "fast"],
    )
    w.send(None)
    for k in range(frames):
        w.send(np.ascontiguousarray(scaled[order[k % len(order)]]))
    w.close()
    os.replace(tmp, path)
    return path


def bench_tracking(work: Path, resolutions: list[str], lengths: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for res in resolutions:
        size = RESOLUTIONS[res]
        for n in lengths:
            video = synth_video(work / f"grid_{res}_{n}.mp4", size, n)
            dest = work / f"track_{res}_{n}"
            if dest.exists():
                import shutil

                shutil.rmtree(dest)
            wall, rss, code = run_measured(
                [sys.executable, "-m", "nerfhead", "track", str(video), "--out", str(dest), "--quiet"]
            )
            entry: dict[str, Any] = {
                "frames": n,
                "exit_code": code,
                "seconds": round(wall, 1),
                "peak_rss_mb": round(rss, 1),
            }
            if code == 0:
                m = json.loads((dest / "track.json").read_text())
                entry["seconds_per_frame"] = round(wall / n, 4)
                entry["frames_per_second"] = round(n / wall, 2)
                entry["stages"] = m.get("stages")
            out[f"{res}/{n}"] = entry
            print(json.dumps({f"tracking {res}/{n}": entry}), file=sys.stderr, flush=True)
        ok = [out[f"{res}/{n}"] for n in lengths if out[f"{res}/{n}"]["exit_code"] == 0]
        if len(ok) >= 2:
            a, b = ok[0], ok[-1]
            out[f"{res}/rss_slope_mb_per_frame"] = round(
                (b["peak_rss_mb"] - a["peak_rss_mb"]) / (b["frames"] - a["frames"]), 4
            )
    return out


def _child_train(capture: str, model: str, steps: int) -> None:
    """(subprocess) build/open the frame store, construct the task, run ``steps`` steps; print timings."""
    import tempfile

    import torch

    from nerfhead.data.framestore import FrameStore
    from nerfhead.data.loaders import load_capture
    from nerfhead.engine.config import replace_nested
    from nerfhead.engine.trainer import fit
    from nerfhead.models.registry import get

    torch.manual_seed(0)
    t0 = time.perf_counter()
    cap = load_capture(capture)
    t1 = time.perf_counter()
    FrameStore.open(cap)
    t2 = time.perf_counter()
    cfg = replace_nested(
        get(model).preset("fast"),
        **{"trainer.steps": steps, "trainer.checkpoint_every": 0, "trainer.tensorboard": False},
    )
    task = get(model).make_task(cap, cfg, "cpu")
    t3 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        r = fit(task, d, cfg.trainer)
    print(
        json.dumps(
            {
                "capture_read_s": t1 - t0,
                "store_open_s": t2 - t1,
                "task_s": t3 - t2,
                "step_s": r.seconds / max(r.step, 1),
            }
        )
    )


def bench_training(work: Path, captures: dict[int, Path], steps: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model in ("splat", "nerf"):
        peaks = {}
        for n, cap in captures.items():
            entry: dict[str, Any] = {"timesteps": n}
            for phase in ("first", "cached"):
                if phase == "first":
                    import shutil

                    shutil.rmtree(cap / "images" / ".nerfhead_frames", ignore_errors=True)
                cmd = [sys.executable, __file__, "--child-train", str(cap), model, str(steps)]
                t0 = time.perf_counter()
                p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                _, status, ru = os.wait4(p.pid, 0)
                wall = time.perf_counter() - t0
                stdout = p.stdout.read().decode() if p.stdout else ""
                if os.waitstatus_to_exitcode(status) != 0:
                    entry[phase] = {"error": (p.stderr.read().decode() if p.stderr else "")[-500:]}
                    continue
                t = json.loads(stdout.strip().splitlines()[-1])
                entry[phase] = {
                    "store_open_s": round(t["store_open_s"], 2),
                    "task_s": round(t["task_s"], 2),
                    "step_s": round(t["step_s"], 3),
                    "wall_s": round(wall, 1),
                    "peak_rss_mb": round(ru.ru_maxrss / 1024.0, 1),
                }
            if "peak_rss_mb" in entry.get("cached", {}):
                peaks[n] = entry["cached"]["peak_rss_mb"]
            out[f"{model}/{n}"] = entry
            print(json.dumps({f"training {model}/{n}": entry}), file=sys.stderr, flush=True)
        if len(peaks) >= 2:
            lo, hi = min(peaks), max(peaks)
            out[f"{model}/peak_rss_ratio_{hi}_vs_{lo}"] = round(peaks[hi] / peaks[lo], 3)
    return out


def _log_rate(run: Path, a: int, b: int) -> float:
    """Seconds per step between logged steps a and b of a run's log.jsonl."""
    rows = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines() if x.strip()]
    t = {r["step"]: r["seconds"] for r in rows if "eval" not in r}
    return (t[b] - t[a]) / (b - a)


def bench_data_parallel(work: Path, capture: Path, device: str, steps: int) -> dict[str, Any]:
    import shutil

    out: dict[str, Any] = {"device": device, "capture": str(capture)}
    threads = "0"  # one process uses every core (torch's default); each of N ranks gets cores / N
    for model in ("nerf", "splat"):
        rates = {}
        for n in (1, 2):
            run = work / f"dp_{model}_{n}"
            shutil.rmtree(run, ignore_errors=True)
            launcher = (
                [sys.executable]
                if n == 1
                else [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}"]
            )
            cmd = launcher + [
                "-m",
                "nerfhead",
                "fit",
                str(capture),
                "--out",
                str(run),
                "--model",
                model,
                "--preset",
                "fast",
            ]
            cmd += [
                "--steps",
                str(steps),
                "--no-evaluate",
                "--device",
                device,
                "--set",
                "trainer.log_every=10",
                "trainer.checkpoint_every=0",
            ]
            if n == 1:
                cmd += ["--threads", threads]
            wall, rss, code = run_measured(cmd)
            if code != 0:
                rates[n] = None
                continue
            rates[n] = _log_rate(run, 10, steps)
        entry: dict[str, Any] = {
            f"s_per_step_{n}proc": (round(r, 4) if r else None) for n, r in rates.items()
        }
        r1, r2 = rates.get(1), rates.get(2)
        if r1 and r2:
            if model == "nerf":  # the same global batch: time per step
                entry["speedup"] = round(r1 / r2, 3)
                entry["global_batch"] = "same rays per step, split over the ranks"
            else:  # monocular: one view per rank per step, so 2 processes train 2 views per step
                entry["speedup_views_per_second"] = round(2 * r1 / r2, 3)
                entry["global_batch"] = "one view per rank per step (monocular capture)"
        out[model] = entry
        print(json.dumps({f"data_parallel {model}": entry}), file=sys.stderr, flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--work", type=Path, default=ROOT / "scenes" / "cache" / "bench_scale")
    ap.add_argument("--resolutions", nargs="*", default=list(RESOLUTIONS))
    ap.add_argument("--lengths", nargs="*", type=int, default=[75, 1500])
    ap.add_argument("--train-steps", type=int, default=20)
    ap.add_argument("--dp-steps", type=int, default=50)
    ap.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (NCCL) for the data-parallel runs")
    ap.add_argument("--only", nargs="*", default=["tracking", "training", "data_parallel"])
    ap.add_argument("--quick", action="store_true", help="360x288 only, 75 and 300 frames")
    ap.add_argument("--child-train", nargs=3, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.child_train:
        _child_train(args.child_train[0], args.child_train[1], int(args.child_train[2]))
        return
    if args.quick:
        args.resolutions, args.lengths = ["360x288"], [75, 300]
    result: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_start": os.getloadavg(),
        },
    }
    base = "360x288" if "360x288" in args.resolutions else args.resolutions[0]
    if "tracking" in args.only:  # the base resolution first: training runs on its trackings
        result["tracking"] = bench_tracking(args.work, [base], args.lengths)
    caps = {
        n: args.work / f"track_{base}_{n}"
        for n in args.lengths
        if (args.work / f"track_{base}_{n}" / "transforms.json").is_file()
    }
    if "training" in args.only and caps:
        result["training"] = bench_training(args.work, caps, args.train_steps)
    if "data_parallel" in args.only and caps:
        result["data_parallel"] = bench_data_parallel(args.work, caps[min(caps)], args.device, args.dp_steps)
    if "tracking" in args.only:
        rest = [r for r in args.resolutions if r != base]
        result["tracking"].update(bench_tracking(args.work, rest, args.lengths))
    result["machine"]["load_avg_end"] = os.getloadavg()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
