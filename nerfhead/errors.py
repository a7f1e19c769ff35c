"""User-facing errors. Anything a user supplied (a file, an option, a video) that is wrong raises InputError;
the CLI prints its one line and exits with code 2. Internal bugs may raise anything else."""

from __future__ import annotations

import errno
import os
from pathlib import Path


class InputError(Exception):
    """A problem with something the user supplied.

    Args:
        path: the file or option at fault (``None`` when there is none).
        what: what is wrong with it, in a few words.
        hint: optional next step for the user.
    """

    exit_code = 2

    def __init__(self, path: str | os.PathLike | None, what: str, hint: str | None = None):
        self.path = None if path is None else str(path)
        self.what = what
        self.hint = hint
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """The single line the CLI prints: ``error: PATH: WHAT (HINT)``."""
        s = f"{self.path}: {self.what}" if self.path else self.what
        if self.hint:
            s += f" ({self.hint})"
        return "error: " + s.replace("\n", " ")


# errno -> (what went wrong, what to do): the OS errors a user causes with a path or a disk, not a bug.
_OS_ERRORS: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("no space left on the device", "free some space or write elsewhere"),
    errno.EDQUOT: ("disk quota exceeded", "free some space or write elsewhere"),
    errno.EROFS: ("is on a read-only file system", "choose a writable location"),
    errno.EACCES: ("permission denied", "choose a location you may write to"),
    errno.EPERM: ("operation not permitted", "choose a location you may write to"),
    errno.EEXIST: ("already exists", "remove it or choose another name"),
    errno.EISDIR: ("is a folder, expected a file", "name a file"),
    errno.ENOTDIR: ("a component of the path is a file, not a folder", "check the path"),
    errno.ENAMETOOLONG: ("file name too long", "choose a shorter name"),
}


def from_os_error(e: OSError) -> InputError | None:
    """The ``InputError`` for an OS error the user caused (full disk, read-only or foreign folder, a file where
    a folder should be, ...), or None for any other error (which stays a bug with a traceback)."""
    if e.errno not in _OS_ERRORS:
        return None
    what, hint = _OS_ERRORS[e.errno]
    return InputError(e.filename or e.filename2, what, hint=hint)


def check_input_file(path: str | os.PathLike, expected: str, missing: str = "file not found") -> Path:
    """``path`` as a Path when it names a non-empty file; else the one-line error (``missing``, a folder, or
    0 bytes) that says what was ``expected`` there (e.g. "an audio or video file")."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, missing)
    if not path.is_file():
        raise InputError(path, f"not a file (expected {expected})")
    if path.stat().st_size == 0:
        raise InputError(path, "empty file (0 bytes)")
    return path
