"""Throughput of nerfhead's ops for every available backend, as ratios to the torch twin measured in the same run.

    python scripts/bench_ops.py --json            # hash grid (2^18 points, 16 levels, 2 features, 2^19 table)
                                                  # ray marching + compositing, and the viewer's fused
                                                  # pose-and-pack (37,401 Gaussians), each backend available here

Prints one JSON object: per op and backend the absolute rate and ``speedup_vs_torch``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench_hash_grid
import _bench_march
import _bench_pose_splats


def available_backends() -> list[str]:
    from nerfhead import _backend

    out = ["torch"]
    if _backend.has_cpu_kernels():
        out.append("cpu")
    if torch.cuda.is_available() and _backend.has_cuda_kernels():
        out.append("cuda")
    return out


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


def with_ratios(results: dict[str, dict], keys: list[str]) -> dict[str, dict]:
    base = results.get("torch", {})
    for r in results.values():
        r["speedup_vs_torch"] = {k: (r[k] / base[k] if base.get(k) else None) for k in keys if k in r}
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print JSON only")
    ap.add_argument("--quick", action="store_true", help="smaller problem sizes (smoke run)")
    ap.add_argument("--backends", nargs="*", default=None, help="subset of torch/cpu/cuda")
    a = ap.parse_args()
    backends = a.backends or available_backends()
    n_points = 2**14 if a.quick else 2**18
    n_rays = 2**10 if a.quick else 2**13
    hg = {b: _bench_hash_grid.bench(b, n_points=n_points) for b in backends}
    hg = with_ratios(hg, [k for k in next(iter(hg.values())) if k.endswith("_per_s")])
    mr = {b: _bench_march.bench(b, n_rays=n_rays) for b in backends}
    mr = with_ratios(mr, [k for k in next(iter(mr.values())) if k.endswith("_per_s")])
    ps = {b: _bench_pose_splats.bench(b, repeats=5 if a.quick else 30) for b in backends}
    ps = with_ratios(ps, ["gaussians_per_s"])
    out = {
        "device": device_name(),
        "torch": torch.__version__,
        "backends": backends,
        "hash_grid": hg,
        "march_composite": mr,
        "pose_splats": ps,
    }
    print(json.dumps(out, indent=2))
    if not a.json:
        for op in ("hash_grid", "march_composite", "pose_splats"):
            for b, r in out[op].items():
                print(op, b, {k: round(v, 1) for k, v in r["speedup_vs_torch"].items() if v}, file=sys.stderr)


if __name__ == "__main__":
    main()
