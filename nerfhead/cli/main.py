"""The ``nerfhead`` command: tyro subcommands, one file per verb in this folder.

Every verb is a plain function whose typed arguments and docstring become its ``--help``. A verb group (``export``)
has subcommands of its own. An ``InputError`` anywhere below a verb is printed as one line on stderr and exits
with code 2; so are the OS errors a user causes (full disk, read-only or foreign folder, a file where a folder
should be: :func:`nerfhead.errors.from_os_error`). Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

from nerfhead.errors import InputError, from_os_error

# verb -> "module:function"; each verb module imports only light things at top level.
VERBS: dict[str, str] = {
    "demo": "nerfhead.cli.demo:main",
    "doctor": "nerfhead.cli.doctor:main",
    "inspect": "nerfhead.cli.inspect:main",
    "synth": "nerfhead.cli.synth:main",
    "track": "nerfhead.cli.track:main",
    "fit": "nerfhead.cli.fit:main",
    "eval": "nerfhead.cli.eval:main",
    "drive": "nerfhead.cli.drive:main",
    "eval-drive": "nerfhead.cli.eval_drive:main",
    "eval-lipsync": "nerfhead.cli.eval_lipsync:main",
    "eval-orbit": "nerfhead.cli.eval_orbit:main",
    "view": "nerfhead.cli.view:main",
    "export": "nerfhead.cli.export:group_help",
}
TYPED_BY_ARGS: dict[str, str] = {"fit": "nerfhead.cli.fit:for_args"}
"""Verbs whose options depend on the command line (fit: ``--model``'s config): ``module:function(argv) -> verb``."""
GROUPS: dict[str, dict[str, str]] = {
    "export": {
        "ply": "nerfhead.cli.export:ply",
        "mesh": "nerfhead.cli.export_mesh:mesh_main",
        "gltf": "nerfhead.cli.export:gltf",
    },
}


def _load(target: str) -> Callable[..., Any]:
    """The verb function ``module:function``; an ImportError inside the verb's module surfaces as it is (a
    missing dependency or a bug, not a missing verb)."""
    mod, fn = target.split(":")
    return getattr(importlib.import_module(mod), fn)


def _verbs() -> dict[str, Callable[..., Any]]:
    return {name: _load(target) for name, target in VERBS.items()}


def _typed(verbs: dict[str, Callable[..., Any]], args: list[str]) -> dict[str, Callable[..., Any]]:
    """``verbs`` with the verb of ``args`` specialised to them where its options depend on other options."""
    if args and args[0] in verbs and args[0] in TYPED_BY_ARGS:
        verbs = {**verbs, args[0]: _load(TYPED_BY_ARGS[args[0]])(args[1:])}
    return verbs


def _group(name: str) -> dict[str, Callable[..., Any]]:
    return {sub: _load(target) for sub, target in GROUPS[name].items()}


def run(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the verb; returns the process exit code."""
    import tyro

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] in GROUPS:
            tyro.extras.subcommand_cli_from_dict(_group(args[0]), prog=f"nerfhead {args[0]}", args=args[1:])
        else:
            tyro.extras.subcommand_cli_from_dict(
                _typed(_verbs(), args),
                prog="nerfhead",
                description="nerfhead: video of a person to a drivable 3D head.",
                args=args,
            )
    except InputError as e:
        print(e.one_line(), file=sys.stderr)
        return InputError.exit_code
    except OSError as e:
        err = from_os_error(e)
        if err is None:
            raise
        print(err.one_line(), file=sys.stderr)
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
