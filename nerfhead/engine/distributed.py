"""Data-parallel training on ``torch.distributed``: one process per GPU (NCCL) or per CPU slot (gloo).

Nothing here launches processes: ``torchrun`` (or ``nerfhead fit --nproc N``, which runs torchrun) starts them and
sets ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` / ``MASTER_ADDR``; :func:`init_from_env` joins the group they
describe. Multi-node runs use torchrun's rendezvous (``--nnodes 2 --rdzv-backend c10d --rdzv-endpoint HOST:PORT``).

The contract the engine's loop (:func:`nerfhead.engine.trainer.fit`) keeps with a task:

* step ``s``'s shared generator is the same on every rank: a task draws its *global* batch from it (the views or
  rays one process would draw) and keeps its shard (:func:`shard`), so N ranks train on the batch one process
  would; randomness that is per sample (ray jitter, or a whole batch when the global one cannot be split, e.g. a
  single view per step) comes from :meth:`Dist.generator`, offset by the rank;
* after ``backward`` the loop averages every gradient over the ranks (one flattened all-reduce), so every rank
  applies the same update and holds the same parameters;
* structural decisions (densification, occupancy grids) are made identically everywhere: from all-reduced
  statistics (:meth:`Dist.all_reduce_sum`) or on rank 0 and broadcast (:meth:`Dist.broadcast`);
* rank 0 alone writes checkpoints, logs and evaluations. A checkpoint holds no rank state, so ``--resume`` works
  with any world size.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import Tensor

T = TypeVar("T")


@dataclass(frozen=True)
class Dist:
    """This process's place in the group (``world_size == 1``: not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """More than one process."""
        return self.world_size > 1

    def generator(self, seed: int, step: int, device: str | torch.device = "cpu") -> torch.Generator:
        """Step ``step``'s rank-offset generator (rank 0's equals the loop's shared one for ``seed``)."""
        from nerfhead.engine.trainer import step_generator

        return step_generator(int(seed) + 1_000_033 * self.rank, step, device)

    @property
    def comm_device(self) -> torch.device:
        """Where collectives run: this rank's GPU for NCCL (set by :func:`init_from_env`), the CPU for gloo."""
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")

    def all_reduce_sum(self, *tensors: Tensor) -> None:
        """Sum ``tensors`` over the ranks, in place (one call for all of them)."""
        if not self.active or not tensors:
            return
        import torch.distributed as tdist

        flat = torch.cat([t.detach().reshape(-1).to(self.comm_device, torch.float64) for t in tensors])
        tdist.all_reduce(flat)
        i = 0
        for t in tensors:
            n = t.numel()
            t.copy_(flat[i : i + n].reshape(t.shape).to(t.dtype))
            i += n

    def all_agree(self, flag: bool) -> bool:
        """True only when ``flag`` holds on every rank."""
        if not self.active:
            return flag
        v = torch.tensor([0.0 if flag else 1.0])
        self.all_reduce_sum(v)
        return float(v) == 0.0

    def any(self, flag: bool) -> bool:
        """True when ``flag`` holds on some rank."""
        return not self.all_agree(not flag)

    def broadcast(self, *tensors: Tensor) -> None:
        """Overwrite ``tensors`` with rank 0's, in place."""
        if not self.active:
            return
        import torch.distributed as tdist

        for t in tensors:
            buf = t.detach().contiguous().to(self.comm_device)
            tdist.broadcast(buf, src=0)
            if buf is not t:
                t.copy_(buf)

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as tdist

            tdist.barrier()


_CURRENT = Dist()


def current() -> Dist:
    """The group this process joined (:func:`init_from_env`), or a single process."""
    return _CURRENT


def env_world_size() -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 outside torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def init_from_env(device: str = "cpu") -> Dist:
    """Join the process group torchrun describes in the environment (NCCL for ``cuda`` devices, else gloo) and
    make it :func:`current`; a single process when ``WORLD_SIZE`` is unset or 1. Idempotent."""
    global _CURRENT
    world = env_world_size()
    if world <= 1:
        _CURRENT = Dist()
        return _CURRENT
    import torch.distributed as tdist

    backend = "nccl" if str(device).startswith("cuda") else "gloo"
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not tdist.is_initialized():
        if backend == "nccl":
            torch.cuda.set_device(local)
        tdist.init_process_group(backend=backend)
    _CURRENT = Dist(tdist.get_rank(), tdist.get_world_size(), local, backend)
    return _CURRENT


def shutdown() -> None:
    """Leave the process group (if any)."""
    global _CURRENT
    if _CURRENT.active:
        import torch.distributed as tdist

        if tdist.is_initialized():
            tdist.destroy_process_group()
    _CURRENT = Dist()


def shard(items: Sequence[T], dist: Dist | None = None) -> list[T]:
    """This rank's share of a global batch: every ``world_size``-th item from ``rank``."""
    d = dist or current()
    return list(items[d.rank :: d.world_size]) if d.active else list(items)


def average_gradients(params: Iterable[Tensor], dist: Dist | None = None) -> None:
    """Average ``.grad`` over the ranks, in place: a parameter without a gradient on some rank counts zero there;
    one without a gradient on every rank keeps ``None`` (so its optimiser skips it, as one process would)."""
    d = dist or current()
    if not d.active:
        return
    ps = [p for p in params if p.requires_grad]
    has = torch.tensor([0.0 if p.grad is None else 1.0 for p in ps], dtype=torch.float64)
    d.all_reduce_sum(has)
    live = [p for p, h in zip(ps, has.tolist(), strict=True) if h > 0]
    for p in live:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    if not live:
        return
    import torch.distributed as tdist

    flat = torch.cat([p.grad.reshape(-1) for p in live])  # type: ignore[union-attr]
    tdist.all_reduce(flat)
    flat /= d.world_size
    i = 0
    for p in live:
        n = p.numel()
        p.grad.copy_(flat[i : i + n].view_as(p))  # type: ignore[union-attr]
        i += n
