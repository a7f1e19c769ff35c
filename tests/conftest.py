"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Tests must never download or write outside tmp dirs; keep torch single-process-friendly on 2 cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("NERFHEAD_CACHE", str(REPO / "scenes" / "cache"))


@pytest.fixture
def run_cli(capsys):
    """Run the ``nerfhead`` CLI in-process; returns (exit code, stdout, stderr)."""
    from nerfhead.cli.main import run

    def _run(*args: str):
        code = run([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return _run
