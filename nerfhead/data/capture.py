"""A capture: calibrated cameras, frames indexed by (camera, timestep), and optionally a Drive and an audio track.

Frames point at image (and mask) files that are decoded lazily through a small LRU cache. Timesteps are
contiguous indices 0..T-1; each frame also carries its timestamp in seconds, which is what audio aligns to
(audio time = timestamp - ``audio_offset``). Sub-captures from :meth:`Capture.subset` and the splits renumber
cameras and timesteps but keep timestamps, image paths and the image cache.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from nerfhead.data.cameras import Cameras
from nerfhead.data.drive import Drive
from nerfhead.data.images import ImageCache, read_image_size
from nerfhead.errors import InputError

if TYPE_CHECKING:
    from nerfhead.data.split import Split, SplitPolicy


@dataclass(frozen=True)
class Frame:
    """One image of the capture.

    Args:
        camera: index into ``Capture.cameras``.
        timestep: index into the capture's timesteps (and its Drive).
        timestamp: seconds since the start of the capture.
        image_path: RGB image file.
        mask_path: optional mask file (1 = subject, 0 = background), same size as the image.
    """

    camera: int
    timestep: int
    timestamp: float
    image_path: Path
    mask_path: Path | None = None


def missing_indices(values: Iterable[int], n: int, limit: int = 8) -> list[int]:
    """Up to ``limit`` integers of 0..n-1 absent from ``values`` (without materialising 0..n-1)."""
    out: list[int] = []
    expect = 0
    for v in sorted(set(values)) + [n]:
        while expect < min(v, n) and len(out) < limit:
            out.append(expect)
            expect += 1
        expect = max(expect, v + 1)
        if len(out) >= limit:
            break
    return out


@dataclass(frozen=True, eq=False)
class Capture:
    """Cameras, frames and optional drive/audio of one recording.

    Args:
        cameras: the N cameras.
        frames: frames in file order; at most one per (camera, timestep); timesteps cover 0..T-1.
        fps: nominal frame rate (timestamps are authoritative).
        drive: optional per-timestep Drive of length T.
        audio_path: optional audio file.
        audio_offset: capture timestamp (s) at which the audio file starts.
        train_cameras: camera indices for training, or None.
        test_cameras: held-out camera indices, or None.
        metadata: JSON-able extras (source format, keys carried over from the file).
        cache_size: decoded images/masks kept in memory (LRU); negative keeps everything.

    Raises:
        ValueError: frames out of range, duplicate (camera, timestep), timestep gaps, drive length mismatch,
            bad split lists. Readers turn this into an ``InputError`` naming their file.
    """

    cameras: Cameras
    frames: tuple[Frame, ...]
    fps: float = 25.0
    drive: Drive | None = None
    audio_path: Path | None = None
    audio_offset: float = 0.0
    train_cameras: tuple[int, ...] | None = None
    test_cameras: tuple[int, ...] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    cache_size: int = 64
    _cache: ImageCache = field(init=False, repr=False)
    _index: dict[tuple[int, int], int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        frames = tuple(self.frames)
        object.__setattr__(self, "frames", frames)
        if not frames:
            raise ValueError("the capture has no frames")
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"fps must be positive, got {self.fps}")
        N = len(self.cameras)
        index: dict[tuple[int, int], int] = {}
        for i, f in enumerate(frames):
            if not 0 <= f.camera < N:
                raise ValueError(
                    f"frame {i}: camera index {f.camera} out of range (the capture has {N} cameras)"
                )
            if f.timestep < 0:
                raise ValueError(f"frame {i}: negative timestep index {f.timestep}")
            if not math.isfinite(f.timestamp):
                raise ValueError(f"frame {i}: timestamp is not finite")
            key = (f.camera, f.timestep)
            if key in index:
                raise ValueError(
                    f"frames {index[key]} and {i} are both {self.cameras.label(f.camera)} at timestep {f.timestep}"
                )
            index[key] = i
        T = max(f.timestep for f in frames) + 1
        missing = missing_indices((f.timestep for f in frames), T)
        if missing:
            shown = ", ".join(map(str, missing)) + (", ..." if len(missing) == 8 else "")
            raise ValueError(f"timestep indices have gaps: no frame at timestep {shown} (of 0..{T - 1})")
        if self.drive is not None and len(self.drive) != T:
            raise ValueError(f"the drive has {len(self.drive)} timesteps but the frames have {T}")
        for name in ("train_cameras", "test_cameras"):
            sel = getattr(self, name)
            if sel is not None:
                sel = tuple(int(c) for c in sel)
                object.__setattr__(self, name, sel)
                bad = [c for c in sel if not 0 <= c < N]
                if bad or len(set(sel)) != len(sel):
                    raise ValueError(f"{name} {list(sel)} must be distinct camera indices in 0..{N - 1}")
        both = set(self.train_cameras or ()) & set(self.test_cameras or ())
        if both:
            raise ValueError(f"cameras {sorted(both)} are in both train_cameras and test_cameras")
        object.__setattr__(self, "metadata", dict(self.metadata))
        object.__setattr__(self, "_cache", ImageCache(self.cache_size))
        object.__setattr__(self, "_index", index)

    # ------------------------------------------------------------------ sizes
    def __len__(self) -> int:
        return len(self.frames)

    @property
    def num_cameras(self) -> int:
        return len(self.cameras)

    @property
    def num_timesteps(self) -> int:
        return max(f.timestep for f in self.frames) + 1

    @property
    def timestamps(self) -> Tensor:
        """[T] float64 seconds: the earliest frame timestamp of each timestep."""
        out = torch.full((self.num_timesteps,), math.inf, dtype=torch.float64)
        for f in self.frames:
            out[f.timestep] = min(float(out[f.timestep]), f.timestamp)
        return out

    @property
    def has_masks(self) -> bool:
        """True when every frame has a mask."""
        return all(f.mask_path is not None for f in self.frames)

    def frame_index(self, camera: int, timestep: int) -> int | None:
        """Index of the frame of ``camera`` at ``timestep``, or None."""
        return self._index.get((camera, timestep))

    def frames_at(self, timestep: int) -> list[int]:
        """Frame indices at one timestep, in camera order."""
        return [self._index[(c, timestep)] for c in range(self.num_cameras) if (c, timestep) in self._index]

    def frames_of(self, camera: int) -> list[int]:
        """Frame indices of one camera, in timestep order."""
        return [self._index[(camera, t)] for t in range(self.num_timesteps) if (camera, t) in self._index]

    def camera_ids(self, cameras: Iterable[int | str]) -> list[int]:
        """Camera indices from indices or names.

        Raises:
            InputError: an unknown name or an index out of range.
        """
        out = []
        names = self.cameras.names or ()
        for c in cameras:
            if isinstance(c, str) and c in names:
                out.append(names.index(c))
            elif isinstance(c, str) and not c.lstrip("-").isdigit():
                raise InputError(None, f"unknown camera {c!r}", hint=f"names: {', '.join(names) or 'none'}")
            else:
                i = int(c)
                if not 0 <= i < self.num_cameras:
                    raise InputError(None, f"camera index {i} out of range (0..{self.num_cameras - 1})")
                out.append(i)
        return out

    # ------------------------------------------------------------------ pixels
    def _expect_size(self, path: Path, shape: Sequence[int], camera: int, kind: str) -> None:
        w, h = int(self.cameras.width[camera]), int(self.cameras.height[camera])
        if (shape[1], shape[0]) != (w, h):
            raise InputError(
                path, f"{kind} is {shape[1]}x{shape[0]} but {self.cameras.label(camera)} expects {w}x{h}"
            )

    def image(self, i: int) -> Tensor:
        """Frame ``i``'s image, float32 RGB [H, W, 3] in [0, 1] (cached).

        Raises:
            InputError: missing/corrupt file or a size other than its camera's.
        """
        f = self.frames[i]
        img = self._cache.get(f.image_path, "image")
        self._expect_size(f.image_path, img.shape, f.camera, "image")
        return img

    def mask(self, i: int) -> Tensor | None:
        """Frame ``i``'s mask, float32 [H, W] in [0, 1] (cached), or None without one.

        Raises:
            InputError: missing/corrupt file or a size other than its camera's.
        """
        f = self.frames[i]
        if f.mask_path is None:
            return None
        m = self._cache.get(f.mask_path, "mask")
        self._expect_size(f.mask_path, m.shape, f.camera, "mask")
        return m

    def load_images(self, indices: Sequence[int] | None = None) -> list[Tensor]:
        """Decode images of ``indices`` (default: all frames) for small captures; caches them."""
        return [self.image(i) for i in (range(len(self)) if indices is None else indices)]

    def check_files(self, decode: int = -1, require_nonempty_masks: bool = True) -> int:
        """Check every image and mask header (present, readable, size matching its camera) and fully decode
        ``decode`` frames spread evenly over the capture (-1: all), checking masks are not all zero.

        Returns:
            the number of frames decoded.

        Raises:
            InputError: naming the first bad file.
        """
        for f in self.frames:
            self._expect_size(f.image_path, read_image_size(f.image_path)[::-1], f.camera, "image")
            if f.mask_path is not None:
                self._expect_size(f.mask_path, read_image_size(f.mask_path, "mask")[::-1], f.camera, "mask")
        n = len(self) if decode < 0 else min(decode, len(self))
        picks = sorted({round(k * (len(self) - 1) / max(n - 1, 1)) for k in range(n)}) if n else []
        for i in picks:
            f = self.frames[i]
            self.image(i)
            m = self.mask(i)
            if m is not None and require_nonempty_masks and not bool((m > 0).any()):
                raise InputError(f.mask_path, "mask is empty (all zero): no subject pixels")
        return len(picks)

    def contained(self, folder: str | os.PathLike, sub: str = "images") -> Capture:
        """This capture with every image and mask outside ``folder`` hard-linked (copied across file systems)
        into ``folder/sub``, so a capture written to ``folder`` reads only inside it (what the readers require
        by default). Files already inside, and missing files, are kept where they are."""
        folder = Path(folder)
        root = folder.resolve()

        def inside(p: Path | None, name: str) -> Path | None:
            if p is None or not p.is_file() or p.resolve().is_relative_to(root):
                return p  # inside already, or nothing to bring (a missing file stays referenced as it was)
            dest = folder / sub / f"{name}{p.suffix.lower()}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.unlink(missing_ok=True)
            try:
                os.link(p.resolve(), dest)
            except OSError:
                shutil.copy2(p, dest)
            return dest

        frames = tuple(
            dataclasses.replace(
                f,
                image_path=inside(f.image_path, f"c{f.camera:03d}_t{f.timestep:05d}"),
                mask_path=inside(f.mask_path, f"c{f.camera:03d}_t{f.timestep:05d}_mask"),
            )
            for f in self.frames
        )
        if frames == self.frames:
            return self
        out = dataclasses.replace(self, frames=frames)
        object.__setattr__(out, "_cache", self._cache)
        return out

    # ---------------------------------------------------------------- subsets
    def subset(
        self, cameras: Sequence[int | str] | None = None, timesteps: Sequence[int] | None = None
    ) -> Capture:
        """A sub-capture of some cameras (in the given order) and some timesteps (sorted), renumbered from 0.

        Timestamps, paths, audio and the image cache are kept; the drive is sliced to the kept timesteps.
        """
        cams = list(range(self.num_cameras)) if cameras is None else self.camera_ids(cameras)
        ts = list(range(self.num_timesteps)) if timesteps is None else sorted({int(t) for t in timesteps})
        if not cams or not ts:
            raise ValueError("a sub-capture needs at least one camera and one timestep")
        if len(set(cams)) != len(cams):
            raise ValueError(f"cameras {cams} repeat an index")
        cmap = {c: k for k, c in enumerate(cams)}
        tmap = {t: k for k, t in enumerate(ts)}
        frames = tuple(
            dataclasses.replace(f, camera=cmap[f.camera], timestep=tmap[f.timestep])
            for f in self.frames
            if f.camera in cmap and f.timestep in tmap
        )
        if not frames:
            raise ValueError("the selected cameras have no frames at the selected timesteps")
        used_t = {f.timestep for f in frames}
        if len(used_t) != len(ts):  # drop selected timesteps without frames, renumbering again
            keep = sorted(used_t)
            remap = {t: k for k, t in enumerate(keep)}
            ts = [ts[t] for t in keep]
            frames = tuple(dataclasses.replace(f, timestep=remap[f.timestep]) for f in frames)

        def sel(lst: tuple[int, ...] | None) -> tuple[int, ...] | None:
            return None if lst is None else tuple(cmap[c] for c in lst if c in cmap)

        sub = Capture(
            cameras=self.cameras[torch.tensor(cams)],
            frames=frames,
            fps=self.fps,
            drive=None if self.drive is None else self.drive[torch.tensor(ts)],
            audio_path=self.audio_path,
            audio_offset=self.audio_offset,
            train_cameras=sel(self.train_cameras),
            test_cameras=sel(self.test_cameras),
            metadata=self.metadata,
            cache_size=self.cache_size,
        )
        object.__setattr__(sub, "_cache", self._cache)
        return sub

    def split_by_camera(
        self, train: Sequence[int | str] | None = None, test: Sequence[int | str] | None = None
    ) -> tuple[Capture, Capture]:
        """(train, test) sub-captures by camera. Defaults: the stored ``train_cameras`` / ``test_cameras``;
        with only one list given, the other is every remaining camera."""
        tr = None if train is None else self.camera_ids(train)
        te = None if test is None else self.camera_ids(test)
        if tr is None and te is None:
            tr, te = self.train_cameras, self.test_cameras
            if tr is None and te is None:
                raise InputError(
                    None, "the capture stores no train/test cameras", hint="pass them explicitly"
                )
        all_c = range(self.num_cameras)
        tr = [c for c in all_c if c not in set(te or ())] if tr is None else list(tr)
        te = [c for c in all_c if c not in set(tr)] if te is None else list(te)
        if set(tr) & set(te):
            raise InputError(None, f"cameras {sorted(set(tr) & set(te))} are in both splits")
        if not tr or not te:
            raise InputError(None, "both camera splits must be non-empty")
        return self.subset(cameras=tr), self.subset(cameras=te)

    def time_split(self, train_fraction: float = 0.9) -> tuple[list[int], list[int]]:
        """(train, test) timestep indices of a split by time: the first ``round(train_fraction * T)`` timesteps
        (at least one, at most T - 1) train, the rest are held out (the "tail" policy of :meth:`split`).

        Raises:
            InputError: ``train_fraction`` outside (0, 1) or a capture of a single timestep.
        """
        from nerfhead.data.split import tail_split

        return tail_split(self.num_timesteps, train_fraction)

    def split(self, policy: SplitPolicy | None = None) -> Split:
        """The train / evaluation split every model's training task and ``nerfhead eval`` use: by the stored
        cameras, or, for a monocular capture, by time under ``policy`` (default: held-out blocks inside speech,
        :mod:`nerfhead.data.split`)."""
        from nerfhead.data.split import SplitPolicy, split_capture

        return split_capture(self, policy if policy is not None else SplitPolicy())

    def split_by_time(
        self, train_fraction: float = 0.9, train_timesteps: Sequence[int] | None = None
    ) -> tuple[Capture, Capture]:
        """(train, test) sub-captures by time: the first ``round(train_fraction * T)`` timesteps (or the
        explicit ``train_timesteps``) for training, the rest for testing."""
        T = self.num_timesteps
        if train_timesteps is None:
            tr = self.time_split(train_fraction)[0]
        else:
            tr = sorted({int(t) for t in train_timesteps})
            if any(not 0 <= t < T for t in tr):
                raise InputError(None, f"train timesteps must lie in 0..{T - 1}")
        te = [t for t in range(T) if t not in set(tr)]
        if not tr or not te:
            raise InputError(None, f"both time splits must be non-empty (the capture has {T} timesteps)")
        return self.subset(timesteps=tr), self.subset(timesteps=te)

    # ---------------------------------------------------------------- summary
    def summary(self) -> dict[str, Any]:
        """JSON-able description: counts, sizes, intrinsics range, masks, drive, audio, splits."""
        cams = self.cameras
        sizes: dict[str, int] = {}
        for c in range(len(cams)):
            k = f"{int(cams.width[c])}x{int(cams.height[c])}"
            sizes[k] = sizes.get(k, 0) + 1
        fx = cams.K[:, 0, 0].double()
        ts = self.timestamps
        out: dict[str, Any] = {
            "cameras": len(cams),
            "camera_names": list(cams.names) if cams.names is not None else None,
            "timesteps": self.num_timesteps,
            "frames": len(self),
            "fps": self.fps,
            "time_span_s": [float(ts.min()), float(ts.max())],
            "image_sizes": sizes,
            "focal_px": [float(fx.min()), float(fx.max())],
            "distortion": cams.dist is not None and bool((cams.dist != 0).any()),
            "camera_spread_m": float(torch.cdist(cams.centers.double(), cams.centers.double()).max()),
            "masks": sum(f.mask_path is not None for f in self.frames),
            "train_cameras": list(self.train_cameras) if self.train_cameras is not None else None,
            "test_cameras": list(self.test_cameras) if self.test_cameras is not None else None,
            "drive": None,
            "audio": None
            if self.audio_path is None
            else {"path": str(self.audio_path), "offset_s": self.audio_offset},
            "metadata": self.metadata,
        }
        if self.drive is not None:
            d = self.drive
            out["drive"] = {
                "timesteps": len(d),
                "fps": d.fps,
                "latent_dim": d.latent_dim,
                "expression_range": [float(d.expression.min()), float(d.expression.max())],
                "max_rotation_deg": float(d.rotation.norm(dim=-1).max()) * 180.0 / math.pi,
            }
        return out
