"""Decode any audio (or a video's soundtrack) to mono float32 at one sample rate, with checks that name the file.

Decoding goes through PyAV (FFmpeg), so wav, flac, ogg/opus/vorbis, mp3, m4a/aac and the audio stream of video
containers (mp4, mkv, mpg, ...) all work. Channels are averaged to mono and the rate is changed with a polyphase
anti-aliasing filter (``scipy.signal.resample_poly``), never by dropping samples.

>>> wav, sr = load_audio("scenes/assets/audio/en_ljspeech_LJ050-0131.wav")  # doctest: +SKIP
>>> sr, wav.dtype, round(len(wav) / sr, 2)  # doctest: +SKIP
(16000, dtype('float32'), 7.66)
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.audio.stream import AudioStream
from av.container import InputContainer
from av.error import FFmpegError
from scipy.signal import resample_poly

from nerfhead.errors import InputError, check_input_file

SILENCE_RMS = 1e-4
"""RMS (full scale 1.0) under which a clip counts as silent (-80 dBFS)."""
CLIP_LEVEL = 0.999
"""|sample| at or above this counts as clipped."""
CLIP_FRACTION = 1e-3
"""Warn about clipping when more than this fraction of samples is clipped."""
SHORTFALL_S = 0.1
"""Decoding may end this many seconds (or 2 %) before the container's declared duration before it counts as
truncated."""


class AudioWarning(UserWarning):
    """A usable but suspicious audio input (silent, clipped)."""


@dataclass(frozen=True)
class AudioStats:
    """Level statistics of a waveform (full scale = 1.0)."""

    rms: float
    """Root mean square over all samples and channels."""
    peak: float
    """Largest absolute sample."""
    clipped_fraction: float
    """Fraction of samples with ``|x| >= CLIP_LEVEL``."""
    duration_s: float
    """Length in seconds."""
    sample_rate: int
    channels: int

    @property
    def rms_dbfs(self) -> float:
        """RMS in dB relative to full scale (-inf for digital silence)."""
        return 20.0 * math.log10(self.rms) if self.rms > 0 else -math.inf

    @property
    def silent(self) -> bool:
        return self.rms < SILENCE_RMS

    @property
    def clipped(self) -> bool:
        return self.clipped_fraction > CLIP_FRACTION


def audio_stats(waveform: np.ndarray, sr: int) -> AudioStats:
    """RMS, peak, clipped fraction and duration of a waveform.

    Args:
        waveform: [S] mono or [C, S] multi-channel samples, full scale 1.0.
        sr: sample rate in Hz.
    """
    x = np.asarray(waveform, dtype=np.float32)
    x2 = x.reshape(1, -1) if x.ndim == 1 else x.reshape(x.shape[0], -1)
    n = x2.shape[1]
    if x2.size == 0:
        return AudioStats(0.0, 0.0, 0.0, 0.0, int(sr), x2.shape[0])
    a = np.abs(x2)
    return AudioStats(
        rms=float(np.sqrt(np.mean(np.square(x2, dtype=np.float64)))),
        peak=float(a.max()),
        clipped_fraction=float(np.mean(a >= CLIP_LEVEL)),
        duration_s=n / float(sr),
        sample_rate=int(sr),
        channels=x2.shape[0],
    )


def chunk_samples(chunk, sr: int, target_sr: int) -> np.ndarray:
    """A chunk pushed to a streaming driver (numpy or torch, any shape of mono samples) as float32 [n] at
    ``target_sr`` (resampled on its own when ``sr`` differs: chunk edges then differ slightly from resampling
    the whole stream)."""
    import torch

    x = chunk.detach().cpu().numpy() if isinstance(chunk, torch.Tensor) else np.asarray(chunk)
    x = x.astype(np.float32).reshape(-1)
    return resample(x, sr, target_sr) if sr != target_sr else x


def resample(waveform: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling (Kaiser-windowed FIR, ``scipy.signal.resample_poly``) along the last axis.

    Args:
        waveform: [..., S] samples.
    Returns:
        [..., ceil(S * sr_out / sr_in)] float32.
    """
    if sr_in == sr_out:
        return np.asarray(waveform, dtype=np.float32)
    ratio = Fraction(int(sr_out), int(sr_in))
    y = resample_poly(np.asarray(waveform, dtype=np.float64), ratio.numerator, ratio.denominator, axis=-1)
    return y.astype(np.float32)


def load_audio(path: str | os.PathLike, sr: int = 16000, *, warn: bool = True) -> tuple[np.ndarray, int]:
    """Decode the first audio stream of a file to mono float32 at ``sr``.

    Sample 0 is at the container's time 0: when a video's soundtrack starts late (or early) relative to the
    first stream, silence is prepended (or samples dropped), so audio and video timestamps agree.

    Args:
        path: an audio file or a video with an audio stream (anything FFmpeg reads).
        sr: output sample rate in Hz.
        warn: emit :class:`AudioWarning` for silent or clipped input.

    Returns:
        (waveform [S] float32 in [-1, 1], sr).

    Raises:
        InputError: naming ``path``: missing, not a media file, no audio stream, no samples, corrupt/truncated.
    """
    path = check_input_file(path, "an audio or video file", missing="audio file not found")
    if sr <= 0:
        raise ValueError(f"sample rate must be positive, got {sr}")
    native, native_sr = _decode(path)
    stats = audio_stats(native, native_sr)
    if warn and stats.silent:
        warnings.warn(f"{path}: audio is silent (RMS {stats.rms_dbfs:.1f} dBFS)", AudioWarning, stacklevel=2)
    if warn and stats.clipped:
        warnings.warn(
            f"{path}: audio is clipped ({100 * stats.clipped_fraction:.2f}% of samples at full scale)",
            AudioWarning,
            stacklevel=2,
        )
    mono = native.mean(axis=0) if native.shape[0] > 1 else native[0]
    return np.clip(resample(mono, native_sr, sr), -1.0, 1.0), sr


def _decode(path: Path) -> tuple[np.ndarray, int]:
    """All samples of the first audio stream: ([C, S] float32 at the native rate, native rate)."""
    with open_media(path, "audio", "audio or video file") as container:
        stream = container.streams.audio[0]
        to_float = av.AudioResampler(format="fltp")  # sample format only: same rate and layout, no delay
        chunks: list[np.ndarray] = []
        first_time: float | None = None
        rate = int(stream.rate or 0)
        try:
            for frame in container.decode(stream):
                if first_time is None and frame.time is not None:
                    first_time = float(frame.time)
                rate = int(frame.sample_rate)
                for f in to_float.resample(frame):
                    chunks.append(f.to_ndarray().reshape(f.layout.nb_channels, -1))
            for f in to_float.resample(None):
                chunks.append(f.to_ndarray().reshape(f.layout.nb_channels, -1))
        except FFmpegError as e:
            raise InputError(path, f"corrupt audio stream ({why(e)})") from None
        if not chunks or sum(c.shape[1] for c in chunks) == 0:
            raise InputError(path, "audio stream has no samples (zero-length)")
        x = np.concatenate(chunks, axis=1).astype(np.float32, copy=False)
        declared = _declared_duration(container, stream)
        start0 = _container_start(container)
        has_video = bool(container.streams.video)
    got = x.shape[1] / rate
    if declared is not None and got < declared - max(SHORTFALL_S, 0.02 * declared):
        raise InputError(path, f"truncated or corrupt: decoded {got:.2f} s of a declared {declared:.2f} s")
    if path.suffix.lower() in (".ogg", ".oga", ".opus"):
        _check_ogg_end(path)
    elif path.suffix.lower() in (".wav", ".wave"):
        _check_wav_size(path)
    if not np.isfinite(x).all():
        raise InputError(path, "corrupt audio stream (decoded non-finite samples)")
    if has_video and first_time is not None and start0 is not None:
        shift = int(round((first_time - start0) * rate))
        if shift > 0:
            x = np.concatenate([np.zeros((x.shape[0], shift), np.float32), x], axis=1)
        elif shift < 0:
            x = x[:, -shift:]
    return x, rate


def open_media(path: Path, kind: str, what: str) -> InputContainer:
    """``path`` opened with PyAV when it holds at least one ``kind`` ("audio" or "video") stream; else the
    one-line error, naming what was expected (``what``: "video file", ...) or the streams it does hold."""
    try:
        container = av.open(str(path))
    except (FFmpegError, UnicodeDecodeError) as e:
        raise InputError(path, f"not a readable {what} ({why(e)})") from None
    if not (container.streams.audio if kind == "audio" else container.streams.video):
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        container.close()
        raise InputError(path, f"has no {kind} stream (found: {', '.join(kinds)})")
    return container


def why(e: BaseException) -> str:
    """The short reason of a decoder's error, for a one-line message."""
    msg = getattr(e, "strerror", None) or str(e)
    return str(msg).split(":")[0].strip() or type(e).__name__


def _declared_duration(container: InputContainer, stream: AudioStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None and not container.streams.video:
        return container.duration / 1e6
    return None


def _container_start(container: InputContainer) -> float | None:
    starts = [
        float(s.start_time * s.time_base)
        for s in container.streams
        if s.start_time is not None and s.time_base
    ]
    return min(starts) if starts else None


def _check_ogg_end(path: Path) -> None:
    """An Ogg stream must end with a complete page flagged end-of-stream; FFmpeg silently accepts a cut file."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 70_000))  # an Ogg page is at most 65,307 bytes
        base = f.tell()
        tail = f.read()
    pos = len(tail)
    while (pos := tail.rfind(b"OggS", 0, pos)) >= 0:
        if len(tail) - pos < 27 or tail[pos + 4] != 0:  # too short for a header, or not version 0
            continue
        nseg = tail[pos + 26]
        seg = tail[pos + 27 : pos + 27 + nseg]
        if len(seg) == nseg and base + pos + 27 + nseg + sum(seg) == size:  # the page that ends the file
            if not tail[pos + 5] & 0x04:
                raise InputError(path, "truncated Ogg file (last page is not end-of-stream)")
            return
    raise InputError(path, "truncated Ogg file (final page cut short)")


def _check_wav_size(path: Path) -> None:
    """The RIFF ``data`` chunk must fit in the file; FFmpeg reads a cut WAV up to its end without a word."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return  # RF64, W64 and friends: leave them to FFmpeg
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            cid, n = f.read(4), int.from_bytes(f.read(4), "little")
            if cid == b"data":
                if n not in (0, 0xFFFFFFFF) and pos + 8 + n > size:
                    have = size - pos - 8
                    raise InputError(path, f"truncated WAV file (data chunk holds {have} of {n} bytes)")
                return
            pos += 8 + n + (n & 1)
