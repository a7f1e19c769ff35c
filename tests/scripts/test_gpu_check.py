"""scripts/gpu_check.sh: its CPU dry mode runs every step and reports each in one JSON; a failing step fails it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gpu_check.sh"
STEPS = ["env", "build", "parity", "bench_ops", "synth", "fit", "bench_render", "bench_render_gaussians"]


def gpu_check(*args: str, timeout: float = 240) -> tuple[subprocess.CompletedProcess, Path]:
    out = Path(args[args.index("--out") + 1])
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHON": sys.executable}
    p = subprocess.run(
        ["bash", str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    return p, out


def test_dry_mode_runs_every_step_and_reports_it(tmp_path: Path) -> None:
    p, out = gpu_check("--dry", "--out", str(tmp_path / "gc"))
    assert p.returncode == 0, p.stdout + p.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["mode"] == "dry" and report["ok"] is True
    assert [s["step"] for s in report["steps"]] == STEPS
    by = {s["step"]: s for s in report["steps"]}
    assert all(s["status"] == "passed" and s["exit_code"] == 0 for s in report["steps"])
    assert by["env"]["result"]["cuda_available"] is False
    assert by["build"]["result"]["cuda_sources"] >= 4
    assert by["parity"]["result"]["collected"] >= 13  # every test marked cuda, in every file that has one
    ops = by["bench_ops"]["result"]
    assert set(ops["hash_grid"]) == {"cpu"}
    assert ops["hash_grid"]["cpu"]["forward_points_per_s"] > 0
    fit = by["fit"]["result"]
    assert fit["device"] == "cpu" and fit["steps"] == 2 and 5.0 < fit["eval"]["psnr"] < 60.0
    assert by["bench_render"]["result"] is not None
    assert by["bench_render_gaussians"]["result"] is not None
    log = (out / "gpu_check.log").read_text()
    assert all(f"=== {name}: exit 0" in log for name in STEPS)


def test_a_failing_step_fails_the_check(tmp_path: Path) -> None:
    """A Python that breaks on bench_ops.py: that step is reported failed and the script exits 1."""
    fake = tmp_path / "python"
    fake.write_text(
        f'#!/bin/sh\ncase "$*" in *bench_ops.py*) echo broken >&2; exit 3;; esac\nexec {sys.executable} "$@"\n'
    )
    fake.chmod(0o755)
    p, out = gpu_check("--dry", "--only", "bench_ops", "--python", str(fake), "--out", str(tmp_path / "gc"))
    assert p.returncode == 1
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["ok"] is False
    assert [(s["step"], s["status"], s["exit_code"]) for s in report["steps"]] == [("bench_ops", "failed", 3)]


def test_gpu_mode_without_a_device_fails_at_env(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    p, out = gpu_check("--only", "env", "--out", str(tmp_path / "gc"))
    assert p.returncode == 1
    step = json.loads((out / "gpu_check.json").read_text())["steps"][0]
    assert step["step"] == "env" and step["status"] == "failed"
    assert "no CUDA device" in (out / "gpu_check.log").read_text()


def test_unknown_option_exits_2(tmp_path: Path) -> None:
    p = subprocess.run(["bash", str(SCRIPT), "--bogus"], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 2 and "--bogus" in p.stderr
