"""Image and mask files: size from the header, decoding to float32 tensors, writing, and a small LRU cache.

At the edges of the system images are float32 RGB in [0, 1], [H, W, 3]; masks are float32 in [0, 1], [H, W]
(1 = subject / pixel used, 0 = background / ignored). Any problem with a file raises ``InputError`` naming it.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from nerfhead.atomic import atomic_path
from nerfhead.errors import InputError
from nerfhead.media.image import to_uint8


def _open(path: Path, kind: str):
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise InputError(path, f"{kind} file not found")
    try:
        return Image.open(path)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InputError(path, f"not a readable {kind} ({type(e).__name__})") from None


def read_image_size(path: str | os.PathLike, kind: str = "image") -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels.

    Raises:
        InputError: missing file or unrecognised format.
    """
    with _open(Path(path), kind) as im:
        return int(im.width), int(im.height)


def _decode(path: Path, kind: str) -> np.ndarray:
    """Decode to a float32 [H, W] or [H, W, C] array in [0, 1]."""
    im = _open(path, kind)
    try:
        with im:
            im.load()
            if im.mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            elif im.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                im = im.convert("RGB")
            a = np.asarray(im)
    except (OSError, ValueError, SyntaxError) as e:  # truncated or corrupt data
        raise InputError(path, f"corrupt {kind} ({type(e).__name__}: {e})") from None
    if a.dtype == np.bool_:
        return a.astype(np.float32)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype in (np.uint16, np.int32) or im.mode.startswith("I;16"):
        return a.astype(np.float32) / 65535.0
    if a.dtype.kind == "f":
        return np.clip(a.astype(np.float32), 0.0, 1.0)
    raise InputError(path, f"unsupported {kind} pixel format {im.mode!r}")


def load_image(path: str | os.PathLike) -> Tensor:
    """Decode an image to float32 RGB [H, W, 3] in [0, 1]. Grey is repeated to RGB; an alpha channel is dropped
    (use a mask file for alpha); 16-bit images are divided by 65535.

    Raises:
        InputError: missing, unrecognised or corrupt file.
    """
    a = _decode(Path(path), "image")
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, -1)
    elif a.shape[-1] == 2:  # grey + alpha
        a = np.repeat(a[..., :1], 3, -1)
    else:
        a = a[..., :3]
    return torch.from_numpy(np.ascontiguousarray(a))


def load_mask(path: str | os.PathLike) -> Tensor:
    """Decode a mask to float32 [H, W] in [0, 1]: single-channel files as they are, RGBA/LA files by their
    alpha, RGB files by their first channel.

    Raises:
        InputError: missing, unrecognised or corrupt file.
    """
    a = _decode(Path(path), "mask")
    if a.ndim == 3:
        a = a[..., -1] if a.shape[-1] in (2, 4) else a[..., 0]
    return torch.from_numpy(np.ascontiguousarray(a))


def save_image(path: str | os.PathLike, rgb: Tensor | np.ndarray) -> Path:
    """Write float RGB [H, W, 3] in [0, 1] as 8-bit (PNG/JPEG by suffix), atomically."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(to_uint8(rgb), "RGB").save(tmp)
    return Path(path)


def save_mask(path: str | os.PathLike, mask: Tensor | np.ndarray) -> Path:
    """Write a float mask [H, W] in [0, 1] as an 8-bit single-channel PNG, atomically."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(to_uint8(mask), "L").save(tmp)
    return Path(path)


class ImageCache:
    """Thread-safe least-recently-used cache of decoded tensors, keyed by (path, kind).

    Args:
        capacity: entries kept; 0 disables caching, a negative value keeps everything.
    """

    def __init__(self, capacity: int = 64):
        self.capacity = capacity
        self._items: OrderedDict[tuple[str, str], Tensor] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path, kind: str) -> Tensor:
        """The decoded image (``kind="image"``) or mask (``kind="mask"``) at ``path``."""
        key = (str(path), kind)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = load_image(path) if kind == "image" else load_mask(path)
        if self.capacity != 0:
            with self._lock:
                self._items[key] = value
                while 0 < self.capacity < len(self._items):
                    self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
