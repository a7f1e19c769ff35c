"""What every model's training task does the same way: the split it records, the held-out views of its quick
evaluation, its checkpoint tensors' prefixes, the ``avatar.json`` it writes and its learning-rate decay.

The splat and nerf tasks (and a new model's) build on these, so the split, the evaluation views and the run's
``avatar.json`` fields mean the same for every model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from torch import Tensor

import nerfhead
from nerfhead.data.capture import Capture
from nerfhead.data.split import Split
from nerfhead.engine.config import to_dict
from nerfhead.engine.metrics import psnr
from nerfhead.models.interface import MODEL_PREFIX

__all__ = [
    "MODEL_PREFIX",
    "avatar_spec",
    "eval_views",
    "heldout_psnr",
    "log_lerp",
    "progress",
    "strip_prefix",
    "with_prefix",
]

V = TypeVar("V")


def with_prefix(prefix: str, tensors: Mapping[str, V]) -> dict[str, V]:
    """``tensors`` with ``prefix`` put before every name."""
    return {prefix + k: v for k, v in tensors.items()}


def strip_prefix(prefix: str, tensors: Mapping[str, V]) -> dict[str, V]:
    """The entries of ``tensors`` under ``prefix``, without it."""
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def eval_views(capture: Capture, split: Split, k: int) -> list[tuple[int, int]]:
    """Up to ``k`` held-out (camera, timestep) pairs with a frame, spread evenly over the split's test cameras
    and test timesteps (every timestep when the split holds out cameras): the quick evaluation's fixed views."""
    ts = split.test_timesteps if split.test_timesteps is not None else range(capture.num_timesteps)
    views = [(c, t) for t in ts for c in split.test_cameras if capture.frame_index(c, t) is not None]
    k = min(k, len(views))
    return [views[round(i * (len(views) - 1) / max(k - 1, 1))] for i in range(k)] if k else []


def heldout_psnr(
    views: list[tuple[int, int]], render: Callable[[int, int], tuple[Tensor, Tensor]]
) -> dict[str, float]:
    """``{"psnr_heldout": mean PSNR}`` over ``views``; ``render(camera, timestep)`` gives (render, target)
    [H, W, 3]; ``{}`` without views."""
    if not views:
        return {}
    vals = []
    for c, t in views:
        pred, gt = render(c, t)
        vals.append(psnr(pred.clamp(0, 1), gt))
    return {"psnr_heldout": sum(vals) / len(vals)}


def avatar_spec(
    kind: str, model_cfg: Any, fit_cfg: Any, split: Split, background: Tensor, **extra: Any
) -> dict[str, Any]:
    """The ``avatar.json`` of a run: its model kind and config, the fit config, the split (cameras, timesteps,
    policy) and the background, plus the model's ``extra`` fields."""
    return {
        "kind": kind,
        "version": nerfhead.__version__,
        "config": to_dict(model_cfg) if model_cfg is not None else {},
        "fit": to_dict(fit_cfg),
        "train_cameras": split.train_cameras,
        "test_cameras": split.test_cameras,
        "train_timesteps": split.train_timesteps,
        "test_timesteps": split.test_timesteps,
        "split_policy": split.policy,
        **extra,
        "background": background.tolist(),
    }


def progress(step: int, steps: int) -> float:
    """Share of the schedule done at ``step`` (0 to 1)."""
    return min(step / max(steps, 1), 1.0)


def log_lerp(start: float, end: float, frac: float) -> float:
    """Log-linear interpolation from ``start`` to ``end`` (the exponential learning-rate decay of 3DGS and
    instant-NGP): ``start`` at 0, ``end`` at 1."""
    return math.exp((1 - frac) * math.log(start) + frac * math.log(max(end, 1e-12)))
