"""The ``nerfhead`` command: tyro subcommands, one file per verb in this folder.

Every verb is a plain function whose typed arguments and docstring become its ``--help``. An ``InputError``
anywhere below a verb is printed as one line on stderr and exits with code 2.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from nerfhead.errors import InputError


def _verbs() -> dict[str, Callable[..., Any]]:
    # Each verb module imports only light things at top level; heavy imports live inside the verb.
    from nerfhead.cli import demo, doctor, inspect

    verbs: dict[str, Callable[..., Any]] = {
        "demo": demo.main,
        "doctor": doctor.main,
        "inspect": inspect.main,
    }
    return verbs


def run(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the verb; returns the process exit code."""
    import tyro

    try:
        tyro.extras.subcommand_cli_from_dict(
            _verbs(),
            prog="nerfhead",
            description="nerfhead: video of a person to a drivable 3D head.",
            args=argv,
        )
    except InputError as e:
        print(e.one_line(), file=sys.stderr)
        return InputError.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def entrypoint() -> None:
    """Console-script entry point."""
    sys.exit(run())


if __name__ == "__main__":
    entrypoint()
