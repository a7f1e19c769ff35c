"""The one interface every avatar offers (splat head, nerf head), and loading a trained avatar from a run folder.

Pairing of cameras and timesteps in :meth:`Avatar.render`: with N cameras and a drive of T timesteps the output
holds ``B = max(N, T)`` images; image ``b`` shows camera ``b`` at timestep ``b``, where a side of length 1 is
broadcast (one camera over a whole drive for a video, every camera at one timestep for a rig view). N and T must
be equal when neither is 1 (see :func:`pair_indices`).

A run folder holds ``avatar.json`` (``{"kind", "version", "config", ...}``) and ``checkpoints/`` written by the
trainer; the model's tensors are the checkpoint's ``model.*`` entries.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from nerfhead.errors import InputError

if TYPE_CHECKING:
    from nerfhead.data.cameras import Cameras
    from nerfhead.data.drive import Drive

AVATAR_JSON = "avatar.json"
MODEL_PREFIX = "model."


@dataclass(frozen=True)
class RenderOutput:
    """Images rendered by an avatar.

    Attributes:
        rgb: [B, H, W, 3] colour in [0, 1], composited over the background.
        alpha: [B, H, W, 1] accumulated opacity.
        depth: [B, H, W, 1] expected depth (camera z, metres) of the visible surface; 0 where alpha is 0.
    """

    rgb: Tensor
    alpha: Tensor
    depth: Tensor


@runtime_checkable
class Avatar(Protocol):
    """A drivable head: cameras + drive in, images out."""

    def render(self, cameras: Cameras, drive: Drive, background: Tensor | None = None) -> RenderOutput:
        """Render camera ``b`` at timestep ``b`` for b < max(N, T) (see the module docstring).

        Args:
            cameras: N cameras (all of one image size).
            drive: T timesteps.
            background: [3] or [B, 3] colour behind the head; None uses the avatar's own.
        """
        ...

    def eval(self) -> Avatar:
        """Inference mode (``torch.nn.Module.eval``); returns the avatar."""
        ...


def pair_indices(n_cameras: int, n_timesteps: int) -> tuple[list[int], list[int]]:
    """Camera and timestep index of each output image (the broadcasting rule of :meth:`Avatar.render`).

    >>> pair_indices(3, 1)
    ([0, 1, 2], [0, 0, 0])

    Raises:
        ValueError: N and T differ and neither is 1.
    """
    if n_cameras < 1 or n_timesteps < 1:
        raise ValueError("render needs at least one camera and one timestep")
    if n_cameras != n_timesteps and 1 not in (n_cameras, n_timesteps):
        raise ValueError(f"cannot pair {n_cameras} cameras with {n_timesteps} timesteps (one side must be 1)")
    b = max(n_cameras, n_timesteps)
    return ([i if n_cameras > 1 else 0 for i in range(b)], [i if n_timesteps > 1 else 0 for i in range(b)])


def read_avatar_json(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The parsed ``avatar.json`` of a run folder.

    Raises:
        InputError: missing, unreadable or without a known ``kind``.
    """
    path = Path(run_dir) / AVATAR_JSON
    if not path.is_file():
        raise InputError(path, "not found", hint="is this a run folder written by `nerfhead fit`?")
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(path, f"unreadable avatar.json ({e})") from None
    from nerfhead.models.registry import by_kind, model_kinds

    kind = spec.get("kind") if isinstance(spec, dict) else None
    if not isinstance(kind, str) or by_kind(kind) is None:
        known = ", ".join(m.kind for m in model_kinds().values())
        raise InputError(path, f"unknown model kind {kind!r}", hint=f"known: {known}")
    return spec


def load_avatar(
    run_dir: str | os.PathLike, device: str | torch.device = "cpu", step: int | None = None
) -> Avatar:
    """Load the avatar of a run folder (the newest checkpoint, or ``step``), in eval mode.

    Args:
        run_dir: folder written by ``nerfhead fit``.
        device: where to put the model.
        step: load ``checkpoints/step_{step:06d}`` instead of the newest one.

    Returns:
        The model (an :class:`Avatar`, e.g. a ``SplatHead``); its model's capabilities say what else it offers
        (:mod:`nerfhead.models.registry`).

    Raises:
        InputError: no avatar.json, no checkpoint, or an unreadable one.
    """
    from nerfhead.engine.checkpoint import latest_checkpoint, load_checkpoint, weights_mismatch
    from nerfhead.models.fit_task import strip_prefix
    from nerfhead.models.registry import by_kind

    spec = read_avatar_json(run_dir)
    if step is None:
        ckpt = latest_checkpoint(run_dir)
        if ckpt is None:
            raise InputError(
                Path(run_dir) / "checkpoints", "no complete checkpoint", hint="did the fit finish a step?"
            )
    else:
        ckpt = Path(run_dir) / "checkpoints" / f"step_{step:06d}"
    data = load_checkpoint(ckpt, device="cpu")
    tensors = strip_prefix(MODEL_PREFIX, data["model"])
    kind = by_kind(spec["kind"])
    assert kind is not None  # read_avatar_json checked it
    try:
        model = kind.from_checkpoint(spec, tensors, device)
    except (RuntimeError, KeyError) as e:  # weights of another model kind or size
        raise InputError(ckpt / "model.safetensors", weights_mismatch(e, spec["kind"])) from None
    model.eval()
    return model
