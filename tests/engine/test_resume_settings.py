"""Resume reuses every result-changing setting a run saved (thread count, preset, device), cleans up what a
killed fit left behind, continues log.jsonl without repeating steps, and ends where an uninterrupted fit ends
(bit for bit); the run lock admits one writer and frees itself when its holder dies."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nerfhead.engine.checkpoint import clean_leftovers, latest_checkpoint, trim_log
from nerfhead.engine.runlock import run_lock
from nerfhead.errors import InputError

FAST = ["--preset", "fast", "--no-evaluate", "--device", "cpu"]
STEPS = [
    "--steps",
    "4",
    "--set",
    "trainer.checkpoint_every=2",
    "trainer.log_every=1",
    "trainer.keep_checkpoints=2",
]


@pytest.fixture(scope="module")
def capture(tmp_path_factory) -> Path:
    from nerfhead.data import save_capture
    from tests.models.tiny_capture import write_tiny_capture

    cap = tmp_path_factory.mktemp("resume") / "cap"
    save_capture(write_tiny_capture(cap), cap)
    return cap


def _weights(run: Path) -> dict[str, torch.Tensor]:
    ckpt = latest_checkpoint(run)
    assert ckpt is not None
    return load_file(str(ckpt / "model.safetensors"))


def test_resume_reuses_saved_settings_and_matches_uninterrupted(capture, tmp_path, run_cli):
    n = torch.get_num_threads()
    try:
        for name in ("whole", "part"):
            code, _, err = run_cli("fit", capture, "--out", tmp_path / name, *FAST, *STEPS, "--threads", "1")
            assert code == 0, err
        # "part" as a fit killed after its checkpoint at step 2 leaves it: newer checkpoint gone, records past
        # step 2 in the log (and a torn line), temporaries of the write that was killed
        run = tmp_path / "part"
        shutil.rmtree(run / "checkpoints" / "step_000004")
        (run / "checkpoints" / "latest").write_text("step_000002\n")
        (run / "fit.json").unlink()
        with open(run / "log.jsonl", "a") as f:
            f.write('{"step": 5, "lo')
        (run / "checkpoints" / ".step_000004.abc123").mkdir()
        (run / "checkpoints" / ".step_000004.abc123" / "model.safetensors").write_bytes(b"half")
        (run / ".fit.1a2b3c4d.partial.json").write_text("{")
        torch.set_num_threads(2)  # a differently loaded machine: the resume must not take this
        # no --preset and no --threads: both come from the run
        code, _, err = run_cli("fit", capture, "--out", run, "--resume", "--no-evaluate")
        assert code == 0, err
    finally:
        torch.set_num_threads(n)
    summary = json.loads((run / "fit.json").read_text())
    assert (summary["preset"], summary["threads"], summary["start_step"], summary["steps"]) == (
        "fast",
        1,
        2,
        4,
    )
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "loss" in r]
    assert steps == [1, 2, 3, 4], steps
    assert not list((run / "checkpoints").glob(".step_*")) and not list(run.glob(".*.partial*"))
    a, b = _weights(tmp_path / "whole"), _weights(run)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_trim_log_and_clean_leftovers(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"step": s}) + "\n" for s in (1, 2, 3, 4)) + '{"step": 5')
    assert trim_log(tmp_path, 2) == 3
    assert [json.loads(x)["step"] for x in log.read_text().splitlines()] == [1, 2]
    assert trim_log(tmp_path, 2) == 0  # nothing more to drop: the file is left alone
    (tmp_path / "checkpoints" / ".step_000010.x").mkdir(parents=True)
    (tmp_path / "checkpoints" / "step_000002").mkdir()
    (tmp_path / ".drive.ab.partial.npz").write_bytes(b"")
    (tmp_path / "keep.partial.txt").write_text("not ours: no leading dot")
    gone = clean_leftovers(tmp_path)
    assert sorted(p.name for p in gone) == [".drive.ab.partial.npz", ".step_000010.x"]
    assert (tmp_path / "checkpoints" / "step_000002").is_dir() and (tmp_path / "keep.partial.txt").is_file()


def test_run_lock_one_writer_and_freed_by_death(tmp_path):
    run = tmp_path / "run"
    with run_lock(run, "fit"):
        with pytest.raises(InputError, match=f"pid {os.getpid()}"):
            with run_lock(run, "eval"):
                pass
    with run_lock(run, "eval"):  # released on exit
        pass
    # another process holds it, then is killed with SIGKILL: the lock goes with it
    code = f"from nerfhead.engine.runlock import run_lock\nwith run_lock({str(run)!r}, 'fit'):\n print('held', flush=True)\n import time; time.sleep(60)"
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match=f"pid {p.pid} \\(fit\\)"):
            with run_lock(run, "fit"):
                pass
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        time.sleep(0.05)
        with run_lock(run, "fit"):
            pass
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
