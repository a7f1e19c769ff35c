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

One pipeline of stages (:func:`run`) serves both inputs; a :class:`FrameSource` (:class:`VideoSource`,
:class:`CaptureSource`) is what differs: how frames and landmarks are found, the fit's observations, and the
capture written. Stages: landmarks -> landmark fit -> optional photometric refinement -> one pass over the
frames that poses and rasterizes the fitted head once per frame and writes its mask and its overlay image.
"""

from __future__ import annotations

import json
import math
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from nerfhead.atomic import atomic_open
from nerfhead.data.capture import Capture, Frame
from nerfhead.errors import InputError
from nerfhead.media.image import to_uint8
from nerfhead.parametric.ict import ICTHead
from nerfhead.track.correspondence import Correspondence, load_correspondence
from nerfhead.track.fit import (
    Observations,
    TrackFitConfig,
    TrackFitResult,
    fit_sequence,
    monocular_observations,
)
from nerfhead.track.landmarks import FaceMeshDetector, LandmarkConfig, fill_missing
from nerfhead.track.masks import MaskConfig, PersonSegmenter, combine, head_region, pose_and_rasterize
from nerfhead.track.photometric import PhotometricConfig, refine_photometric
from nerfhead.track.video import VideoConfig, VideoInfo, extract_audio, stream_video

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mpg", ".mpeg", ".webm", ".mkv", ".avi")


@dataclass(frozen=True)
class TrackConfig:
    """Everything ``nerfhead track`` can be told."""

    video: VideoConfig = field(default_factory=VideoConfig)
    """Frame range, stride, crop and scale of a video input."""
    landmarks: LandmarkConfig = field(default_factory=LandmarkConfig)
    """MediaPipe Face Mesh options."""
    fit: TrackFitConfig = field(default_factory=TrackFitConfig)
    """Optimisation schedule and weights."""
    photometric: PhotometricConfig = field(default_factory=PhotometricConfig)
    """Optional photometric refinement after the landmark fit (off unless ``photometric.iters`` > 0)."""
    masks: MaskConfig = field(default_factory=MaskConfig)
    """Foreground masks."""
    make_masks: bool = True
    """Write masks (a capture that has masks keeps its own)."""
    overlay: bool = True
    """Write overlay.mp4."""
    focal: float | None = None
    """Video input: focal length guess in pixels (default 1.4 x the longer side, a ~39 degree field of view);
    refined by the fit unless ``fit.fit_focal`` is False."""
    cameras: tuple[str, ...] | None = None
    """Capture input: cameras to track (names or indices); default all."""
    overlay_camera: str | None = None
    """Capture input: camera of the overlay video (name or index); default the one seeing the largest face."""
    backend: str = "auto"
    """Rasterizer backend for masks and overlay: ``auto|cuda|cpu|torch``."""


class Reporter(Protocol):
    """Progress sink: a stage with a known number of steps, then advances."""

    def stage(self, name: str, total: int) -> None: ...

    def advance(self, n: int = 1) -> None: ...


class _Silent:
    def stage(self, name: str, total: int) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass


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


def default_focal(width: int, height: int) -> float:
    """Focal guess of an unknown camera: 1.4 x the longer side."""
    return 1.4 * max(width, height)


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


# ------------------------------------------------------------------------------------------------ sources
class FrameSource(ABC):
    """Where a tracking's frames come from: the part that differs between a video and a capture. The stages
    (:func:`run`) ask it for the landmarks, the observations of the fit, frame images, and the capture to write.
    """

    kind: str
    """``video`` or ``capture`` (``metrics["kind"]``)."""
    unit: str
    """What a frame is called in messages (``frames`` / ``images``)."""
    fit_focal: bool
    """Whether the fit may refine the focal length (an uncalibrated camera)."""

    def __init__(self, path: Path, config: TrackConfig):
        self.path, self.config = path, config
        self.frames: list[Frame] = []
        """The frames (known after :meth:`detect`)."""

    @abstractmethod
    def detect(self, out: Path, rep: Reporter) -> np.ndarray:
        """MediaPipe landmarks of every frame, [N, P, 2] pixels, NaN where no face was found."""

    @abstractmethod
    def observations(
        self, raw: np.ndarray, head: ICTHead, corr: Correspondence
    ) -> tuple[Observations, np.ndarray]:
        """The fit's observations, and the frame index of each."""

    @abstractmethod
    def image(self, i: int) -> np.ndarray:
        """Frame ``i``'s image, uint8 [H, W, 3]."""

    @abstractmethod
    def fps(self) -> float:
        """Frame rate of the timesteps."""

    @abstractmethod
    def capture(self, fit: TrackFitResult, frames: Sequence[Frame], metrics: dict) -> Capture:
        """The tracked capture (``metrics`` goes into its metadata; sources add their own keys)."""

    def needs_masks(self) -> bool:
        """Whether masks are to be made (a capture with masks keeps its own)."""
        return True

    def mask_name(self, f: Frame) -> str:
        """File name (no suffix) of frame ``f``'s mask under ``masks/``."""
        return f"{f.timestep:05d}"

    def overlay_frames(self, raw: np.ndarray) -> list[int]:
        """Frame indices of the overlay video, in time order."""
        return list(range(len(self.frames)))

    def audio(self) -> tuple[Path | None, float]:
        """(soundtrack, timestamp of its first sample)."""
        return None, 0.0

    def landmark_index(self) -> tuple[np.ndarray, np.ndarray]:
        """(camera, timestep) of each frame, for ``landmarks.npz``."""
        return (
            np.array([f.camera for f in self.frames], np.int64),
            np.array([f.timestep for f in self.frames], np.int64),
        )

    def done(self, out: Path) -> None:  # noqa: B027  (optional hook)
        """Called once everything is written."""


PARTIAL = ".track_partial.npz"
"""Landmarks of the frames tracked so far (a killed run resumes from them)."""
WINDOW = 250
"""Frames between saves of :data:`PARTIAL`."""
IMAGE_SUFFIX = ".jpg"
"""Video frames are written as JPEG, quality 95 without chroma subsampling: ~5x faster to write than PNG and
within ~1/255 mean absolute error of the decoded frame."""


class VideoSource(FrameSource):
    """A monocular video: decoded as it is tracked, each frame written to ``images/`` (JPEG) and read back."""

    kind, unit, fit_focal = "video", "frames", True

    def __init__(self, path: Path, config: TrackConfig):
        super().__init__(path, config)
        self.info = VideoInfo()
        self._audio: Path | None = None

    def detect(self, out: Path, rep: Reporter) -> np.ndarray:
        raw, times = _stream_landmarks(self.path, out, self.config, self.info, rep)
        self.frames = [Frame(0, t, float(times[t]), _frame_path(out, t)) for t in range(len(times))]
        if self.info.has_audio and np.isfinite(raw).any():
            v = self.config.video
            self._audio = extract_audio(self.path, out / "audio.wav", v.start, v.duration)
        return raw

    def observations(
        self, raw: np.ndarray, head: ICTHead, corr: Correspondence
    ) -> tuple[Observations, np.ndarray]:
        from nerfhead.track.landmarks import Landmarks

        width, height = self.info.out_size
        lm = fill_missing(Landmarks(raw, np.isfinite(raw).all(axis=(1, 2)), width, height), source=self.path)
        focal = self.config.focal or default_focal(width, height)
        pts = torch.from_numpy(lm.points[:, corr.landmark])
        obs = monocular_observations(pts, width, height, self.info.fps, head, corr, focal)
        return obs, np.arange(len(raw))

    def image(self, i: int) -> np.ndarray:
        from PIL import Image

        with Image.open(self.frames[i].image_path) as im:
            return np.array(im.convert("RGB"))  # writable (the photometric stage wraps it in a tensor)

    def audio(self) -> tuple[Path | None, float]:
        return self._audio, 0.0

    def fps(self) -> float:
        return self.info.fps

    def capture(self, fit: TrackFitResult, frames: Sequence[Frame], metrics: dict) -> Capture:
        width, height = self.info.out_size
        metrics["video"] = {
            "fps": self.info.fps,
            "size": [width, height],
            "source_size": list(self.info.size),
        }
        return Capture(
            cameras=fit.cameras,
            frames=tuple(frames),
            fps=self.info.fps,
            drive=fit.drive,
            audio_path=self._audio,
            audio_offset=0.0,
            metadata={"track": metrics},
        )

    def done(self, out: Path) -> None:
        (out / PARTIAL).unlink(missing_ok=True)


class CaptureSource(FrameSource):
    """A calibrated capture (any layout :func:`nerfhead.data.load_capture` reads); its images stay in place."""

    kind, unit, fit_focal = "capture", "images", False

    def __init__(self, path: Path, config: TrackConfig):
        from nerfhead.data import load_capture

        super().__init__(path, config)
        cap = load_capture(path)
        if config.cameras is not None:
            cap = cap.subset(cameras=list(config.cameras))
        self.cap = cap
        self.frames = list(cap.frames)

    def detect(self, out: Path, rep: Reporter) -> np.ndarray:
        cap = self.cap
        rep.stage("landmarks", len(cap))
        raw = np.full((len(cap), 478 if self.config.landmarks.refine else 468, 2), np.nan, np.float32)
        for stream in _streams(cap):
            with FaceMeshDetector(self.config.landmarks) as det:
                for i in stream:
                    p = det(self.image(i))
                    if p is not None:
                        raw[i] = p
                    rep.advance()
        return raw

    def observations(
        self, raw: np.ndarray, head: ICTHead, corr: Correspondence
    ) -> tuple[Observations, np.ndarray]:
        cap = self.cap
        idx = np.nonzero(np.isfinite(raw).all(axis=(1, 2)))[0]
        obs = Observations(
            points=torch.from_numpy(raw[idx][:, corr.landmark]),
            camera=torch.tensor([cap.frames[i].camera for i in idx]),
            timestep=torch.tensor([cap.frames[i].timestep for i in idx]),
            cameras=cap.cameras.to(dtype=torch.float64),
            num_timesteps=cap.num_timesteps,
            fps=cap.fps,
        )
        return obs, idx

    def image(self, i: int) -> np.ndarray:
        return to_uint8(self.cap.image(i))

    def needs_masks(self) -> bool:
        return not self.cap.has_masks

    def mask_name(self, f: Frame) -> str:
        names = self.cap.cameras.names or tuple(str(c) for c in range(self.cap.num_cameras))
        return f"{names[f.camera]}/{f.timestep:05d}"

    def overlay_frames(self, raw: np.ndarray) -> list[int]:
        cap = self.cap
        streams = _streams(cap)
        if len(streams) == 1:
            return streams[0]
        if self.config.overlay_camera is not None:
            return cap.frames_of(cap.camera_ids([self.config.overlay_camera])[0])
        from nerfhead.track.projection import face_size

        best, score = 0, -1.0
        for c in range(cap.num_cameras):
            p = raw[cap.frames_of(c)]
            ok = np.isfinite(p).all(axis=(1, 2))
            s = float(face_size(torch.from_numpy(p[ok])).sum()) if ok.any() else 0.0
            if s > score:
                best, score = c, s
        return cap.frames_of(best)

    def audio(self) -> tuple[Path | None, float]:
        return self.cap.audio_path, self.cap.audio_offset

    def fps(self) -> float:
        return self.cap.fps

    def capture(self, fit: TrackFitResult, frames: Sequence[Frame], metrics: dict) -> Capture:
        cap = self.cap
        metrics["cameras"] = len(cap.cameras)
        return Capture(
            cameras=cap.cameras,
            frames=tuple(frames),
            fps=cap.fps,
            drive=fit.drive,
            audio_path=cap.audio_path,
            audio_offset=cap.audio_offset,
            train_cameras=cap.train_cameras,
            test_cameras=cap.test_cameras,
            metadata={**{k: v for k, v in cap.metadata.items() if k != "track"}, "track": metrics},
        )


def _streams(cap: Capture) -> list[list[int]]:
    """Frame index lists to run the landmark tracker through in order: one per camera, or (when every camera
    has a single frame, as a moving monocular camera) one stream over time."""
    per_cam = [cap.frames_of(c) for c in range(cap.num_cameras)]
    per_cam = [s for s in per_cam if s]
    if all(len(s) == 1 for s in per_cam):
        return [sorted((s[0] for s in per_cam), key=lambda i: cap.frames[i].timestep)]
    return per_cam


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


def _frame_path(out: Path, t: int) -> Path:
    return out / "images" / f"{t:05d}{IMAGE_SUFFIX}"


def _save_jpeg(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(rgb).save(tmp, format="JPEG", quality=95, subsampling=0)
    os.replace(tmp, path)  # a killed run never leaves half an image


def _source_key(path: Path, config: TrackConfig) -> str:
    import hashlib

    st = path.stat()
    text = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{asdict(config.video)}|{asdict(config.landmarks)}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _stream_landmarks(
    path: Path, out: Path, config: TrackConfig, info: VideoInfo, rep: Reporter
) -> tuple[np.ndarray, np.ndarray]:
    """One pass over the video: decode, detect landmarks, write ``images/``; returns (landmarks [T, P, 2] with
    NaN where no face, timestamps [T]). Resumes from :data:`PARTIAL` when it belongs to this video and config."""
    key = _source_key(path, config)
    done_pts: np.ndarray | None = None
    done_times: np.ndarray | None = None
    partial = out / PARTIAL
    if partial.is_file():
        with np.load(partial) as z:
            if str(z["key"]) == key:
                done_pts, done_times = z["points"], z["times"]
    n_done = 0 if done_times is None else len(done_times)
    total = _expected_frames(path, config)
    rep.stage("decode+landmarks", total or 1)
    pts: list[np.ndarray] = [] if done_pts is None else list(done_pts)
    times: list[float] = [] if done_times is None else [float(x) for x in done_times]
    (out / "images").mkdir(parents=True, exist_ok=True)
    with FaceMeshDetector(config.landmarks) as det, ThreadPoolExecutor(2) as writers:
        P = det.num_points
        pending: list[Any] = []
        for k, (ts, rgb) in enumerate(stream_video(path, config.video, info)):
            if k < n_done and _frame_path(out, k).is_file():  # tracked before the run was killed
                rep.advance()
                continue
            if k < n_done:  # its image is missing: track it again
                pts, times = pts[:k], times[:k]
                n_done = k
            p = det(rgb)
            pts.append(np.full((P, 2), np.nan, np.float32) if p is None else p.astype(np.float32))
            times.append(ts)
            pending.append(writers.submit(_save_jpeg, _frame_path(out, k), rgb))
            rep.advance()
            if len(pending) > 8:  # bounded queue of frames being written
                pending.pop(0).result()
            if len(times) % WINDOW == 0:
                for f in pending:
                    f.result()
                pending.clear()
                _save_partial(partial, key, pts, times)
        for f in pending:
            f.result()
    _save_partial(partial, key, pts, times)
    return np.stack(pts), np.asarray(times, np.float64)


def _save_partial(path: Path, key: str, pts: list[np.ndarray], times: list[float]) -> None:
    with atomic_open(path, "wb") as f:
        np.savez(f, key=np.array(key), points=np.stack(pts), times=np.asarray(times, np.float64))


def _expected_frames(path: Path, config: TrackConfig) -> int:
    """Kept frames the video should give (from its header; 0 when unknown): the progress bar's total."""
    try:
        import av

        with av.open(str(path)) as c:
            s = c.streams.video[0]
            n = int(s.frames or 0)
            if not n and s.duration is not None and s.time_base is not None and s.average_rate:
                n = int(float(s.duration * s.time_base) * float(s.average_rate))
    except Exception:
        return 0
    rate = 25.0
    v = config.video
    if v.duration is not None:
        try:
            with av.open(str(path)) as c:
                rate = float(c.streams.video[0].average_rate or 25.0)
        except Exception:
            pass
        n = min(n, int(math.ceil(v.duration * rate)))
    n = int(math.ceil(n / max(v.stride, 1)))
    return min(n, v.max_frames) if v.max_frames is not None else n


def _save_mask(path: Path, mask: Tensor) -> None:
    """8-bit PNG with fast compression (level 1: several times faster than the default, ~20% larger)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    a = (mask.detach().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()
    Image.fromarray(a, "L").save(path, compress_level=1)


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
