"""The Drive: the per-frame signal every driver speaks and every avatar listens to.

A Drive holds T timesteps of head pose (axis-angle rotation and translation, head to world, metres), the 53
expression coefficients in :data:`~nerfhead.data.expressions.EXPRESSION_NAMES` order and an optional learned
latent. Timestep ``t`` is at ``t / fps`` seconds.

>>> import torch
>>> d = Drive.neutral(10, fps=25.0)
>>> len(d), d[2:5].expression.shape, float(d.timestamps[5])
(10, torch.Size([3, 53]), 0.2)
"""

from __future__ import annotations

import dataclasses
import math
import os
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nerfhead.atomic import atomic_open
from nerfhead.data.expressions import EXPRESSION_NAMES, NUM_EXPRESSIONS
from nerfhead.errors import InputError

_TENSOR_FIELDS = ("rotation", "translation", "expression", "latent")


@dataclass(frozen=True)
class Drive:
    """Per-timestep head pose, expression coefficients and optional latent (tensors on any one device).

    Args:
        rotation: [T, 3] axis-angle (radians), head to world.
        translation: [T, 3] head to world, metres.
        expression: [T, 53] coefficients in [0, 1], columns in ``EXPRESSION_NAMES`` order.
        latent: [T, L] optional learned per-avatar code, or None.
        fps: timesteps per second (timestep t is at t / fps seconds).

    Raises:
        ValueError: inconsistent shapes, non-floating tensors or a non-positive fps. Value checks (finite,
            expression range) happen in :meth:`check` and in :meth:`load_npz`.
    """

    rotation: Tensor
    translation: Tensor
    expression: Tensor
    latent: Tensor | None = None
    fps: float = 25.0

    def __post_init__(self) -> None:
        T = self.rotation.shape[0] if self.rotation.dim() == 2 else -1
        want = {"rotation": 3, "translation": 3, "expression": NUM_EXPRESSIONS}
        for name, width in want.items():
            t = getattr(self, name)
            if not isinstance(t, Tensor) or t.dim() != 2 or t.shape[1] != width or t.shape[0] != T:
                shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                raise ValueError(f"drive {name} must be [T, {width}] with T={T}, got {shape}")
        if self.latent is not None and (self.latent.dim() != 2 or self.latent.shape[0] != T):
            raise ValueError(f"drive latent must be [T, L] with T={T}, got {tuple(self.latent.shape)}")
        for name in _TENSOR_FIELDS:
            t = getattr(self, name)
            if t is not None and not t.is_floating_point():
                raise ValueError(f"drive {name} must be a floating tensor, got {t.dtype}")
        try:
            fps = float(self.fps)
        except (TypeError, ValueError):
            fps = math.nan
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"drive fps must be a positive number, got {self.fps!r}")
        object.__setattr__(self, "fps", fps)

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return self.rotation.shape[0]

    def __getitem__(self, index: int | slice | Tensor | Sequence[int]) -> Drive:
        """Timesteps selected by an int (keeps the T axis, length 1), a slice, or an index/bool tensor."""
        if isinstance(index, int):
            T = len(self)
            if not -T <= index < T:
                raise IndexError(f"timestep {index} out of range for a drive of length {T}")
            index = slice(index % T, index % T + 1)
        elif not isinstance(index, slice):
            index = torch.as_tensor(index, device=self.rotation.device)
            index = index.reshape(1) if index.dim() == 0 else index
        return self._map(lambda t: t[index])

    @property
    def device(self) -> torch.device:
        return self.rotation.device

    @property
    def latent_dim(self) -> int:
        """L, or 0 without a latent."""
        return 0 if self.latent is None else int(self.latent.shape[1])

    @property
    def timestamps(self) -> Tensor:
        """[T] float64 seconds, ``t / fps``."""
        return torch.arange(len(self), dtype=torch.float64) / self.fps

    @property
    def duration(self) -> float:
        """Seconds covered: ``T / fps``."""
        return len(self) / self.fps

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Drive:
        """Copy to ``device`` and/or floating ``dtype``."""
        return self._map(lambda t: t.to(device=device, dtype=dtype))

    def _map(self, fn: Callable[[Tensor], Tensor]) -> Drive:
        latent = None if self.latent is None else fn(self.latent)
        return Drive(fn(self.rotation), fn(self.translation), fn(self.expression), latent, self.fps)

    def check(self) -> None:
        """Value checks: finite everywhere and expression in [0, 1].

        Raises:
            ValueError: naming the first problem.
        """
        for name in _TENSOR_FIELDS:
            t = getattr(self, name)
            if t is not None and t.numel() and not bool(torch.isfinite(t).all()):
                bad = int((~torch.isfinite(t)).reshape(len(self), -1).any(-1).nonzero()[0, 0])
                raise ValueError(f"drive {name} is not finite (first at timestep {bad})")
        e = self.expression
        if e.numel() and (float(e.min()) < 0 or float(e.max()) > 1):
            raise ValueError(
                f"drive expression must lie in [0, 1], got [{float(e.min()):.4g}, {float(e.max()):.4g}]"
            )

    # ------------------------------------------------------------ construction
    @classmethod
    def neutral(
        cls,
        T: int,
        fps: float = 25.0,
        latent_dim: int = 0,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Drive:
        """Identity pose, all expression coefficients 0, zero latent (``latent_dim`` > 0) for T timesteps."""

        def z(w: int) -> Tensor:
            return torch.zeros(T, w, device=device, dtype=dtype)

        return cls(z(3), z(3), z(NUM_EXPRESSIONS), z(latent_dim) if latent_dim > 0 else None, fps)

    @classmethod
    def concat(cls, drives: Sequence[Drive]) -> Drive:
        """Join drives along time. All must share fps and latent width (or all have no latent)."""
        if not drives:
            raise ValueError("concat needs at least one drive")
        fps = {d.fps for d in drives}
        if len(fps) != 1:
            raise ValueError(f"cannot concat drives with different fps {sorted(fps)}")
        if len({d.latent_dim if d.latent is not None else -1 for d in drives}) != 1:
            raise ValueError("cannot concat drives with different latent widths")
        latent = (
            None
            if drives[0].latent is None
            else torch.cat([d.latent for d in drives if d.latent is not None])
        )
        return cls(
            torch.cat([d.rotation for d in drives]),
            torch.cat([d.translation for d in drives]),
            torch.cat([d.expression for d in drives]),
            latent,
            drives[0].fps,
        )

    def as_dict(self) -> dict[str, Any]:
        """``{"rotation", "translation", "expression", ["latent",] "fps"}``: tensors and a float."""
        out: dict[str, Any] = {n: getattr(self, n) for n in _TENSOR_FIELDS if getattr(self, n) is not None}
        out["fps"] = self.fps
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Drive:
        """Inverse of :meth:`as_dict`; arrays may be tensors or numpy arrays."""
        latent = None if d.get("latent") is None else torch.as_tensor(d["latent"])
        return cls(
            torch.as_tensor(d["rotation"]),
            torch.as_tensor(d["translation"]),
            torch.as_tensor(d["expression"]),
            latent,
            float(d["fps"]),
        )

    # -------------------------------------------------------------------- disk
    def save_npz(self, path: str | os.PathLike) -> Path:
        """Write an uncompressed ``.npz`` (atomic: temp file, fsync, rename); exact round trip with load_npz.

        Keys: rotation, translation, expression, [latent,] fps (float64 scalar), expression_names.
        """
        path = Path(path)
        arrays: dict[str, np.ndarray] = {
            n: getattr(self, n).detach().cpu().numpy() for n in _TENSOR_FIELDS if getattr(self, n) is not None
        }
        arrays["fps"] = np.asarray(self.fps, dtype=np.float64)
        arrays["expression_names"] = np.asarray(EXPRESSION_NAMES)
        with atomic_open(path, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]
        return path

    @classmethod
    def load_npz(cls, path: str | os.PathLike) -> Drive:
        """Read a drive written by :meth:`save_npz` (no pickle).

        Raises:
            InputError: naming ``path``: missing, not an npz, missing keys, wrong shapes or dtypes, non-finite
                values, expression outside [0, 1] or expression names in another order.
        """
        path = Path(path)
        if not path.is_file():
            raise InputError(path, "drive file not found")
        if not zipfile.is_zipfile(path):
            raise InputError(path, "not a .npz file (not a zip archive)")
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            raise InputError(path, f"not a readable .npz drive file ({type(e).__name__}: {e})") from None
        missing = [k for k in ("rotation", "translation", "expression", "fps") if k not in data]
        if missing:
            raise InputError(
                path, f"drive file lacks key(s) {', '.join(missing)} (has {', '.join(sorted(data))})"
            )
        names = data.get("expression_names")
        if names is not None and tuple(str(n) for n in names.reshape(-1)) != EXPRESSION_NAMES:
            raise InputError(path, "expression_names differ from nerfhead's EXPRESSION_NAMES order")
        for k in ("rotation", "translation", "expression", "latent"):
            if k in data and data[k].dtype.kind != "f":
                raise InputError(path, f"drive {k} must hold floats, got dtype {data[k].dtype}")
        if data["fps"].shape != () or data["fps"].dtype.kind not in "fiu":
            raise InputError(path, f"drive fps must be a scalar number, got shape {data['fps'].shape}")
        try:
            drive = cls.from_dict({**data, "fps": float(data["fps"])})
            drive.check()
        except ValueError as e:
            raise InputError(path, str(e)) from None
        return drive

    def replace(self, **changes: Any) -> Drive:
        """A copy with some fields replaced (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)
