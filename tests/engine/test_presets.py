"""Every named preset of every model trains a couple of steps on the CPU, checkpoints and evaluates (nerfstudio's
habit: a preset nobody ran is a broken preset)."""

from __future__ import annotations

import json
import math

import pytest

from nerfhead.models.registry import model_kinds
from tests.models.tiny_capture import one_thread, write_tiny_capture

SHRINK = {
    ("nerf", "quality"): {
        "model.ensemble.log2_hashmap_size": 12,
        "model.occupancy_resolution": 32,
        "model.render_steps": 64,
        "n_rays": 256,
    },
}
"""GPU-sized presets keep their structure (16 grids, 16 levels, SH, schedule) but get small tables and ray
batches here: 16 x 2^19-entry tables take minutes per step on a 2-core CPU."""

CASES = [(model, name) for model, kind in sorted(model_kinds().items()) for name in sorted(kind.presets)]


@pytest.fixture(scope="module")
def capture_dir(tmp_path_factory):
    from nerfhead.data import save_capture

    root = tmp_path_factory.mktemp("preset_cap")
    save_capture(write_tiny_capture(root), root)
    return root


@pytest.mark.parametrize(("model", "name"), CASES, ids=[f"{m}-{n}" for m, n in CASES])
def test_preset_smoke_trains(capture_dir, tmp_path, model, name):
    from nerfhead.cli.fit import run_fit

    assert {"default", "fast"} <= {n for m, n in CASES if m == model}
    with one_thread():
        s = run_fit(
            capture_dir,
            tmp_path / "run",
            model=model,
            preset=name,
            steps=2,
            device="cpu",
            progress=False,
            overrides=SHRINK.get((model, name)),
        )
    assert s["steps"] == 2 and s["checkpoint"] is not None
    assert math.isfinite(s["train"]["loss"]) and s["nan_restores"] == 0
    ev = json.loads((tmp_path / "run" / "eval.json").read_text())["mean"]
    assert math.isfinite(ev["psnr"]) and ev["psnr"] > 5.0
