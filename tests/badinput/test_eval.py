"""Bad inputs to ``nerfhead eval``: each answered before any work with exit 2 and one line naming the file or
option, nothing written before it changed."""

from __future__ import annotations

import json
import os

import pytest

from tests.badinput.conftest import (
    Cases,
    assert_one_line,
    checkpoint_file,
    copy_run,
    edited_capture,
    foreign_weights,
    hold_lock,
    run_subprocess,
    set_frame,
    snapshot,
    tmpfs,
    truncate,
)

CASES = Cases()


@CASES.add
def run_missing(tmp, good):
    return [tmp / "no_run"], ["no_run", "no such run"]


@CASES.add
def run_is_a_file(tmp, good):
    (tmp / "run.txt").write_text("keep me")
    return [tmp / "run.txt"], ["run.txt"]


@CASES.add
def run_is_not_a_run(tmp, good):
    (tmp / "plain").mkdir()
    (tmp / "plain" / "notes.txt").write_text("keep me")
    return [tmp / "plain"], ["plain", "avatar.json"]


@CASES.add
def truncated_checkpoint(tmp, good):
    run = copy_run(good, tmp / "run")
    truncate(checkpoint_file(run))
    return [run, "--capture", good.capture], ["model.safetensors", "unreadable"]


@CASES.add
def truncated_optimizer_state(tmp, good):
    run = copy_run(good, tmp / "run")
    truncate(checkpoint_file(run, "optimizer.safetensors"), 0.1)
    return [run, "--capture", good.capture], ["optimizer.safetensors"]


@CASES.add
def wrong_kind_weights(tmp, good):
    run = copy_run(good, tmp / "run")
    foreign_weights(checkpoint_file(run))
    return [run, "--capture", good.capture], ["model.safetensors", "do not fit"]


@CASES.add
def unknown_model_kind(tmp, good):
    run = copy_run(good, tmp / "run")
    spec = json.loads((run / "avatar.json").read_text())
    spec["kind"] = "mesh_head"
    (run / "avatar.json").write_text(json.dumps(spec))
    return [run], ["avatar.json", "mesh_head"]


@CASES.add
def out_is_a_file(tmp, good):
    (tmp / "eval.txt").write_text("keep me")
    return [good.run, "--out", tmp / "eval.txt"], ["--out", "eval.txt"]


@CASES.add
def device_cuda_missing(tmp, good):
    return [good.run, "--device", "cuda:64"], ["--device"]


@CASES.add
def capture_escapes(tmp, good):
    cap = edited_capture(good, tmp, set_frame(0, "file_path", "../../../../../../etc/passwd"))
    return [good.run, "--capture", cap], ["frame 0 file_path", "outside the capture"]


@CASES.add
def capture_missing(tmp, good):
    return [good.run, "--capture", tmp / "gone"], ["gone"]


@CASES.add
def run_in_use(tmp, good):
    run = hold_lock(copy_run(good, tmp / "run"))
    return [run], [run, f"pid {os.getpid()}"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_eval_bad_input(name, tmp_path, good, bad):
    args, names = CASES[name](tmp_path, good)
    bad(["eval", *map(str, args)], names, keep=(tmp_path,))


def test_eval_read_only_out(tmp_path, good, run_cli):
    with tmpfs(tmp_path / "ro", "1m", read_only=True, seed={"eval.json": b"{}\n"}) as ro:
        before = snapshot(ro, good.run)
        code, _, err = run_cli("eval", good.run, "--out", ro, "--device", "cpu")
        assert_one_line(code, err, "--out", "read-only")
        assert snapshot(ro, good.run) == before


def test_subprocess_eval_truncated_checkpoint(tmp_path, good):
    """End to end: the issue's half-truncated model.safetensors in a real process: exit 2, one line."""
    run = copy_run(good, tmp_path / "run")
    truncate(checkpoint_file(run))
    before = snapshot(run)
    p = run_subprocess("eval", run, "--capture", good.capture, "--device", "cpu")
    assert_one_line(p.returncode, p.stderr, "model.safetensors")
    assert snapshot(run) == before


def test_eval_full_disk(tmp_path, good, run_cli):
    """A full disk when eval.json / eval_grid.png are written: one line naming the file, the earlier report
    intact, no temporary file left."""
    seed = {"eval.json": b'{"earlier": true}\n', "eval_grid.png": b"earlier grid"}
    with tmpfs(tmp_path / "full", "64k", seed=seed, fill=True) as disk:
        before = snapshot(disk / "eval.json", disk / "eval_grid.png", good.run)
        code, _, err = run_cli("eval", good.run, "--out", disk, "--device", "cpu")
        assert_one_line(code, err, disk, "no space left")
        assert snapshot(disk / "eval.json", disk / "eval_grid.png", good.run) == before
        assert sorted(p.name for p in disk.iterdir()) == ["eval.json", "eval_grid.png", "pad"]
