"""``nerfhead track`` end to end: a monocular video or a calibrated capture in, a tracked capture out.

Output folder (nerfhead's capture format; read it back with :func:`nerfhead.data.load_capture`)::

    transforms.json     cameras, frames, fps, audio, metadata["track"] (metrics, identity, source)
    drive.npz           the tracked Drive: head pose + 53 expression coefficients per timestep
    images/<t>.jpg      decoded video frames, JPEG q95 4:4:4, written as they are tracked (video input; a
                        capture's images are referenced in place)
    masks/...png        foreground masks (see nerfhead.track.masks), unless the capture brought its own; 8-bit
                        PNG at compression level 1
    audio.wav           the video's soundtrack, sample 0 at timestamp 0 (video input with audio)
    landmarks.npz       MediaPipe landmarks: points [N, 478, 2], camera [N], timestep [N], detected [N]
    track.json          the metrics (also in transforms.json's metadata), with each stage's rate (``stages``)
                        and the end-to-end ``frames_per_second``
    .track_partial.npz  while a video is tracked: the landmarks of its whole 250-frame windows (a killed run
                        resumes from them); removed at the end
    overlay.mp4         frames with the fitted wireframe and the landmarks (one camera), with the audio
                        (H.264, x264 preset veryfast)

One pipeline of stages (:func:`run`) serves both inputs; a :class:`~nerfhead.track.sources.FrameSource`
(:mod:`nerfhead.track.sources`: a video or a capture) is what differs: how frames and landmarks are found, the fit's observations, and the
capture written. Stages: landmarks -> landmark fit -> optional photometric refinement -> one pass over the
frames that poses and rasterizes the fitted head once per frame and writes its mask and its overlay image.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nerfhead.atomic import atomic_open
from nerfhead.data.capture import Capture, Frame
from nerfhead.errors import InputError
from nerfhead.media.image import to_uint8
from nerfhead.parametric.ict import ICTHead
from nerfhead.track.config import Reporter, TrackConfig, _Silent
from nerfhead.track.correspondence import Correspondence, load_correspondence
from nerfhead.track.fit import (
    Observations,
    TrackFitResult,
    fit_sequence,
)
from nerfhead.track.masks import PersonSegmenter, combine, head_region, pose_and_rasterize
from nerfhead.track.photometric import refine_photometric
from nerfhead.track.sources import CaptureSource, FrameSource, VideoSource


class _Timed:
    """Passes progress on to a reporter and measures each stage: ``stats[name] = {items, seconds, per_second}``
    (frames per second for the per-frame stages, iterations per second for the fit)."""

    def __init__(self, inner: Reporter | None):
        self.inner = inner or _Silent()
        self.stats: dict[str, dict[str, float]] = {}
        self._name: str | None = None
        self._t0, self._n = 0.0, 0

    def stage(self, name: str, total: int) -> None:
        self.close()
        self._name, self._t0, self._n = name, time.perf_counter(), 0
        self.inner.stage(name, total)

    def advance(self, n: int = 1) -> None:
        self._n += n
        self.inner.advance(n)

    def close(self) -> None:
        """End the current stage (its figures go to ``stats``)."""
        if self._name is not None:
            dt = time.perf_counter() - self._t0
            self.stats[self._name] = {
                "items": self._n,
                "seconds": round(dt, 2),
                "per_second": round(self._n / max(dt, 1e-9), 2),
                **_memory_mb(),
            }
        self._name = None


def _memory_mb() -> dict[str, float]:
    """``rss_mb``: this process's resident memory now; ``peak_rss_mb``: its peak so far (Linux; {} elsewhere)."""
    try:
        import resource

        with open("/proc/self/statm") as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    except (OSError, ImportError, ValueError):
        return {}
    return {"rss_mb": round(rss / 2**20, 1), "peak_rss_mb": round(peak / 2**20, 1)}


@dataclass(frozen=True)
class TrackResult:
    """What :func:`track` wrote and measured."""

    capture: Capture
    """The tracked capture (as written to ``out``)."""
    fit: TrackFitResult
    """The fit (drive, identity, cameras, per-observation reprojection error)."""
    metrics: dict[str, Any]
    """Also in ``out/track.json``."""
    out: Path


def _metrics(fit: TrackFitResult, obs: Observations, detected: np.ndarray, seconds: dict[str, float]) -> dict:
    r = fit.reprojection_px.numpy()
    return {
        "timesteps": int(obs.num_timesteps),
        "observations": len(obs),
        "observations_without_face": int((~detected).sum()),
        "reprojection_px": {
            "mean": float(r.mean()),
            "median": float(np.median(r)),
            "p95": float(np.percentile(r, 95)),
        },
        "focal_px": [float(f) for f in fit.cameras.K[:, 0, 0].unique()[:8]],
        "identity": [round(float(b), 5) for b in fit.identity],
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
    }


def track(
    input: str | os.PathLike,
    out: str | os.PathLike,
    config: TrackConfig | None = None,
    reporter: Reporter | None = None,
) -> TrackResult:
    """Track a video file or a capture folder into ``out``.

    Raises:
        InputError: unreadable input, no face anywhere, bad options.
    """
    config = config or TrackConfig()
    path = Path(input)
    if not path.exists():
        raise InputError(path, "no such file or directory")
    if path.is_file() and path.suffix.lower() != ".json":
        return track_video(path, out, config, reporter)
    return track_capture(path, out, config, reporter)


def track_video(
    path: str | os.PathLike, out: str | os.PathLike, config: TrackConfig, reporter: Reporter | None = None
) -> TrackResult:
    """Monocular video -> tracked capture (see the module docstring), streaming: frames are decoded, searched
    for landmarks and written to ``images/`` one at a time, and the later stages read them back one at a time,
    so memory does not grow with the video's length. A run that is killed resumes from its last landmark window
    (``.track_partial.npz``; the images already written are kept)."""
    return run(VideoSource(Path(path), config), out, config, reporter)


def track_capture(
    path: str | os.PathLike, out: str | os.PathLike, config: TrackConfig, reporter: Reporter | None = None
) -> TrackResult:
    """Calibrated capture (any layout :func:`nerfhead.data.load_capture` reads) -> tracked capture."""
    return run(CaptureSource(Path(path), config), out, config, reporter)


# ------------------------------------------------------------------------------------------------ the stages
def run(
    source: FrameSource, out: str | os.PathLike, config: TrackConfig, reporter: Reporter | None = None
) -> TrackResult:
    """The tracking stages, for any :class:`FrameSource`: landmarks -> fit -> (photometric refinement) -> one
    pass writing masks and the overlay -> capture, landmarks.npz and track.json."""
    from nerfhead.atomic import atomic_write_json
    from nerfhead.data.nerfstudio import save_capture

    rep = _Timed(reporter)
    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    bound_allocator()
    head = ICTHead()
    corr = load_correspondence(num_faces=int(head.faces.shape[0]))
    sec: dict[str, float] = {}

    t0 = time.perf_counter()
    raw = source.detect(out, rep)
    detected = np.isfinite(raw).all(axis=(1, 2))
    if not detected.any():
        raise InputError(
            source.path,
            f"no face found in any of its {len(raw)} {source.unit}",
            hint="is a face visible and lit?",
        )
    sec["landmarks"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    obs, obs_frame = source.observations(raw, head, corr)
    fit = _fit(obs, head, corr, config, source.fit_focal, rep)
    sec["fit"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    fit = _refine(fit, obs, lambda i: source.image(int(obs_frame[i])), head, corr, config, rep)
    sec["photometric"] = time.perf_counter() - t0
    trim_heap()  # the fit's buffers grow with the video's length: give them back before the per-frame pass

    t0 = time.perf_counter()
    frames = _render(source, fit, head, corr, config, rep, raw, out)
    sec["masks_overlay"] = time.perf_counter() - t0

    metrics = {"input": str(source.path), "kind": source.kind, **_metrics(fit, obs, detected, sec)}
    cap = source.capture(fit, frames, metrics)
    _save_landmarks(out, raw, *source.landmark_index(), detected)
    rep.close()
    metrics["stages"] = rep.stats
    metrics["frames_per_second"] = round(len(cap) / max(time.perf_counter() - start, 1e-9), 2)  # end to end
    save_capture(cap, out)
    atomic_write_json(out / "track.json", _jsonable(metrics))
    source.done(out)
    return TrackResult(cap, fit, metrics, out)


def _fit(
    obs: Observations,
    head: ICTHead,
    corr: Correspondence,
    config: TrackConfig,
    fit_focal: bool,
    reporter: Reporter,
) -> TrackFitResult:
    f = config.fit
    total = f.rigid_iters + f.full_iters + (f.offset_iters if f.w_landmark_offset > 0 else 0)
    reporter.stage("fitting", total)
    last = [0]

    def progress(step: int, _total: int, _loss: float) -> None:
        reporter.advance(step - last[0])
        last[0] = step

    return fit_sequence(obs, head, corr, config.fit, fit_focal=fit_focal, progress=progress)


def _refine(
    fit: TrackFitResult,
    obs: Observations,
    image: Callable[[int], np.ndarray],
    head: ICTHead,
    corr: Correspondence,
    config: TrackConfig,
    reporter: Reporter,
) -> TrackFitResult:
    """Photometric refinement when ``config.photometric.iters`` > 0."""
    if config.photometric.iters <= 0:
        return fit
    reporter.stage("photometric", config.photometric.iters)
    return refine_photometric(
        fit, obs, image, head, corr, config.fit, config.photometric, lambda *_: reporter.advance()
    )


PIXEL_BUDGET = 1 << 20
"""Pixels rendered per batch of the masks and overlay pass (8 frames at most): one 720p or 1080p frame at a
time, 8 at 360x288. Whole-frame float buffers scale with it (a batch of eight 1080p frames held ~0.8 GB of
them), so memory does not depend on the resolution much more than the frames themselves do."""


def _render(
    source: FrameSource,
    fit: TrackFitResult,
    head: ICTHead,
    corr: Correspondence,
    config: TrackConfig,
    rep: Reporter,
    raw: np.ndarray,
    out: Path,
) -> list[Frame]:
    """One pass over the frames after the fit: each frame is read once and its fitted head posed and
    rasterized once; from that come its mask (``masks/``, when masks are made) and its overlay image (streamed
    to ``overlay.mp4``'s encoder, for the overlay camera's frames). Returns the frames with ``mask_path`` set."""
    from dataclasses import replace

    from nerfhead.media.video import write_video
    from nerfhead.track.overlay import overlay_frame, wire_edges
    from nerfhead.track.projection import project

    frames = list(source.frames)
    make_masks = config.make_masks and source.needs_masks()
    shown = sorted(source.overlay_frames(raw), key=lambda i: frames[i].timestep) if config.overlay else []
    rank = {i: k for k, i in enumerate(shown)}
    todo = sorted(
        range(len(frames)) if make_masks else shown,
        key=lambda i: (frames[i].timestep, rank.get(i, -1), frames[i].camera),
    )  # the overlay's frames come in their video's order
    if not todo:
        return frames
    rep.stage("masks+overlay" if make_masks and shown else "masks" if make_masks else "overlay", len(todo))
    d, identity = fit.drive, fit.identity
    cams = fit.cameras.to(dtype=torch.float32)
    size = [(int(cams.width[f.camera]), int(cams.height[f.camera])) for f in frames]
    edges = wire_edges(head)
    seg = PersonSegmenter() if make_masks and config.masks.mode != "mesh" else None

    def batches() -> Iterator[list[int]]:
        batch: list[int] = []
        for i in todo:
            if batch and (size[i] != size[batch[0]] or (len(batch) + 1) * _pixels(size[i]) > PIXEL_BUDGET):
                yield batch
                batch = []
            batch.append(i)
            if len(batch) == 8:
                yield batch
                batch = []
        if batch:
            yield batch

    def overlay_images(readers: ThreadPoolExecutor, writers: ThreadPoolExecutor) -> Iterator[np.ndarray]:
        pending: list[Future] = []
        it = batches()
        nxt = next(it, None)
        ahead = [readers.submit(source.image, i) for i in nxt] if nxt else []
        while nxt is not None:
            batch, images = nxt, ahead
            nxt = next(it, None)  # decode the next batch's images while this one is drawn
            ahead = [readers.submit(source.image, i) for i in nxt] if nxt else []
            w, h = size[batch[0]]
            t = torch.tensor([frames[i].timestep for i in batch])
            c = torch.tensor([frames[i].camera for i in batch])
            K, V = cams.K[c], cams.viewmat[c]
            posed = pose_and_rasterize(
                head, d.expression[t], d.rotation[t], d.translation[t], identity, K, V, w, h, config.backend
            )
            rgb = [f.result() for f in images]
            if make_masks:
                keep = head_region(d.rotation[t], d.translation[t], K, V, w, h, config.masks)
                person = None if seg is None else torch.from_numpy(np.stack([seg(x) for x in rgb]))
                masks = combine(posed.triangle >= 0, person, keep, config.masks)
                for k, i in enumerate(batch):
                    path = out / "masks" / f"{source.mask_name(frames[i])}.png"
                    frames[i] = replace(frames[i], mask_path=path)
                    pending.append(writers.submit(_save_mask, path, masks[k]))
                del person, keep, masks
                while len(pending) > 8:  # bounded queue of masks being written
                    pending.pop(0).result()
            sel = [k for k, i in enumerate(batch) if i in rank]
            if sel:
                with torch.no_grad():
                    pts = corr.points(posed.vertices[sel], head.faces, d.rotation[t[sel]])
                    uv, _ = project(K[sel], V[sel], None, pts)
                for j, k in enumerate(sel):
                    yield overlay_frame(
                        rgb[k], posed.vertices_cam[k], K[k], edges, posed.depth[k], raw[batch[k]], uv[j].numpy()
                    )  # fmt: skip
            rep.advance(len(batch))
            del posed, rgb
        for f in pending:
            f.result()

    try:
        with ThreadPoolExecutor(2) as readers, ThreadPoolExecutor(1) as writers:
            images = overlay_images(readers, writers)
            if shown:
                audio, offset = source.audio()
                if audio is not None and abs(frames[shown[0]].timestamp - offset) > 1e-3:
                    audio = None  # the overlay would start at another time than the audio: leave it silent
                write_video(images, out / "overlay.mp4", source.fps(), audio, preset="veryfast")
            else:
                for _ in images:
                    pass
    finally:
        if seg is not None:
            seg.__exit__(None, None, None)
    return frames


# ------------------------------------------------------------------------------------------------ helpers
def _pixels(size: tuple[int, int]) -> int:
    return size[0] * size[1]


def bound_allocator() -> None:
    """glibc only (a no-op elsewhere): serve every allocation above 4 MiB with its own mapping, returned to the
    OS when freed. glibc otherwise raises that threshold to the largest block freed so far (up to 32 MiB), after
    which the per-frame image and mask buffers of a 1080p video (6-30 MB each, from several threads) are carved
    from the heaps and fragment them: resident memory then creeps up with the video's length."""
    lib = _libc()
    if lib is not None:
        lib.mallopt(-3, 4 << 20)  # M_MMAP_THRESHOLD


def trim_heap() -> None:
    """glibc: give the heaps' free pages back to the OS (``malloc_trim``)."""
    lib = _libc()
    if lib is not None:
        lib.malloc_trim(0)


def _libc() -> Any:
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        lib = ctypes.CDLL("libc.so.6")
        lib.gnu_get_libc_version  # noqa: B018  (glibc, not musl)
    except (OSError, AttributeError):
        return None
    return lib


def _save_mask(path: Path, mask: Tensor) -> None:
    """8-bit PNG with fast compression (level 1: several times faster than the default, ~20% larger)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(mask), "L").save(path, compress_level=1)


def _save_landmarks(
    out: Path, raw: np.ndarray, cams: np.ndarray, ts: np.ndarray, detected: np.ndarray
) -> None:
    with atomic_open(out / "landmarks.npz", "wb") as f:
        np.savez(f, points=raw, camera=cams, timestep=ts, detected=detected)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def summary_line(result: TrackResult) -> str:
    """One line for the console."""
    m = result.metrics
    r = m["reprojection_px"]
    return (
        f"tracked {m['timesteps']} timesteps ({m['observations']} images, "
        f"{m['observations_without_face']} without a face): reprojection {r['mean']:.2f} px mean, "
        f"{r['p95']:.2f} px p95 -> {result.out}"
    )


def config_json(config: TrackConfig) -> str:
    """The config as JSON (for logs)."""
    return json.dumps(asdict(config), default=str)
