"""nerfhead beside what a user would pick instead, on this machine, in one run and on the same data (JSON out).

    python scripts/bench_peers.py --budgets 1 2 5 --lock /tmp/nerfhead-cpu.lock --json-out peers.json

1. **NeRF head vs nerfstudio's nerfacto.** A static capture (one timestep of the 16-camera rig at 128x128: 12
   training and 4 held-out cameras, ``nerfhead synth --rig nersemble16 --frames 1 --res 128``) is written as a
   nerfstudio transforms.json (the capture's own file without its mask paths: the synthetic images already show the
   head over the white background) and fitted, for each wall-clock budget, by ``nerfhead fit --model nerf
   --max-minutes B`` and by nerfstudio 1.1.5's Trainer with the stock ``nerfacto`` config on the CPU
   (``scripts/_peers_nerfstudio.py``). Both held-out PSNRs are computed here by ``nerfhead.engine.metrics.psnr``
   against the same images (``nerfhead.engine.targets.target_image``): nerfacto's renders of the 4 held-out
   cameras come back as arrays.
2. **Hash encoding vs nerfstudio's torch HashEncoding** (what nerfstudio runs without tiny-cuda-nn): forward and
   forward+backward points/s at 2^18 points, 16 levels x 2 features, 2^19 table, resolutions 16 to 2048, for our
   compiled C++ kernel, our torch twin and nerfstudio's module, each in its own process, one after the other
   (this part runs first; the JSON is rewritten after every job, so a run cut off keeps what it measured).

nerfstudio pins numpy<2, viser 0.2.7 and gsplat 1.4.0, so it never enters nerfhead's environment: on first use the
script builds ``<cache>/peers/nerfstudio-1.1.5/`` (``<cache>`` is ``$NERFHEAD_CACHE`` or ``scenes/cache``) with
``pip download`` of its wheels into ``<cache>/peers/wheels`` and ``pip install --find-links`` from there (torch
2.14.1 and torchvision 0.29.1 first, which pip takes from this machine's disk). ``--lock PATH`` takes an exclusive
``flock`` on PATH around every timed job (the shared-CPU convention: ``/tmp/nerfhead-cpu.lock``), so the fits
run one at a time; the load average is recorded before and after each.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RUNNER = Path(__file__).resolve().parent / "_peers_nerfstudio.py"
NERFSTUDIO = "nerfstudio==1.1.5"
NERFSTUDIO_TORCH = ("torch==2.14.1", "torchvision==0.29.1")
sys.path.insert(0, str(REPO))  # nerfhead from this checkout, installed or not


def peers_root() -> Path:
    from nerfhead.assets import cache_root

    return cache_root() / "peers"


def nerfstudio_python(root: Path, log: Path) -> Path:
    """The nerfstudio environment's Python; builds the environment first when it is missing."""
    env = root / "nerfstudio-1.1.5"
    py = env / "bin" / "python"
    done = env / ".nerfhead-complete"
    if done.is_file():
        return py
    root.mkdir(parents=True, exist_ok=True)
    wheels = root / "wheels"
    steps = [
        [sys.executable, "-m", "venv", str(env)],
        [str(py), "-m", "pip", "install", "-q", *NERFSTUDIO_TORCH],
        [str(py), "-m", "pip", "download", "-q", "-d", str(wheels), NERFSTUDIO, *NERFSTUDIO_TORCH],
        [str(py), "-m", "pip", "install", "-q", "--find-links", str(wheels), NERFSTUDIO, *NERFSTUDIO_TORCH],
    ]
    with log.open("a") as f:
        for cmd in steps:
            print("nerfstudio environment:", " ".join(cmd), file=sys.stderr, flush=True)
            subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT)
    done.write_text(NERFSTUDIO + "\n")
    return py


@contextlib.contextmanager
def cpu_lock(path: str | None) -> Iterator[None]:
    """Exclusive flock on ``path`` (same lock as ``flock PATH CMD``); nothing when ``path`` is None."""
    if path is None:
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_json(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``cmd`` (output appended to ``log``); its last stdout line is a JSON object."""
    with log.open("a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=f, text=True, env=env, cwd=REPO)
        f.write(p.stdout)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[0]} {' '.join(cmd[1:3])} failed (exit {p.returncode}); see {log}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def make_capture(root: Path, log: Path) -> tuple[Path, Path]:
    """The static capture and its nerfstudio transforms.json (mask paths removed)."""
    cap = root / "capture"
    if not (cap / "transforms.json").is_file():
        cmd = [sys.executable, "-m", "nerfhead", "synth", "--rig", "nersemble16", "--frames", "1"]
        cmd += ["--res", "128", "--out", str(cap)]
        with log.open("a") as f:
            subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT, cwd=REPO)
    meta = json.loads((cap / "transforms.json").read_text())
    for fr in meta["frames"]:
        fr.pop("mask_path", None)
    ns = cap / "transforms_nerfstudio.json"
    ns.write_text(json.dumps(meta, indent=2) + "\n")
    return cap, ns


def heldout_psnr(cap: Path, renders: dict[str, Any]) -> dict[str, Any]:
    """PSNR (nerfhead's metric) of nerfacto's renders, keyed by image path, against the capture's held-out images."""
    import torch

    from nerfhead.data.loaders import load_capture
    from nerfhead.engine.metrics import psnr, ssim
    from nerfhead.engine.targets import capture_background, target_image

    capture = load_capture(cap)
    bg = torch.tensor(capture_background(capture))
    by_path = {Path(k).resolve(): v for k, v in renders.items()}
    per = {}
    for c in capture.test_cameras or ():
        f = capture.frame_index(c, 0)
        assert f is not None
        frame = capture.frames[f]
        gt, _ = target_image(capture, f, bg)
        pred = torch.from_numpy(by_path[Path(frame.image_path).resolve()])
        name = capture.cameras.names[c] if capture.cameras.names else str(c)
        per[name] = {"psnr": psnr(pred, gt), "ssim": ssim(pred, gt)}
    ps = [v["psnr"] for v in per.values()]
    ss = [v["ssim"] for v in per.values()]
    return {"psnr": sum(ps) / len(ps), "ssim": sum(ss) / len(ss), "frames": len(ps), "per_camera": per}


def fit_ours(cap: Path, out: Path, minutes: float, threads: int, log: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "nerfhead", "fit", str(cap), "--model", "nerf", "--out", str(out)]
    cmd += ["--max-minutes", str(minutes), "--threads", str(threads)]
    with log.open("a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT, cwd=REPO)
        wall = time.perf_counter() - t0
    fit = json.loads((out / "fit.json").read_text())
    ev = json.loads((out / "eval.json").read_text())
    return {
        "steps": fit["steps"],
        "seconds": fit["seconds"],
        "threads": fit["threads"],
        "command_wall_s": wall,
        "psnr": ev["mean"]["psnr"],
        "ssim": ev["mean"]["ssim"],
        "frames": ev["mean"]["frames"],
        "per_camera": ev["per_camera"],
    }


def fit_nerfacto(ns_py: Path, ns_json: Path, cap: Path, out: Path, minutes: float, threads: int, log: Path):
    import numpy as np

    cmd = [str(ns_py), str(RUNNER), "fit", "--data", str(ns_json), "--out", str(out)]
    cmd += ["--minutes", str(minutes), "--threads", str(threads)]
    t0 = time.perf_counter()
    res = run_json(cmd, log, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    wall = time.perf_counter() - t0
    arrays = np.load(out / "renders.npz")
    renders = {str(ns_json.parent / name): arrays[key] for name, key in res.pop("renders").items()}
    return {**res, "command_wall_s": wall, **heldout_psnr(cap, renders)}


def hash_ours(backend: str, n_points: int, threads: int, log: Path) -> dict[str, Any]:
    code = (
        "import json, sys, torch; sys.path.insert(0, 'scripts'); import _bench_hash_grid as b;"
        f"torch.set_num_threads({threads}); print(json.dumps(b.bench({backend!r}, n_points={n_points})))"
    )
    return run_json([sys.executable, "-c", code], log, env={**os.environ, "OMP_NUM_THREADS": str(threads)})


def save(out: dict[str, Any], path: Path | None) -> None:
    """Write what is measured so far (the script writes after every job, so a cut-off run keeps its rows)."""
    if path is not None:
        path.write_text(json.dumps(out, indent=2) + "\n")


def markdown(out: dict[str, Any]) -> str:
    """The tables of BENCHMARKS.md from the script's JSON."""
    lines = []
    if "nerf_vs_nerfacto" in out:
        lines += [
            "| budget | NeRF head: held-out PSNR / SSIM | steps | nerfacto: held-out PSNR / SSIM | steps | margin "
            "| load avg (ours, nerfacto) |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in out["nerf_vs_nerfacto"]:
            o, n = row["nerfhead_nerf"], row["nerfacto"]
            lines.append(
                f"| {row['minutes']:g} min | {o['psnr']:.2f} dB / {o['ssim']:.3f} | {o['steps']} "
                f"| {n['psnr']:.2f} dB / {n['ssim']:.3f} | {n['steps']} | {row['margin_db']:+.2f} dB "
                f"| {o['load_before'][0]:.2f}, {n['load_before'][0]:.2f} |"
            )
    if "hash_encoding" in out:
        names = {"cpu": "nerfhead C++ CPU kernel", "torch": "nerfhead torch twin"}
        names["nerfstudio_torch"] = "nerfstudio HashEncoding (torch)"
        lines += [
            "",
            "| hash encoding, 2^18 points | forward (k points/s) | forward+backward (k points/s) "
            "| vs nerfstudio: forward | forward+backward |",
            "|---|---|---|---|---|",
        ]
        for k, r in out["hash_encoding"].items():
            sp = r["speedup_vs_nerfstudio"]
            lines.append(
                f"| {names.get(k, k)} | {r['forward_points_per_s'] / 1e3:.1f} "
                f"| {r['forward_backward_points_per_s'] / 1e3:.1f} | {sp['forward_points_per_s']:.1f}x "
                f"| {sp['forward_backward_points_per_s']:.1f}x |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budgets", type=float, nargs="+", default=[2.0, 5.0, 10.0], help="minutes per fit")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of every timed job")
    ap.add_argument("--lock", default=None, help="flock this file around every timed job")
    ap.add_argument("--hash-points", type=int, default=2**18)
    ap.add_argument("--skip-fits", action="store_true", help="only the hash-encoding comparison")
    ap.add_argument("--skip-hash", action="store_true", help="only the fits")
    ap.add_argument("--work", type=Path, default=None, help="run folders (default <cache>/peers/runs)")
    ap.add_argument("--json-out", type=Path, default=None, help="also write the JSON here")
    ap.add_argument(
        "--table", type=Path, default=None, help="print the markdown tables of a JSON written before"
    )
    a = ap.parse_args()
    if a.table is not None:
        print(markdown(json.loads(a.table.read_text())))
        return
    import torch

    root = peers_root()
    work = (a.work or root / "runs").resolve()
    work.mkdir(parents=True, exist_ok=True)
    log = work / "bench_peers.log"
    ns_py = nerfstudio_python(root, log)
    out: dict[str, Any] = {
        "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "threads": a.threads,
        "log": str(log),
    }
    if not a.skip_hash:
        hg: dict[str, Any] = {}
        for name in ("cpu", "torch", "nerfstudio_torch"):
            with cpu_lock(a.lock):
                before = load()
                if name == "nerfstudio_torch":
                    cmd = [str(ns_py), str(RUNNER), "hash", "--points", str(a.hash_points)]
                    cmd += ["--threads", str(a.threads)]
                    r = run_json(cmd, log, env={**os.environ, "OMP_NUM_THREADS": str(a.threads)})
                else:
                    r = hash_ours(name, a.hash_points, a.threads, log)
                r["load_before"], r["load_after"] = before, load()
            hg[name] = r
        base = hg["nerfstudio_torch"]
        for r in hg.values():
            r["speedup_vs_nerfstudio"] = {
                k: r[k] / base[k] for k in ("forward_points_per_s", "forward_backward_points_per_s")
            }
        out["hash_encoding"] = hg
        save(out, a.json_out)
    if not a.skip_fits:
        cap, ns_json = make_capture(root, log)
        out["capture"] = {"path": str(cap), "rig": "nersemble16", "timesteps": 1, "res": 128}
        rows = []
        for minutes in a.budgets:
            row: dict[str, Any] = {"minutes": minutes}
            for name in ("nerfhead_nerf", "nerfacto"):
                run = work / f"{name}_{minutes:g}min"
                with cpu_lock(a.lock):
                    before = load()
                    if name == "nerfacto":
                        r = fit_nerfacto(ns_py, ns_json, cap, run, minutes, a.threads, log)
                    else:
                        r = fit_ours(cap, run, minutes, a.threads, log)
                    r["load_before"], r["load_after"] = before, load()
                row[name] = r
                print(f"{minutes:g} min {name}: {r['psnr']:.2f} dB, {r['steps']} steps", file=sys.stderr)
            row["margin_db"] = row["nerfhead_nerf"]["psnr"] - row["nerfacto"]["psnr"]
            rows.append(row)
            out["nerf_vs_nerfacto"] = rows
            save(out, a.json_out)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
