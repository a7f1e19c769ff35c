"""Shared pieces of the bad-input corpus: one tiny fitted run for the whole session, and the check every case
makes: exit code 2, exactly one line on stderr naming the file or option at fault, no traceback, and every file
written before the case byte-identical after it."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Good:
    """The corpus's good inputs and outputs (never modified by a case: cases copy what they damage)."""

    root: Path
    capture: Path  # the tiny 4-camera capture with masks and a drive
    run: Path  # a splat fit of it (2 steps)
    audio: Path  # 0.3 s of speech-like noise (wav)


def _write_wav(path: Path, seconds: float = 0.3, sr: int = 16000) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes((x * 32767).astype("<i2").tobytes())
    return path


@pytest.fixture(scope="session")
def good(tmp_path_factory) -> Good:
    """A tiny capture, its 2-step splat fit (in-process, one thread) and a short wav."""
    import torch

    from nerfhead.cli.fit import run_fit
    from nerfhead.data import save_capture
    from tests.models.tiny_capture import write_tiny_capture

    root = tmp_path_factory.mktemp("badinput_good")
    cap = root / "cap"
    save_capture(write_tiny_capture(cap), cap)
    threads = torch.get_num_threads()
    try:
        run_fit(
            cap, root / "run", preset="fast", steps=2, device="cpu", progress=False, evaluate=False, threads=1
        )
    finally:
        torch.set_num_threads(threads)
    return Good(root, cap, root / "run", _write_wav(root / "speech.wav"))


def snapshot(*roots: Path) -> dict[str, str]:
    """sha256 of every file under ``roots`` (the run lock's ``.lock`` holds the last pid, not an output)."""
    out: dict[str, str] = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in files:
            if p.name != ".lock":
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def assert_one_line(code: int, err: str, *names: str | os.PathLike) -> str:
    """Exit 2, one stderr line starting ``error:``, no traceback, naming each of ``names``."""
    assert code == 2, f"exit {code}: {err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err, err
    for n in names:
        assert str(n) in lines[0], f"{n!s} not named in: {lines[0]}"
    return lines[0]


@pytest.fixture
def bad(run_cli, good) -> Callable[..., str]:
    """``bad(args, names, keep=[paths])``: run the CLI in-process and assert the one-line answer; the good run,
    the capture and every path in ``keep`` are byte-identical afterwards."""

    def _bad(args: list, names: list, keep: tuple[Path, ...] = ()) -> str:
        roots = (good.run, good.capture, *keep)
        before = snapshot(*roots)
        code, _, err = run_cli(*args)
        line = assert_one_line(code, err, *names)
        assert snapshot(*roots) == before, f"files changed by a refused command: {line}"
        return line

    return _bad


def run_subprocess(*args: str | os.PathLike) -> subprocess.CompletedProcess:
    """``python -m nerfhead ARGS`` as a real process (for the end-to-end exit code / no-traceback cases)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "nerfhead", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO, env=env)


def copy_run(good: Good, dest: Path) -> Path:
    """A copy of the good run to damage."""
    shutil.copytree(good.run, dest)
    return dest


def checkpoint_file(run: Path, name: str = "model.safetensors") -> Path:
    """A file of the run's newest checkpoint."""
    from nerfhead.engine.checkpoint import latest_checkpoint

    ckpt = latest_checkpoint(run)
    assert ckpt is not None
    return ckpt / name


def foreign_weights(path: Path) -> None:
    """Replace a checkpoint's model weights with another model's (a NeRF head's tensor names)."""
    import torch
    from safetensors.torch import save_file

    save_file(
        {"model.field.grid.table": torch.zeros(64, 2), "model.field.mlp.0.weight": torch.zeros(8, 8)},
        str(path),
    )


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _mount(kind: str, target: Path, options: str) -> str | None:
    """Mount a tmpfs at ``target``; the reason it could not, or None."""
    if os.geteuid() != 0:
        return "not root: cannot mount a tmpfs"
    if shutil.which("mount") is None:
        return "no mount command"
    target.mkdir(parents=True, exist_ok=True)
    p = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True, text=True
    )
    return None if p.returncode == 0 else f"mount -t tmpfs failed: {p.stderr.strip()}"


@contextlib.contextmanager
def tmpfs(
    target: Path, size: str, read_only: bool = False, seed: dict[str, bytes] | None = None, fill: bool = False
) -> Iterator[Path]:
    """A small tmpfs at ``target`` (a small disk, with ``fill`` a full one, with ``read_only`` a read-only
    folder) holding the files ``seed`` (and with ``fill`` a ``pad`` file taking every free byte); skips the
    test, printing the reason, when it cannot be mounted (not root, no mount)."""
    why = _mount("tmpfs", target, f"size={size}")
    if why is not None:
        print(f"skipped: {why}")
        pytest.skip(why)
    try:
        for name, data in (seed or {}).items():
            (target / name).write_bytes(data)
        if fill:
            with open(target / "pad", "wb", buffering=0) as f:
                with contextlib.suppress(OSError):
                    while True:
                        f.write(b"\0" * 512)
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(target)], check=True)
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


class Cases(dict):
    """A verb group's table of cases: ``name -> fn(tmp, good) -> (args, names the line must hold)``."""

    def add(self, fn: Callable[[Path, Good], tuple[list, list]]) -> Callable[[Path, Good], tuple[list, list]]:
        self[fn.__name__] = fn
        return fn


def edited_capture(good: Good, tmp: Path, edit: Callable[[dict, Path], None] | None = None) -> Path:
    """A copy of the good capture in ``tmp/cap``, its transforms.json edited by ``edit(meta, folder)``."""
    import json

    cap = tmp / "cap"
    shutil.copytree(good.capture, cap)
    if edit is not None:
        meta = json.loads((cap / "transforms.json").read_text())
        edit(meta, cap)
        (cap / "transforms.json").write_text(json.dumps(meta))
    return cap


def set_frame(i: int, key: str, value: str) -> Callable[[dict, Path], None]:
    """An ``edited_capture`` edit: frame ``i``'s ``key`` becomes ``value``."""

    def edit(meta: dict, cap: Path) -> None:
        meta["frames"][i][key] = value

    return edit


_HELD: list = []


def hold_lock(run: Path) -> Path:
    """Hold ``run``'s lock (as another fit would) until the test ends."""
    from nerfhead.engine.runlock import run_lock

    held = run_lock(run, "fit")
    held.__enter__()
    _HELD.append(held)
    return run


@pytest.fixture(autouse=True)
def _release_locks():
    yield
    while _HELD:
        _HELD.pop().__exit__(None, None, None)
