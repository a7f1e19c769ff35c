"""What the synthetic head does: the built-in expressive script, or a drive file (e.g. tracked from real speech).

The built-in script is a deterministic function of ``(num_frames, seed, config)``, at 25 fps by default:

* talking: phrases of 1.2-3 s separated by short pauses; within a phrase, syllables every 0.17-0.28 s, each a
  raised-cosine pulse of the jaw and lips shaped like one of four mouth classes (open vowel, rounded, spread,
  closed lips for m/b/p);
* a blink every 2-5 s (the first within the first second), fast close and slower open;
* brow raises (sometimes a frown) every 3-6 s, smiles every 4-8 s, small gaze shifts every 1-2 s;
* gentle head turns (yaw about +-12, pitch +-6, roll +-3 degrees) and sway (about +-8 mm).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nerfhead.data.drive import Drive
from nerfhead.data.expressions import EXPRESSION_INDEX, NUM_EXPRESSIONS
from nerfhead.errors import InputError

MAX_ROTATION = math.pi
"""Largest head rotation (axis-angle norm, radians) a drive file may hold."""
MAX_TRANSLATION = 0.5
"""Largest head translation (metres) a drive file may hold: the rig's cameras stand about 1 m away."""


@dataclass(frozen=True)
class ScriptConfig:
    """The built-in expressive performance."""

    fps: float = 25.0
    """Timesteps per second."""
    talk: float = 1.0
    """Amplitude of the speech-like jaw and lip motion (0 = silent)."""
    head_motion: float = 1.0
    """Scale of the head turns and sway (0 = still head)."""
    blink_every: float = 3.5
    """Mean seconds between blinks."""


def _pulse(t: np.ndarray, centre: float, half_width: float) -> np.ndarray:
    """Raised cosine of height 1 at ``centre``, zero beyond ``half_width``."""
    x = np.clip((t - centre) / half_width, -1.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * x))


def _plateau(t: np.ndarray, start: float, rise: float, hold: float, fall: float) -> np.ndarray:
    """0 -> 1 over ``rise`` s (raised cosine), 1 for ``hold`` s, back to 0 over ``fall`` s."""
    up = np.clip((t - start) / rise, 0.0, 1.0)
    down = np.clip((t - start - rise - hold) / fall, 0.0, 1.0)
    return 0.5 * (1.0 - np.cos(np.pi * up)) * 0.5 * (1.0 + np.cos(np.pi * down))


def _events(
    rng: np.random.Generator, first: tuple[float, float], gap: tuple[float, float], end: float
) -> list:
    times, s = [], rng.uniform(*first)
    while s < end:
        times.append(s)
        s += rng.uniform(*gap)
    return times


def _add(E: np.ndarray, names: tuple[str, ...], values: np.ndarray, weight: float = 1.0) -> None:
    for n in names:
        E[:, EXPRESSION_INDEX[n]] += weight * values


# Mouth classes of a syllable: weights of (jaw, lips open, round, spread, closed).
_SYLLABLES = {
    "open": (1.0, 1.0, 0.0, 0.0, 0.0),
    "round": (0.5, 0.3, 1.0, 0.0, 0.0),
    "spread": (0.55, 0.6, 0.0, 1.0, 0.0),
    "closed": (0.05, 0.0, 0.0, 0.0, 1.0),
}
_SYLLABLE_P = (0.45, 0.2, 0.2, 0.15)


def _speech(E: np.ndarray, t: np.ndarray, rng: np.random.Generator, amount: float) -> None:
    end = float(t[-1]) + 0.5 if len(t) else 0.0
    s = 0.1
    kinds = list(_SYLLABLES)
    while s < end:
        phrase_end = s + rng.uniform(1.2, 3.0)
        while s < phrase_end:
            spacing = rng.uniform(0.17, 0.28)
            a = amount * rng.uniform(0.3, 0.8)
            jaw, lips, rnd, spread, closed = _SYLLABLES[kinds[rng.choice(4, p=_SYLLABLE_P)]]
            p = _pulse(t, s + spacing / 2, 0.9 * spacing)
            _add(E, ("jawOpen",), p, a * jaw)
            _add(E, ("mouthLowerDown_L", "mouthLowerDown_R"), p, 0.45 * a * lips)
            _add(E, ("mouthUpperUp_L", "mouthUpperUp_R"), p, 0.2 * a * lips)
            _add(E, ("mouthFunnel",), p, 0.6 * a * rnd)
            _add(E, ("mouthPucker",), p, 0.55 * a * rnd)
            _add(E, ("mouthStretch_L", "mouthStretch_R"), p, 0.35 * a * spread)
            _add(E, ("mouthSmile_L", "mouthSmile_R"), p, 0.15 * a * spread)
            _add(E, ("mouthClose",), p, 0.4 * amount * closed)
            _add(E, ("mouthPress_L", "mouthPress_R"), p, 0.35 * amount * closed)
            _add(E, ("mouthRollLower", "mouthRollUpper"), p, 0.25 * amount * closed)
            s += spacing
        s += rng.uniform(0.25, 0.7)


def _face(E: np.ndarray, t: np.ndarray, rng: np.random.Generator, blink_every: float) -> None:
    end = float(t[-1]) + 0.5 if len(t) else 0.0
    k = blink_every / 3.5
    for s in _events(rng, (0.3, 0.8), (2.0 * k, 5.0 * k), end):
        _add(E, ("eyeBlink_L", "eyeBlink_R"), _plateau(t, s, 0.08, 0.04, 0.14))
    for s in _events(rng, (0.8, 2.0), (3.0, 6.0), end):
        dur, a = rng.uniform(0.5, 1.1), rng.uniform(0.45, 0.85)
        shape = _plateau(t, s, 0.25, dur, 0.35)
        if rng.uniform() < 0.7:
            _add(E, ("browInnerUp_L", "browInnerUp_R"), shape, a)
            _add(E, ("browOuterUp_L", "browOuterUp_R"), shape, 0.8 * a)
        else:
            _add(E, ("browDown_L", "browDown_R"), shape, 0.6 * a)
    for s in _events(rng, (1.5, 3.0), (4.0, 8.0), end):
        dur, a, lr = rng.uniform(1.0, 2.5), rng.uniform(0.45, 0.85), rng.uniform(0.85, 1.0)
        shape = _plateau(t, s, 0.4, dur, 0.5)
        _add(E, ("mouthSmile_L",), shape, a)
        _add(E, ("mouthSmile_R",), shape, a * lr)
        _add(E, ("cheekSquint_L", "cheekSquint_R"), shape, 0.4 * a)
        _add(E, ("eyeSquint_L", "eyeSquint_R"), shape, 0.2 * a)
    gx, gy = np.zeros_like(t), np.zeros_like(t)
    for s in _events(rng, (0.5, 1.5), (1.0, 2.0), end):
        step = np.clip((t - s) / 0.05, 0.0, 1.0)  # saccade: fast
        dx, dy = rng.uniform(-0.3, 0.3), rng.uniform(-0.2, 0.2)
        gx, gy = gx + step * (dx - gx), gy + step * (dy - gy)
    # +gx: looking toward the subject's left: left eye out, right eye in.
    _add(E, ("eyeLookOut_L", "eyeLookIn_R"), np.clip(gx, 0, None))
    _add(E, ("eyeLookIn_L", "eyeLookOut_R"), np.clip(-gx, 0, None))
    _add(E, ("eyeLookUp_L", "eyeLookUp_R"), np.clip(gy, 0, None))
    _add(E, ("eyeLookDown_L", "eyeLookDown_R"), np.clip(-gy, 0, None))


def _smooth(t: np.ndarray, rng: np.random.Generator, dims: int, hz: tuple[float, ...]) -> np.ndarray:
    """[T, dims] smooth noise in about [-1, 1]."""
    out = np.zeros((len(t), dims))
    for f in hz:
        phase = rng.uniform(0, 2 * np.pi, dims)
        freq = f * rng.uniform(0.85, 1.15, dims)
        out += np.sin(2 * np.pi * freq * t[:, None] + phase)
    return out / math.sqrt(len(hz))


def expressive_drive(num_frames: int, seed: int = 0, config: ScriptConfig | None = None) -> Drive:
    """The built-in performance for ``num_frames`` timesteps (deterministic given ``seed``).

    Args:
        num_frames: T >= 1.
        seed: random seed of the performance.
        config: amplitudes and timing.

    Returns:
        Drive [T] at ``config.fps`` with expression in [0, 1], head rotation (radians) and translation (metres).
    """
    cfg = config or ScriptConfig()
    if num_frames < 1:
        raise InputError(None, f"the number of frames must be at least 1, got {num_frames}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E_ED]))
    t = np.arange(num_frames, dtype=np.float64) / cfg.fps
    E = np.zeros((num_frames, NUM_EXPRESSIONS))
    _speech(E, t, np.random.default_rng(rng.integers(2**63)), cfg.talk)
    _face(E, t, np.random.default_rng(rng.integers(2**63)), cfg.blink_every)
    head = np.random.default_rng(rng.integers(2**63))
    ang = _smooth(t, head, 3, (0.11, 0.23, 0.47)) * np.radians([6.0, 12.0, 3.0]) * cfg.head_motion
    trans = _smooth(t, head, 3, (0.13, 0.31)) * np.array([0.008, 0.005, 0.008]) * cfg.head_motion
    return Drive(
        rotation=torch.from_numpy(ang).float(),  # axis-angle ~ (pitch about x, yaw about y, roll about z)
        translation=torch.from_numpy(trans).float(),
        expression=torch.from_numpy(np.clip(E, 0.0, 1.0)).float(),
        fps=cfg.fps,
    )


def load_drive_file(path: str | os.PathLike) -> Drive:
    """Read and validate a drive file (``.npz`` as written by ``Drive.save_npz``) for the capture rig.

    Raises:
        InputError: naming ``path``: unreadable, wrong keys or shapes, non-finite values, expression outside
            [0, 1], no timesteps, an fps outside 1..1000, or a pose that would leave the rig (rotation beyond
            180 degrees, translation beyond 0.5 m).
    """
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise InputError(path, "drive files must be .npz (as written by Drive.save_npz)")
    drive = Drive.load_npz(path)
    if len(drive) == 0:
        raise InputError(path, "the drive has no timesteps")
    if not 1.0 <= drive.fps <= 1000.0:
        raise InputError(path, f"drive fps {drive.fps:g} out of range (1 .. 1000)")
    rot = float(drive.rotation.norm(dim=-1).max())
    if rot > MAX_ROTATION:
        raise InputError(path, f"head rotation {math.degrees(rot):.0f} deg out of range (at most 180)")
    tr = float(drive.translation.norm(dim=-1).max())
    if tr > MAX_TRANSLATION:
        raise InputError(
            path, f"head translation {tr:.2f} m out of range (at most {MAX_TRANSLATION} m)", hint="metres?"
        )
    return drive.to(dtype=torch.float32)
