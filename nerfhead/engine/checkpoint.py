"""Atomic checkpoints: safetensors for tensors, JSON for everything else. Never pickle.

Layout of a run directory::

    RUN/avatar.json                   config, nerfhead version, drive spec (written by the model/engine)
    RUN/checkpoints/step_000500/      model.safetensors, optimizer.safetensors, state.json
    RUN/checkpoints/latest            name of the newest complete checkpoint folder

A checkpoint folder is written under a temporary name, every file fsynced, then renamed; ``latest`` is replaced
atomically after that. A kill at any point leaves the previous checkpoint intact and ``latest`` pointing at it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from nerfhead.atomic import atomic_write_bytes, atomic_write_json, fsync_dir
from nerfhead.errors import InputError

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "clean_leftovers",
    "latest_checkpoint",
    "load_checkpoint",
    "save_checkpoint",
    "trim_log",
    "weights_mismatch",
]


def _os_error(e: SafetensorError, path: Path) -> OSError | SafetensorError:
    """safetensors reports a full disk or a read-only folder as ``SafetensorError("... (os error 28)")``: give it
    back as the ``OSError`` it is (naming ``path``) so the CLI answers it in one line; anything else unchanged."""
    m = re.search(r"\(os error (\d+)\)", str(e))
    if m is None:
        return e
    code = int(m.group(1))
    return OSError(code, os.strerror(code), str(path))


def _save_file(tensors: dict[str, torch.Tensor], path: Path) -> None:
    try:
        save_file(tensors, str(path))
    except SafetensorError as e:
        raise _os_error(e, path) from None


def weights_mismatch(e: Exception, kind: str | None = None) -> str:
    """The one-line problem for weights that ``load_state_dict`` refuses (another model's keys or shapes)."""
    text = " ".join(str(e).split()) or type(e).__name__
    text = text.removeprefix("Error(s) in loading state_dict for ")
    whose = f"this run's {kind}" if kind else "this run's model"
    return f"weights do not fit {whose} (another model's checkpoint?): {text[:200]}"


def clean_leftovers(run_dir: str | os.PathLike) -> list[Path]:
    """Remove what killed writes left in a run folder: temporary checkpoint folders (``checkpoints/.step_*``)
    and ``.*.partial*`` files of atomic writes. Call it only while holding the run's lock (another writer's
    temporary files would look the same). Returns what was removed."""
    run_dir = Path(run_dir)
    gone: list[Path] = []
    for folder in (run_dir, run_dir / "checkpoints"):
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            if p.name.startswith(".step_") and p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
                gone.append(p)
            elif p.name.startswith(".") and ".partial" in p.name and p.is_file():
                p.unlink(missing_ok=True)
                gone.append(p)
    return gone


def trim_log(run_dir: str | os.PathLike, step: int, name: str = "log.jsonl") -> int:
    """Drop the records after ``step`` from ``RUN/log.jsonl`` (what a killed fit logged past its last checkpoint)
    so a resumed fit continues the log without repeating steps; a torn last line goes too. Rewritten
    atomically; returns the number of records dropped."""
    path = Path(run_dir) / name
    if not path.is_file():
        return 0
    keep, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
            ok = isinstance(rec, dict) and int(rec.get("step", 0)) <= step
        except (ValueError, TypeError):
            ok = False
        if ok:
            keep.append(line)
        else:
            dropped += 1
    if dropped:
        atomic_write_bytes(path, "".join(f"{line}\n" for line in keep).encode())
    return dropped


def _flatten_optimizer(state: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into tensors (for safetensors) and a JSON skeleton."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for pid, pstate in state["state"].items():
        entry: dict[str, Any] = {}
        for k, v in pstate.items():
            if isinstance(v, torch.Tensor):
                key = f"state.{pid}.{k}"
                tensors[key] = v.detach().cpu().contiguous()
                entry[k] = {"tensor": key}
            else:
                entry[k] = v
        skeleton["state"][str(pid)] = entry
    return tensors, skeleton


def _unflatten_optimizer(tensors: Mapping[str, torch.Tensor], skeleton: Mapping[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for pid, entry in skeleton["state"].items():
        state[int(pid)] = {
            k: (tensors[v["tensor"]] if isinstance(v, dict) and "tensor" in v else v)
            for k, v in entry.items()
        }
    # JSON turns tuples (Adam's betas, Rprop's etas, ...) into lists; torch keeps them as tuples.
    groups = [
        {k: (tuple(v) if isinstance(v, list) and k != "params" else v) for k, v in g.items()}
        for g in skeleton["param_groups"]
    ]
    return {"state": state, "param_groups": groups}


def save_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    model_state: Mapping[str, torch.Tensor],
    optimizer_states: Mapping[str, Mapping[str, Any]] | None = None,
    extra: Mapping[str, Any] | None = None,
    keep: int = 2,
) -> Path:
    """Write checkpoint ``step`` atomically and point ``latest`` at it; keep the newest ``keep`` checkpoints.

    Args:
        run_dir: the run folder.
        step: training step (the folder is ``checkpoints/step_{step:06d}``).
        model_state: name → tensor (a module's ``state_dict()``).
        optimizer_states: optimizer name → ``optimizer.state_dict()``.
        extra: JSON-able training state (schedulers, strategy counters, ...). RNG states are added here.
        keep: number of complete checkpoints to keep.
    """
    ckpt_root = Path(run_dir) / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=ckpt_root))
    try:
        tensors = {k: v.detach().cpu().contiguous() for k, v in model_state.items()}
        _save_file(tensors, tmp / "model.safetensors")
        opt_json: dict[str, Any] = {}
        opt_tensors: dict[str, torch.Tensor] = {}
        for oname, ostate in (optimizer_states or {}).items():
            t, skel = _flatten_optimizer(ostate)
            opt_tensors.update({f"{oname}.{k}": v for k, v in t.items()})
            opt_json[oname] = skel
            # keys in the skeleton are relative; remember the prefix
            opt_json[oname]["prefix"] = f"{oname}."
        opt_tensors["rng.torch"] = torch.get_rng_state()
        _save_file(opt_tensors, tmp / "optimizer.safetensors")
        state = {"step": step, "optimizers": opt_json, "extra": dict(extra or {})}
        (tmp / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True))
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        fsync_dir(tmp)
        final = ckpt_root / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(ckpt_root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_bytes(ckpt_root / "latest", (name + "\n").encode())
    done = sorted(p for p in ckpt_root.glob("step_*") if p.is_dir())
    for old in done[:-keep] if keep > 0 else []:
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    root = Path(run_dir) / "checkpoints"
    ptr = root / "latest"
    if ptr.is_file():
        cand = root / ptr.read_text().strip()
        if (cand / "state.json").is_file():
            return cand
    done = sorted(p for p in root.glob("step_*") if (p / "state.json").is_file())
    return done[-1] if done else None


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint folder: ``{"step", "model", "optimizers", "extra", "rng"}``.

    Raises:
        InputError: the folder or a file in it is missing or unreadable.
    """
    path = Path(path)
    for f in ("model.safetensors", "optimizer.safetensors", "state.json"):
        if not (path / f).is_file():
            raise InputError(path / f, "missing checkpoint file", hint="is this a nerfhead run folder?")
    f = path / "state.json"
    try:
        state = json.loads(f.read_text())
        f = path / "model.safetensors"
        model = load_file(str(f), device=str(device))
        f = path / "optimizer.safetensors"
        opt_t = load_file(str(f), device="cpu")
        f = path / "state.json"
        optimizers = {}
        for oname, skel in state["optimizers"].items():
            prefix = skel.get("prefix", f"{oname}.")
            sub = {k[len(prefix) :]: v for k, v in opt_t.items() if k.startswith(prefix)}
            optimizers[oname] = _unflatten_optimizer(sub, skel)
        step = int(state["step"])
    except (OSError, ValueError, SafetensorError) as e:  # torn or foreign file (safetensors' own error type)
        msg = str(e).splitlines()[0] if str(e) else ""
        raise InputError(
            f,
            f"unreadable checkpoint file ({type(e).__name__}: {msg})",
            hint="resume from another checkpoint",
        ) from None
    except (KeyError, TypeError, AttributeError) as e:
        raise InputError(f, f"not a nerfhead checkpoint state ({type(e).__name__}: {e})") from None
    return {
        "step": step,
        "model": model,
        "optimizers": optimizers,
        "extra": state.get("extra", {}),
        "rng": opt_t.get("rng.torch"),
    }
