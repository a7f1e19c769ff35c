# pyright: reportMissingImports=false
"""The nerfstudio side of ``scripts/bench_peers.py``. Runs with the Python of the nerfstudio 1.1.5 environment that
``bench_peers.py`` builds (it imports nerfstudio, never nerfhead) and prints one JSON object.

    python _peers_nerfstudio.py fit --data CAPTURE/transforms_nerfstudio.json --out DIR --minutes 2 --threads 2
        nerfstudio's own Trainer with the stock ``nerfacto`` method config, changed only where the CPU needs it
        (machine.device_type cpu, mixed precision off, no viewer) and where the capture needs it (white
        background; no evaluation or checkpoints inside the budget). The step that ends after ``--minutes`` of
        training is the last (as in nerfhead's trainer; nerfacto's 30000-step schedule is never reached); then
        every evaluation camera is rendered with the model's own ``get_outputs_for_camera`` and saved to
        ``DIR/renders.npz`` (float32 [H, W, 3] per image file name).
    python _peers_nerfstudio.py hash --points 262144 --threads 2
        forward and forward+backward throughput of nerfstudio's torch ``HashEncoding`` (the fallback without
        tiny-cuda-nn) at 16 levels x 2 features, 2^19 table, resolutions 16 to 2048.

nerfacto builds an LPIPS metric (torchvision AlexNet weights, a download) when the model is made; no weights can be
downloaded here and no metric of nerfstudio's is used, so that module is replaced by a stub that raises if called.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch


class _NoLPIPS(torch.nn.Module):
    """Stands in for torchmetrics' LPIPS in nerfacto (its weights cannot be downloaded); never called here."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()

    def forward(self, *args, **kwargs):
        raise RuntimeError("LPIPS is disabled in this benchmark (its weights cannot be downloaded)")


def fit(data: Path, out: Path, minutes: float, seed: int) -> dict:
    import torchmetrics.image.lpip as lpip_module
    from nerfstudio.configs.method_configs import method_configs

    lpip_module.LearnedPerceptualImagePatchSimilarity = _NoLPIPS  # nerfacto imports it when the model is made
    config = method_configs["nerfacto"]
    config.machine.device_type = "cpu"
    config.machine.seed = seed
    config.mixed_precision = False
    config.vis = "tensorboard"
    config.output_dir = out
    config.experiment_name = "nerfacto"
    config.timestamp = "run"
    config.relative_model_dir = Path("nerfstudio_models")
    config.steps_per_eval_batch = 10**9
    config.steps_per_eval_image = 10**9
    config.steps_per_eval_all_images = 10**9
    config.steps_per_save = 10**9
    config.save_only_latest_checkpoint = True
    config.pipeline.datamanager.data = data
    config.pipeline.datamanager.dataparser.data = data
    config.pipeline.model.background_color = "white"
    config.viewer.quit_on_train_completion = True

    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    budget = 60.0 * minutes
    state: dict = {"t0": None, "steps": 0, "end": None}
    train_iteration = trainer.train_iteration

    def timed_iteration(step: int):
        if state["t0"] is None:
            state["t0"] = time.perf_counter()
        result = train_iteration(step)
        state["steps"] += 1
        now = time.perf_counter()
        if (
            now - state["t0"] >= budget
        ):  # like nerfhead's trainer: the step that crosses the budget is the last
            trainer.stop_training = True
            state["end"] = now
        return result

    trainer.train_iteration = timed_iteration  # type: ignore[method-assign]
    trainer.train()  # stops at the budget, then saves its checkpoint (outside the timed loop)
    seconds = (state["end"] or time.perf_counter()) - (state["t0"] or 0.0)

    pipeline = trainer.pipeline
    pipeline.eval()
    dataset = pipeline.datamanager.eval_dataset
    cameras = dataset.cameras
    renders = {}
    t_render = time.perf_counter()
    with torch.no_grad():
        for i, name in enumerate(dataset.image_filenames):
            camera = cameras[i : i + 1].to(pipeline.device)
            rgb = pipeline.model.get_outputs_for_camera(camera)["rgb"]
            renders[Path(name).as_posix()] = rgb.float().clamp(0, 1).cpu().numpy()
    import numpy as np

    np.savez(out / "renders.npz", **{f"r{i}": v for i, v in enumerate(renders.values())})
    return {
        "nerfstudio": _version("nerfstudio"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "steps": state["steps"],
        "seconds": seconds,
        "rays_per_batch": config.pipeline.datamanager.train_num_rays_per_batch,
        "render_seconds": time.perf_counter() - t_render,
        "renders": {name: f"r{i}" for i, name in enumerate(renders)},
    }


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _best(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def hash_bench(n_points: int, repeats: int) -> dict:
    from nerfstudio.field_components.encodings import HashEncoding

    torch.manual_seed(0)
    enc = HashEncoding(
        num_levels=16,
        min_res=16,
        max_res=2048,
        log2_hashmap_size=19,
        features_per_level=2,
        implementation="torch",
    )
    x = torch.rand(n_points, 3)
    grad = torch.randn(n_points, enc.get_out_dim())

    def forward() -> None:
        with torch.no_grad():
            enc(x)

    xg = x.clone().requires_grad_(True)

    def forward_backward() -> None:
        xg.grad = None
        enc.zero_grad(set_to_none=True)
        enc(xg).backward(grad)

    t_fwd = _best(forward, repeats)
    t_fb = _best(forward_backward, repeats)
    return {
        "implementation": "nerfstudio.field_components.encodings.HashEncoding(implementation='torch')",
        "nerfstudio": _version("nerfstudio"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "n_points": n_points,
        "table_entries": int(enc.hash_table.shape[0]),
        "forward_s": t_fwd,
        "forward_backward_s": t_fb,
        "forward_points_per_s": n_points / t_fwd,
        "forward_backward_points_per_s": n_points / t_fb,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit")
    f.add_argument("--data", type=Path, required=True)
    f.add_argument("--out", type=Path, required=True)
    f.add_argument("--minutes", type=float, required=True)
    f.add_argument("--threads", type=int, default=0)
    f.add_argument("--seed", type=int, default=42)
    h = sub.add_parser("hash")
    h.add_argument("--points", type=int, default=2**18)
    h.add_argument("--repeats", type=int, default=3)
    h.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    if a.cmd == "fit":
        a.out.mkdir(parents=True, exist_ok=True)
        result = fit(a.data.resolve(), a.out.resolve(), a.minutes, a.seed)
    else:
        result = hash_bench(a.points, a.repeats)
    sys.stdout.write("\n" + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
