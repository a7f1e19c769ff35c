"""scripts/bench_peers.py's own parts (the timed fits are the script's, not the tests'): nerfstudio's copy of the
capture, and the held-out PSNR of a peer's renders by nerfhead's metric."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


bench_peers = _load("bench_peers", REPO / "scripts" / "bench_peers.py")
data_synth = _load("data_synth", REPO / "tests" / "data" / "data_synth.py")


@pytest.fixture
def capture_dir(tmp_path: Path) -> Path:
    from nerfhead.data.nerfstudio import save_capture

    cap = tmp_path / "capture"
    capture = data_synth.write_tiny_capture(cap, n_cams=4, T=1, masks=True)
    save_capture(capture, cap)
    return cap


def test_nerfstudio_copy_drops_masks_and_keeps_the_split(capture_dir: Path) -> None:
    cap, ns = bench_peers.make_capture(capture_dir.parent, capture_dir.parent / "log.txt")
    assert cap == capture_dir and ns == capture_dir / "transforms_nerfstudio.json"
    ours = json.loads((cap / "transforms.json").read_text())
    theirs = json.loads(ns.read_text())
    assert all("mask_path" in f for f in ours["frames"])
    assert not any("mask_path" in f for f in theirs["frames"])
    assert [f["file_path"] for f in theirs["frames"]] == [f["file_path"] for f in ours["frames"]]
    assert theirs["val_filenames"] == ours["val_filenames"] == ["images/cam03/00000.png"]
    assert len(theirs["train_filenames"]) == 3


def test_heldout_psnr_uses_our_metric_on_the_heldout_images(capture_dir: Path) -> None:
    from nerfhead.data.loaders import load_capture
    from nerfhead.engine.targets import capture_background, target_image

    capture = load_capture(capture_dir)
    bg = torch.tensor(capture_background(capture))
    held = capture.frame_index(3, 0)
    other = capture.frame_index(0, 0)
    assert held is not None and other is not None
    gt, _ = target_image(capture, held, bg)
    path = str(capture.frames[held].image_path)
    r = bench_peers.heldout_psnr(capture_dir, {path: (gt + 0.01).numpy()})
    assert r["frames"] == 1 and r["psnr"] == pytest.approx(40.0, abs=1e-3)
    assert r["per_camera"]["cam03"]["psnr"] == pytest.approx(40.0, abs=1e-3)
    wrong, _ = target_image(capture, other, bg)  # another camera's image scores far lower
    assert bench_peers.heldout_psnr(capture_dir, {path: wrong.numpy()})["psnr"] < 15.0
    with pytest.raises(KeyError):  # a missing held-out render is an error, not a skipped frame
        bench_peers.heldout_psnr(capture_dir, {str(capture.frames[other].image_path): gt.numpy()})


def test_markdown_tables_carry_the_measured_numbers() -> None:
    run = {"psnr": 30.126, "ssim": 0.9512, "steps": 800, "load_before": [1.5, 1.0, 1.0]}
    peer = {"psnr": 18.0, "ssim": 0.8, "steps": 12, "load_before": [2.25, 1.0, 1.0]}
    rate = {"forward_points_per_s": 3.0e6, "forward_backward_points_per_s": 1.0e6}
    out = {
        "nerf_vs_nerfacto": [{"minutes": 1.0, "nerfhead_nerf": run, "nerfacto": peer, "margin_db": 12.126}],
        "hash_encoding": {
            "cpu": {
                **rate,
                "speedup_vs_nerfstudio": {"forward_points_per_s": 6.0, "forward_backward_points_per_s": 5.0},
            },
        },
    }
    text = bench_peers.markdown(out)
    assert "| 1 min | 30.13 dB / 0.951 | 800 | 18.00 dB / 0.800 | 12 | +12.13 dB | 1.50, 2.25 |" in text
    assert "| nerfhead C++ CPU kernel | 3000.0 | 1000.0 | 6.0x | 5.0x |" in text
    with pytest.raises(KeyError):  # a row without its peer is not a table row
        bench_peers.markdown({"nerf_vs_nerfacto": [{"minutes": 1.0, "nerfhead_nerf": run}]})
