"""The model-agnostic training loop: steps, checkpoints, exact resume, NaN guard, logging, periodic eval.

The loop knows nothing about Gaussians or rays; a model's training *task* (e.g.
:class:`nerfhead.models.splat_train.SplatFit`) implements :class:`Trainable`. Each step runs::

    set_learning_rates(step) -> training_loss(step, generator) -> before_backward -> backward
    -> (non-finite? restore the last snapshot) -> optimizer.step() for each -> after_step (densify, ...)

Determinism: step ``s`` draws its randomness only from a generator seeded with ``(seed, s)``, so a run killed
after checkpoint ``s`` and resumed gives the same parameters as an uninterrupted run (given deterministic
kernels). Under ``torchrun`` (:mod:`nerfhead.engine.distributed`) every rank runs this loop: gradients are
averaged over the ranks after ``backward``, the NaN guard and the time budget decide on all of them, and rank 0
alone writes ``avatar.json``, checkpoints, logs and evaluations. A checkpoint holds the task's tensors (model and, e.g., densification statistics; the parameter
count may change between checkpoints), every optimiser's state and the torch RNG state.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from nerfhead.engine.checkpoint import atomic_write_json, latest_checkpoint, load_checkpoint, save_checkpoint
from nerfhead.engine.config import TrainerConfig
from nerfhead.engine.distributed import average_gradients, current
from nerfhead.errors import InputError

Optimizers = dict[str, torch.optim.Optimizer]


@dataclass
class StepOutput:
    """What a task's forward pass returns.

    Attributes:
        loss: scalar to minimise.
        scalars: floats to log (loss terms, PSNR, counts).
        aux: anything the task wants back in ``before_backward`` / ``after_step`` (e.g. rasteriser meta).
    """

    loss: Tensor
    scalars: dict[str, float] = field(default_factory=dict)
    aux: dict[str, Any] = field(default_factory=dict)


class Trainable(Protocol):
    """A model's training task as the loop sees it."""

    def make_optimizers(self) -> Optimizers:
        """Fresh optimisers over the current parameters (called at start, on resume and after a restore)."""
        ...

    def set_learning_rates(self, step: int, optimizers: Optimizers) -> None:
        """Apply the schedules for ``step``."""
        ...

    def training_loss(self, step: int, generator: torch.Generator) -> StepOutput:
        """Sample a batch with ``generator`` and compute the loss."""
        ...

    def before_backward(self, step: int, optimizers: Optimizers, out: StepOutput) -> None:
        """Hook after the forward pass (e.g. keep gradients of intermediate tensors)."""
        ...

    def after_step(self, step: int, optimizers: Optimizers, out: StepOutput) -> None:
        """Hook after the optimiser step; may add or remove parameters *and* edit ``optimizers`` in place."""
        ...

    def state_tensors(self) -> dict[str, Tensor]:
        """Everything to checkpoint besides optimiser state (model tensors under ``model.``)."""
        ...

    def load_state_tensors(self, tensors: Mapping[str, Tensor]) -> None:
        """Inverse of :meth:`state_tensors` (resizing parameters as needed)."""
        ...

    def evaluate(self) -> dict[str, float]:
        """Quick held-out metrics for logging (e.g. ``{"psnr": ...}``)."""
        ...

    def avatar_spec(self) -> dict[str, Any]:
        """JSON-able ``avatar.json`` content: ``{"kind", "config", ...}``."""
        ...


@dataclass
class FitResult:
    """Summary of a :func:`fit` call."""

    step: int
    seconds: float
    start_step: int
    nan_restores: int
    scalars: dict[str, float]
    eval: dict[str, float]
    checkpoint: Path | None


def step_generator(seed: int, step: int, device: str | torch.device = "cpu") -> torch.Generator:
    """The generator of step ``step`` (depends on ``seed`` and ``step`` only)."""
    g = torch.Generator(device=device)
    g.manual_seed((int(seed) * 1_000_003 + int(step) * 7_919 + 12_345) % (2**63 - 1))
    return g


def _all_finite(optimizers: Optimizers) -> bool:
    for opt in optimizers.values():
        for group in opt.param_groups:
            for p in group["params"]:
                if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
                    return False
    return True


class _Snapshot:
    """An in-memory copy of the task's tensors and optimiser states (for the NaN guard)."""

    def __init__(self, task: Trainable, optimizers: Optimizers, step: int):
        self.step = step
        self.tensors = {k: v.detach().clone() for k, v in task.state_tensors().items()}
        self.optim = {k: copy.deepcopy(o.state_dict()) for k, o in optimizers.items()}

    def restore(self, task: Trainable) -> Optimizers:
        task.load_state_tensors(self.tensors)
        optimizers = task.make_optimizers()
        for k, o in optimizers.items():
            if k in self.optim:
                o.load_state_dict(copy.deepcopy(self.optim[k]))
        return optimizers


def _append_log(run_dir: Path, record: dict[str, Any]) -> None:
    """One JSON line per record in ``RUN/log.jsonl`` (the scalars, readable without TensorBoard)."""
    with open(run_dir / "log.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def _tensorboard(run_dir: Path, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard missing or broken: logging is optional
        return None
    return SummaryWriter(log_dir=str(run_dir / "tb"))


def fit(
    task: Trainable,
    run_dir: str | os.PathLike,
    cfg: TrainerConfig,
    resume: bool = False,
    stop_after: int | None = None,
    extra_spec: Mapping[str, Any] | None = None,
    monitor: Any = None,
) -> FitResult:
    """Train ``task`` for ``cfg.steps`` steps, writing ``avatar.json`` and checkpoints into ``run_dir``.

    Args:
        task: the model's training task.
        run_dir: output folder.
        cfg: loop settings.
        resume: continue from the newest checkpoint in ``run_dir`` (to the same result as an uninterrupted run).
        stop_after: stop (with a checkpoint) after this many steps in total, as a kill would; for tests.
        extra_spec: merged into ``avatar.json``.
        monitor: optional live view of the fit (e.g. :class:`nerfhead.viewer.live.LiveFit`): its ``lock`` is held
            around every step, ``on_step(step, end, scalars)`` follows each step, ``on_eval(step, metrics)``
            each periodic evaluation and ``finished(step)`` the end.

    Raises:
        InputError: ``run_dir`` already holds checkpoints and ``resume`` is False, or ``resume`` finds none.
    """
    run_dir = Path(run_dir)
    dist = current()
    main = dist.is_main
    existing = latest_checkpoint(run_dir)
    if existing is not None and not resume:
        raise InputError(
            run_dir, "already holds checkpoints", hint="pass --resume to continue, or another --out"
        )
    if resume and existing is None:
        raise InputError(run_dir, "has no checkpoint to resume from")
    dist.barrier()  # every rank has looked for checkpoints before rank 0 writes any
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / "avatar.json", {**task.avatar_spec(), **dict(extra_spec or {})})

    start = 0
    optimizers = task.make_optimizers()
    if existing is not None:
        data = load_checkpoint(existing)
        try:
            task.load_state_tensors(data["model"])
        except (RuntimeError, KeyError) as e:  # another model's weights (unexpected keys, other shapes)
            from nerfhead.engine.checkpoint import weights_mismatch

            raise InputError(existing / "model.safetensors", weights_mismatch(e)) from None
        optimizers = task.make_optimizers()
        for k, o in optimizers.items():
            if k in data["optimizers"]:
                o.load_state_dict(data["optimizers"][k])
        if data["rng"] is not None:
            torch.set_rng_state(data["rng"])
        start = int(data["step"])

    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    writer = _tensorboard(run_dir, cfg.tensorboard and main)
    if not main:
        monitor = None
    snapshot = _Snapshot(task, optimizers, start) if cfg.nan_guard else None
    scalars: dict[str, float] = {}
    ev: dict[str, float] = {}
    restores, bad_run = 0, 0
    ckpt: Path | None = existing
    t0 = time.perf_counter()
    step = start

    def checkpoint(done: int) -> Path:
        if not main:
            return run_dir / "checkpoints" / f"step_{done:06d}"  # rank 0 writes it
        extra = {"trainer": {"step": done, "nan_restores": restores, "seconds": time.perf_counter() - t0}}
        return save_checkpoint(
            run_dir,
            done,
            task.state_tensors(),
            {k: o.state_dict() for k, o in optimizers.items()},
            extra=extra,
            keep=cfg.keep_checkpoints,
        )

    step_lock = monitor.lock if monitor is not None else _NullContext()
    progress = _progress(cfg.progress and end > start and main)
    with progress:
        bar = progress.add_task("fit", total=end, completed=start) if progress is not None else None
        while step < end:
            with step_lock:
                gen = step_generator(cfg.seed, step)
                task.set_learning_rates(step, optimizers)
                out = task.training_loss(step, gen)
                ok = bool(torch.isfinite(out.loss.detach()))
                if ok:
                    task.before_backward(step, optimizers, out)
                    out.loss.backward()
                if dist.active:
                    ok = dist.all_agree(ok)
                    if ok:
                        average_gradients((p for o in optimizers.values() for p in _params(o)), dist)
                ok = ok and _all_finite(optimizers)
                if not ok:
                    for o in optimizers.values():
                        o.zero_grad(set_to_none=True)
                    if snapshot is None:
                        raise FloatingPointError(f"non-finite loss or gradient at step {step}")
                    bad_run += 1
                    restores += 1
                    if bad_run > cfg.max_bad_steps:
                        raise FloatingPointError(f"{bad_run} non-finite steps in a row (last at step {step})")
                    optimizers = snapshot.restore(task)
                    step += 1
                    continue
                bad_run = 0
                for o in optimizers.values():
                    o.step()
                    o.zero_grad(set_to_none=True)
                task.after_step(step, optimizers, out)
            step += 1

            if step % max(cfg.log_every, 1) == 0 or step == end:
                scalars = {k: float(v) for k, v in out.scalars.items()}
                scalars["loss"] = float(out.loss.detach())
                scalars = _mean_over_ranks(scalars)
                if main:
                    _append_log(
                        run_dir, {"step": step, "seconds": round(time.perf_counter() - t0, 3), **scalars}
                    )
                if writer is not None:
                    for k, v in scalars.items():
                        writer.add_scalar(f"train/{k}", v, step)
                if progress is not None and bar is not None:
                    desc = " ".join(f"{k}={v:.4g}" for k, v in list(scalars.items())[:4])
                    progress.update(bar, completed=step, description=f"fit {desc}")
            if monitor is not None:
                monitor.on_step(step, end, scalars or {"loss": float(out.loss.detach())})
            if snapshot is not None and step % max(cfg.snapshot_every, 1) == 0:
                snapshot = _Snapshot(task, optimizers, step)
            if cfg.eval_every > 0 and step % cfg.eval_every == 0 and step < end and main:
                with step_lock:
                    ev = task.evaluate()
                _append_log(
                    run_dir, {"step": step, "seconds": round(time.perf_counter() - t0, 3), "eval": ev}
                )
                if writer is not None:
                    for k, v in ev.items():
                        writer.add_scalar(f"eval/{k}", v, step)
                if monitor is not None:
                    monitor.on_eval(step, ev)
            over_time = cfg.max_minutes > 0 and (time.perf_counter() - t0) > 60.0 * cfg.max_minutes
            if dist.active and cfg.max_minutes > 0:
                over_time = dist.any(over_time)  # every rank stops at the same step
            if step == end or over_time:
                break
            if cfg.checkpoint_every > 0 and step % cfg.checkpoint_every == 0:
                ckpt = checkpoint(step)
    if step > start or ckpt is None:
        ckpt = checkpoint(step)
    seconds = time.perf_counter() - t0
    if step > start and main:
        with step_lock:
            ev = task.evaluate()
    dist.barrier()  # the last checkpoint is on disk before any rank returns
    if monitor is not None:
        monitor.on_eval(step, ev)
        monitor.finished(step)
    if writer is not None:
        for k, v in ev.items():
            writer.add_scalar(f"eval/{k}", v, step)
        writer.close()
    return FitResult(
        step=step,
        seconds=seconds,
        start_step=start,
        nan_restores=restores,
        scalars=scalars,
        eval=ev,
        checkpoint=ckpt,
    )


def _params(opt: torch.optim.Optimizer) -> list[Tensor]:
    return [p for g in opt.param_groups for p in g["params"]]


def _mean_over_ranks(scalars: dict[str, float]) -> dict[str, float]:
    """The logged scalars averaged over the ranks (every rank logs the same keys)."""
    dist = current()
    if not dist.active:
        return scalars
    keys = sorted(scalars)
    v = torch.tensor([scalars[k] for k in keys], dtype=torch.float64)
    dist.all_reduce_sum(v)
    return {k: float(x) / dist.world_size for k, x in zip(keys, v.tolist(), strict=True)}


def _progress(enabled: bool) -> Any:
    if not enabled:
        return _NullContext()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())


class _NullContext:
    """Stands in for a rich Progress when the bar is off (``add_task``/``update`` do nothing)."""

    def __enter__(self) -> _NullContext:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, *args: Any, **kwargs: Any) -> None:
        return None

    def update(self, *args: Any, **kwargs: Any) -> None:
        return None
