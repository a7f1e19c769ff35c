"""A capture's frames decoded once to uint8 in one flat file, read back with bounded memory.

Training reads images over and over; decoding PNGs each time is slow and keeping every decoded float image in
memory grows with the capture (a NeRSemble sequence is ~42 GB as uint8). The frame store decodes each image (and
mask) once into ``images.u8`` / ``masks.u8`` (frames back to back, row-major ``[H, W, 3]`` / ``[H, W]``) under
``<root>/<key>/``. ``<root>`` is ``$NERFHEAD_FRAMES`` if set, else ``.nerfhead_frames`` in the folder holding the
capture's images when it is writable, else ``<cache>/frames`` (``$NERFHEAD_CACHE``, default ``scenes/cache``).
``<key>`` hashes the capture's content: every image and mask file's path, size, modification time and first
64 KiB, and the frame sizes. A changed file gives a new key (and, next to the capture, replaces the old store); an
unchanged capture opens its store instantly.

Whole frames (a view) are read positionally (``os.pread``), so a process holds only what it asks for while the
OS page cache keeps hot frames (shared by every rank on a machine). Single pixels (the NeRF head's rays) come
from read-only memory maps of the files with one numpy fancy index per batch when the store (images and masks
together) is at most :data:`MAP_BUDGET` bytes (4096 rays: ~0.6 ms instead of ~19 ms), else with one ``os.pread`` per pixel. A map's
touched pages count in the process's resident memory (file-backed, shared with the page cache, reclaimable), and
random rays touch them all (the kernel maps 64 KiB around each fault): the budget bounds what a store adds to
RSS. Dropping the pages instead (``madvise(MADV_DONTNEED)``) to map larger files made every batch fault again:
37 ms per 4096 rays on a 594 MB store, slower than the reads. The file is a plain uint8 array:
``numpy.memmap(path, uint8)`` maps it for other tools. :class:`FrameLoader` adds a prefetching
thread pool and a small LRU of decoded float targets.

>>> store = FrameStore.open(capture)  # doctest: +SKIP
>>> img, mask = store.image(0), store.mask(0)  # uint8 [H, W, 3], uint8 [H, W] or None  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from nerfhead.data.capture import Capture
from nerfhead.errors import InputError

STORE_VERSION = 1
_HEAD_BYTES = 1 << 16
MAP_BUDGET = 256 << 20
"""Largest store (both files) whose pixels are gathered through memory maps (see the module docstring)."""


def store_root(capture: Capture) -> tuple[Path, bool]:
    """(where ``capture``'s store lives, whether that folder belongs to this capture alone); see the module
    docstring."""
    from nerfhead.assets import cache_root

    env = os.environ.get("NERFHEAD_FRAMES")
    if env:
        return Path(env), False
    if capture.frames:
        folder = Path(os.path.commonpath([str(f.image_path.resolve().parent) for f in capture.frames]))
        if os.access(folder, os.W_OK):
            return folder / ".nerfhead_frames", True
    return cache_root() / "frames", False


def _file_sig(h: hashlib._Hash, path: Path | None) -> None:
    if path is None:
        h.update(b"-")
        return
    try:
        st = path.stat()
        with open(path, "rb") as f:
            head = f.read(_HEAD_BYTES)
    except OSError as e:
        raise InputError(path, f"cannot read ({type(e).__name__})") from None
    h.update(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|".encode())
    h.update(hashlib.sha1(head).digest())


def capture_key(capture: Capture) -> str:
    """Hash of the capture's frames: files (path, size, mtime, first 64 KiB) and sizes."""
    h = hashlib.sha256(f"v{STORE_VERSION}".encode())
    for f in capture.frames:
        w, hh = int(capture.cameras.width[f.camera]), int(capture.cameras.height[f.camera])
        h.update(f"{w}x{hh}|".encode())
        _file_sig(h, f.image_path)
        _file_sig(h, f.mask_path)
    return h.hexdigest()[:20]


class FrameStore:
    """Read-only uint8 frames of a capture (see the module docstring); build or open with :meth:`open`."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        index = json.loads((self.folder / "index.json").read_text())
        self.sizes: list[tuple[int, int]] = [tuple(s) for s in index["sizes"]]  # type: ignore[misc]
        self.image_offsets: list[int] = index["image_offsets"]
        self.mask_offsets: list[int | None] = index["mask_offsets"]
        self._img = os.open(self.folder / "images.u8", os.O_RDONLY)
        mp = self.folder / "masks.u8"
        self._mask = os.open(mp, os.O_RDONLY) if mp.is_file() else None
        uniform = len(set(self.sizes)) == 1
        self.uniform_size: tuple[int, int] | None = self.sizes[0] if uniform and self.sizes else None
        self._maps: dict[int, tuple[mmap.mmap, np.ndarray]] = {}
        files = [fd for fd in (self._img, self._mask) if fd is not None]
        self._mappable = sum(os.fstat(fd).st_size for fd in files) <= MAP_BUDGET  # images and masks together
        self._img_off = np.asarray(self.image_offsets, np.int64)
        self._mask_off = np.asarray([-1 if o is None else o for o in self.mask_offsets], np.int64)

    # ------------------------------------------------------------------ building
    @classmethod
    def open(
        cls, capture: Capture, root: str | os.PathLike | None = None, workers: int = 4, build: bool = True
    ) -> FrameStore:
        """The store of ``capture`` under ``root`` (default :func:`store_root`), decoding it first when missing.

        Under ``torchrun`` rank 0 builds it while the others wait. ``build=False`` only opens an existing one.

        Raises:
            InputError: a frame that cannot be read (naming the file), or no store and ``build=False``.
        """
        import torch.distributed as tdist

        group = tdist.is_available() and tdist.is_initialized()  # torchrun (engine/distributed.py joined it)
        own = False
        if root is None:
            root, own = store_root(capture)
        folder = Path(root) / capture_key(capture)
        if not (folder / "index.json").is_file() and (not group or tdist.get_rank() == 0):
            if not build:
                raise InputError(folder, "no frame store here")
            _build(capture, folder, workers)
            if own:  # the capture's files changed: its older stores are stale
                for old in folder.parent.iterdir():
                    if old.is_dir() and old.name != folder.name and not old.name.startswith("."):
                        shutil.rmtree(old, ignore_errors=True)
        if group:
            tdist.barrier()
        return cls(folder)

    def __len__(self) -> int:
        return len(self.sizes)

    def close(self) -> None:
        maps = [m for m, _ in getattr(self, "_maps", {}).values()]
        self._maps = {}  # drops the arrays over the maps, so they can close
        for m in maps:
            try:
                m.close()
            except BufferError:  # a caller still holds a view: the map goes with it
                pass
        for fd in (self._img, self._mask):
            if fd is not None:
                os.close(fd)
        self._img, self._mask = -1, None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # ------------------------------------------------------------------ reading
    def image(self, i: int) -> np.ndarray:
        """Frame ``i``'s image, uint8 [H, W, 3]."""
        w, h = self.sizes[i]
        return _read(self._img, w * h * 3, self.image_offsets[i]).reshape(h, w, 3)

    def mask(self, i: int) -> np.ndarray | None:
        """Frame ``i``'s mask, uint8 [H, W], or None without one."""
        off = self.mask_offsets[i]
        if off is None or self._mask is None:
            return None
        w, h = self.sizes[i]
        return _read(self._mask, w * h, off).reshape(h, w)

    @property
    def has_masks(self) -> bool:
        """Every frame has a mask."""
        return all(o is not None for o in self.mask_offsets)

    def pixels(self, frames: Tensor, pixels: Tensor) -> tuple[Tensor, Tensor | None]:
        """Colours (uint8 [N, 3]) and masks (uint8 [N] when every frame has one) of pixel ``pixels[k]`` (row-major
        index ``y * W + x``) of frame ``frames[k]`` (see the module docstring for how they are read)."""
        f = frames.detach().cpu().numpy().astype(np.int64, copy=False)
        p = pixels.detach().cpu().numpy().astype(np.int64, copy=False)
        rgb = self._gather(self._img, (self._img_off[f] + 3 * p)[:, None] + np.arange(3))
        if not self.has_masks or self._mask is None:
            return torch.from_numpy(rgb), None
        return torch.from_numpy(rgb), torch.from_numpy(self._gather(self._mask, self._mask_off[f] + p))

    def _gather(self, fd: int, at: np.ndarray) -> np.ndarray:
        """The bytes at file offsets ``at`` (any shape) of the file behind ``fd``."""
        if fd not in self._maps and self._mappable and os.fstat(fd).st_size:
            m = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
            self._maps[fd] = (m, np.frombuffer(m, np.uint8))
        if fd in self._maps:
            return self._maps[fd][1][at]
        flat = at.reshape(-1)
        if flat.size and at.ndim == 2 and at.shape[1] > 1:  # runs of consecutive bytes: one read per run
            k = at.shape[1]
            out = b"".join(os.pread(fd, k, o) for o in flat[::k].tolist())
        else:
            out = b"".join(os.pread(fd, 1, o) for o in flat.tolist())
        return np.frombuffer(out, np.uint8).reshape(at.shape).copy()


def _read(fd: int, n: int, offset: int) -> np.ndarray:
    """``n`` bytes at ``offset`` into a new (writable) uint8 array."""
    buf = bytearray(n)
    got = os.preadv(fd, [buf], offset)
    if got != n:
        raise InputError(None, f"frame store file is truncated (read {got} of {n} bytes at {offset})")
    return np.frombuffer(buf, np.uint8)  # writable: it wraps the bytearray


def _build(capture: Capture, folder: Path, workers: int) -> None:
    """Decode every frame of ``capture`` into a new store at ``folder`` (written to a temporary folder first)."""
    from nerfhead.data.images import load_image, load_mask

    sizes = [
        (int(capture.cameras.width[f.camera]), int(capture.cameras.height[f.camera])) for f in capture.frames
    ]
    img_off, mask_off, a, b = [], [], 0, 0
    for f, (w, h) in zip(capture.frames, sizes, strict=True):
        img_off.append(a)
        a += w * h * 3
        if f.mask_path is not None:
            mask_off.append(b)
            b += w * h
        else:
            mask_off.append(None)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        fi = os.open(tmp / "images.u8", os.O_RDWR | os.O_CREAT, 0o644)
        fm = os.open(tmp / "masks.u8", os.O_RDWR | os.O_CREAT, 0o644) if b else None
        try:
            os.ftruncate(fi, a)
            if fm is not None:
                os.ftruncate(fm, b)

            def one(i: int) -> None:
                f = capture.frames[i]
                w, h = sizes[i]
                img = _u8(load_image(f.image_path))
                if img.shape[:2] != (h, w):
                    raise InputError(
                        f.image_path, f"image is {img.shape[1]}x{img.shape[0]}, expected {w}x{h}"
                    )
                os.pwrite(fi, img.tobytes(), img_off[i])
                if f.mask_path is not None and fm is not None:
                    m = _u8(load_mask(f.mask_path))
                    if m.shape != (h, w):
                        raise InputError(f.mask_path, f"mask is {m.shape[1]}x{m.shape[0]}, expected {w}x{h}")
                    os.pwrite(fm, m.tobytes(), mask_off[i])  # type: ignore[arg-type]

            with ThreadPoolExecutor(max(1, workers)) as pool:  # PIL decodes without the GIL
                for _ in pool.map(one, range(len(capture.frames))):
                    pass
        finally:
            os.close(fi)
            if fm is not None:
                os.close(fm)
        index = {"version": STORE_VERSION, "sizes": sizes, "image_offsets": img_off, "mask_offsets": mask_off}
        (tmp / "index.json").write_text(json.dumps(index))
        try:
            os.replace(tmp, folder)
        except OSError:  # another process built it meanwhile
            if not (folder / "index.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _u8(x: Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).numpy()


def to_float(x: np.ndarray) -> Tensor:
    """uint8 array -> float32 tensor in [0, 1]."""
    return torch.from_numpy(x.astype(np.float32)) / 255.0


class FrameLoader:
    """Float targets from a :class:`FrameStore` with a prefetching thread pool and an LRU of ``capacity`` frames.

    Args:
        store: the frames.
        make: builds the target from (uint8 image, uint8 mask or None), e.g. compositing over a background.
        capacity: decoded targets kept (the memory bound: ``capacity`` frames).
        workers: prefetch threads.
    """

    def __init__(
        self,
        store: FrameStore,
        make: Callable[[np.ndarray, np.ndarray | None], tuple[Tensor, Tensor | None]],
        capacity: int = 16,
        workers: int = 2,
    ):
        self.store, self.make, self.capacity = store, make, max(int(capacity), 1)
        self._items: OrderedDict[int, tuple[Tensor, Tensor | None]] = OrderedDict()
        self._pending: dict[int, Future] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="frames")

    def _load(self, i: int) -> tuple[Tensor, Tensor | None]:
        return self.make(self.store.image(i), self.store.mask(i))

    def prefetch(self, frames: Iterable[int]) -> None:
        """Start loading ``frames`` in the background (those not already loaded or loading)."""
        with self._lock:
            for i in frames:
                if i not in self._items and i not in self._pending:
                    self._pending[i] = self._pool.submit(self._load, i)

    def get(self, i: int) -> tuple[Tensor, Tensor | None]:
        """Frame ``i``'s target (waiting for its prefetch, or loading it now)."""
        with self._lock:
            if i in self._items:
                self._items.move_to_end(i)
                return self._items[i]
            fut = self._pending.pop(i, None)
        value = fut.result() if fut is not None else self._load(i)
        with self._lock:
            self._items[i] = value
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return value

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
