"""Bad outputs and devices for ``nerfhead synth``, ``nerfhead eval-drive`` and ``nerfhead demo``: refused before
any rendering or training with exit 2 and one line naming the option, nothing written before changed."""

from __future__ import annotations

import pytest

from tests.badinput.conftest import Cases

CASES = Cases()


@CASES.add
def synth_out_is_a_file(tmp, good):
    (tmp / "capture.txt").write_text("keep me")
    return ["synth", "--out", tmp / "capture.txt", "--frames", "1"], ["--out", "capture.txt"]


@CASES.add
def synth_out_is_a_run(tmp, good):
    return ["synth", "--out", good.run, "--frames", "1"], ["--out", "run folder"]


@CASES.add
def eval_drive_out_is_a_folder(tmp, good):
    (tmp / "report.json").mkdir()
    return ["eval-drive", good.capture, "--out", tmp / "report.json"], ["--out", "is a folder"]


@CASES.add
def eval_drive_save_run_is_a_file(tmp, good):
    (tmp / "run.txt").write_text("keep me")
    return ["eval-drive", good.capture, "--save-run", tmp / "run.txt"], ["--save-run", "run.txt"]


@CASES.add
def demo_device_missing(tmp, good):
    return ["demo", "--out", tmp / "demo", "--device", "cuda:64"], ["--device"]


@CASES.add
def demo_out_is_a_file(tmp, good):
    (tmp / "demo.txt").write_text("keep me")
    return ["demo", "--out", tmp / "demo.txt", "--device", "cpu"], ["--out", "demo.txt"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_synth_demo_bad_input(name, tmp_path, good, bad):
    args, names = CASES[name](tmp_path, good)
    bad(list(map(str, args)), names, keep=(tmp_path,))
