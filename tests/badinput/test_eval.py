"""Bad inputs to ``nerfhead eval``: each answered before any work with exit 2 and one line naming the file or
option, nothing written before it changed."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.badinput.conftest import (
    Good,
    assert_one_line,
    checkpoint_file,
    copy_run,
    foreign_weights,
    run_subprocess,
    snapshot,
    tmpfs,
    truncate,
)

CASES: dict[str, Callable[[Path, Good], tuple[list, list]]] = {}


def case(fn: Callable[[Path, Good], tuple[list, list]]) -> Callable[[Path, Good], tuple[list, list]]:
    CASES[fn.__name__] = fn
    return fn


@case
def run_missing(tmp, good):
    return [tmp / "no_run"], ["no_run", "no such run"]


@case
def run_is_a_file(tmp, good):
    (tmp / "run.txt").write_text("keep me")
    return [tmp / "run.txt"], ["run.txt"]


@case
def run_is_not_a_run(tmp, good):
    (tmp / "plain").mkdir()
    (tmp / "plain" / "notes.txt").write_text("keep me")
    return [tmp / "plain"], ["plain", "avatar.json"]


@case
def truncated_checkpoint(tmp, good):
    run = copy_run(good, tmp / "run")
    truncate(checkpoint_file(run))
    return [run, "--capture", good.capture], ["model.safetensors", "unreadable"]


@case
def truncated_optimizer_state(tmp, good):
    run = copy_run(good, tmp / "run")
    truncate(checkpoint_file(run, "optimizer.safetensors"), 0.1)
    return [run, "--capture", good.capture], ["optimizer.safetensors"]


@case
def wrong_kind_weights(tmp, good):
    run = copy_run(good, tmp / "run")
    foreign_weights(checkpoint_file(run))
    return [run, "--capture", good.capture], ["model.safetensors", "do not fit"]


@case
def unknown_model_kind(tmp, good):
    run = copy_run(good, tmp / "run")
    spec = json.loads((run / "avatar.json").read_text())
    spec["kind"] = "mesh_head"
    (run / "avatar.json").write_text(json.dumps(spec))
    return [run], ["avatar.json", "mesh_head"]


@case
def out_is_a_file(tmp, good):
    (tmp / "eval.txt").write_text("keep me")
    return [good.run, "--out", tmp / "eval.txt"], ["--out", "eval.txt"]


@case
def device_cuda_missing(tmp, good):
    return [good.run, "--device", "cuda:64"], ["--device"]


@case
def capture_escapes(tmp, good):
    cap = tmp / "cap"
    shutil.copytree(good.capture, cap)
    meta = json.loads((cap / "transforms.json").read_text())
    meta["frames"][0]["file_path"] = "../../../../../../etc/passwd"
    (cap / "transforms.json").write_text(json.dumps(meta))
    return [good.run, "--capture", cap], ["frame 0 file_path", "outside the capture"]


@case
def capture_missing(tmp, good):
    return [good.run, "--capture", tmp / "gone"], ["gone"]


@case
def run_in_use(tmp, good):
    from nerfhead.engine.runlock import run_lock

    run = copy_run(good, tmp / "run")
    held = run_lock(run, "fit")
    held.__enter__()
    _HELD.append(held)
    return [run], [run, f"pid {os.getpid()}"]


_HELD: list = []


@pytest.fixture(autouse=True)
def _release_locks():
    yield
    while _HELD:
        _HELD.pop().__exit__(None, None, None)


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
