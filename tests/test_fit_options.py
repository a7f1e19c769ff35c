"""``nerfhead fit``'s typed options: the model's fit config as nested options (docstrings in --help, defaults
from the preset), checked before the capture loads, ``--set`` as an alias; and a verb's ImportError surfaces."""

from __future__ import annotations

import json
import sys

import pytest

from nerfhead.cli.main import run
from tests.models.tiny_capture import write_tiny_capture


def test_help_shows_the_chosen_models_nested_options(capsys):
    with pytest.raises(SystemExit) as e:
        run(["fit", "--help"])
    assert e.value.code == 0
    splat = capsys.readouterr().out
    assert (
        "--model.sh-degree INT" in splat
        and "--strategy.max-gaussians INT" in splat
        and "Largest SH degree stored" in splat
    )
    with pytest.raises(SystemExit):
        run(["fit", "--model", "nerf", "--preset", "fast", "--help"])
    nerf = capsys.readouterr().out
    assert "--model.ensemble.n-grids" in nerf and "--n-rays" in nerf and "--model.sh-degree INT" not in nerf


@pytest.mark.parametrize(
    ("argv", "option", "problem"),
    [
        (["--model.sh-degre", "1"], "--model.sh-degre", "unknown setting 'model.sh_degre'"),
        (["--model.sh-degree", "abc"], "--model.sh-degree", "expected int"),
        (["--strategy.max-gaussians"], "--strategy.max-gaussians", "needs a value"),
        (["--no-such-option", "1"], "--no-such-option", "unknown option"),
        (["--model", "nerf", "--model.triangle-stride", "2"], "--model.triangle-stride", "unknown setting"),
        (["--set", "model.sh_degree=x"], "--set", "expected int"),
    ],
)
def test_bad_config_option_is_one_line_before_the_capture_loads(tmp_path, capsys, argv, option, problem):
    missing = tmp_path / "not_a_capture"  # never read: the option fails first
    assert run(["fit", str(missing), "--out", str(tmp_path / "run"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"error: {option}:") and problem in err, err
    assert not (tmp_path / "run").exists()


def test_nested_options_and_set_reach_the_fit_config(tmp_path, capsys):
    from nerfhead.data import save_capture

    cap = tmp_path / "cap"
    save_capture(write_tiny_capture(cap), cap)
    out = tmp_path / "run"
    argv = ["fit", str(cap), "--out", str(out), "--preset", "fast", "--device", "cpu", "--threads", "1"]
    argv += [
        "--no-evaluate",
        "--trainer.steps",
        "2",
        "--model.sh-degree",
        "0",
        "--strategy.max-gaussians",
        "777",
    ]
    assert run([*argv, "--set", "model.init_opacity=0.25"]) == 0
    fit = json.loads((out / "avatar.json").read_text())["fit"]
    assert fit["trainer"]["steps"] == 2 and fit["model"]["sh_degree"] == 0
    assert fit["strategy"]["max_gaussians"] == 777 and fit["model"]["init_opacity"] == 0.25
    assert fit["model"]["triangle_stride"] == 4  # untouched: the fast preset's value, not the dataclass's 1
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["steps"] == 2


def test_an_import_error_inside_a_verb_surfaces(tmp_path, monkeypatch):
    from nerfhead.cli import main as cli_main

    (tmp_path / "broken_verb.py").write_text(
        "import nerfhead_no_such_dependency\n\ndef main() -> None: ...\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli_main.VERBS, "broken", "broken_verb:main")
    with pytest.raises(ModuleNotFoundError, match="nerfhead_no_such_dependency"):
        run(["broken"])
    sys.modules.pop("broken_verb", None)


def test_resume_applies_a_nested_option_given_with_the_presets_value(tmp_path):
    from nerfhead.data import save_capture
    from nerfhead.models.registry import get

    cap = tmp_path / "cap"
    save_capture(write_tiny_capture(cap), cap)
    out = tmp_path / "run"
    base = ["fit", str(cap), "--out", str(out), "--preset", "fast", "--device", "cpu", "--threads", "1"]
    base += ["--no-evaluate"]
    assert run([*base, "--trainer.steps", "2", "--loss.alpha-weight", "0.5"]) == 0
    preset = get("splat").preset("fast").loss.alpha_weight
    assert preset != 0.5
    # on resume the saved 0.5 stays unless the option is given, even with the preset's own value
    assert run([*base, "--resume", "--trainer.steps", "3"]) == 0
    assert json.loads((out / "avatar.json").read_text())["fit"]["loss"]["alpha_weight"] == 0.5
    assert run([*base, "--resume", "--trainer.steps", "4", "--loss.alpha-weight", str(preset)]) == 0
    fit = json.loads((out / "avatar.json").read_text())["fit"]
    assert fit["loss"]["alpha_weight"] == preset and fit["trainer"]["steps"] == 4


def test_choose_threads_reads_the_cores_busy_now(monkeypatch):
    """A fit takes torch's default threads on an idle machine and 1 where other processes keep half the cores
    busy, as measured now; the load average (which still counts a job that ended seconds ago) is only the
    fallback where /proc/stat cannot be read."""
    import os

    import torch

    from nerfhead.cli import fit as fit_cli

    cores = os.cpu_count() or 1
    default = torch.get_num_threads()
    assert fit_cli.choose_threads(3) == 3 and fit_cli.choose_threads(0) == default
    assert fit_cli.choose_threads(None, busy=0.0) == default
    assert fit_cli.choose_threads(None, busy=0.5 * cores) == 1  # must fail if a busy machine got every thread
    assert fit_cli.choose_threads(None, busy=0.5 * cores - 0.2) == default
    monkeypatch.setattr(fit_cli, "busy_cores", lambda window_s=0.5: None)
    monkeypatch.setattr(os, "getloadavg", lambda: (float(cores), 0.0, 0.0))
    assert fit_cli.choose_threads(None) == 1
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert fit_cli.choose_threads(None) == default


def test_busy_cores_measures_a_spinning_process():
    """busy_cores sees another process spinning on a core."""
    import subprocess
    import sys

    from nerfhead.cli.fit import busy_cores

    idle = busy_cores(0.3)
    assert idle is not None and idle >= 0.0
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.3)
        busy = busy_cores(0.5)
    finally:
        spin.kill()
        spin.wait()
    assert busy is not None and busy >= 0.7
