"""Rule-based speech drivers: a whole clip to a Drive (:class:`RuleVisemeDriver`) and a live stream of audio
chunks to Drive frames (:class:`AudioStreamDriver`).

Both run the same front end (log-mel, :mod:`nerfhead.audio.features`) and the same energy rules
(:mod:`nerfhead.audio.visemes`); the streaming driver computes them incrementally with a fixed look-ahead and
matches the offline driver in ``mode="energy"`` to float rounding. Blinks and the optional gentle head motion
are deterministic functions of time (seeded), so offline and streaming agree there too.

>>> drv = RuleVisemeDriver(RuleDriverConfig(mode="energy"))  # doctest: +SKIP
>>> drive = drv.drive("scenes/assets/audio/en_ljspeech_LJ050-0131.wav", fps=25.0)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from nerfhead.audio.features import LogMelConfig, StreamingLogMel, log_mel, num_frames, resample_to_frames
from nerfhead.audio.visemes import (
    MOUTH_COLUMNS,
    SILENT_DESCRIPTOR,
    EnergyRuleConfig,
    PhonemeRecognizer,
    coarticulate,
    describe,
    energy_curves,
    energy_curves_valid,
    pocketsphinx_available,
)
from nerfhead.data.drive import Drive
from nerfhead.data.expressions import EXPRESSION_INDEX, NUM_EXPRESSIONS
from nerfhead.media.audio import chunk_samples, load_audio, resample

_JAW = EXPRESSION_INDEX["jawOpen"]
_BLINK = (EXPRESSION_INDEX["eyeBlink_L"], EXPRESSION_INDEX["eyeBlink_R"])


@dataclass(frozen=True)
class RuleDriverConfig:
    """Settings of the rule-based speech drivers."""

    mode: Literal["auto", "energy", "phonetic"] = "auto"
    """Mouth rules: "energy" (any language, streamable), "phonetic" (pocketsphinx phones → visemes; jawOpen mixes
    the viseme jaw scaled by speech level with the energy jaw) or "auto" (phonetic when pocketsphinx is
    installed, else energy)."""
    rules: EnergyRuleConfig = field(default_factory=EnergyRuleConfig)
    """Energy rule settings (also used for brows and the mouth level in phonetic mode)."""
    mel: LogMelConfig = field(default_factory=LogMelConfig)
    """Front end settings."""
    blinks: bool = True
    """Add eye blinks at seeded pseudo-random intervals."""
    blink_interval_s: tuple[float, float] = (2.0, 5.0)
    """Range of the time between blinks."""
    head_motion: float = 0.0
    """Amplitude (radians) of gentle head motion: slow sway plus a nod with the jaw; 0 keeps a neutral pose."""
    seed: int = 0
    """Seed of blinks and head motion."""


def default_num_frames(n_samples: int, sr: int, fps: float) -> int:
    """Video frames whose timestamp falls inside a clip: ``ceil(duration * fps)`` (at least 1)."""
    return max(1, math.ceil(n_samples * fps / sr - 1e-9))


class Blinks:
    """Deterministic blink schedule (seeded), evaluated at any times; extends itself lazily."""

    close_s, hold_s, open_s = 0.06, 0.04, 0.15

    def __init__(self, interval: tuple[float, float], seed: int):
        self._rng = np.random.default_rng(seed)
        self._interval = interval
        self._starts = [float(self._rng.uniform(0.5, 2.0))]

    def __call__(self, t: np.ndarray) -> np.ndarray:
        """Blink amount in [0, 1] at times t [N] seconds."""
        if t.size == 0:
            return np.zeros(0)
        while self._starts[-1] <= float(t.max()):
            self._starts.append(self._starts[-1] + float(self._rng.uniform(*self._interval)))
        s = np.asarray(self._starts)
        dt = t[:, None] - s[None]  # [N, K]
        c, h, o = self.close_s, self.hold_s, self.open_s
        up = _smoothstep(dt / c)
        down = 1.0 - _smoothstep((dt - c - h) / o)
        return np.where((dt >= 0) & (dt < c + h + o), np.minimum(up, down), 0.0).max(1)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _head_rotation(t: np.ndarray, jaw: np.ndarray, amplitude: float, seed: int) -> np.ndarray:
    """Gentle head motion [N, 3] axis-angle (x: pitch, y: yaw, z: roll in OpenCV axes) at times t [N]."""
    if amplitude == 0.0:
        return np.zeros((t.size, 3))
    ph = np.random.default_rng(seed + 1).uniform(0.0, 2.0 * np.pi, size=6)
    tau = 2.0 * np.pi * t
    pitch = 0.35 * np.sin(0.21 * tau + ph[0]) + 0.15 * np.sin(0.53 * tau + ph[1]) + 0.4 * jaw
    yaw = 0.5 * np.sin(0.13 * tau + ph[2]) + 0.2 * np.sin(0.37 * tau + ph[3])
    roll = 0.2 * np.sin(0.17 * tau + ph[4]) + 0.1 * np.sin(0.41 * tau + ph[5])
    return amplitude * np.stack([pitch, yaw, roll], axis=1)


def _finish(
    expr: np.ndarray, t: np.ndarray, cfg: RuleDriverConfig, blinks: Blinks | None, fps: float
) -> Drive:
    """Add blinks and head pose to mouth curves at video rate and wrap them in a Drive."""
    expr = expr.copy()
    if blinks is not None:
        b = blinks(t)
        for c in _BLINK:
            expr[:, c] = np.maximum(expr[:, c], b)
    rot = _head_rotation(t, expr[:, _JAW], cfg.head_motion, cfg.seed)
    return Drive(
        rotation=torch.from_numpy(rot.astype(np.float32)),
        translation=torch.zeros(t.size, 3),
        expression=torch.from_numpy(np.clip(expr, 0.0, 1.0).astype(np.float32)),
        latent=None,
        fps=fps,
    )


class RuleVisemeDriver:
    """Speech clip → Drive by rule (no learned weights): mouth from energy rules or phonemes, seeded blinks,
    neutral (or gently moving) head.

    Args:
        config: driver settings.
    """

    def __init__(self, config: RuleDriverConfig = RuleDriverConfig()):
        if config.mode not in ("auto", "energy", "phonetic"):
            raise ValueError(f"mode must be auto, energy or phonetic, got {config.mode!r}")
        self.config = config
        self._recognizer: PhonemeRecognizer | None = None

    @property
    def mode(self) -> str:
        """The mouth rule set in use: "energy" or "phonetic"."""
        if self.config.mode == "auto":
            return "phonetic" if pocketsphinx_available() else "energy"
        return self.config.mode

    def drive(
        self,
        audio: str | os.PathLike | np.ndarray | Tensor,
        fps: float,
        n_frames: int | None = None,
        sr: int | None = None,
    ) -> Drive:
        """Expression curves (and head pose) for every video frame of a speech clip.

        Args:
            audio: a file (anything :func:`~nerfhead.media.audio.load_audio` reads) or a mono waveform [S].
            fps: video frame rate of the output.
            n_frames: frames to produce (default: every frame whose timestamp lies inside the clip); frames
                past the end hold the last value.
            sr: sample rate of a waveform argument (default: ``config.mel.sample_rate``).

        Returns:
            Drive with T = n_frames, frame j at j / fps seconds of the audio.
        """
        wav = self._waveform(audio, sr)
        T = (
            default_num_frames(wav.size, self.config.mel.sample_rate, fps)
            if n_frames is None
            else int(n_frames)
        )
        curves = self.feature_curves(wav)
        expr = resample_to_frames(torch.from_numpy(curves), fps, T, self.config.mel.frame_rate).numpy()
        t = np.arange(T, dtype=np.float64) / fps
        blinks = Blinks(self.config.blink_interval_s, self.config.seed) if self.config.blinks else None
        return _finish(expr, t, self.config, blinks, fps)

    def feature_curves(self, waveform: np.ndarray) -> np.ndarray:
        """Mouth and brow curves at the feature rate: [1 + S // hop, 53] float64 (no blinks)."""
        cfg = self.config
        logmel = log_mel(waveform, cfg.mel).numpy()
        curves, _ = energy_curves(logmel, cfg.rules, cfg.mel)
        if self.mode == "energy":
            return curves
        if self._recognizer is None:
            self._recognizer = PhonemeRecognizer()
        segments = self._recognizer(resample(waveform, cfg.mel.sample_rate, PhonemeRecognizer.sample_rate))
        times = np.arange(curves.shape[0]) / cfg.mel.frame_rate
        phon = coarticulate(segments, times)
        level = np.clip(curves[:, _JAW] / cfg.rules.jaw_gain, 0.0, 1.0)
        out = curves.copy()
        cols = list(MOUTH_COLUMNS)
        out[:, cols] = phon[:, cols]
        out[:, _JAW] = np.clip(0.5 * curves[:, _JAW] + 0.75 * phon[:, _JAW] * (0.4 + 0.6 * level), 0.0, 1.0)
        return out

    def _waveform(self, audio: str | os.PathLike | np.ndarray | Tensor, sr: int | None) -> np.ndarray:
        return mono_waveform(audio, sr, self.config.mel.sample_rate)


def mono_waveform(
    audio: str | os.PathLike | np.ndarray | Tensor, sr: int | None, target: int = 16000
) -> np.ndarray:
    """A speech input as a mono float32 waveform at ``target`` Hz: a file is decoded (:func:`load_audio`), an
    array [S] at ``sr`` (default ``target``) is resampled."""
    if isinstance(audio, (str, os.PathLike)):
        return load_audio(audio, target)[0]
    wav = audio.detach().cpu().numpy() if isinstance(audio, Tensor) else np.asarray(audio)
    if wav.ndim != 1:
        raise ValueError(f"waveform must be mono [S], got shape {wav.shape}")
    return resample(wav.astype(np.float32), sr or target, target)


class AudioStreamDriver:
    """Live audio → Drive frames at the video rate, with a fixed look-ahead (:attr:`latency_s`, ~0.3 s).

    Feed chunks (any size; 20-40 ms is typical) with :meth:`push`; each call returns the video frames that
    became computable, as single-timestep Drives in order. :meth:`flush` ends the stream and returns the rest.
    Only energy rules run here (phones need the whole utterance); the frames equal
    ``RuleVisemeDriver(RuleDriverConfig(mode="energy", ...)).drive(whole_audio, fps)`` to float rounding.
    State is bounded: the STFT keeps ``n_fft - hop`` samples and the rules a fixed window of frames.

    Args:
        fps: video frame rate of the output.
        config: driver settings (``mode`` must not be "phonetic").
        sr: sample rate of the pushed chunks (resampled per chunk if it differs from the front end's; then
            offline equality holds only approximately).
    """

    def __init__(
        self, fps: float, config: RuleDriverConfig = RuleDriverConfig(mode="energy"), sr: int | None = None
    ):
        if config.mode == "phonetic":
            raise ValueError("AudioStreamDriver runs energy rules only; use mode='energy' (or 'auto')")
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be positive, got {fps}")
        self.fps = float(fps)
        self.config = config
        self.sr = int(sr or config.mel.sample_rate)
        self._mel = StreamingLogMel(config.mel)
        self._levels: tuple[float, float] | None = None  # level trackers of describe()
        rule = config.rules
        self._past, self._future = rule.past_frames, rule.future_frames
        self._desc = np.tile(SILENT_DESCRIPTOR, (self._past, 1))  # padded rows from absolute row _desc_base
        self._desc_base = 0
        self._curves = np.zeros((0, NUM_EXPRESSIONS))  # real feature frames from _curve_base
        self._curve_base = 0
        self._n_curves = 0
        self._next_frame = 0
        self._blinks = Blinks(config.blink_interval_s, config.seed) if config.blinks else None
        self._done = False

    @property
    def latency_s(self) -> float:
        """Algorithmic delay: how far past a video frame's timestamp audio must have arrived to emit it."""
        mel = self.config.mel
        return (self._future + 1) / mel.frame_rate + (mel.n_fft // 2) / mel.sample_rate

    @property
    def frames_emitted(self) -> int:
        return self._next_frame

    def push(self, chunk: np.ndarray | Tensor) -> list[Drive]:
        """Add a chunk of mono samples [n]; returns the video frames completed by it (possibly none)."""
        if self._done:
            raise RuntimeError("AudioStreamDriver.push after flush; make a new one")
        self._add_features(self._mel.push(chunk_samples(chunk, self.sr, self.config.mel.sample_rate)))
        return self._emit(final=False)

    def flush(self) -> list[Drive]:
        """End of stream: the remaining frames up to the last whose timestamp lies inside the audio."""
        if self._done:
            return []
        self._add_features(self._mel.flush())
        self._done = True
        self._append_desc(np.tile(SILENT_DESCRIPTOR, (self._future, 1)))
        return self._emit(final=True)

    # ----------------------------------------------------------------------------------------- internals
    def _add_features(self, frames: np.ndarray) -> None:
        if frames.shape[0] == 0:
            return
        desc, self._levels = describe(frames, self.config.rules, self.config.mel, self._levels)
        self._append_desc(desc)

    def _append_desc(self, rows: np.ndarray) -> None:
        self._desc = np.concatenate([self._desc, rows])
        total = self._desc_base + self._desc.shape[0]  # padded rows known
        ready = total - self._past - self._future  # real frames whose curves are computable
        if ready <= self._n_curves:
            return
        lo = self._n_curves - self._desc_base  # padded row n_curves .. total
        new = energy_curves_valid(self._desc[lo:], self.config.rules)
        self._curves = np.concatenate([self._curves, new])
        self._n_curves = ready
        self._desc = self._desc[ready - self._desc_base :]  # keep rows from padded index `ready` on
        self._desc_base = ready

    def _emit(self, final: bool) -> list[Drive]:
        rate = self.config.mel.frame_rate
        n_real = self._n_curves
        if final:
            n_real = num_frames(self._mel.samples_in, self.config.mel)
            last = default_num_frames(self._mel.samples_in, self.config.mel.sample_rate, self.fps)
        else:
            last = None
        out: list[Drive] = []
        j = self._next_frame
        while True:
            if last is not None and j >= last:
                break
            pos = j / self.fps * rate
            if not final and math.floor(pos) + 1 >= n_real:
                break
            pos = min(max(pos, 0.0), n_real - 1)
            i0 = min(math.floor(pos), n_real - 1)
            i1 = min(i0 + 1, n_real - 1)
            a = self._curves[i0 - self._curve_base]
            b = self._curves[i1 - self._curve_base]
            expr = a + (b - a) * (pos - i0)
            out.append(_finish(expr[None], np.array([j / self.fps]), self.config, self._blinks, self.fps))
            j += 1
        self._next_frame = j
        keep = max(0, min(math.floor(j / self.fps * rate), self._n_curves - 1) - self._curve_base)
        self._curves = self._curves[keep:]
        self._curve_base += keep
        return out
