"""Fixtures for the data tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from nerfhead.data import Capture
from tests.data.data_synth import write_tiny_capture


@pytest.fixture
def tiny_capture(tmp_path: Path) -> Capture:
    return write_tiny_capture(tmp_path / "cap")


@pytest.fixture
def inspect_cli(run_cli, monkeypatch):
    """``run_cli`` with the ``inspect`` verb available (added here until nerfhead.cli.main registers it)."""
    from nerfhead.cli import inspect as inspect_verb
    from nerfhead.cli import main as cli_main

    verbs = cli_main._verbs()
    if "inspect" not in verbs:
        monkeypatch.setattr(cli_main, "_verbs", lambda: {**verbs, "inspect": inspect_verb.main})
    return run_cli
