"""One writer per run folder: an advisory ``fcntl`` lock on ``RUN/.lock`` held for a whole fit, resume or eval.

A second process (or a second call in the same process) that asks for the lock of a run in use gets an
``InputError`` naming the holder's pid at once, instead of two writers interleaving ``log.jsonl`` and checkpoints.
The lock dies with its process (a ``kill -9`` frees it); the ``.lock`` file itself stays, holding the last pid.
While the lock is held, leftovers of killed writes (temporary checkpoint folders, ``.partial`` files) are
removed, since no other writer can own them.
"""

from __future__ import annotations

import fcntl
import functools
import inspect
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from nerfhead.errors import InputError

LOCK_NAME = ".lock"
F = TypeVar("F", bound=Callable[..., Any])


def lock_holder(run_dir: str | os.PathLike) -> str:
    """What ``RUN/.lock`` says about its last holder (``"pid 123 (fit)"``), or ``"unknown"``."""
    try:
        text = (Path(run_dir) / LOCK_NAME).read_text().split()
    except OSError:
        return "unknown"
    return f"pid {text[0]}" + (f" ({text[1]})" if len(text) > 1 else "") if text else "unknown"


@contextmanager
def run_lock(
    run_dir: str | os.PathLike, verb: str, clean: bool = True, create: bool = True
) -> Iterator[Path]:
    """Hold the run folder's lock for the block; with ``clean``, remove the leftovers of killed writes once it
    is held. A missing folder is created, or with ``create=False`` the block runs unlocked (the verb then
    reports the missing run itself).

    Raises:
        InputError: another process (or another open lock in this one) holds it; names the holder's pid.
    """
    from nerfhead.engine.checkpoint import clean_leftovers

    run_dir = Path(run_dir)
    if not create and not run_dir.is_dir():
        yield run_dir
        return
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError(run_dir, "is a file, expected a run folder", hint="name a folder")
    made = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    ok = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(
                run_dir,
                f"is in use by another nerfhead process ({lock_holder(run_dir)})",
                hint="wait for it to finish, or write to another folder",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {verb}\n".encode(), 0)
        if clean:
            clean_leftovers(run_dir)
        yield run_dir
        ok = True
    finally:
        if made and not ok and [p.name for p in run_dir.iterdir()] == [LOCK_NAME]:
            shutil.rmtree(run_dir, ignore_errors=True)  # refused before writing: leave no empty run behind
        os.close(fd)  # closing the descriptor releases the lock


def locks_run(param: str, verb: str, create: bool = True) -> Callable[[F], F]:
    """Decorator: run the function under :func:`run_lock` of its argument ``param`` (a run folder)."""

    def wrap(fn: F) -> F:
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def locked(*args: Any, **kwargs: Any) -> Any:
            run_dir = sig.bind(*args, **kwargs).arguments.get(param, sig.parameters[param].default)
            if run_dir is None or run_dir is inspect.Parameter.empty or os.environ.get("RANK", "0") != "0":
                return fn(
                    *args, **kwargs
                )  # the ranks of one torchrun job are one writer: rank 0 holds the lock
            with run_lock(run_dir, verb, create=create):
                return fn(*args, **kwargs)

        return locked  # type: ignore[return-value]

    return wrap
