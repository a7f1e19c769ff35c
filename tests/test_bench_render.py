"""scripts/bench_render.py runs on a fitted run and prints its JSON (timings themselves are not asserted)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from tests.models.tiny_capture import write_tiny_capture

REPO = Path(__file__).resolve().parents[1]


def test_bench_render_json(tmp_path, capsys):
    from nerfhead.data import save_capture

    save_capture(write_tiny_capture(tmp_path / "cap"), tmp_path / "cap")
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "nerfhead",
        "fit",
        str(tmp_path / "cap"),
        "--out",
        str(run),
        "--preset",
        "fast",
    ]
    cmd += ["--steps", "2", "--no-evaluate", "--threads", "1"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    spec = importlib.util.spec_from_file_location("bench_render", REPO / "scripts" / "bench_render.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--run", str(run), "--res", "32", "--repeats", "2", "--ref-repeats", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    row = out["results"][0]
    assert row["kind"] == "splat_head" and row["res"] == 32 and row["gaussians"] > 0
    assert row["compiled"]["ms"] > 0 and row["torch_twin"]["ms"] > 0
    assert 0.0 < row["compiled"]["mean_alpha"] < 1.0  # the head is in the picture
    assert abs(row["compiled"]["mean_alpha"] - row["torch_twin"]["mean_alpha"]) < 0.02
    assert mod.main(["--run", str(tmp_path / "nope")]) == 2
