"""``nerfhead track`` end to end: a monocular video or a calibrated capture in, a tracked capture out.

Output folder (nerfhead's capture format; read it back with :func:`nerfhead.data.load_capture`)::

    transforms.json     cameras, frames, fps, audio, metadata["track"] (metrics, identity, source)
    drive.npz           the tracked Drive: head pose + 53 expression coefficients per timestep
    images/<t>.jpg      decoded video frames, JPEG q95 4:4:4, written as they are tracked (video input; a
                        capture's images are referenced in place)
    masks/...png        foreground masks (see nerfhead.track.masks), unless the capture brought its own
    audio.wav           the video's soundtrack, sample 0 at timestamp 0 (video input with audio)
    landmarks.npz       MediaPipe landmarks: points [N, 478, 2], camera [N], timestep [N], detected [N]
    track.json          the metrics (also in transforms.json's metadata), with each stage's rate (``stages``)
                        and the end-to-end ``frames_per_second``
    .track_partial.npz  while a video is tracked: the landmarks of its whole 250-frame windows (a killed run
                        resumes from them); removed at the end
    overlay.mp4         frames with the fitted wireframe and the landmarks (one camera), with the audio
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from nerfhead.atomic import atomic_open
from nerfhead.data.capture import Capture, Frame
from nerfhead.errors import InputError
from nerfhead.parametric.ict import ICTHead
from nerfhead.track.correspondence import Correspondence, load_correspondence
from nerfhead.track.fit import FitConfig, FitResult, Observations, fit_sequence, monocular_observations
from nerfhead.track.landmarks import FaceMeshDetector, LandmarkConfig, fill_missing
from nerfhead.track.masks import MaskConfig, PersonSegmenter, combine, head_region, silhouettes
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
    fit: FitConfig = field(default_factory=FitConfig)
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
            }
        self._name = None


@dataclass(frozen=True)
class TrackResult:
    """What :func:`track` wrote and measured."""

    capture: Capture
    """The tracked capture (as written to ``out``)."""
    fit: FitResult
    """The fit (drive, identity, cameras, per-observation reprojection error)."""
    metrics: dict[str, Any]
    """Also in ``out/track.json``."""
    out: Path


def default_focal(width: int, height: int) -> float:
    """Focal guess of an unknown camera: 1.4 x the longer side."""
    return 1.4 * max(width, height)


def _to_uint8(img: Tensor) -> np.ndarray:
    return (img.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).numpy()


def _metrics(fit: FitResult, obs: Observations, detected: np.ndarray, seconds: dict[str, float]) -> dict:
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


def _fit(
    obs: Observations,
    head: ICTHead,
    corr: Correspondence,
    config: TrackConfig,
    fit_focal: bool,
    reporter: Reporter,
) -> FitResult:
    f = config.fit
    total = f.rigid_iters + f.full_iters + (f.offset_iters if f.w_landmark_offset > 0 else 0)
    reporter.stage("fitting", total)
    last = [0]

    def progress(step: int, _total: int, _loss: float) -> None:
        reporter.advance(step - last[0])
        last[0] = step

    return fit_sequence(obs, head, corr, config.fit, fit_focal=fit_focal, progress=progress)


def _refine(
    fit: FitResult,
    obs: Observations,
    image: Callable[[int], np.ndarray],
    head: ICTHead,
    corr: Correspondence,
    config: TrackConfig,
    reporter: Reporter,
) -> FitResult:
    """Photometric refinement when ``config.photometric.iters`` > 0."""
    if config.photometric.iters <= 0:
        return fit
    reporter.stage("photometric", config.photometric.iters)
    return refine_photometric(
        fit, obs, image, head, corr, config.fit, config.photometric, lambda *_: reporter.advance()
    )


def track_video(
    path: str | os.PathLike, out: str | os.PathLike, config: TrackConfig, reporter: Reporter | None = None
) -> TrackResult:
    """Monocular video -> tracked capture (see the module docstring), streaming: frames are decoded, searched
    for landmarks and written to ``images/`` one at a time, and the later stages (masks, overlay) read them back,
    so memory does not grow with the video's length. A run that is killed resumes from its last landmark window
    (``.track_partial.npz``; the images already written are kept)."""
    rep = _Timed(reporter)
    start = time.perf_counter()
    path, out = Path(path), Path(out)
    sec: dict[str, float] = {}
    head = ICTHead()
    corr = load_correspondence(num_faces=int(head.faces.shape[0]))
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    info = VideoInfo()
    raw, times = _stream_landmarks(path, out, config, info, rep)
    T = len(times)
    width, height = info.out_size
    audio = None
    if info.has_audio:
        audio = extract_audio(path, out / "audio.wav", config.video.start, config.video.duration)
    sec["decode_landmarks"] = time.perf_counter() - t0
    lm = fill_missing(_as_landmarks(raw, width, height), source=path)

    t0 = time.perf_counter()
    focal = config.focal or default_focal(width, height)
    pts = torch.from_numpy(lm.points[:, corr.landmark])
    obs = monocular_observations(pts, width, height, info.fps, head, corr, focal)
    fit = _fit(obs, head, corr, config, True, rep)
    sec["fit"] = time.perf_counter() - t0
    image = _image_reader([_frame_path(out, t) for t in range(T)])
    t0 = time.perf_counter()
    fit = _refine(fit, obs, image, head, corr, config, rep)
    sec["photometric"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    frames = [Frame(0, t, float(times[t]), _frame_path(out, t)) for t in range(T)]
    if config.make_masks:
        frames = _write_masks(
            frames, image, fit, head, config, rep, out / "masks", lambda f: f"{f.timestep:05d}"
        )
    sec["masks"] = time.perf_counter() - t0
    detected = lm.detected
    metrics = {"input": str(path), "kind": "video", **_metrics(fit, obs, detected, sec)}
    metrics["video"] = {"fps": info.fps, "size": [width, height], "source_size": list(info.size)}
    cap = Capture(
        cameras=fit.cameras,
        frames=tuple(frames),
        fps=info.fps,
        drive=fit.drive,
        audio_path=audio,
        audio_offset=0.0,
        metadata={"track": metrics},
    )
    _save_landmarks(out, raw, np.zeros(T, np.int64), np.arange(T), detected)
    result = _finish(cap, fit, metrics, out, head, corr, config, rep, image, raw, start)
    (out / PARTIAL).unlink(missing_ok=True)
    return result


PARTIAL = ".track_partial.npz"
"""Landmarks of the frames tracked so far (a killed run resumes from them)."""
WINDOW = 250
"""Frames between saves of :data:`PARTIAL`."""
IMAGE_SUFFIX = ".jpg"
"""Video frames are written as JPEG, quality 95 without chroma subsampling: ~5x faster to write than PNG and
within ~1/255 mean absolute error of the decoded frame."""


def _frame_path(out: Path, t: int) -> Path:
    return out / "images" / f"{t:05d}{IMAGE_SUFFIX}"


def _save_jpeg(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(rgb).save(tmp, format="JPEG", quality=95, subsampling=0)
    os.replace(tmp, path)  # a killed run never leaves half an image


def _image_reader(paths: Sequence[Path]) -> Callable[[int], np.ndarray]:
    """Frame ``i`` decoded from ``paths[i]`` when asked (uint8 RGB), the last one kept."""
    from PIL import Image

    last: dict[int, np.ndarray] = {}

    def image(i: int) -> np.ndarray:
        if i not in last:
            last.clear()
            with Image.open(paths[i]) as im:
                last[i] = np.asarray(im.convert("RGB"))
        return last[i]

    return image


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
    from concurrent.futures import ThreadPoolExecutor

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
    if not np.isfinite(np.stack(pts)).any():
        raise InputError(
            path, f"no face found in any of its {len(pts)} frames", hint="is a face visible and lit?"
        )
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


def track_capture(
    path: str | os.PathLike, out: str | os.PathLike, config: TrackConfig, reporter: Reporter | None = None
) -> TrackResult:
    """Calibrated capture (any layout :func:`nerfhead.data.load_capture` reads) -> tracked capture."""
    from nerfhead.data import load_capture

    rep = _Timed(reporter)
    start = time.perf_counter()
    path, out = Path(path), Path(out)
    sec: dict[str, float] = {}
    cap = load_capture(path)
    if config.cameras is not None:
        cap = cap.subset(cameras=list(config.cameras))
    head = ICTHead()
    corr = load_correspondence(num_faces=int(head.faces.shape[0]))
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    rep.stage("landmarks", len(cap))
    streams = _streams(cap)
    raw = np.full((len(cap), 478 if config.landmarks.refine else 468, 2), np.nan, np.float32)
    for stream in streams:
        pts = _detect_stream((_to_uint8(cap.image(i)) for i in stream), config.landmarks, rep.advance)
        raw[stream] = pts
    detected = np.isfinite(raw).all(axis=(1, 2))
    if not detected.any():
        raise InputError(
            path, f"no face found in any of its {len(cap)} images", hint="is a face visible and lit?"
        )
    sec["landmarks"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    idx = np.nonzero(detected)[0]
    obs = Observations(
        points=torch.from_numpy(raw[idx][:, corr.landmark]),
        camera=torch.tensor([cap.frames[i].camera for i in idx]),
        timestep=torch.tensor([cap.frames[i].timestep for i in idx]),
        cameras=cap.cameras.to(dtype=torch.float64),
        num_timesteps=cap.num_timesteps,
        fps=cap.fps,
    )
    fit = _fit(obs, head, corr, config, False, rep)
    sec["fit"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    fit = _refine(fit, obs, lambda i: _to_uint8(cap.image(int(idx[i]))), head, corr, config, rep)
    sec["photometric"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    frames = list(cap.frames)
    if config.make_masks and not cap.has_masks:
        names = cap.cameras.names or tuple(str(c) for c in range(cap.num_cameras))
        frames = _write_masks(
            frames,
            lambda i: _to_uint8(cap.image(i)),
            fit,
            head,
            config,
            rep,
            out / "masks",
            lambda f: f"{names[f.camera]}/{f.timestep:05d}",
        )
    sec["write"] = time.perf_counter() - t0
    metrics = {"input": str(path), "kind": "capture", **_metrics(fit, obs, detected, sec)}
    metrics["cameras"] = len(cap.cameras)
    new = Capture(
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
    cams = np.array([f.camera for f in cap.frames])
    ts = np.array([f.timestep for f in cap.frames])
    _save_landmarks(out, raw, cams, ts, detected)
    image = lambda i: _to_uint8(cap.image(i))  # noqa: E731
    return _finish(new, fit, metrics, out, head, corr, config, rep, image, raw, start)


# ------------------------------------------------------------------------------------------------ helpers
def _streams(cap: Capture) -> list[list[int]]:
    """Frame index lists to run the landmark tracker through in order: one per camera, or (when every camera
    has a single frame, as a moving monocular camera) one stream over time."""
    per_cam = [cap.frames_of(c) for c in range(cap.num_cameras)]
    per_cam = [s for s in per_cam if s]
    if all(len(s) == 1 for s in per_cam):
        return [sorted((s[0] for s in per_cam), key=lambda i: cap.frames[i].timestep)]
    return per_cam


def _detect_stream(frames: Any, config: LandmarkConfig, advance: Callable[[int], None]) -> np.ndarray:
    out = []
    with FaceMeshDetector(config) as det:
        P = det.num_points
        for rgb in frames:
            p = det(rgb)
            out.append(np.full((P, 2), np.nan, np.float32) if p is None else p)
            advance(1)
    return np.stack(out)


def _as_landmarks(raw: np.ndarray, width: int, height: int):
    from nerfhead.track.landmarks import Landmarks

    return Landmarks(raw, np.isfinite(raw).all(axis=(1, 2)), width, height)


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


def _batches(n: int, size: int) -> Iterator[list[int]]:
    for a in range(0, n, size):
        yield list(range(a, min(a + size, n)))


def _write_masks(
    frames: Sequence[Frame],
    image: Callable[[int], np.ndarray],
    fit: FitResult,
    head: ICTHead,
    config: TrackConfig,
    rep: Reporter,
    folder: Path,
    name: Callable[[Frame], str],
) -> list[Frame]:
    """Render, combine and save a mask per frame; returns the frames with ``mask_path`` set."""
    from dataclasses import replace

    rep.stage("masks", len(frames))
    d = fit.drive
    cams = fit.cameras.to(dtype=torch.float32)
    out: list[Frame] = []
    seg = PersonSegmenter() if config.masks.mode != "mesh" else None
    try:
        for batch in _batches(len(frames), 8):
            fr = [frames[i] for i in batch]
            t = torch.tensor([f.timestep for f in fr])
            c = torch.tensor([f.camera for f in fr])
            sizes = {(int(cams.width[k]), int(cams.height[k])) for k in c.tolist()}
            for w, h in sizes:  # group by image size
                sel = [
                    j for j, k in enumerate(c.tolist()) if (int(cams.width[k]), int(cams.height[k])) == (w, h)
                ]
                tt, cc = t[sel], c[sel]
                sil = silhouettes(
                    head, d.expression[tt], d.rotation[tt], d.translation[tt], fit.identity,
                    cams.K[cc], cams.viewmat[cc], w, h, config.backend,
                )  # fmt: skip
                keep = head_region(
                    d.rotation[tt], d.translation[tt], cams.K[cc], cams.viewmat[cc], w, h, config.masks
                )
                person = None
                if seg is not None:
                    person = torch.from_numpy(np.stack([seg(image(batch[j])) for j in sel]))
                masks = combine(sil, person, keep, config.masks)
                for k, j in enumerate(sel):
                    f = fr[j]
                    mp = folder / f"{name(f)}.png"
                    _save_mask(mp, masks[k])
                    out.append((batch[j], replace(f, mask_path=mp)))  # type: ignore[arg-type]
                    rep.advance()
    finally:
        if seg is not None:
            seg.__exit__(None, None, None)
    out.sort(key=lambda p: p[0])  # type: ignore[index]
    return [f for _, f in out]  # type: ignore[misc]


def _finish(
    cap: Capture,
    fit: FitResult,
    metrics: dict,
    out: Path,
    head: ICTHead,
    corr: Correspondence,
    config: TrackConfig,
    rep: Reporter,
    image: Callable[[int], np.ndarray],
    raw: np.ndarray,
    start: float,
) -> TrackResult:
    from nerfhead.data.nerfstudio import save_capture
    from nerfhead.engine.checkpoint import atomic_write_json

    if config.overlay:
        t0 = time.perf_counter()
        _overlay(cap, fit, out / "overlay.mp4", head, corr, config, rep, image, raw)
        metrics["seconds"]["overlay"] = round(time.perf_counter() - t0, 2)
    if isinstance(rep, _Timed):
        rep.close()
        metrics["stages"] = rep.stats
    total = time.perf_counter() - start
    metrics["frames_per_second"] = round(len(cap) / max(total, 1e-9), 2)  # end to end
    save_capture(cap, out)
    atomic_write_json(out / "track.json", _jsonable(metrics))
    return TrackResult(cap, fit, metrics, out)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _overlay_camera(cap: Capture, config: TrackConfig, raw: np.ndarray) -> list[int]:
    """Frame indices (timestep order) of the overlay's camera."""
    streams = _streams(cap)
    if len(streams) == 1:
        return streams[0]
    if config.overlay_camera is not None:
        return cap.frames_of(cap.camera_ids([config.overlay_camera])[0])
    from nerfhead.track.projection import face_size

    best, score = 0, -1.0
    for c in range(cap.num_cameras):
        idx = cap.frames_of(c)
        p = raw[idx]
        ok = np.isfinite(p).all(axis=(1, 2))
        s = float(face_size(torch.from_numpy(p[ok])).sum()) if ok.any() else 0.0
        if s > score:
            best, score = c, s
    return cap.frames_of(best)


def _overlay(
    cap: Capture,
    fit: FitResult,
    path: Path,
    head: ICTHead,
    corr: Correspondence,
    config: TrackConfig,
    rep: Reporter,
    image: Callable[[int], np.ndarray],
    raw: np.ndarray,
) -> None:
    from nerfhead.export.video import write_video
    from nerfhead.track.overlay import overlay_frame, wire_edges
    from nerfhead.track.projection import project

    idx = _overlay_camera(cap, config, raw)
    rep.stage("overlay", len(idx))
    edges = wire_edges(head)
    d = fit.drive
    cams = fit.cameras.to(dtype=torch.float32)
    faces = head.faces

    def frames() -> Iterator[np.ndarray]:
        for i in idx:
            f = cap.frames[i]
            t, c = f.timestep, f.camera
            with torch.no_grad():
                v = head(
                    d.expression[t : t + 1],
                    d.rotation[t : t + 1],
                    d.translation[t : t + 1],
                    identity=fit.identity,
                )
                pts = corr.points(v.vertices, faces, d.rotation[t : t + 1])
                uv, _ = project(cams.K[c : c + 1], cams.viewmat[c : c + 1], None, pts)
            yield overlay_frame(
                image(i),
                v.vertices[0],
                head,
                edges,
                cams.K[c],
                cams.viewmat[c],
                raw[i],
                uv[0].numpy(),
                config.backend,
            )
            rep.advance()

    audio = cap.audio_path
    first = cap.frames[idx[0]].timestamp if idx else 0.0
    if audio is not None and abs(first - cap.audio_offset) > 1e-3:
        audio = None  # the overlay would start at another time than the audio: leave it silent
    write_video(frames(), path, cap.fps, audio, preset="veryfast")  # a diagnostic: speed over size


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
