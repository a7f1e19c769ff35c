"""The one speech policy: audio → the Drive an avatar speaks with, used alike by ``nerfhead drive``, the viewer's
speech upload and the exports.

A clip goes through four steps, each written once here:

1. **Loudness**: the waveform is normalised to a reference speech level
   (:func:`~nerfhead.audio.features.normalise_loudness`), so a quiet recording moves the mouth as a loud one.
2. **Driver**: ``"network"`` (the run's fine-tuned ``RUN/audio_to_drive.safetensors``, else the bundled prior
   through :mod:`nerfhead.assets`), ``"rules"`` (phoneme / energy visemes) or ``"auto"`` (network when one is
   found, else rules).
3. **Calibration to the person** (:class:`Calibration`): first the audio-visual lag: the driver's mouth opening
   (``jawOpen``) on the capture's own audio, shifted by each lag in ±``max_lag_s``, is correlated with the tracked
   opening at the run's *training* timesteps and the best lag is kept (a recording's audio-visual offset, or a
   speaker who opens the mouth ahead of the sound); the offline drive then reads the audio that much later (a
   live stream keeps lag 0: it cannot look further ahead). Then the driver's expression at that lag on the
   training timesteps is regressed per coefficient onto the tracked expression (``y = mean_y + a (p -
   mean_p)``, ``a`` in [0, a_max]); the mouth coefficients are then projected onto the subspace the capture's mouth
   used (principal components of the tracked mouth coefficients) and every coefficient is kept inside the range
   the capture showed. The same for the bundled prior, a fine-tuned network and the rules, so the default driver
   never pushes the avatar far outside what it was fitted on.
4. **Pose**: ``"hold"`` keeps the head at the capture's first rotation (plus the network's small rotation
   residual) and mean translation; ``"tracked"`` replays the capture's tracked head pose frame by frame (the same
   timestamps: for scoring a speech drive against the real video).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from nerfhead.assets import asset_path
from nerfhead.audio.driver import (
    Blinks,
    RuleDriverConfig,
    RuleVisemeDriver,
    default_num_frames,
    mono_waveform,
)
from nerfhead.audio.features import LogMelConfig, log_mel, normalise_loudness
from nerfhead.audio.network import N_VISEMES, AudioToDrive, AudioToDriveConfig, load_network, windows_at
from nerfhead.audio.visemes import MOUTH_COLUMNS, VISEME_SHAPES, PhonemeRecognizer
from nerfhead.data.drive import Drive
from nerfhead.data.expressions import EXPRESSION_INDEX
from nerfhead.errors import InputError

RUN_NETWORK = "audio_to_drive.safetensors"
"""File name of a run's fine-tuned network (``RUN/audio_to_drive.safetensors``)."""
PRIOR_DIR = "audio_prior"
"""Folder of the bundled prior weights under the assets root (``NERFHEAD_ASSETS`` or scenes/assets)."""
VISEME_ORDER: tuple[str, ...] = tuple(VISEME_SHAPES)
"""Viseme channel order of the phonetic front end."""
assert len(VISEME_ORDER) == N_VISEMES
DRIVERS = ("auto", "network", "rules")
"""Speech driver choices."""
POSES = ("hold", "tracked")
"""Head pose policies of a speech drive."""
BLINKS = (EXPRESSION_INDEX["eyeBlink_L"], EXPRESSION_INDEX["eyeBlink_R"])
JAW = EXPRESSION_INDEX["jawOpen"]


def prior_path(phonetic: bool = False) -> Path:
    """Path of the bundled prior (log-mel only, or log-mel + phonetic visemes)."""
    return asset_path(f"{PRIOR_DIR}/" + ("prior_phonetic.safetensors" if phonetic else "prior.safetensors"))


def speech_network(run: str | os.PathLike | None) -> Path | None:
    """The speech network for a run: the run's fine-tuned ``RUN/audio_to_drive.safetensors``, else the bundled
    log-mel prior, else None."""
    for p in (*([Path(run) / RUN_NETWORK] if run is not None else []), prior_path(False)):
        if p.is_file():
            return p
    return None


# ------------------------------------------------------------------------------------------------ features


def viseme_channels(waveform: np.ndarray, n_frames: int, recognizer: PhonemeRecognizer) -> np.ndarray:
    """One-hot viseme of the recognised phone covering each feature frame: [n_frames, 15] float32."""
    segs = recognizer(waveform)
    out = np.zeros((n_frames, N_VISEMES), np.float32)
    out[:, 0] = 1.0  # silence where no phone covers a frame
    index = {v: i for i, v in enumerate(VISEME_ORDER)}
    for s in segs:
        a, b = max(0, round(s.start * 100)), min(n_frames, round(s.end * 100))
        if b > a:
            out[a:b] = 0.0
            out[a:b, index[s.viseme]] = 1.0
    return out


def audio_features(
    waveform: np.ndarray,
    config: AudioToDriveConfig,
    recognizer: PhonemeRecognizer | None = None,
    mel: LogMelConfig = LogMelConfig(),
) -> Tensor:
    """Network input frames of a 16 kHz mono clip: [1 + S // 160, in_dim] float32 (log-mel, + visemes)."""
    feats = log_mel(np.asarray(waveform, np.float32), mel)
    if not config.phonetic:
        return feats
    rec = recognizer or PhonemeRecognizer()
    vis = viseme_channels(waveform, feats.shape[0], rec)
    return torch.cat([feats, torch.from_numpy(vis)], dim=1)


def shifted_waveform(wave: np.ndarray, lag: float, sr: int = 16000) -> np.ndarray:
    """The waveform read ``lag`` seconds later (sample i holds sample i + lag * sr; silence past either end)."""
    k = round(lag * sr)
    if not k:
        return wave
    w = np.asarray(wave, np.float32)
    pad = np.zeros(min(abs(k), w.size), np.float32)
    return np.concatenate([w[k:], pad]) if k > 0 else np.concatenate([pad, w[: max(0, w.size + k)]])


# -------------------------------------------------------------------------------------------- the driver


class NetworkDriver:
    """Speech clip → Drive with an :class:`AudioToDrive` network (seeded blinks added like the rule driver).

    Args:
        network: the network, or a path to its safetensors file.
        blinks: add seeded eye blinks over the predicted eyelids.
        seed: blink seed.
    """

    def __init__(self, network: AudioToDrive | str | os.PathLike, blinks: bool = True, seed: int = 0):
        self.network = network if isinstance(network, AudioToDrive) else load_network(network)
        self.blinks = blinks
        self.seed = seed
        self._recognizer: PhonemeRecognizer | None = None

    def features(self, waveform: np.ndarray) -> Tensor:
        """Input frames of a 16 kHz clip (runs the phone recogniser when the network is phonetic)."""
        if self.network.config.phonetic and self._recognizer is None:
            self._recognizer = PhonemeRecognizer()
        return audio_features(waveform, self.network.config, self._recognizer)

    def predict_at(self, features: Tensor, times: np.ndarray | Tensor) -> tuple[Tensor, Tensor]:
        """Expression [N, 53] and rotation residual [N, 3] at audio times [N] seconds."""
        t = torch.as_tensor(times, dtype=torch.float64)
        return self.network.predict(windows_at(features, t * 100.0, self.network.config.window))

    def drive(
        self,
        audio: str | os.PathLike | np.ndarray | Tensor,
        fps: float,
        n_frames: int | None = None,
        sr: int | None = None,
    ) -> Drive:
        """Same contract as :meth:`nerfhead.audio.driver.RuleVisemeDriver.drive`; rotation is the residual."""
        wav = mono_waveform(audio, sr)
        T = default_num_frames(wav.size, 16000, fps) if n_frames is None else int(n_frames)
        t = np.arange(T, dtype=np.float64) / fps
        expr, rot = self.predict_at(self.features(wav), t)
        e = expr.double().numpy()
        if self.blinks:
            b = Blinks((2.0, 5.0), self.seed)(t)
            for c in BLINKS:
                e[:, c] = np.maximum(e[:, c], b)
        return Drive(
            rotation=rot.float(),
            translation=torch.zeros(T, 3),
            expression=torch.from_numpy(np.clip(e, 0.0, 1.0).astype(np.float32)),
            latent=None,
            fps=fps,
        )


# ------------------------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class CalibrationConfig:
    """How a driver's expression is mapped into one person's expression distribution."""

    enabled: bool = True
    """Calibrate (off: the driver's raw expression)."""
    max_scale: float = 3.0
    """Largest per-coefficient gain ``a``."""
    shrink: float = 1e-3
    """Ridge term added to each coefficient's prediction variance (a flat prediction gets the mean)."""
    mouth_variance: float = 0.8
    """Share of the tracked mouth-coefficient variance the kept principal components explain."""
    range_margin: float = 0.1
    """Each coefficient stays within the tracked [min, max] widened by this share of its range."""
    max_lag_s: float = 0.12
    """Largest audio-visual lag (s) searched on the training timesteps (0: no lag)."""
    lag_step_s: float = 0.02
    """Step of the lag search (s)."""

    @staticmethod
    def of(calibrate: bool = True, lag: bool = True) -> CalibrationConfig:
        """The CLI's ``--calibrate`` / ``--lag`` switches (``lag`` off: no lag search)."""
        return CalibrationConfig(enabled=calibrate, max_lag_s=CalibrationConfig.max_lag_s if lag else 0.0)


@dataclass
class Calibration:
    """Per-coefficient affine ``y = shift + scale * p``, a mouth subspace and a range, fitted to one capture."""

    scale: Tensor
    """[53] per-coefficient gain."""
    shift: Tensor
    """[53]."""
    mouth_mean: Tensor
    """[M] mean tracked mouth coefficients (``MOUTH_COLUMNS``)."""
    mouth_basis: Tensor
    """[M, k] orthonormal principal directions of the tracked mouth coefficients."""
    low: Tensor
    """[53] lowest allowed value."""
    high: Tensor
    """[53] highest allowed value."""
    lag_s: float = 0.0
    """Audio-visual lag (s): frame j of an offline drive shows the driver's prediction at audio time j / fps +
    lag_s (:func:`best_lag`)."""

    @staticmethod
    def fit(pred: Tensor, tracked: Tensor, cfg: CalibrationConfig = CalibrationConfig()) -> Calibration:
        """Fit from a driver's expression ``pred`` [N, 53] and the tracked expression ``tracked`` [N, 53] at the
        same (training) timesteps."""
        if pred.shape != tracked.shape or pred.shape[0] < 2:
            raise ValueError(f"calibration needs matching [N >= 2, 53] frames, got {tuple(pred.shape)}")
        p, y = pred.double(), tracked.double().clamp(0.0, 1.0)
        pc, yc = p - p.mean(0), y - y.mean(0)
        a = ((pc * yc).mean(0) / (pc.square().mean(0) + cfg.shrink)).clamp(0.0, cfg.max_scale)
        shift = y.mean(0) - a * p.mean(0)
        cols = list(MOUTH_COLUMNS)
        ym = y[:, cols]
        mean = ym.mean(0)
        _, s, vh = torch.linalg.svd(ym - mean, full_matrices=False)
        var = s.square()
        share = torch.cumsum(var, 0) / var.sum().clamp_min(1e-12)
        k = int((share < cfg.mouth_variance).sum()) + 1
        lo, hi = y.min(0).values, y.max(0).values
        m = cfg.range_margin * (hi - lo)
        return Calibration(
            a.float(),
            shift.float(),
            mean.float(),
            vh[:k].T.contiguous().float(),
            (lo - m).clamp(0.0, 1.0).float(),
            (hi + m).clamp(0.0, 1.0).float(),
        )

    def apply(self, expression: Tensor) -> Tensor:
        """[T, 53] driver expression → calibrated [T, 53] (blink columns pass through)."""
        e = expression.float()
        out = self.shift + self.scale * e
        cols = list(MOUTH_COLUMNS)
        d = out[:, cols] - self.mouth_mean
        out[:, cols] = self.mouth_mean + (d @ self.mouth_basis) @ self.mouth_basis.T
        out = torch.minimum(torch.maximum(out, self.low), self.high)
        for c in BLINKS:
            out[:, c] = e[:, c]
        return out.clamp(0.0, 1.0)

    def to_json(self) -> dict[str, list | float]:
        return {k: getattr(self, k).tolist() for k in ("scale", "shift", "mouth_mean", "low", "high")} | {
            "mouth_basis": self.mouth_basis.tolist(),
            "lag_s": self.lag_s,
        }


def best_lag(opening: Tensor, tracked: Tensor, lags: Sequence[float]) -> float:
    """The lag whose predicted mouth opening correlates best with the tracked one.

    Args:
        opening: [L, N] the driver's opening at the N training timesteps read at each lag.
        tracked: [N] the tracked opening at those timesteps.
        lags: the L lags (s).

    Returns:
        The lag of the highest Pearson correlation (the smallest |lag| among equals); 0 where neither side moves.
    """
    y = tracked.double() - tracked.double().mean()
    p = opening.double() - opening.double().mean(1, keepdim=True)
    den = (p.square().sum(1) * y.square().sum()).sqrt()
    if not bool((den > 1e-12).any()):
        return 0.0
    corr = torch.where(den > 1e-12, (p * y).sum(1) / den.clamp_min(1e-12), torch.full_like(den, -2.0))
    order = sorted(range(len(lags)), key=lambda i: (-round(float(corr[i]), 9), abs(lags[i])))
    return float(lags[order[0]])


@dataclass(frozen=True)
class TrainingFrames:
    """What a calibration is fitted on: the driver's raw expression and the tracked expression at a capture's
    training timesteps, the driver read at the audio-visual lag found there."""

    timesteps: tuple[int, ...]
    """The N training timesteps (capture indices)."""
    pred: Tensor
    """[N, 53] the driver's raw expression at those timesteps, read ``lag_s`` later in the audio."""
    tracked: Tensor
    """[N, 53] the tracked expression."""
    lag_s: float


def leave_one_block_out(
    timesteps: Sequence[int],
    fit_predict: Callable[[list[int], list[int]], Tensor],
    score: Callable[[Tensor, list[int]], Tensor],
    block: int = 8,
    gap: int = 2,
    keep: Callable[[int], bool] | None = None,
) -> float:
    """Cross-validated score of a calibration method on a capture's training timesteps alone.

    The timesteps are cut into contiguous runs of at most ``block`` frames; each run is predicted by a method
    fitted on the training timesteps more than ``gap`` frames from it (neighbouring frames share audio
    windows and mouth shapes), and scored on its frames that ``keep`` accepts (e.g. the voiced ones, as the
    held-out evaluation scores speaking frames only).

    Args:
        timesteps: the training timesteps (capture indices).
        fit_predict: (fit timesteps, predict timesteps) → the prediction at the predicted timesteps.
        score: (prediction, its timesteps) → [n] per-frame error.
        block: largest run length.
        gap: frames left out of the fit on each side of a run.
        keep: which timesteps are scored (None: all).

    Returns:
        The mean per-frame error over every scored frame (nan when none is scored).
    """
    ts = sorted(int(t) for t in timesteps)
    runs: list[list[int]] = []
    for t in ts:
        if runs and t == runs[-1][-1] + 1 and len(runs[-1]) < block:
            runs[-1].append(t)
        else:
            runs.append([t])
    total, count = 0.0, 0
    for run in runs:
        scored = [t for t in run if keep is None or keep(t)]
        fit = [t for t in ts if t < run[0] - gap or t > run[-1] + gap]
        if not scored or len(fit) < 2:
            continue
        err = score(fit_predict(fit, scored), scored)
        total, count = total + float(err.sum()), count + len(scored)
    return total / count if count else float("nan")


# ------------------------------------------------------------------------------------------------ policy


@dataclass(frozen=True)
class SpeechConfig:
    """The speech policy's choices (``nerfhead drive`` options, the viewer's ``--speech-driver``)."""

    driver: Literal["auto", "network", "rules"] = "auto"
    """"network" (the run's fine-tuned network, else the bundled prior), "rules" (viseme rules) or "auto"
    (network when one is found, else rules)."""
    rules_mode: Literal["auto", "phonetic", "energy"] = "auto"
    """Rules used by the "rules" driver: phonetic with pocketsphinx when installed ("auto"), or energy."""
    pose: Literal["hold", "tracked"] = "hold"
    """"hold": the capture's first head rotation (+ the network's residual) and mean translation; "tracked":
    the capture's tracked head pose frame by frame (same timestamps)."""
    calibration: CalibrationConfig = CalibrationConfig()
    """Mapping of the driver's expression into the person's expression distribution."""
    normalise: bool = True
    """Normalise the clip's loudness before the driver."""


@dataclass(frozen=True)
class PersonData:
    """What a speech drive is calibrated and posed with: the capture's tracked drive, its audio and the
    timesteps the avatar was fitted on (the calibration uses only those)."""

    drive: Drive
    audio: Path | None = None
    timestamps: Tensor | None = None
    """[T] capture timestamps (s); None: frame t at t / fps."""
    audio_offset: float = 0.0
    train_timesteps: tuple[int, ...] | None = None


def person_of_run(run: str | os.PathLike) -> PersonData | None:
    """The run's tracked drive (``RUN/drive.npz``) with its capture's audio, timestamps and the run's training
    timesteps (from ``avatar.json``); None when the run has no drive.npz."""
    run = Path(run)
    base = run / "drive.npz"
    if not base.is_file():
        return None
    drive = Drive.load_npz(base)
    spec: dict = {}
    if (run / "avatar.json").is_file():
        try:
            spec = json.loads((run / "avatar.json").read_text())
        except (OSError, ValueError):
            spec = {}
    train = spec.get("train_timesteps")
    audio, stamps, offset = None, None, 0.0
    cap = spec.get("capture")
    if cap is not None and Path(cap).exists():
        try:
            from nerfhead.data.loaders import load_capture

            capture = load_capture(cap)
            if capture.num_timesteps == len(drive):
                audio, stamps, offset = capture.audio_path, capture.timestamps, float(capture.audio_offset)
        except InputError:
            pass
    return PersonData(drive, audio, stamps, offset, None if train is None else tuple(int(t) for t in train))


class Speech:
    """Audio → Drive for one avatar (the policy in the module docstring).

    Args:
        network: the speech network (path or module) for the "network" / "auto" drivers; None: rules.
        person: the capture's tracked drive, audio and training timesteps (pose and calibration); None: a
            neutral pose and no calibration.
        cfg: the choices.
    """

    def __init__(
        self,
        network: str | os.PathLike | AudioToDrive | None,
        person: PersonData | None = None,
        cfg: SpeechConfig = SpeechConfig(),
    ):
        self.cfg = cfg
        self.network = network
        self.person = person
        self._calibration: Calibration | None = None
        self._calibrated = False

    @staticmethod
    def for_run(run: str | os.PathLike, cfg: SpeechConfig = SpeechConfig()) -> Speech:
        """The policy for a run folder: its network choice, tracked drive and capture.

        Raises:
            InputError: a bad driver or pose, or "network" without any network.
        """
        check_config(cfg)
        net = speech_network(run) if cfg.driver != "rules" else None
        if cfg.driver == "network" and net is None:
            raise InputError(
                run, "no speech network: neither RUN/audio_to_drive.safetensors nor the bundled prior"
            )
        return Speech(net, person_of_run(run), cfg)

    @property
    def driver_name(self) -> str:
        """The network file's path, "network" (an in-memory network) or "rules"."""
        if self.network is None:
            return "rules"
        return "network" if isinstance(self.network, AudioToDrive) else str(self.network)

    def raw(self, wave: np.ndarray, fps: float, n_frames: int | None = None, lag: float = 0.0) -> Drive:
        """The driver's own Drive of a 16 kHz waveform (loudness-normalised when configured), uncalibrated;
        frame j reads audio time j / fps + ``lag`` (silence past either end)."""
        wave = shifted_waveform(normalise_loudness(wave) if self.cfg.normalise else wave, lag)
        if self.network is not None:
            return NetworkDriver(self.network).drive(wave, fps=fps, n_frames=n_frames)
        return RuleVisemeDriver(RuleDriverConfig(mode=self.cfg.rules_mode)).drive(
            wave, fps=fps, n_frames=n_frames
        )

    def training_frames(self) -> TrainingFrames | None:
        """The driver's raw expression at the best lag and the tracked expression at the capture's training
        timesteps (what :meth:`calibration` is fitted on), or None without a person or audio, or when the
        calibration is disabled."""
        p = self.person
        if not self.cfg.calibration.enabled or p is None or p.audio is None or not Path(p.audio).is_file():
            return None
        from nerfhead.media.audio import load_audio

        wav, _ = load_audio(p.audio, 16000)
        T = len(p.drive)
        stamps = p.timestamps.double() if p.timestamps is not None else torch.arange(T) / p.drive.fps
        ts = list(range(T)) if p.train_timesteps is None else [t for t in p.train_timesteps if 0 <= t < T]
        times = stamps[ts].numpy() - p.audio_offset
        if len(ts) < 2 or times.max() < 0:
            return None
        cc = self.cfg.calibration
        step = cc.lag_step_s if cc.max_lag_s > 0 and cc.lag_step_s > 0 else 1.0 / p.drive.fps
        m = int(cc.max_lag_s / step + 1e-9) if cc.max_lag_s > 0 and cc.lag_step_s > 0 else 0
        lags = [i * step for i in range(-m, m + 1)]
        n = int(np.ceil((times.max() + m * step) / step)) + 2
        pred = self.raw(wav, 1.0 / step, n_frames=n).expression  # one pass on a grid of the lag step

        def at(lag: float) -> Tensor:
            return pred[torch.from_numpy(np.clip(np.round((times + lag) / step).astype(np.int64), 0, n - 1))]

        tracked = p.drive.expression[ts]
        lag = best_lag(torch.stack([at(x)[:, JAW] for x in lags]), tracked[:, JAW], lags) if m else 0.0
        return TrainingFrames(tuple(ts), at(lag), tracked, lag)

    def calibration(self) -> Calibration | None:
        """The person's calibration (fitted once, on the capture's audio at the training timesteps), or None
        without a person, audio or when disabled."""
        if self._calibrated:
            return self._calibration
        self._calibrated = True
        frames = self.training_frames()
        if frames is None:
            return None
        cal = Calibration.fit(frames.pred, frames.tracked, self.cfg.calibration)
        cal.lag_s = frames.lag_s
        self._calibration = cal
        return cal

    def drive(self, wave: np.ndarray, sr: int, fps: float, n_frames: int | None = None) -> Drive:
        """The Drive the avatar speaks ``wave`` (mono, at ``sr``) with, frame j at audio time j / fps."""
        if not fps > 0:
            raise InputError("--fps", f"fps must be positive, got {fps}")
        wav = mono_waveform(wave, sr)
        cal = self.calibration()
        speech = self.raw(wav, fps, n_frames, lag=cal.lag_s if cal is not None else 0.0)
        expr = cal.apply(speech.expression) if cal is not None else speech.expression.float()
        T = len(speech)
        rot, trans = self.pose(T, fps, speech.rotation.float())
        latent = None
        if self.person is not None and self.person.drive.latent is not None:
            latent = self.person.drive.latent[:1].float().expand(T, -1).clone()
        return Drive(rotation=rot, translation=trans, expression=expr, latent=latent, fps=fps)

    def pose(self, T: int, fps: float, residual: Tensor) -> tuple[Tensor, Tensor]:
        """Head rotation and translation [T, 3] of a speech drive of T frames (``residual``: the driver's
        rotation residual, added to the held rotation)."""
        if self.person is None:
            return residual.clone(), torch.zeros(T, 3)
        base = self.person.drive
        if self.cfg.pose == "tracked":  # the capture's timestep nearest each frame's audio time
            p = self.person
            n = len(base)
            src = (
                p.timestamps.double().numpy() - p.audio_offset
                if p.timestamps is not None
                else np.arange(n) / base.fps
            )
            mids = 0.5 * (src[1:] + src[:-1])
            idx = torch.from_numpy(np.searchsorted(mids, np.arange(T) / fps).astype(np.int64))
            return base.rotation[idx].float().clone(), base.translation[idx].float().clone()
        rot = base.rotation[:1].float().expand(T, 3) + residual
        return rot.clone(), base.translation.float().mean(0)[None].expand(T, 3).clone()


def check_config(cfg: SpeechConfig) -> None:
    """Raise an InputError for a driver, rules mode or pose that does not exist."""
    if cfg.driver not in DRIVERS:
        raise InputError("--driver", f"driver must be auto, rules or network, got {cfg.driver!r}")
    if cfg.pose not in POSES:
        raise InputError("--pose", f"pose must be hold or tracked, got {cfg.pose!r}")
    if cfg.rules_mode not in ("auto", "phonetic", "energy"):
        raise InputError("--speech-mode", f"must be auto, phonetic or energy, got {cfg.rules_mode!r}")


def speech_drive_for_run(
    run: str | os.PathLike, wave: np.ndarray, sr: int, fps: float, cfg: SpeechConfig = SpeechConfig()
) -> Drive:
    """``Speech.for_run(run, cfg).drive(wave, sr, fps)``: what ``nerfhead drive`` and the viewer use."""
    return Speech.for_run(run, cfg).drive(wave, sr, fps)
