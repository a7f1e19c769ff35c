"""Throughput of the fused pose-and-pack op for one backend (called by scripts/bench_ops.py).

Inputs: the demo avatar's sizes (37,401 Gaussians on 31,788 triangles of ~17k vertices, a 32-wide deformation
head, tanh limits 1 and 0.5), random values. The CUDA entry runs the torch twin on the GPU (there is no CUDA
kernel for this op: the viewer's GPU pose is the twin).
"""

from __future__ import annotations

import statistics
import time

import torch

from nerfhead.ops.pose_splats import pose_splats


def bench(backend: str, n: int = 37_401, n_verts: int = 17_000, hidden: int = 32, repeats: int = 30) -> dict:
    device = torch.device("cuda" if backend == "cuda" else "cpu")
    g = torch.Generator().manual_seed(0)
    x = {
        "verts": torch.randn(n_verts, 3, generator=g) * 0.1,
        "tri": torch.randint(0, n_verts, (n, 3), generator=g),
        "means": torch.randn(n, 3, generator=g) * 0.3,
        "local": torch.randn(n, 3, 3, generator=g) * 0.05,
        "rgb": torch.rand(n, 3, generator=g),
        "opacities": torch.rand(n, generator=g),
        "pos": torch.randn(n, hidden, generator=g),
        "code": torch.randn(hidden, generator=g),
        "weight": torch.randn(6, hidden, generator=g) * 0.3,
        "bias": torch.randn(6, generator=g) * 0.1,
        "gain": torch.rand(n, generator=g),
    }
    x = {k: v.to(device) for k, v in x.items()}
    be = "torch" if backend == "cuda" else backend
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    for i in range(repeats + 3):
        sync()
        t0 = time.perf_counter()
        pose_splats(**x, limit_pos=1.0, limit_rgb=0.5, backend=be)
        sync()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    s = statistics.median(times)
    return {"ms": 1000 * s, "gaussians_per_s": n / s}
