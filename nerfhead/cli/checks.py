"""Checks every verb runs on its options before any work starts: the device exists, an output can be written
where it is asked for and replaces only a file of the verb's own kind, a speech drive is not written into a run
folder, config overrides have the types of the fields they set. Each failure is an ``InputError`` naming the
option or file, so a bad command costs a second, not a finished render.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from nerfhead.errors import InputError, from_os_error

RUN_MARKER = "avatar.json"  # the file that makes a folder a run (written by every fit)


def check_device(device: str, option: str = "--device") -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``; ``cpu``, ``cuda`` and ``cuda:N`` are checked
    against the machine.

    Raises:
        InputError: an unknown device, or a CUDA device that this machine does not have.
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    kind, _, index = device.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise InputError(option, f"unknown device {device!r}", hint="use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise InputError(option, f"{device} asked for but no CUDA GPU is visible", hint="use --device cpu")
    if index and int(index) >= torch.cuda.device_count():
        raise InputError(option, f"{device}: this machine has {torch.cuda.device_count()} GPU(s)")
    return device


def _probe_folder(folder: Path, option: str) -> None:
    """Create and remove an empty file in ``folder`` (the nearest existing folder of an output) so a read-only,
    foreign or non-folder location fails now, naming the option."""
    probe = folder / f".nerfhead-probe-{secrets.token_hex(4)}"
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        os.unlink(probe)
    except OSError as e:
        err = from_os_error(e)
        what = err.what if err is not None else os.strerror(e.errno or 0) or type(e).__name__
        raise InputError(
            option, f"{folder}: cannot write here ({what})", hint="choose another location"
        ) from None


def _writable_parent(path: Path, option: str) -> None:
    parent = path.parent
    while not parent.exists():
        if parent.is_symlink() or parent == parent.parent:
            break
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise InputError(option, f"{parent} is a file, not a folder", hint="check the path")
    _probe_folder(parent, option)


def check_out_file(path: Path, option: str, suffixes: Iterable[str]) -> Path:
    """An output file: its suffix is one of ``suffixes``, it is not a folder, an existing file is of that kind
    (so it may be replaced atomically), and its folder can be written.

    Raises:
        InputError: naming ``option`` and the problem.
    """
    kinds = tuple(s.lower() for s in suffixes)
    if path.suffix.lower() not in kinds:
        raise InputError(option, f"{path}: expected a {' / '.join(kinds)} file", hint=f"e.g. out{kinds[0]}")
    if path.is_dir():
        raise InputError(option, f"{path} is a folder, expected a {kinds[0]} file", hint="name a file")
    if path.exists() and not path.is_file():
        raise InputError(option, f"{path} exists and is not a regular file")
    _writable_parent(path, option)
    return path


def check_out_dir(path: Path, option: str) -> Path:
    """An output folder: not an existing file, and it (or its nearest existing parent) can be written.

    Raises:
        InputError: naming ``option`` and the problem.
    """
    if path.exists() and not path.is_dir():
        raise InputError(option, f"{path} is a file, expected a folder", hint="name a folder")
    if path.is_dir():
        _probe_folder(path, option)
    else:
        _writable_parent(path, option)
    return path


def check_not_in_run(path: Path, option: str, own: Path | None = None) -> None:
    """Refuse an output whose folder is a run folder (other than ``own``, the run the verb exports): a run's
    files (its tracked drive.npz, ...) belong to its fit, and a verb writing next to ``path`` must not replace
    them.

    Raises:
        InputError: naming ``option`` and the run.
    """
    folder = path.resolve().parent
    if (folder / RUN_MARKER).is_file() and (own is None or folder != own.resolve()):
        raise InputError(
            option,
            f"{path} is inside the run folder {folder} (its drive.npz and other files would be replaced)",
            hint="write outside the run folder",
        )


def check_run(run: Path, option: str = "RUN") -> Path:
    """A run folder written by ``nerfhead fit``.

    Raises:
        InputError: missing, not a folder, or without avatar.json.
    """
    if not run.exists():
        raise InputError(run, "no such run folder", hint=f"{option} must be a folder written by nerfhead fit")
    if not run.is_dir():
        raise InputError(
            run, "is a file, not a run folder", hint=f"{option} must be a folder written by nerfhead fit"
        )
    if not (run / RUN_MARKER).is_file():
        raise InputError(run, f"not a nerfhead run (no {RUN_MARKER})", hint="fit one with nerfhead fit")
    return run


def _accepts(tp: Any, value: Any) -> bool:
    """Whether ``value`` (a JSON value, lists already made tuples) fits the annotation ``tp``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(a, value) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if origin is tuple:
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return isinstance(value, tuple) and all(_accepts(args[0], v) for v in value) if args else True
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if dataclasses.is_dataclass(tp):
        return isinstance(value, tp | dict)  # type: ignore[operator]
    return True  # an annotation this check does not know: leave it to the config


def check_overrides(cfg: Any, overrides: Mapping[str, Any], option: str = "--set") -> None:
    """Every dotted key of ``overrides`` names a field of the nested config dataclass ``cfg`` and its value has
    the field's type (``trainer.steps="abc"`` is refused here, not as a TypeError mid-fit).

    Raises:
        InputError: naming ``option``, the key and the expected type.
    """
    for key, value in overrides.items():
        node, parts = cfg, key.split(".")
        for i, name in enumerate(parts):
            if not dataclasses.is_dataclass(node):
                raise InputError(option, f"{key}: {'.'.join(parts[:i])} is not a group of settings")
            hints = typing.get_type_hints(type(node))
            if name not in hints or name not in {f.name for f in dataclasses.fields(node)}:
                known = ", ".join(f.name for f in dataclasses.fields(node))
                raise InputError(option, f"unknown setting {key!r}", hint=f"known here: {known}")
            if i == len(parts) - 1:
                if not _accepts(hints[name], value):
                    shown = getattr(hints[name], "__name__", str(hints[name]))
                    raise InputError(option, f"{key}={value!r}: expected {shown}")
            else:
                node = getattr(node, name)


def fit_settings(
    model: str, preset: str, device: str, threads: int, allow_outside_paths: bool
) -> dict[str, Any]:
    """The settings of a fit that change its result but are not in its config (saved in ``avatar.json`` as
    ``fit_settings`` and reused by ``--resume``; eval reads the capture as the fit was allowed to)."""
    return {
        "model": model,
        "preset": preset,
        "device": device,
        "threads": int(threads),
        "allow_outside_paths": bool(allow_outside_paths),
    }


def check_fit_out(out: Path, model: str, resume: bool) -> dict[str, Any]:
    """``nerfhead fit --out``: a writable folder; without ``--resume`` it must not hold a fitted run, with it it
    must hold a checkpoint of the same ``--model``.

    Returns:
        on resume, the run's saved :func:`fit_settings` plus ``step`` (its newest checkpoint); else ``{}``.

    Raises:
        InputError: naming ``--out`` / ``--model`` / the run.
    """
    from nerfhead.engine.checkpoint import latest_checkpoint, load_checkpoint
    from nerfhead.models.avatar import read_avatar_json
    from nerfhead.models.registry import by_kind

    check_out_dir(out, "--out")
    ckpt = latest_checkpoint(out) if out.is_dir() else None
    if not resume:
        if ckpt is not None:
            raise InputError(
                out, "already holds a fitted run", hint="pass --resume to continue it, or another --out"
            )
        return {}
    if ckpt is None:
        raise InputError(out, "has no checkpoint to resume from", hint="start the fit without --resume")
    spec = read_avatar_json(out)
    saved = dict(spec.get("fit_settings") or {})
    run_kind = by_kind(str(spec["kind"]))
    run_model = saved.get("model") or (run_kind.name if run_kind is not None else str(spec["kind"]))
    if run_model != model:
        raise InputError(
            "--model", f"{out} is a {run_model} run, not {model}", hint=f"use --model {run_model}"
        )
    data = load_checkpoint(ckpt)  # proves the checkpoint readable before anything is written
    saved["step"] = data["step"]
    saved["weights"] = (ckpt / "model.safetensors", sorted(data["model"]))
    return saved


def check_resume_weights(saved: dict[str, Any], tensors: Mapping[str, Any]) -> None:
    """On resume, the checkpoint's model tensor names (``saved["weights"]`` from :func:`check_fit_out`) must be
    those of the task about to load them: another model's weights are refused before anything is written.

    Raises:
        InputError: naming the checkpoint's model.safetensors.
    """
    if "weights" not in saved:
        return
    path, names = saved["weights"]
    mine = {k for k in tensors if k.startswith("model.")}  # the model's own tensors (training state may grow)
    theirs = {k for k in names if k.startswith("model.")}
    missing, extra = sorted(mine - theirs), sorted(theirs - mine)
    if missing or extra:
        shown = ", ".join(
            ([f"missing {missing[0]}"] if missing else []) + ([f"unexpected {extra[0]}"] if extra else [])
        )
        raise InputError(path, f"weights do not fit this run's model (another model's checkpoint?): {shown}")


def check_drive_out(out: Path, option: str = "--out") -> None:
    """``nerfhead drive --out``: an .mp4 outside any run folder; curves.csv and drive.npz next to it may be
    replaced only when they are files (of that kind).

    Raises:
        InputError: naming ``option``.
    """
    check_out_file(out, option, (".mp4",))
    check_not_in_run(out, option)
    for name in ("curves.csv", "drive.npz"):
        side = out.with_name(name)
        if side.exists() and not side.is_file():
            raise InputError(
                option, f"{side} (written next to {out.name}) is not a file", hint="choose another folder"
            )


def check_export_out(
    out: Path | None,
    suffixes: Iterable[str],
    folder_ok: bool = False,
    folder_only: bool = False,
    run: Path | None = None,
) -> None:
    """An exporter's ``--out``: a file of one of ``suffixes`` or, with ``folder_ok``, a folder (any other name;
    with ``folder_only`` it must be one) not inside a run folder other than ``run`` (the exported one); None
    (the run's own export folder) passes.

    Raises:
        InputError: naming ``--out``.
    """
    if out is None:
        return
    check_not_in_run(out / "x" if out.is_dir() else out, "--out", own=run)
    if folder_only and out.suffix.lower() in tuple(suffixes):
        raise InputError("--out", f"{out}: a sequence is written as a folder of files", hint="name a folder")
    if folder_ok and out.suffix.lower() not in tuple(suffixes):  # as the exporters decide: by the suffix
        if out.is_file():
            kinds = " / ".join(suffixes)
            raise InputError(
                "--out", f"{out} is a file, not {kinds}", hint=f"name a {kinds} file or a folder"
            )
        check_out_dir(out, "--out")
    else:
        check_out_file(out, "--out", suffixes)


def check_not_run_folder(folder: Path, option: str) -> None:
    """Refuse an output folder that is a fitted run (a capture or export written into it would mix with the
    run's own files).

    Raises:
        InputError: naming ``option``.
    """
    if (folder / RUN_MARKER).is_file():
        raise InputError(
            option, f"{folder} is a run folder written by nerfhead fit", hint="choose another folder"
        )


def check_range(option: str, value: float, low: float, high: float) -> None:
    """``low <= value <= high``.

    Raises:
        InputError: naming ``option``, the value and the range.
    """
    if not low <= value <= high:
        raise InputError(option, f"{value} out of range [{low}, {high}]")
