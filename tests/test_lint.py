"""House habits: ruff (lint + format) and pyright are clean on the whole tree; clang-format on cuda_ext."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} not installed (it is in the [dev] extra)")
    return found


def test_ruff_check():
    p = subprocess.run([_tool("ruff"), "check", "."], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout[-6000:]


def test_ruff_format():
    p = subprocess.run([_tool("ruff"), "format", "--check", "."], cwd=REPO, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout[-6000:]


def test_clang_format_cuda_ext():
    sources = sorted(
        str(p) for p in (REPO / "cuda_ext" / "csrc").iterdir() if p.suffix in (".cpp", ".cu", ".h")
    )
    assert len(sources) >= 20
    p = subprocess.run(
        [_tool("clang-format"), "--dry-run", "--Werror", *sources], cwd=REPO, capture_output=True, text=True
    )
    assert p.returncode == 0, p.stderr[-6000:]


@pytest.mark.slow
def test_pyright():
    p = subprocess.run([_tool("pyright")], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-8000:]
