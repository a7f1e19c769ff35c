"""Decode a talking-head video (mp4, mov, mpg, webm, mkv, avi: anything FFmpeg reads) into RGB frames with
timestamps, and its soundtrack into a wav aligned with them.

Timestamps are seconds from the first kept frame's time range start (``VideoConfig.start``): the frame shown at
source time ``s`` gets timestamp ``s - start``, and the extracted wav starts at source time ``start``, so a
capture built from it has ``audio_offset = 0`` and audio aligns to frames by timestamp (docs/conventions.md).
Source times are measured from the container's start, as :func:`nerfhead.media.audio.load_audio` measures audio.

>>> video = read_video("scenes/assets/video_grid/grid_bbaf2n.mpg", VideoConfig(max_frames=5))  # doctest: +SKIP
>>> video.frames.shape, video.timestamps[:2].tolist(), video.fps  # doctest: +SKIP
((5, 288, 360, 3), [0.0, 0.04], 25.0)
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nerfhead.atomic import atomic_path
from nerfhead.errors import InputError, check_input_file


class VideoWarning(UserWarning):
    """A usable but suspicious video (truncated stream, missing timestamps)."""


@dataclass(frozen=True)
class VideoConfig:
    """Which frames to decode and how to crop and scale them."""

    start: float = 0.0
    """Skip frames shown before this source time (seconds)."""
    duration: float | None = None
    """Keep frames shown before ``start + duration`` seconds; None keeps the rest of the video."""
    stride: int = 1
    """Keep every ``stride``-th frame (the capture's fps is divided by it)."""
    max_frames: int | None = None
    """Stop after this many kept frames."""
    crop: tuple[int, int, int, int] | None = None
    """Crop box ``(x, y, width, height)`` in source pixels, applied before scaling; None keeps the full frame."""
    scale: float = 1.0
    """Resize factor applied after cropping (area-averaging when shrinking)."""
    max_size: int | None = None
    """Shrink further so the longer side is at most this many pixels; None leaves the size alone."""
    max_memory_gb: float = 8.0
    """:func:`read_video` keeps decoded frames in memory: stop with an error beyond this many GiB (use a shorter
    range, a stride, a crop or ``max_size``). ``nerfhead track`` streams and ignores it."""


@dataclass(frozen=True)
class Video:
    """Decoded frames of one video.

    Attributes:
        frames: [T, H, W, 3] uint8 RGB.
        timestamps: [T] float64 seconds (see the module docstring).
        fps: nominal frame rate of the kept frames (source rate / stride).
        source: the video file.
        size: (width, height) of the source frames before crop and scale.
        has_audio: whether the file has an audio stream.
    """

    frames: np.ndarray
    timestamps: np.ndarray
    fps: float
    source: Path
    size: tuple[int, int]
    has_audio: bool

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])


def _check_path(path: Path) -> None:
    check_input_file(path, "a video file", missing="video file not found")


def _output_size(w: int, h: int, config: VideoConfig) -> tuple[int, int]:
    s = float(config.scale)
    if config.max_size is not None and max(w, h) * s > config.max_size:
        s = config.max_size / max(w, h)
    return max(1, round(w * s)), max(1, round(h * s))


def _check_config(path: Path, w: int, h: int, config: VideoConfig) -> None:
    if config.stride < 1:
        raise InputError(None, f"stride must be >= 1, got {config.stride}")
    if not (math.isfinite(config.scale) and config.scale > 0):
        raise InputError(None, f"scale must be a positive number, got {config.scale}")
    if config.max_frames is not None and config.max_frames < 1:
        raise InputError(None, f"max_frames must be >= 1, got {config.max_frames}")
    if config.crop is not None:
        x, y, cw, ch = (int(v) for v in config.crop)
        if cw < 1 or ch < 1 or x < 0 or y < 0 or x + cw > w or y + ch > h:
            raise InputError(
                path, f"crop box {tuple(config.crop)} (x, y, w, h) does not fit the {w}x{h} frames"
            )


def _resize(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    if (rgb.shape[1], rgb.shape[0]) == size:
        return rgb
    im = Image.fromarray(rgb)
    shrink = size[0] < rgb.shape[1]
    return np.asarray(im.resize(size, Image.Resampling.BOX if shrink else Image.Resampling.BICUBIC))


@dataclass
class VideoInfo:
    """What :func:`stream_video` learns about a video (filled in as it decodes; final once it is exhausted)."""

    fps: float = 25.0
    """Nominal frame rate of the kept frames (source rate / stride)."""
    size: tuple[int, int] = (0, 0)
    """(width, height) of the source frames before crop and scale."""
    out_size: tuple[int, int] = (0, 0)
    """(width, height) of the frames yielded."""
    has_audio: bool = False
    frames: int = 0
    """Frames yielded so far."""


def read_video(path: str | os.PathLike, config: VideoConfig | None = None) -> Video:
    """Decode the first video stream of ``path`` into memory (``config.max_memory_gb`` at most; long videos go
    through :func:`stream_video`, as ``nerfhead track`` does).

    Args:
        path: a video file.
        config: frame range, stride, crop and scale.

    Returns:
        :class:`Video` with at least one frame.

    Raises:
        InputError: missing/empty file, not a video, no video stream, corrupt stream without a decodable frame,
            no frame in the requested range, or a crop box outside the frames.
    """
    config = config or VideoConfig()
    path = Path(path)
    info = VideoInfo()
    frames: list[np.ndarray] = []
    times: list[float] = []
    for t, rgb in stream_video(path, config, info):
        frames.append(rgb)
        times.append(t)
        if len(frames) * frames[0].nbytes > config.max_memory_gb * 2**30:
            raise InputError(
                path,
                f"{len(frames)} decoded frames exceed {config.max_memory_gb:g} GiB",
                hint="track a shorter range (--video.duration), a stride, or --video.max-size",
            )
    return Video(
        frames=np.stack(frames),
        timestamps=np.asarray(times, np.float64),
        fps=info.fps,
        source=path,
        size=info.size,
        has_audio=info.has_audio,
    )


def stream_video(
    path: str | os.PathLike, config: VideoConfig | None = None, info: VideoInfo | None = None
) -> Iterator[tuple[float, np.ndarray]]:
    """Decode the first video stream of ``path`` frame by frame: yields (timestamp, uint8 RGB [H, W, 3]) with
    nothing kept (memory independent of the video's length); ``info`` is filled in as it goes.

    Raises:
        InputError: as :func:`read_video` (raised while iterating).
    """
    from av.error import FFmpegError

    from nerfhead.media.audio import open_media, why

    config = config or VideoConfig()
    info = info if info is not None else VideoInfo()
    path = Path(path)
    _check_path(path)
    with open_media(path, "video", "video file") as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        info.has_audio = bool(container.streams.audio)
        rate = float(stream.average_rate or stream.guessed_rate or 0.0) or 25.0
        info.fps = rate / config.stride
        starts = [
            float(s.start_time * s.time_base)
            for s in container.streams
            if s.start_time is not None and s.time_base is not None
        ]
        t0 = min(starts) if starts else 0.0
        end = math.inf if config.duration is None else config.start + config.duration
        index = 0  # frames in range seen so far (for the stride)
        decoded = 0
        missing_time = False
        try:
            for frame in container.decode(stream):
                decoded += 1
                if frame.time is None:
                    missing_time = True
                    t = (decoded - 1) / rate
                else:
                    t = float(frame.time) - t0
                if t < config.start - 1e-6:
                    continue
                if t >= end - 1e-6:
                    break
                if index % config.stride == 0:
                    if not info.frames:
                        info.size = (frame.width, frame.height)
                        _check_config(path, frame.width, frame.height, config)
                        w, h = (config.crop[2], config.crop[3]) if config.crop else info.size
                        info.out_size = _output_size(w, h, config)
                    rgb = frame.to_ndarray(format="rgb24")
                    if config.crop is not None:
                        x, y, cw, ch = (int(v) for v in config.crop)
                        rgb = rgb[y : y + ch, x : x + cw]
                    info.frames += 1
                    yield t - config.start, np.ascontiguousarray(_resize(rgb, info.out_size))
                    if config.max_frames is not None and info.frames >= config.max_frames:
                        break
                index += 1
        except FFmpegError as e:
            if not info.frames:
                raise InputError(path, f"corrupt video stream ({why(e)})") from None
            warnings.warn(
                f"{path}: video stream is corrupt after {info.frames} frames ({why(e)}); keeping those",
                VideoWarning,
                stacklevel=2,
            )
    if not info.frames:
        if decoded == 0:
            raise InputError(path, "video stream has no decodable frames (zero frames)")
        raise InputError(path, f"no frames between {config.start:g} s and {end:g} s (video has {decoded})")
    if missing_time:
        warnings.warn(f"{path}: frames without timestamps; assumed {rate:g} fps", VideoWarning, stacklevel=2)


def extract_audio(
    path: str | os.PathLike, out_wav: str | os.PathLike, start: float = 0.0, duration: float | None = None
) -> Path | None:
    """Write the soundtrack of a video as a 16-bit PCM wav (mono, the stream's sample rate) starting at source
    time ``start``, so sample 0 of the wav lies at capture timestamp 0.

    Args:
        path: the video file.
        out_wav: the wav to write (its folder is created).
        start: source time (s) of the wav's first sample.
        duration: seconds to keep, or None for the rest.

    Returns:
        ``out_wav``, or None when the video has no audio stream.

    Raises:
        InputError: the audio stream is corrupt or empty.
    """
    import av
    import soundfile

    from nerfhead.media.audio import load_audio

    path = Path(path)
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return None
        sr = int(c.streams.audio[0].rate or 16000)
    wav, sr = load_audio(path, sr=sr, warn=False)
    a = int(round(max(start, 0.0) * sr))
    b = len(wav) if duration is None else a + int(round(duration * sr))
    out = Path(out_wav)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        soundfile.write(str(tmp), wav[a:b], sr, subtype="PCM_16", format="WAV")
    return out
