"""User-facing errors. Anything a user supplied (a file, an option, a video) that is wrong raises InputError;
the CLI prints its one line and exits with code 2. Internal bugs may raise anything else."""

from __future__ import annotations

import os


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
