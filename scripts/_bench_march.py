"""Throughput of occupancy-grid marching + compositing for one backend (called by scripts/bench_ops.py).

Scene: a sphere (radius 0.5, density 20) in the aabb [-1, 1]^3, its occupancy grid filled by one warm-up update;
rays from a pinhole-like fan at z = -2.5 towards the plane z = 0 over [-0.8, 0.8]^2 (about 40% hit the sphere).
Densities and colours for the marched samples are computed once outside the timed region (they depend only on the
samples, which every backend produces identically), so the timings are marching and compositing alone.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from nerfhead.components.occupancy_grid import OccupancyGrid, OccupancyGridConfig
from nerfhead.ops.composite import composite
from nerfhead.ops.ray_march import MarchConfig, PackedSamples


def _scene(
    n_rays: int, resolution: int, device: torch.device
) -> tuple[OccupancyGrid, torch.Tensor, torch.Tensor]:
    grid = OccupancyGrid(OccupancyGridConfig(resolution=resolution)).to(device)
    grid.update(
        0,
        lambda x: 20.0 * (x.norm(dim=-1) < 0.5).float(),
        generator=torch.Generator(device=device).manual_seed(0),
    )
    g = torch.Generator().manual_seed(1)
    target = torch.cat([(torch.rand(n_rays, 2, generator=g) * 1.6 - 0.8), torch.zeros(n_rays, 1)], -1)
    origins = torch.tensor([0.0, 0.0, -2.5]).expand(n_rays, 3).contiguous()
    dirs = torch.nn.functional.normalize(target - origins, dim=-1)
    return grid, origins.to(device), dirs.to(device)


def _median_seconds(fn: Callable[[], object], sync: Callable[[], None], warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench(
    backend: str,
    n_rays: int = 8192,
    resolution: int = 64,
    step_size: float = 5e-3,
    warmup: int = 1,
    repeats: int = 3,
    device: str | None = None,
) -> dict:
    """Rays per second for march, march + composite (forward) and march + composite (forward + backward).

    Args:
        backend: "torch" | "cpu" | "cuda".
        n_rays: rays per call.
        resolution: occupancy grid cells per axis.
        step_size: marching step (world units).
        warmup: untimed calls before timing.
        repeats: timed calls (the median is reported).
        device: where the tensors live (default: "cuda" for the cuda backend, else "cpu").

    Returns:
        A JSON-able dict with the rates (keys ending in ``_per_s``), sample count and per-call milliseconds.
    """
    dev = torch.device(device or ("cuda" if backend == "cuda" else "cpu"))
    grid, origins, dirs = _scene(n_rays, resolution, dev)
    cfg = MarchConfig(step_size=step_size)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    s = grid.sample(origins, dirs, cfg=cfg, backend=backend)
    x = origins[s.ray_indices] + ((s.t_starts + s.t_ends) / 2)[:, None] * dirs[s.ray_indices]
    sigmas = 20.0 * (x.norm(dim=-1) < 0.5).float()
    rgbs = torch.sigmoid(3.0 * x)

    def march() -> PackedSamples:
        return grid.sample(origins, dirs, cfg=cfg, backend=backend)

    def march_composite() -> object:
        p = march()
        return composite(sigmas, rgbs, p.t_starts, p.t_ends, packed_info=p.packed_info, backend=backend)

    def march_composite_backward() -> object:
        p = march()
        sg, cl = sigmas.clone().requires_grad_(), rgbs.clone().requires_grad_()
        out = composite(sg, cl, p.t_starts, p.t_ends, packed_info=p.packed_info, backend=backend)
        (out.rgb.sum() + out.depth.sum()).backward()
        return sg.grad

    t_march = _median_seconds(march, sync, warmup, repeats)
    t_fwd = _median_seconds(march_composite, sync, warmup, repeats)
    t_bwd = _median_seconds(march_composite_backward, sync, warmup, repeats)
    return {
        "device": str(dev),
        "n_rays": n_rays,
        "n_samples": int(s.t_starts.numel()),
        "threads": torch.get_num_threads(),
        "march_ms": 1e3 * t_march,
        "march_composite_fwd_ms": 1e3 * t_fwd,
        "march_composite_fwd_bwd_ms": 1e3 * t_bwd,
        "march_rays_per_s": n_rays / t_march,
        "march_composite_fwd_rays_per_s": n_rays / t_fwd,
        "march_composite_fwd_bwd_rays_per_s": n_rays / t_bwd,
    }


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(bench(sys.argv[1] if len(sys.argv) > 1 else "torch"), indent=2))
