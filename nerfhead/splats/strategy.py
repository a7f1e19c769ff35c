"""Densification and pruning of triangle-bound Gaussians as a pluggable ``Strategy``.

The design follows gsplat's strategies: the training loop calls :meth:`Strategy.step_pre_backward` after the
forward pass (to keep the gradient of the projected means) and :meth:`Strategy.step_post_backward` after the
optimiser step (to accumulate statistics and grow / prune). Every change of the Gaussian count goes through the
ops below, which keep the three things that must stay aligned in step:

* the parameters of :class:`~nerfhead.splats.gaussians.SplatParams` *and its* ``binding`` (a clone or a split
  child inherits its parent's triangle; pruning drops the ids with the Gaussians);
* the per-parameter optimiser state (Adam moments start at zero for clones and split children and are dropped
  for pruned Gaussians);
* the strategy's own per-Gaussian statistics.

One optimiser per parameter name, each with exactly one parameter, is assumed (as in gsplat).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from nerfhead.geometry import quaternion_to_matrix
from nerfhead.splats.gaussians import SplatParams

Optimizers = Mapping[str, torch.optim.Optimizer]


class Strategy(Protocol):
    """What a densification strategy offers the training loop."""

    def initialize_state(self) -> dict[str, Any]:
        """Fresh running state (per-Gaussian statistics are created lazily on the first step)."""
        ...

    def step_pre_backward(
        self,
        splats: SplatParams,
        optimizers: Optimizers,
        state: dict[str, Any],
        step: int,
        info: dict[str, Any],
    ) -> None:
        """Called after the forward pass, before ``loss.backward()``."""
        ...

    def step_post_backward(
        self,
        splats: SplatParams,
        optimizers: Optimizers,
        state: dict[str, Any],
        step: int,
        info: dict[str, Any],
    ) -> None:
        """Called after the optimiser step; may change the number of Gaussians."""
        ...


# ------------------------------------------------------------------------------------------------ ops
def _edit(
    splats: SplatParams,
    optimizers: Optimizers,
    state: dict[str, Any],
    param_fn: Callable[[str, Tensor], Tensor],
    state_fn: Callable[[Tensor], Tensor],
    binding: Tensor,
) -> None:
    """Replace every parameter by ``param_fn(name, old)``, optimiser moments by ``state_fn(old)``, the binding
    by ``binding`` and per-Gaussian strategy statistics by ``state_fn(old)``."""
    n_old = len(splats)
    for name in list(splats.params.keys()):
        old = splats.params[name]
        new = nn.Parameter(param_fn(name, old.detach()), requires_grad=old.requires_grad)
        opt = optimizers.get(name)
        if opt is not None:
            ostate = opt.state.pop(old, {})
            for k, v in list(ostate.items()):
                if isinstance(v, Tensor) and v.dim() > 0 and v.shape[0] == n_old:
                    ostate[k] = state_fn(v)
            group = opt.param_groups[0]
            group["params"] = [new if p is old else p for p in group["params"]]
            if ostate:
                opt.state[new] = ostate
        splats.params[name] = new
    splats.binding = binding
    for k, v in list(state.items()):
        if isinstance(v, Tensor) and v.dim() > 0 and v.shape[0] == n_old:
            state[k] = state_fn(v)


@torch.no_grad()
def duplicate(splats: SplatParams, optimizers: Optimizers, state: dict[str, Any], mask: Tensor) -> None:
    """Clone the Gaussians in ``mask`` [N] bool: copies appended at the end on the same triangle; their optimiser
    moments and statistics start at zero."""
    idx = mask.nonzero()[:, 0]
    _edit(
        splats,
        optimizers,
        state,
        lambda _, p: torch.cat([p, p[idx]]),
        lambda v: torch.cat([v, torch.zeros((len(idx), *v.shape[1:]), dtype=v.dtype, device=v.device)]),
        torch.cat([splats.binding, splats.binding[idx]]),
    )


@torch.no_grad()
def split(
    splats: SplatParams,
    optimizers: Optimizers,
    state: dict[str, Any],
    mask: Tensor,
    generator: torch.Generator | None = None,
    shrink: float = 1.6,
) -> None:
    """Replace each Gaussian in ``mask`` by two children sampled from it (in its triangle's frame).

    Children keep the parent's triangle, rotation, opacity and colour; their scales are the parent's divided by
    ``shrink``; their optimiser moments start at zero. Children are appended at the end.
    """
    idx = mask.nonzero()[:, 0]
    keep = ~mask
    p = splats.params
    R = quaternion_to_matrix(p["quats"][idx])  # [S, 3, 3]
    s = torch.exp(p["scales"][idx])  # [S, 3]
    noise = torch.randn((2, len(idx), 3), generator=generator, device=s.device, dtype=s.dtype)
    offsets = (R[None] @ (s[None] * noise)[..., None])[..., 0]  # [2, S, 3]
    child_means = (p["means"][idx][None] + offsets).reshape(-1, 3)

    def param_fn(name: str, old: Tensor) -> Tensor:
        if name == "means":
            new = child_means
        elif name == "scales":
            new = (old[idx] - math.log(shrink)).repeat(2, *([1] * (old.dim() - 1)))
        else:
            new = old[idx].repeat(2, *([1] * (old.dim() - 1)))
        return torch.cat([old[keep], new])

    def state_fn(v: Tensor) -> Tensor:
        return torch.cat([v[keep], torch.zeros((2 * len(idx), *v.shape[1:]), dtype=v.dtype, device=v.device)])

    _edit(
        splats,
        optimizers,
        state,
        param_fn,
        state_fn,
        torch.cat([splats.binding[keep], splats.binding[idx].repeat(2)]),
    )


@torch.no_grad()
def remove(splats: SplatParams, optimizers: Optimizers, state: dict[str, Any], mask: Tensor) -> None:
    """Delete the Gaussians in ``mask`` [N] bool (and their bindings, moments and statistics)."""
    keep = ~mask
    _edit(splats, optimizers, state, lambda _, p: p[keep], lambda v: v[keep], splats.binding[keep])


@torch.no_grad()
def reset_opacity(splats: SplatParams, optimizers: Optimizers, value: float) -> None:
    """Clamp every opacity to at most ``value`` and zero the opacity moments (3DGS's periodic reset)."""
    logit = math.log(value / (1.0 - value))
    op = splats.params["opacities"]
    op.clamp_(max=logit)
    opt = optimizers.get("opacities")
    if opt is not None:
        for v in opt.state.get(op, {}).values():
            if isinstance(v, Tensor) and v.dim() > 0:
                v.zero_()


# ------------------------------------------------------------------------------------------- strategy
@dataclass(frozen=True)
class BoundStrategy:
    """3DGS's adaptive density control for triangle-bound Gaussians (GaussianAvatars's "binding inheritance").

    Sizes are in world units through ``info["scale_factor"]`` ([N], the bound triangle's scale ``k``) when the
    model provides it, else in the local (triangle) units of the parameters.

    Attributes:
        grow_grad2d: mean screen-space gradient norm (in NDC-like units, as gsplat) above which a Gaussian grows.
        grow_scale3d: largest scale (metres) below which a growing Gaussian is cloned; above it, split.
        prune_opa: Gaussians below this opacity are pruned.
        prune_scale3d: Gaussians with a largest scale (metres) above this are pruned (after the first reset,
            or after ``refine_start`` if resets are off).
        refine_start: first step that may grow or prune.
        refine_stop: no growing or pruning from this step on.
        refine_every: grow and prune every this many steps.
        reset_every: reset opacities every this many steps (0: never).
        max_gaussians: never grow beyond this many Gaussians (the largest gradients win).
    """

    grow_grad2d: float = 2e-4
    grow_scale3d: float = 2e-3
    prune_opa: float = 0.005
    prune_scale3d: float = 0.02
    refine_start: int = 200
    refine_stop: int = 1500
    refine_every: int = 100
    reset_every: int = 0
    max_gaussians: int = 100_000

    def initialize_state(self) -> dict[str, Any]:
        return {"grad2d": None, "count": None}

    def step_pre_backward(
        self,
        splats: SplatParams,
        optimizers: Optimizers,
        state: dict[str, Any],
        step: int,
        info: dict[str, Any],
    ) -> None:
        if (
            step < self.refine_stop
            and isinstance(info.get("means2d"), Tensor)
            and info["means2d"].requires_grad
        ):
            info["means2d"].retain_grad()

    def step_post_backward(
        self,
        splats: SplatParams,
        optimizers: Optimizers,
        state: dict[str, Any],
        step: int,
        info: dict[str, Any],
    ) -> None:
        if step >= self.refine_stop:
            return
        self._accumulate(splats, state, info)
        if step >= self.refine_start and step % self.refine_every == 0 and step > 0:
            if callable(info.get("reduce")):  # data-parallel: sum the statistics of every rank
                info["reduce"](state["grad2d"], state["count"])
            self._grow(splats, optimizers, state, info, step)
            self._prune(splats, optimizers, state, info, step)
            state["grad2d"].zero_()
            state["count"].zero_()
        if self.reset_every > 0 and step > 0 and step % self.reset_every == 0:
            reset_opacity(splats, optimizers, 2.0 * self.prune_opa)

    def _accumulate(self, splats: SplatParams, state: dict[str, Any], info: dict[str, Any]) -> None:
        n = len(splats)
        dev = splats.params["means"].device
        if state.get("grad2d") is None or state["grad2d"].shape[0] != n:
            state["grad2d"] = torch.zeros(n, device=dev)
            state["count"] = torch.zeros(n, device=dev)
        m2d = info.get("means2d")
        if not isinstance(m2d, Tensor) or m2d.grad is None:
            return
        g = m2d.grad.detach().clone()  # [C, N, 2] pixels
        g[..., 0] *= info["width"] / 2.0 * g.shape[0]
        g[..., 1] *= info["height"] / 2.0 * g.shape[0]
        radii = info["radii"]
        visible = (radii > 0).all(-1) if radii.dim() == 3 else radii > 0  # [C, N]
        cam, gid = visible.nonzero(as_tuple=True)
        state["grad2d"].index_add_(0, gid, g[cam, gid].norm(dim=-1))
        state["count"].index_add_(0, gid, torch.ones_like(gid, dtype=state["count"].dtype))

    def _world_scale(self, splats: SplatParams, info: dict[str, Any]) -> Tensor:
        s = torch.exp(splats.params["scales"].detach()).amax(-1)
        k = info.get("scale_factor")
        return s * k if isinstance(k, Tensor) and k.shape[0] == s.shape[0] else s

    @torch.no_grad()
    def _grow(
        self,
        splats: SplatParams,
        optimizers: Optimizers,
        state: dict[str, Any],
        info: dict[str, Any],
        step: int,
    ) -> None:
        grads = state["grad2d"] / state["count"].clamp_min(1)
        high = grads > self.grow_grad2d
        room = self.max_gaussians - len(splats)
        if room <= 0:
            return
        if int(high.sum()) > room:  # keep the largest gradients (a split adds one net Gaussian, a clone one)
            top = torch.topk(torch.where(high, grads, torch.full_like(grads, -1.0)), room).indices
            high = torch.zeros_like(high)
            high[top] = True
        small = self._world_scale(splats, info) <= self.grow_scale3d
        dup = high & small
        spl = high & ~small
        n_dup = int(dup.sum())
        if n_dup:
            duplicate(splats, optimizers, state, dup)
            spl = torch.cat([spl, torch.zeros(n_dup, dtype=torch.bool, device=spl.device)])
            if isinstance(info.get("scale_factor"), Tensor):
                k = info["scale_factor"]
                info["scale_factor"] = torch.cat([k, k[dup]])
        if int(spl.sum()):
            gen = torch.Generator(device=spl.device)
            gen.manual_seed(int(info.get("seed", 0)) * 1_000_003 + step)
            k = info.get("scale_factor")
            split(splats, optimizers, state, spl, generator=gen)
            if isinstance(k, Tensor):
                info["scale_factor"] = torch.cat([k[~spl], k[spl].repeat(2)])

    @torch.no_grad()
    def _prune(
        self,
        splats: SplatParams,
        optimizers: Optimizers,
        state: dict[str, Any],
        info: dict[str, Any],
        step: int,
    ) -> None:
        prune = torch.sigmoid(splats.params["opacities"].detach()) < self.prune_opa
        if step > (self.reset_every if self.reset_every > 0 else self.refine_start):
            prune |= self._world_scale(splats, info) > self.prune_scale3d
        if int(prune.sum()) and int(prune.sum()) < len(splats):
            remove(splats, optimizers, state, prune)
            if isinstance(info.get("scale_factor"), Tensor):
                info["scale_factor"] = info["scale_factor"][~prune]


def strategy_state_tensors(state: Mapping[str, Any]) -> dict[str, Tensor]:
    """The tensors of a strategy state, for a checkpoint."""
    return {k: v for k, v in state.items() if isinstance(v, Tensor)}


def load_strategy_state(state: dict[str, Any], tensors: Mapping[str, Tensor]) -> None:
    """Restore tensors written by :func:`strategy_state_tensors` into ``state`` (in place)."""
    for k, v in tensors.items():
        state[k] = v.clone()
