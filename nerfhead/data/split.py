"""Train / evaluation splits of a capture, shared by every model's training task and by ``nerfhead eval``.

A rig capture splits by camera: its stored ``train_cameras`` / ``test_cameras`` (all cameras train when it names
none). A **monocular** capture (one frame per timestep, no stored camera split: a tracked video, ``nerfhead synth
--rig mono``) splits by time, by one of two policies:

- ``"speech"`` (the default): ``blocks`` contiguous blocks of timesteps, together about ``fraction`` of the
  clip, one inside each of ``blocks`` equal stretches of the clip, each placed where the most of its frames are
  voiced (speech found from the capture's audio by frame loudness). The ``gap`` timesteps on both sides of a
  block neither train nor evaluate, so the held-out frames are not near-copies of training frames. A capture
  without audio, or without enough voiced frames, falls back to ``"tail"``.
- ``"tail"``: the last ``fraction`` of the timesteps (what GRID clips end with is silence: a mouth at rest).

The split a run used is recorded in its ``avatar.json`` (``train_timesteps``, ``test_timesteps``,
``split_policy``) and ``nerfhead eval`` reports those frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from nerfhead.errors import InputError

if TYPE_CHECKING:
    from nerfhead.data.capture import Capture

SplitKind = Literal["speech", "tail"]


@dataclass(frozen=True)
class SplitPolicy:
    """How a monocular capture is split by time (rig captures split by their stored cameras)."""

    kind: SplitKind = "speech"
    """"speech": held-out blocks inside speech (voiced frames from the capture's audio; "tail" when it has no
    audio); "tail": the last ``fraction`` of the timesteps."""
    fraction: float = 0.2
    """Share of the timesteps held out (0: train on every timestep and evaluate on the training frames)."""
    blocks: int = 3
    """Number of held-out blocks of the speech policy, spread over the clip."""
    gap: int = 2
    """Timesteps on each side of a speech block used neither for training nor for evaluation."""
    voiced_db: float = -30.0
    """A timestep is voiced when its audio RMS is within this many dB of the clip's loud (95th percentile)
    frames."""

    def __post_init__(self) -> None:
        if self.kind not in ("speech", "tail"):
            raise InputError("split.kind", f"must be speech or tail, got {self.kind!r}")
        if not 0.0 <= self.fraction < 1.0:
            raise InputError("split.fraction", f"must be in [0, 1), got {self.fraction}")
        if self.blocks < 1 or self.gap < 0:
            raise InputError("split", f"blocks must be >= 1 and gap >= 0, got {self.blocks} and {self.gap}")


@dataclass(frozen=True)
class Split:
    """The cameras and timesteps that train and that evaluate."""

    train_cameras: list[int]
    test_cameras: list[int]
    train_timesteps: list[int]
    test_timesteps: list[int] | None
    """Held-out timesteps of a monocular capture; None: every timestep of the test cameras."""
    monocular: bool
    policy: str
    """What was applied: "cameras", "speech", "tail", "tail (no audio)", "tail (no speech found)", "none"."""


def is_monocular(capture: Capture) -> bool:
    """True for a capture with one frame per timestep and no stored camera split: a video from one camera,
    fixed (a tracked video: one camera) or moving (one camera pose per frame, e.g. ``nerfhead synth --rig
    mono``)."""
    stored = capture.train_cameras is not None or capture.test_cameras is not None
    return not stored and len(capture) == capture.num_timesteps


def cameras_at(capture: Capture, timesteps: list[int]) -> list[int]:
    """Sorted indices of the cameras with a frame at any of ``timesteps``."""
    return sorted({capture.frames[f].camera for t in timesteps for f in capture.frames_at(t)})


def timestep_loudness(capture: Capture, sr: int = 16000) -> np.ndarray | None:
    """RMS of the capture's audio over each timestep's frame interval [T] (linear), or None without audio.

    Timestep t covers audio times ``[ts_t - offset - h, ts_t - offset + h)`` with ``h`` half the median frame
    spacing (audio aligned by timestamp, never by index).
    """
    if capture.audio_path is None:
        return None
    from nerfhead.media.audio import load_audio  # a leaf decoder (errors only): no model or driver code

    wave, _ = load_audio(capture.audio_path, sr)
    ts = capture.timestamps.double().numpy() - float(capture.audio_offset)
    T = ts.size
    h = 0.5 * (float(np.median(np.diff(ts))) if T > 1 else 0.04)
    out = np.zeros(T)
    for t in range(T):
        a, b = int(round((ts[t] - h) * sr)), int(round((ts[t] + h) * sr))
        seg = wave[max(a, 0) : max(min(b, wave.size), 0)]
        out[t] = float(np.sqrt(np.mean(np.square(seg, dtype=np.float64)))) if seg.size else 0.0
    return out


def voiced_timesteps(loudness: np.ndarray, voiced_db: float = -30.0) -> np.ndarray:
    """[T] bool: timesteps whose loudness is within ``voiced_db`` dB of the 95th percentile (gain-invariant)."""
    ref = float(np.percentile(loudness, 95))
    if ref <= 0:
        return np.zeros(loudness.shape, bool)
    return 20.0 * np.log10(np.maximum(loudness, 1e-12) / ref) > voiced_db


def speech_blocks(voiced: np.ndarray, n_test: int, blocks: int, gap: int) -> list[list[int]] | None:
    """Held-out blocks: ``blocks`` runs of about ``n_test / blocks`` timesteps, the k-th inside the k-th equal
    stretch of the clip (``gap`` away from its ends), each placed at the most voiced position (earliest on
    ties). None when a stretch is too short or a block would hold fewer than half voiced frames."""
    T = voiced.size
    sizes = [n_test // blocks + (1 if k < n_test % blocks else 0) for k in range(blocks)]
    out: list[list[int]] = []
    for k, L in enumerate(sizes):
        if L == 0:
            continue
        lo, hi = round(k * T / blocks) + gap, round((k + 1) * T / blocks) - gap - L
        if hi < lo:
            return None
        score = [int(voiced[s : s + L].sum()) for s in range(lo, hi + 1)]
        s = lo + int(np.argmax(score))
        if 2 * max(score) < L:
            return None
        out.append(list(range(s, s + L)))
    return out


def tail_split(T: int, train_fraction: float) -> tuple[list[int], list[int]]:
    """(train, test): the first ``round(train_fraction * T)`` timesteps (at least one, at most T - 1) train,
    the rest are held out.

    Raises:
        InputError: ``train_fraction`` outside (0, 1) or a capture of a single timestep.
    """
    if not 0.0 < train_fraction < 1.0:
        raise InputError(None, f"train_fraction must be in (0, 1), got {train_fraction}")
    if T < 2:
        raise InputError(None, "a split by time needs at least 2 timesteps (the capture has 1)")
    n = min(max(round(train_fraction * T), 1), T - 1)
    return list(range(n)), list(range(n, T))


def time_split(capture: Capture, policy: SplitPolicy = SplitPolicy()) -> tuple[list[int], list[int], str]:
    """(train, test, applied policy) timesteps of a monocular capture under ``policy`` (``fraction`` > 0)."""
    T = capture.num_timesteps
    if policy.kind == "speech":
        loud = timestep_loudness(capture)
        if loud is None:
            return (*tail_split(T, 1.0 - policy.fraction), "tail (no audio)")
        n_test = max(round(policy.fraction * T), 1)
        found = speech_blocks(voiced_timesteps(loud, policy.voiced_db), n_test, policy.blocks, policy.gap)
        if found is None:
            return (*tail_split(T, 1.0 - policy.fraction), "tail (no speech found)")
        test = [t for b in found for t in b]
        near = {u for b in found for u in range(b[0] - policy.gap, b[-1] + policy.gap + 1)}
        return [t for t in range(T) if t not in near], test, "speech"
    return (*tail_split(T, 1.0 - policy.fraction), "tail")


def split_capture(capture: Capture, policy: SplitPolicy = SplitPolicy()) -> Split:
    """The split of ``capture``: by its stored cameras, or by time under ``policy`` when it is monocular."""
    n, T = capture.num_cameras, capture.num_timesteps
    train_c = list(capture.train_cameras) if capture.train_cameras is not None else list(range(n))
    held = capture.test_cameras
    if held is None:
        held = tuple(c for c in range(n) if c not in set(train_c)) if capture.train_cameras else ()
    if is_monocular(capture) and policy.fraction > 0.0 and T >= 2:
        tr, te, applied = time_split(capture, policy)
        return Split(cameras_at(capture, tr), cameras_at(capture, te), tr, te, True, applied)
    mono = is_monocular(capture)
    return Split(train_c, list(held), list(range(T)), None, mono, "none" if mono else "cameras")
