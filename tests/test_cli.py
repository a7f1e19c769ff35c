"""The nerfhead command: verbs listed, doctor answers, errors are one line with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def test_help_lists_verbs(run_cli):
    with pytest.raises(SystemExit) as e:
        run_cli("--help")
    assert e.value.code == 0


def test_help_subprocess_lists_verbs():
    out = subprocess.run(
        [sys.executable, "-m", "nerfhead", "--help"], capture_output=True, text=True, check=True
    )
    for verb in ("doctor", "demo", "inspect", "synth", "fit", "eval", "drive", "view", "export"):
        assert verb in out.stdout


def test_doctor_json(run_cli):
    code, out, _ = run_cli("doctor", "--json")
    assert code == 0
    r = json.loads(out)
    assert r["backends"]["torch_twin"] is True
    assert r["cpu_kernels"] is True  # the test command builds the extension first
    assert r["backends"]["cuda_device"] is None or isinstance(r["backends"]["cuda_device"], str)
    assert all(r["assets"]["files"].values()), r["assets"]
    assert r["versions"]["torch"].startswith("2.")


def test_doctor_table(run_cli):
    code, out, _ = run_cli("doctor")
    assert code == 0 and "cpu_kernels" in out


def test_input_error_is_one_line(run_cli, monkeypatch):
    from nerfhead.cli import main as cli_main
    from nerfhead.errors import InputError

    def boom() -> None:
        raise InputError("some/file.json", "is not JSON", hint="check the path")

    monkeypatch.setattr(cli_main, "_verbs", lambda: {"boom": boom, "doctor": lambda: None})
    code, out, err = run_cli("boom")
    assert code == 2
    assert err.strip() == "error: some/file.json: is not JSON (check the path)"
    assert "Traceback" not in err


def test_every_registered_verb_imports():
    from nerfhead.cli import main as cli_main

    for name, target in list(cli_main.VERBS.items()) + [
        (f"{g} {s}", t) for g, subs in cli_main.GROUPS.items() for s, t in subs.items()
    ]:
        assert cli_main._load(target) is not None, f"verb {name} ({target}) does not import"
