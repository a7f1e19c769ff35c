"""scripts/bench_render.py runs on a fitted run and prints its JSON (timings themselves are not asserted)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from tests.models.tiny_capture import fit_tiny_run_cli

REPO = Path(__file__).resolve().parents[1]


def test_bench_render_json(tmp_path, capsys):
    run, p = fit_tiny_run_cli(tmp_path, 2)
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
