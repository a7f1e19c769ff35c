"""Bad inputs to ``nerfhead fit`` (and ``--resume``): each answered before any work with exit 2 and one line
naming the file or option, nothing written before it changed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

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

FAST = ["--preset", "fast", "--steps", "2", "--no-evaluate", "--threads", "1", "--device", "cpu"]


def _outside(tmp: Path) -> Path:
    """An image outside the capture folder (a copy of a real frame, so only its place is wrong)."""
    p = tmp / "elsewhere" / "secret.png"
    p.parent.mkdir(exist_ok=True)
    return p


CASES = Cases()


@CASES.add
def out_is_existing_file(tmp, good):
    (tmp / "existing_file.txt").write_text("keep me")
    return [good.capture, "--out", tmp / "existing_file.txt"], ["existing_file.txt"]


@CASES.add
def out_below_a_file(tmp, good):
    (tmp / "notes.txt").write_text("keep me")
    return [good.capture, "--out", tmp / "notes.txt" / "run"], ["notes.txt"]


@CASES.add
def device_cuda_missing(tmp, good):
    return [good.capture, "--out", tmp / "run", "--device", "cuda:64"], ["--device", "cuda:64"]


@CASES.add
def device_unknown(tmp, good):
    return [good.capture, "--out", tmp / "run", "--device", "tpu"], ["--device", "tpu"]


@CASES.add
def set_wrong_type(tmp, good):
    return [good.capture, "--out", tmp / "run", "--set", 'trainer.log_every="abc"'], [
        "--set",
        "trainer.log_every",
    ]


@CASES.add
def set_unknown_key(tmp, good):
    return [good.capture, "--out", tmp / "run", "--set", "trainer.no_such=1"], ["--set", "trainer.no_such"]


@CASES.add
def set_without_equals(tmp, good):
    return [good.capture, "--out", tmp / "run", "--set", "trainer.steps"], ["--set", "KEY=VALUE"]


@CASES.add
def set_into_a_number(tmp, good):
    return [good.capture, "--out", tmp / "run", "--set", "trainer.steps.x=1"], ["--set", "trainer.steps.x"]


@CASES.add
def preset_unknown(tmp, good):
    return [good.capture, "--out", tmp / "run", "--preset", "turbo"], ["--preset", "turbo"]


@CASES.add
def capture_missing(tmp, good):
    return [tmp / "no_capture", "--out", tmp / "run"], ["no_capture"]


@CASES.add
def capture_not_a_capture(tmp, good):
    (tmp / "empty").mkdir()
    return [tmp / "empty", "--out", tmp / "run"], ["empty", "not a capture"]


@CASES.add
def capture_without_drive(tmp, good):
    cap = edited_capture(good, tmp, lambda m, _: m["nerfhead"].pop("drive"))
    return [cap, "--out", tmp / "run"], ["cap", "no drive"]


@CASES.add
def image_missing(tmp, good):
    cap = edited_capture(good, tmp)
    (cap / "c2_t1.png").unlink()
    return [cap, "--out", tmp / "run"], ["c2_t1.png", "not found"]


@CASES.add
def image_truncated(tmp, good):
    cap = edited_capture(good, tmp)
    truncate(cap / "c0_t0.png")
    return [cap, "--out", tmp / "run"], ["c0_t0.png"]


@CASES.add
def image_not_an_image(tmp, good):
    cap = edited_capture(good, tmp)
    (cap / "c3_t2.png").write_text("not a png")
    return [cap, "--out", tmp / "run"], ["c3_t2.png"]


@CASES.add
def mask_wrong_size(tmp, good):
    from nerfhead.data import save_mask

    cap = edited_capture(good, tmp)
    import torch

    save_mask(cap / "c1_t1_mask.png", torch.ones(7, 9))
    return [cap, "--out", tmp / "run"], ["c1_t1_mask.png", "9x7"]


@CASES.add
def file_path_absolute_outside(tmp, good):
    secret = _outside(tmp)
    shutil.copy(good.capture / "c0_t0.png", secret)
    cap = edited_capture(good, tmp, set_frame(0, "file_path", str(secret)))
    return [cap, "--out", tmp / "run"], ["transforms.json", "file_path", "outside the capture"]


@CASES.add
def file_path_dotdot_passwd(tmp, good):
    cap = edited_capture(good, tmp, set_frame(1, "file_path", "../../../../../../../../etc/passwd"))
    return [cap, "--out", tmp / "run"], ["transforms.json", "frame 1 file_path", "outside the capture"]


@CASES.add
def file_path_symlink_out(tmp, good):
    secret = _outside(tmp)
    shutil.copy(good.capture / "c0_t1.png", secret)

    def edit(meta: dict, cap: Path) -> None:
        (cap / "link.png").symlink_to(secret)
        meta["frames"][2]["file_path"] = "link.png"

    cap = edited_capture(good, tmp, edit)
    return [cap, "--out", tmp / "run"], ["frame 2 file_path", "link.png", "outside the capture"]


@CASES.add
def mask_path_escape(tmp, good):
    secret = _outside(tmp)
    shutil.copy(good.capture / "c0_t0_mask.png", secret)
    cap = edited_capture(good, tmp, set_frame(3, "mask_path", "../elsewhere/secret.png"))
    return [cap, "--out", tmp / "run"], ["frame 3 mask_path", "outside the capture"]


@CASES.add
def existing_run_without_resume(tmp, good):
    return [good.capture, "--out", good.run], [good.run, "--resume"]


@CASES.add
def nerf_fit_into_a_splat_run(tmp, good):
    return [good.capture, "--out", good.run, "--model", "nerf"], [good.run, "already holds a fitted run"]


@CASES.add
def resume_without_checkpoint(tmp, good):
    return [good.capture, "--out", tmp / "fresh", "--resume"], ["fresh", "no checkpoint"]


@CASES.add
def resume_with_other_model(tmp, good):
    return [good.capture, "--out", good.run, "--resume", "--model", "nerf"], ["--model", "splat run"]


@CASES.add
def resume_truncated_checkpoint(tmp, good):
    run = copy_run(good, tmp / "run")
    truncate(checkpoint_file(run))
    return [good.capture, "--out", run, "--resume"], ["model.safetensors", "unreadable"]


@CASES.add
def resume_garbage_state(tmp, good):
    run = copy_run(good, tmp / "run")
    checkpoint_file(run, "state.json").write_text('{"step": ')
    return [good.capture, "--out", run, "--resume"], ["state.json"]


@CASES.add
def resume_wrong_kind_weights(tmp, good):
    run = copy_run(good, tmp / "run")
    foreign_weights(checkpoint_file(run))
    return [good.capture, "--out", run, "--resume"], ["model.safetensors", "do not fit"]


@CASES.add
def concurrent_fit(tmp, good):
    run = hold_lock(copy_run(good, tmp / "run"))
    return [good.capture, "--out", run, "--resume"], [run, f"pid {os.getpid()}"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_fit_bad_input(name, tmp_path, good, bad):
    args, names = CASES[name](tmp_path, good)
    bad(["fit", *FAST, *map(str, args)], names, keep=(tmp_path,))


def test_fit_read_only_out(tmp_path, good, run_cli):
    """--out on a read-only mount: refused before any work, naming --out and the folder."""
    with tmpfs(tmp_path / "ro", "1m", read_only=True, seed={"old.txt": b"earlier"}) as ro:
        before = snapshot(ro, good.run)
        code, _, err = run_cli("fit", good.capture, "--out", ro / "run", *FAST)
        assert_one_line(code, err, "ro", "read-only")
        assert snapshot(ro, good.run) == before


def test_fit_full_disk(tmp_path, good, run_cli):
    """A disk that fills up during the fit (the first checkpoint): one line naming the file, the file that was
    there before intact, no temporary checkpoint left behind; the next fit on a roomier disk cleans up."""
    with tmpfs(tmp_path / "full", "160k", seed={"old.txt": b"earlier" * 100}) as disk:
        old = snapshot(disk / "old.txt")
        code, _, err = run_cli("fit", good.capture, "--out", disk / "run", *FAST)
        assert_one_line(code, err, disk / "run", "no space left")
        assert snapshot(disk / "old.txt") == old
        ckpts = disk / "run" / "checkpoints"
        assert not any(p.name.startswith(".step_") for p in ckpts.iterdir()) if ckpts.is_dir() else True


def test_subprocess_fit_out_is_file(tmp_path, good):
    """End to end: a real process, exit 2, one line, no traceback (the issue's first example)."""
    (tmp_path / "existing_file.txt").write_text("keep me")
    p = run_subprocess("fit", good.capture, "--out", tmp_path / "existing_file.txt", *FAST)
    assert_one_line(p.returncode, p.stderr, "existing_file.txt")
    assert (tmp_path / "existing_file.txt").read_text() == "keep me"


def test_subprocess_concurrent_fit(tmp_path, good):
    """Two writers on one run: this process holds the run's lock, a second `nerfhead fit --resume` process is
    refused with this pid, and the run is unchanged."""
    from nerfhead.engine.runlock import run_lock

    run = copy_run(good, tmp_path / "run")
    before = snapshot(run)
    with run_lock(run, "fit"):
        p = run_subprocess("fit", good.capture, "--out", run, "--resume", *FAST)
    assert_one_line(p.returncode, p.stderr, run, f"pid {os.getpid()}")
    assert snapshot(run) == before
