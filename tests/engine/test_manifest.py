"""One job per capture: the SLURM array script maps its task id to the manifest's capture, and the same manifest
runs locally one capture after another (skipping finished ones)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nerfhead.data import save_capture
from tests.models.tiny_capture import write_tiny_capture

REPO = Path(__file__).resolve().parents[2]
FIT = [
    "--",
    "--preset",
    "fast",
    "--steps",
    "3",
    "--no-evaluate",
    "--threads",
    "1",
    "--device",
    "cpu",
    "--set",
]
FIT += ['model.parts=["head_and_neck"]', "model.triangle_stride=3"]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("many")
    for name in ("a", "b"):
        save_capture(write_tiny_capture(root / name, size=24, n_cams=3, T=2), root / name)
    m = root / "subjects.txt"
    m.write_text("# two subjects\nalice a --seed 1\n\nbob b   # fitted with the defaults\n")
    return m


def _run(cmd: list[str], **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, **env, "NERFHEAD_PYTHON": sys.executable}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=full, cwd=REPO)


def test_slurm_task_fits_its_capture_then_local_run_does_the_rest(manifest, tmp_path):
    out = tmp_path / "runs"
    p = _run(["bash", "scripts/slurm_array.sh", str(manifest), str(out), *FIT], SLURM_ARRAY_TASK_ID="1")
    assert p.returncode == 0, p.stderr[-2000:]
    assert (out / "bob" / "avatar" / "fit.json").is_file() and not (out / "alice").exists()
    summary = json.loads((out / "bob" / "avatar" / "fit.json").read_text())
    assert summary["steps"] == 3

    p = _run([sys.executable, "scripts/run_manifest.py", str(manifest), "--out", str(out), *FIT])
    assert p.returncode == 0, p.stderr[-2000:]
    assert "[bob] done already" in p.stdout
    spec = json.loads((out / "alice" / "avatar" / "avatar.json").read_text())
    assert spec["fit"]["trainer"]["seed"] == 1  # the manifest line's own options


def test_bad_index_and_bad_manifest_exit_2(manifest, tmp_path):
    p = _run(["bash", "scripts/slurm_array.sh", str(manifest), str(tmp_path)], SLURM_ARRAY_TASK_ID="2")
    assert p.returncode == 2 and "index 2 is outside its 2 captures" in p.stderr
    bad = tmp_path / "bad.txt"
    bad.write_text("lonely\n")
    p = _run([sys.executable, "scripts/run_manifest.py", str(bad), "--out", str(tmp_path)])
    assert p.returncode == 2 and "bad.txt:1: expected NAME INPUT" in p.stderr
    p = _run(["bash", "scripts/slurm_array.sh", str(manifest), str(tmp_path)])
    assert p.returncode != 0 and "SLURM_ARRAY_TASK_ID" in p.stderr
