"""Hash-grid encoding throughput for one backend (called by scripts/bench_ops.py; runnable alone).

``python scripts/_bench_hash_grid.py [torch|cpu|cuda ...]`` prints one JSON object per backend.
"""

from __future__ import annotations

import json
import sys
import time

import torch

from nerfhead.components.hash_grid import HashGridConfig
from nerfhead.ops.hash_grid import hash_grid_encode


def _time(fn, repeats: int, sync) -> float:
    """Best wall time of ``repeats`` calls after one warm-up call."""
    fn()
    sync()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def bench(
    backend: str,
    n_points: int = 2**18,
    n_levels: int = 16,
    n_features: int = 2,
    log2_table: int = 19,
    repeats: int = 3,
) -> dict:
    """Points per second of the forward pass and of forward + backward (to the table and the inputs).

    3D inputs, base resolution 16, finest resolution 2048 (Instant-NGP's defaults). The ``"torch"`` and ``"cpu"``
    backends run on the CPU, ``"cuda"`` on the current CUDA device.

    Returns:
        dict with ``backend``, ``device``, ``n_points``, ``forward_s``, ``forward_backward_s`` (best of
        ``repeats``) and ``forward_points_per_s``, ``forward_backward_points_per_s``.
    """
    device = torch.device("cuda" if backend == "cuda" else "cpu")
    cfg = HashGridConfig(
        n_input_dims=3,
        n_levels=n_levels,
        n_features_per_level=n_features,
        log2_hashmap_size=log2_table,
        base_resolution=16,
        per_level_scale=HashGridConfig.scale_for(16, 2048, n_levels),
    )
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.rand(n_points, 3, generator=gen).to(device)
    table = ((torch.rand(cfg.n_params, generator=gen) * 2 - 1) * 1e-2).to(device)
    grad = torch.randn(n_points, cfg.output_dim, generator=gen).to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def forward() -> None:
        with torch.no_grad():
            hash_grid_encode(x, table, cfg, backend=backend)

    xg = x.clone().requires_grad_(True)
    tg = table.clone().requires_grad_(True)

    def forward_backward() -> None:
        xg.grad = None
        tg.grad = None
        hash_grid_encode(xg, tg, cfg, backend=backend).backward(grad)

    t_fwd = _time(forward, repeats, sync)
    t_fb = _time(forward_backward, repeats, sync)
    return {
        "backend": backend,
        "device": torch.cuda.get_device_name()
        if device.type == "cuda"
        else f"cpu x{torch.get_num_threads()}",
        "n_points": n_points,
        "forward_s": t_fwd,
        "forward_backward_s": t_fb,
        "forward_points_per_s": n_points / t_fwd,
        "forward_backward_points_per_s": n_points / t_fb,
    }


if __name__ == "__main__":
    for name in sys.argv[1:] or ["torch", "cpu"]:
        print(json.dumps(bench(name)))
