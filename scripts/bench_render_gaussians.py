"""Speed of ``nerfhead.ops.rasterize_gaussians``: ms/frame and FPS, forward and forward+backward, per backend.

    python scripts/bench_render_gaussians.py            # 128x128 and 256x256, 20k and 50k Gaussians
    python scripts/bench_render_gaussians.py --quick    # 128x128, 20k only

The scene is a head-sized shell of small anisotropic Gaussians (what a fitted splat head looks like: about one
pixel of standard deviation at 128x128, ``--scale`` multiplies it) seen by one camera at 0.5 m, with degree-3 SH
colours. Backends: the torch twin and the compiled C++ kernel on CPU, and
gsplat on CUDA when a GPU is present (timed with CUDA events). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from collections.abc import Callable

import torch

from nerfhead._backend import get_ext
from nerfhead.ops.rasterize_gaussians import rasterize_gaussians


def has_cpu_kernel() -> bool:
    """True when nerfhead._C holds the compiled rasterize_gaussians kernel."""
    ext = get_ext()
    return ext is not None and hasattr(ext, "rasterize_gaussians_forward")


def head_scene(n: int, size: int, device: str, seed: int = 0) -> dict:
    """N Gaussians on a 10 cm shell, a camera 0.5 m away whose image the head fills ~80%."""
    g = torch.Generator().manual_seed(seed)
    dirs = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    radius = 0.1 * (1.0 + 0.05 * torch.randn(n, 1, generator=g))
    means = dirs * radius
    scales = 0.002 * torch.exp(0.4 * torch.randn(n, 3, generator=g))  # ~1 px standard deviation at 128 px
    quats = torch.randn(n, 4, generator=g)
    opacities = torch.sigmoid(torch.randn(n, generator=g) + 1.0)
    sh = 0.2 * torch.randn(n, 16, 3, generator=g)
    focal = 0.8 * size * 0.5 / 0.1 * 0.5  # head diameter ~80% of the image at 0.5 m
    K = torch.tensor([[focal, 0.0, size / 2], [0.0, focal, size / 2], [0.0, 0.0, 1.0]])[None]
    viewmat = torch.eye(4)[None]
    viewmat[0, 2, 3] = 0.5
    scene = {"means": means, "quats": quats, "scales": scales, "opacities": opacities, "colors": sh}
    scene |= {"viewmats": viewmat, "Ks": K}
    return {k: v.to(device) for k, v in scene.items()}


def timed(fn: Callable[[], None], device: str, repeats: int) -> tuple[float, float]:
    """Median wall milliseconds of ``fn`` after one warm-up call (CUDA events on a GPU), and the median process
    CPU milliseconds (all threads; on a shared machine the steadier number)."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        c0 = time.process_time()
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            wall.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            wall.append(1e3 * (time.perf_counter() - t0))
        cpu.append(1e3 * (time.process_time() - c0))
    return sorted(wall)[len(wall) // 2], sorted(cpu)[len(cpu) // 2]


def bench(backend: str, device: str, n: int, size: int, repeats: int, scale: float = 1.0) -> dict:
    scene = head_scene(n, size, device)
    scene["scales"] = scene["scales"] * scale
    params = {
        k: scene[k].clone().requires_grad_(True) for k in ("means", "quats", "scales", "opacities", "colors")
    }
    bg = torch.ones(1, 3, device=device)

    def render(grad: bool):
        with torch.set_grad_enabled(grad):
            return rasterize_gaussians(
                **params, viewmats=scene["viewmats"], Ks=scene["Ks"], width=size, height=size,
                backgrounds=bg, sh_degree=3, backend=backend,
            )  # fmt: skip

    def fwd() -> None:
        render(False)

    def fwd_bwd() -> None:
        img, alpha, _ = render(True)
        (img.square().mean() + alpha.mean()).backward()

    _, alpha, meta = render(False)
    ms_f, cpu_f = timed(fwd, device, repeats)
    ms_fb, cpu_fb = timed(fwd_bwd, device, repeats)
    visible = int((meta["radii"] > 0).all(-1).sum())
    return {
        "backend": backend,
        "gaussians": n,
        "visible": visible,
        "size": size,
        "coverage": round(float(alpha.mean()), 3),
        "fwd_ms": round(ms_f, 2),
        "fwd_fps": round(1e3 / ms_f, 1),
        "fwd_bwd_ms": round(ms_fb, 2),
        "fwd_bwd_fps": round(1e3 / ms_fb, 1),
        "fwd_cpu_ms": round(cpu_f, 2),
        "fwd_bwd_cpu_ms": round(cpu_fb, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="128x128 with 20k Gaussians only")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--backends", nargs="*", default=None, help="subset of torch/cpu/cuda")
    ap.add_argument("--threads", type=int, default=None, help="torch / OpenMP threads (default: torch's)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies the Gaussians' sizes")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    backends = a.backends or (["torch"] + (["cpu"] if has_cpu_kernel() else []))
    if a.backends is None and torch.cuda.is_available():
        backends.append("cuda")
    sizes = [128] if a.quick else [128, 256]
    counts = [20_000] if a.quick else [20_000, 50_000]
    rows = []
    for b in backends:
        device = "cuda" if b == "cuda" else "cpu"
        for size in sizes:
            for n in counts:
                rows.append(bench(b, device, n, size, a.repeats, a.scale))
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""
    out = {
        "op": "rasterize_gaussians",
        "cpu": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "cuda_device": dev,
        "torch": torch.__version__,
        "sh_degree": 3,
        "scale": a.scale,
        "load_average": [round(x, 1) for x in os.getloadavg()],
        "results": rows,
    }
    print(json.dumps(out, indent=2))
    assert all(math.isfinite(r["fwd_ms"]) for r in rows)


if __name__ == "__main__":
    main()
