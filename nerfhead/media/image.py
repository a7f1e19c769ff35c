"""Pixels to bytes: float images in [0, 1] to 8-bit, the one rounding every writer uses (PNG, JPEG, mp4, the
viewer's stream)."""

from __future__ import annotations

import numpy as np
from torch import Tensor


def to_uint8(x: Tensor | np.ndarray) -> np.ndarray:
    """Float in [0, 1] (clipped) → uint8, rounded half up, as numpy; uint8 input is returned as it is."""
    a = x.detach().float().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
    if a.dtype == np.uint8:
        return a
    return (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
