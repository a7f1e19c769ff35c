"""Loading a trained avatar from a run folder (:func:`load_avatar`), and the avatar interface
(:mod:`nerfhead.models.interface`) under its usual names.

A run folder holds ``avatar.json`` (``{"kind", "version", "config", ...}``) and ``checkpoints/`` written by the
trainer; the model's tensors are the checkpoint's ``model.*`` entries. ``avatar.json["kind"]`` names the model
in :mod:`nerfhead.models.registry`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from nerfhead.errors import InputError
from nerfhead.models.interface import MODEL_PREFIX, Avatar, RenderOutput, pair_indices

__all__ = [
    "AVATAR_JSON",
    "MODEL_PREFIX",
    "Avatar",
    "RenderOutput",
    "load_avatar",
    "pair_indices",
    "read_avatar_json",
]

AVATAR_JSON = "avatar.json"


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
