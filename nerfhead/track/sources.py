"""Where a tracking's frames come from (:class:`FrameSource`): a monocular video (:class:`VideoSource`: decoded,
searched for landmarks and written to ``images/`` as it goes, resumable from :data:`PARTIAL`) or a calibrated
capture (:class:`CaptureSource`: its images stay in place). The stages that both share are in
:mod:`nerfhead.track.pipeline`."""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nerfhead.atomic import atomic_open
from nerfhead.data.capture import Capture, Frame
from nerfhead.media.image import to_uint8
from nerfhead.parametric.ict import ICTHead
from nerfhead.track.config import Reporter, TrackConfig
from nerfhead.track.correspondence import Correspondence
from nerfhead.track.fit import Observations, TrackFitResult, monocular_observations
from nerfhead.track.landmarks import FaceMeshDetector, fill_missing
from nerfhead.track.video import VideoInfo, extract_audio, stream_video


def default_focal(width: int, height: int) -> float:
    """Focal guess of an unknown camera: 1.4 x the longer side."""
    return 1.4 * max(width, height)


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
