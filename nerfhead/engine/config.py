"""Configuration plumbing: the trainer's config and dataclass <-> JSON.

Configs are frozen dataclasses whose attribute docstrings become ``--help``. The engine knows no model: each
model's fit config and presets are in its :class:`nerfhead.models.registry.ModelKind`.

>>> cfg = from_dict(TrainerConfig, {"steps": 10})
>>> cfg.steps, to_dict(cfg)["seed"]
(10, 0)
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, TypeVar

from nerfhead.errors import InputError

T = TypeVar("T")


@dataclass(frozen=True)
class TrainerConfig:
    """The model-agnostic training loop's settings."""

    steps: int = 3000
    """Optimisation steps."""
    max_minutes: float = 0.0
    """Stop early (with a checkpoint) once the loop has run this long; 0 for no limit."""
    seed: int = 0
    """Seed of the per-step sampling (step ``s`` draws from ``seed`` and ``s`` only, so a resume is exact)."""
    eval_every: int = 500
    """Quick held-out evaluation every this many steps (0: only at the end)."""
    checkpoint_every: int = 500
    """Checkpoint every this many steps (and always at the end)."""
    keep_checkpoints: int = 2
    """Complete checkpoints kept on disk."""
    log_every: int = 25
    """Scalars to TensorBoard (when installed) and the progress bar every this many steps."""
    tensorboard: bool = True
    """Write TensorBoard scalars under RUN/tb when ``torch.utils.tensorboard`` imports."""
    nan_guard: bool = True
    """On a non-finite loss or gradient, restore the last good in-memory state and go on."""
    snapshot_every: int = 50
    """Steps between in-memory snapshots used by the NaN guard."""
    max_bad_steps: int = 10
    """Give up after this many non-finite steps in a row."""
    progress: bool = True
    """Show a rich progress bar."""


def to_dict(cfg: Any) -> dict[str, Any]:
    """A (nested) config dataclass as JSON-able dict (tuples become lists)."""
    return _jsonable(dataclasses.asdict(cfg))


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return from_dict(tp, value, where)  # type: ignore[arg-type]
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        return tuple(_convert(inner, v, where) for v in value)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is type(None) and value is None:
                return None
            if dataclasses.is_dataclass(arg) and isinstance(value, dict):
                return from_dict(arg, value, where)  # type: ignore[arg-type]
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build config ``cls`` from a (nested) dict, as written by :func:`to_dict`; missing keys take defaults.

    Raises:
        InputError: an unknown key.
    """
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise InputError(where, f"unknown {cls.__name__} key(s): {', '.join(unknown)}")
    kw = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    return cls(**kw)


def replace_nested(cfg: T, **changes: Any) -> T:
    """``dataclasses.replace`` that accepts dotted keys for nested configs: ``replace_nested(c, **{"a.b": 1})``."""
    direct = {k: v for k, v in changes.items() if "." not in k}
    nested: dict[str, dict[str, Any]] = {}
    for k, v in changes.items():
        if "." in k:
            head, rest = k.split(".", 1)
            nested.setdefault(head, {})[rest] = v
    for head, sub in nested.items():
        direct[head] = replace_nested(getattr(cfg, head), **sub)
    return dataclasses.replace(cfg, **direct)  # type: ignore[type-var]
