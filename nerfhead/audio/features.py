"""Log-mel features (25 ms window, 10 ms hop, 80 mels) offline and streaming, and their alignment to video frames.

Feature frame ``i`` is centred on sample ``i * hop`` (time ``i / frame_rate`` seconds): the waveform is padded
with ``n_fft // 2`` zeros at both ends (``torch.stft(center=True, pad_mode="constant")``), so a clip of S samples
gives ``1 + S // hop`` frames. :class:`StreamingLogMel` produces the same frames chunk by chunk. Features reach
video frames by timestamp (``frames_for_video``), never by index.

>>> import torch
>>> f = log_mel(torch.zeros(16000))
>>> tuple(f.shape), tuple(frames_for_video(f, fps=25.0, n_frames=25, k=2).shape)
((101, 80), (25, 5, 80))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class LogMelConfig:
    """Log-mel front end settings (defaults: 16 kHz, 25 ms Hann window, 10 ms hop, 80 HTK mels, 20-7600 Hz)."""

    sample_rate: int = 16000
    """Input sample rate in Hz."""
    n_fft: int = 512
    """FFT size (the window is zero-padded to it, centred)."""
    win_length: int = 400
    """Hann window length in samples (25 ms at 16 kHz)."""
    hop_length: int = 160
    """Hop in samples (10 ms at 16 kHz, 100 frames per second)."""
    n_mels: int = 80
    """Number of mel bands."""
    f_min: float = 20.0
    """Lowest band edge in Hz."""
    f_max: float = 7600.0
    """Highest band edge in Hz."""
    power_floor: float = 1e-10
    """Added to the mel power before the log (keeps silence finite: ln(1e-10) = -23)."""

    @property
    def frame_rate(self) -> float:
        """Feature frames per second."""
        return self.sample_rate / self.hop_length


def _hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)


def _mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)


def _mel_edges(cfg: LogMelConfig) -> np.ndarray:
    """Band edges in Hz, equally spaced in mel: [n_mels + 2] float64."""
    return _mel_to_hz(np.linspace(_hz_to_mel(cfg.f_min), _hz_to_mel(cfg.f_max), cfg.n_mels + 2))


def mel_frequencies(cfg: LogMelConfig = LogMelConfig()) -> np.ndarray:
    """Centre frequency in Hz of each mel band: [n_mels] float64."""
    edges = _mel_edges(cfg)
    return edges[1:-1]


def mel_filterbank(cfg: LogMelConfig = LogMelConfig()) -> np.ndarray:
    """Triangular HTK-mel filters (peak 1): [n_fft // 2 + 1, n_mels] float32."""
    edges = _mel_edges(cfg)
    freqs = np.arange(cfg.n_fft // 2 + 1) * cfg.sample_rate / cfg.n_fft
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lo) / (mid - lo)
    down = (hi - freqs[None]) / (hi - mid)
    return np.maximum(0.0, np.minimum(up, down)).T.astype(np.float32)


def analysis_window(cfg: LogMelConfig = LogMelConfig()) -> np.ndarray:
    """Periodic Hann window of ``win_length`` centred in ``n_fft`` zeros, scaled to sum 1: [n_fft] float32.

    With this scaling a full-scale sine of amplitude A shows |X|^2 = A^2 / 4 at its peak bin.
    """
    w = np.zeros(cfg.n_fft, np.float64)
    left = (cfg.n_fft - cfg.win_length) // 2
    w[left : left + cfg.win_length] = torch.hann_window(
        cfg.win_length, periodic=True, dtype=torch.float64
    ).numpy()
    return (w / w.sum()).astype(np.float32)


def num_frames(n_samples: int, cfg: LogMelConfig = LogMelConfig()) -> int:
    """Feature frames for a clip of ``n_samples``: ``1 + n_samples // hop``."""
    return 1 + int(n_samples) // cfg.hop_length


def feature_times(n: int, cfg: LogMelConfig = LogMelConfig()) -> Tensor:
    """Centre time in seconds of each of ``n`` feature frames: [n] float64."""
    return torch.arange(n, dtype=torch.float64) / cfg.frame_rate


def log_mel(waveform: Tensor | np.ndarray, cfg: LogMelConfig = LogMelConfig()) -> Tensor:
    """Natural-log mel power spectrogram.

    Args:
        waveform: [..., S] samples at ``cfg.sample_rate``, full scale 1.0.
        cfg: front end settings.

    Returns:
        [..., 1 + S // hop, n_mels] float32 on the waveform's device.
    """
    x = torch.as_tensor(waveform, dtype=torch.float32)
    lead = x.shape[:-1]
    x = x.reshape(math.prod(lead), x.shape[-1])
    window = torch.as_tensor(analysis_window(cfg), device=x.device)
    spec = torch.stft(
        x,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        win_length=cfg.n_fft,
        window=window,
        center=True,
        pad_mode="constant",
        return_complex=True,
    )  # [B, n_fft // 2 + 1, F]
    power = spec.real.square() + spec.imag.square()
    fb = torch.as_tensor(mel_filterbank(cfg), device=x.device)
    mel = torch.matmul(power.transpose(-1, -2), fb)  # [B, F, n_mels]
    return torch.log(mel + cfg.power_floor).reshape(*lead, mel.shape[-2], cfg.n_mels)


class StreamingLogMel:
    """Incremental :func:`log_mel`: push chunks of samples, get the feature frames they complete.

    Keeps only the last ``n_fft - hop`` samples between calls (no recomputation of the history). After
    :meth:`flush` the frames equal ``log_mel`` of the concatenated input (to float32 rounding).

    Args:
        cfg: front end settings.
    """

    def __init__(self, cfg: LogMelConfig = LogMelConfig()):
        self.cfg = cfg
        self._window = analysis_window(cfg)
        self._fb = mel_filterbank(cfg)
        self._buf = np.zeros(cfg.n_fft // 2, np.float32)  # the centre padding, then unconsumed samples
        self.samples_in = 0
        """Samples pushed so far."""
        self.frames_out = 0
        """Feature frames emitted so far (frame i is centred at i / frame_rate seconds)."""
        self._flushed = False

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """Add samples; returns the newly completed frames [n, n_mels] float32 (n may be 0)."""
        if self._flushed:
            raise RuntimeError("StreamingLogMel.push after flush; make a new one")
        chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
        self.samples_in += chunk.size
        self._buf = np.concatenate([self._buf, chunk])
        return self._emit()

    def flush(self) -> np.ndarray:
        """End of input: pad with ``n_fft // 2`` zeros and return the remaining frames [n, n_mels]."""
        if self._flushed:
            return np.zeros((0, self.cfg.n_mels), np.float32)
        self._flushed = True
        self._buf = np.concatenate([self._buf, np.zeros(self.cfg.n_fft // 2, np.float32)])
        return self._emit()  # the padded length is S + n_fft: exactly 1 + S // hop frames in all

    def _emit(self) -> np.ndarray:
        n_fft, hop = self.cfg.n_fft, self.cfg.hop_length
        n = 0 if self._buf.size < n_fft else 1 + (self._buf.size - n_fft) // hop
        if n == 0:
            return np.zeros((0, self.cfg.n_mels), np.float32)
        frames = np.lib.stride_tricks.sliding_window_view(self._buf, n_fft)[::hop][:n]
        spec = np.fft.rfft(frames * self._window, axis=-1)
        power = (spec.real**2 + spec.imag**2).astype(np.float32)
        out = np.log(power @ self._fb + np.float32(self.cfg.power_floor)).astype(np.float32)
        self._buf = self._buf[n * hop :].copy()
        self.frames_out += n
        return out


def _frame_positions(fps: float, n_frames: int, feature_rate: float, t0: float) -> Tensor:
    """Fractional feature index of each video frame's timestamp: [n_frames] float64."""
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be positive, got {fps}")
    t = t0 + torch.arange(n_frames, dtype=torch.float64) / fps
    return t * feature_rate


def frames_for_video(
    features: Tensor,
    fps: float,
    n_frames: int,
    k: int = 2,
    feature_rate: float = 100.0,
    t0: float = 0.0,
) -> Tensor:
    """Windows of ``2k + 1`` feature frames around each video frame's timestamp.

    Video frame ``j`` is at ``t0 + j / fps`` seconds; its window is centred on the feature frame nearest that
    time (``round(t * feature_rate)``); indices past either end repeat the edge frame.

    Args:
        features: [..., F, D] frames at ``feature_rate`` per second (frame i at i / feature_rate seconds).
        fps: video frame rate.
        n_frames: number of video frames T.
        k: half window in feature frames.
        feature_rate: feature frames per second.
        t0: time of video frame 0 in the features' clock (seconds).

    Returns:
        [..., T, 2k + 1, D]; slot ``k`` holds the centre frame.
    """
    F = features.shape[-2]
    if F == 0:
        raise ValueError("frames_for_video needs at least one feature frame")
    centre = torch.floor(_frame_positions(fps, n_frames, feature_rate, t0) + 0.5).long()
    idx = (centre[:, None] + torch.arange(-k, k + 1)[None]).clamp_(0, F - 1).to(features.device)  # [T, 2k+1]
    return features.index_select(-2, idx.reshape(-1)).reshape(*features.shape[:-2], n_frames, 2 * k + 1, -1)


def resample_to_frames(
    curves: Tensor,
    fps: float,
    n_frames: int,
    feature_rate: float = 100.0,
    t0: float = 0.0,
) -> Tensor:
    """Linear interpolation of feature-rate curves at video frame timestamps (edges held).

    Args:
        curves: [..., F, C] values at ``feature_rate`` per second.

    Returns:
        [..., T, C] values at ``t0 + j / fps``.
    """
    F = curves.shape[-2]
    pos = _frame_positions(fps, n_frames, feature_rate, t0).clamp(0, F - 1)
    i0 = torch.floor(pos).long().clamp(max=F - 1)
    i1 = (i0 + 1).clamp(max=F - 1)
    w = (pos - i0).to(curves.dtype).to(curves.device)[:, None]
    i0, i1 = i0.to(curves.device), i1.to(curves.device)
    a, b = curves.index_select(-2, i0), curves.index_select(-2, i1)
    return a + (b - a) * w


REFERENCE_DBFS = -17.0
"""Loudness speech is normalised to: the 95th percentile of its 25 ms frame RMS, in dBFS (about the level of the
bundled speech clips the prior was trained on)."""


def speech_level(waveform: np.ndarray, frame: int = 400) -> float:
    """Linear RMS of the loud frames of a clip: the 95th percentile of the RMS of ``frame``-sample frames (gain
    invariant: scaling the clip by g scales it by g); 0 for a silent clip."""
    w = np.asarray(waveform, np.float64).reshape(-1)
    if w.size == 0:
        return 0.0
    n = w.size // frame
    fr = w[: n * frame].reshape(n, frame) if n else w[None]
    return float(np.percentile(np.sqrt(np.mean(np.square(fr), axis=1)), 95))


def normalise_loudness(
    waveform: np.ndarray, reference_dbfs: float = REFERENCE_DBFS, max_gain_db: float = 60.0
):
    """The clip scaled so its :func:`speech_level` is ``reference_dbfs`` (gain capped at ``max_gain_db``): a
    quiet recording (speech peaking at -48 dBFS) and the same clip normalised give the same features. A silent
    clip is returned as it is. Applied before every speech driver (:mod:`nerfhead.audio.speech`) and to a
    capture's audio before fine-tuning."""
    w = np.asarray(waveform, np.float32)
    level = speech_level(w)
    if level <= 1e-9:
        return w
    gain = min(10.0 ** (reference_dbfs / 20.0) / level, 10.0 ** (max_gain_db / 20.0))
    return (w.astype(np.float64) * gain).astype(np.float32)
