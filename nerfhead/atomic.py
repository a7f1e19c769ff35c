"""Atomic file writes: a file appears whole under its name or not at all, and a failed write leaves the previous
file untouched (the brief: nothing already written is lost).

Everything is written to a temporary file in the target's folder (same suffix, so writers that pick a format by
extension still work), flushed to disk, renamed over the target, and the folder entry is synced.
"""

from __future__ import annotations

import io
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename inside it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _new_temp(path: Path) -> Path:
    """Create an empty, unique temp file next to ``path`` with the permissions a plain ``open()`` gives (0666
    minus the umask, applied by the kernel; ``tempfile.mkstemp`` would make it private)."""
    for _ in range(100):
        tmp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.partial{path.suffix}")
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"{path.parent}: no free temporary name for {path.name}")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` (same suffix) for any writer; on success it is synced and renamed
    to ``path``, on an exception it is removed and ``path`` is left as it was.

    >>> with atomic_path("out/a.npz") as tmp:  # doctest: +SKIP
    ...     np.savez(tmp, x=x)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temp(path)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename in (None, str(tmp)):
            e.filename = str(path)  # name the file the user asked for, not the temporary one
        raise
    fsync_dir(path.parent)


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", **kwargs: Any) -> Iterator[IO[Any]]:
    """``open(path, mode)`` that publishes the file only when the block ends without an exception."""
    if not mode.startswith("w"):
        raise ValueError(f"atomic_open writes a new file: mode must start with 'w', got {mode!r}")
    if "b" in mode:
        # Binary writers (np.savez's zip file) get a memory buffer: a full disk then fails one plain write here,
        # not inside the writer (whose __del__ would print a traceback on stderr while it unwinds).
        buf = io.BytesIO()
        yield buf
        with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
            f.write(buf.getbuffer())
        return
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f
        f.flush()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, newline: str | None = None) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (``newline=""`` writes line endings as they are)."""
    with atomic_open(path, "w", encoding="utf-8", newline=newline) as f:
        f.write(text)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as pretty, key-sorted JSON atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
