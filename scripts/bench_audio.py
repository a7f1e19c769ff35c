"""Audio front end benchmark: streaming driver latency per chunk, offline driver speed. Prints JSON.

    python scripts/bench_audio.py [--chunk-ms 40] [--repeats 3] [--audio PATH] [--fps 25]

Per-chunk latency is the wall time of one ``push`` of a chunk (median, p95, max, and the same in process CPU
time, which is less sensitive to other jobs on a shared machine), for the energy-rule ``AudioStreamDriver``
("stream") and the learned ``NetworkStreamDriver`` with the bundled prior ("stream_network"). Target: median and
p95 <= 10 ms per 40 ms chunk on CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nerfhead.audio import AudioStreamDriver, RuleDriverConfig, RuleVisemeDriver, load_audio  # noqa: E402
from nerfhead.audio.network import load_network  # noqa: E402
from nerfhead.audio.speech import prior_path  # noqa: E402
from nerfhead.audio.stream import NetworkStreamDriver  # noqa: E402
from nerfhead.audio.visemes import pocketsphinx_available  # noqa: E402


def _pct(xs: list[float]) -> dict[str, float]:
    a = np.asarray(xs) * 1e3
    return {"median_ms": float(np.median(a)), "p95_ms": float(np.percentile(a, 95)), "max_ms": float(a.max())}


def bench_stream(wav: np.ndarray, sr: int, fps: float, chunk_ms: float, repeats: int, make=None) -> dict:
    """Per-chunk cost of a streaming driver (``make(fps)``; default the energy-rule AudioStreamDriver)."""
    make = make or (lambda f: AudioStreamDriver(f, RuleDriverConfig(mode="energy")))
    n = int(round(sr * chunk_ms / 1000))
    wall: list[float] = []
    cpu: list[float] = []
    frames = 0
    for _ in range(repeats):
        drv = make(fps)
        for i in range(0, wav.size - n + 1, n):
            c = wav[i : i + n]
            t0, p0 = time.perf_counter(), time.process_time()
            frames += len(drv.push(c))
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - p0)
        frames += len(drv.flush())
    lat = make(fps).latency_s
    return {
        "chunk_ms": chunk_ms,
        "chunks": len(wall),
        "frames": frames,
        "wall": _pct(wall),
        "cpu": _pct(cpu),
        "lookahead_s": lat,
        "target_ms": 10.0,
        "meets_target": bool(np.median(wall) * 1e3 <= 10.0 and np.percentile(wall, 95) * 1e3 <= 10.0),
        "meets_target_cpu": bool(np.median(cpu) * 1e3 <= 10.0 and np.percentile(cpu, 95) * 1e3 <= 10.0),
        "load_average_1min": os.getloadavg()[0],
    }


def bench_offline(wav: np.ndarray, sr: int, fps: float, mode: str) -> dict:
    drv = RuleVisemeDriver(RuleDriverConfig(mode=mode))  # type: ignore[arg-type]
    drv.drive(wav[: sr // 2], fps)  # warm up (and build the phone decoder)
    t0 = time.perf_counter()
    d = drv.drive(wav, fps)
    dt = time.perf_counter() - t0
    dur = wav.size / sr
    return {"mode": mode, "audio_s": dur, "seconds": dt, "realtime_factor": dur / dt, "frames": len(d)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--audio", default=str(REPO / "scenes/assets/audio/en_ljspeech_LJ050-0131.wav"))
    ap.add_argument("--chunk-ms", type=float, default=40.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--fps", type=float, default=25.0)
    ap.add_argument("--json", action="store_true", help="accepted for symmetry with bench_ops (always JSON)")
    args = ap.parse_args()
    wav, sr = load_audio(args.audio)
    net = load_network(prior_path())
    torch.set_num_threads(1)  # one frame per chunk: threads only add hand-off cost
    out = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "audio": Path(args.audio).name,
        "stream": bench_stream(wav, sr, args.fps, args.chunk_ms, args.repeats),
        "stream_network": {
            "network": prior_path().name,
            **bench_stream(
                wav, sr, args.fps, args.chunk_ms, args.repeats, lambda f: NetworkStreamDriver(net, f)
            ),
        },
        "offline": [bench_offline(wav, sr, args.fps, "energy")]
        + ([bench_offline(wav, sr, args.fps, "phonetic")] if pocketsphinx_available() else []),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
