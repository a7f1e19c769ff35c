"""Splits owned by the data layer: a monocular capture holds out blocks inside speech (voiced frames found from its
audio, a gap on both sides), the old last-fraction policy stays available, and a capture without audio falls back
to it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from nerfhead.data.capture import Capture, Frame
from nerfhead.data.split import SplitPolicy, speech_blocks, timestep_loudness, voiced_timesteps
from nerfhead.errors import InputError
from tests.models.tiny_capture import tiny_cameras

FPS = 25.0
T = 50
VOICED = range(5, 40)  # speech over timesteps 5..39, silence before and after (like a GRID clip's ending)


def speech_wav(path: Path, gain: float = 0.3, voiced: range = VOICED) -> Path:
    """A 16 kHz clip: a voiced buzz (harmonics of 140 Hz with a syllable rhythm) over ``voiced`` timesteps."""
    sr = 16000
    t = np.arange(int(T / FPS * sr)) / sr
    buzz = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 8))
    env = ((t >= voiced.start / FPS) & (t < voiced.stop / FPS)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
    rng = np.random.default_rng(0)
    wave = gain * (env * buzz / 3 + 3e-4 * rng.standard_normal(t.size))  # a quieter recording: all scaled
    soundfile.write(path, wave.astype(np.float32), sr)
    return path


def audio_capture(tmp_path: Path, gain: float = 0.3, audio: bool = True) -> Capture:
    frames = tuple(Frame(0, t, t / FPS, tmp_path / f"{t}.png") for t in range(T))  # images never decoded here
    wav = speech_wav(tmp_path / "speech.wav", gain) if audio else None
    return Capture(cameras=tiny_cameras(40, 4)[1], frames=frames, fps=FPS, audio_path=wav)


def test_speech_split_holds_out_voiced_blocks_with_gaps(tmp_path):
    cap = audio_capture(tmp_path)
    split = cap.split()
    assert split.monocular and split.policy == "speech"
    test = split.test_timesteps
    assert test is not None and len(test) == 10  # 20% of 50
    assert set(test) <= set(VOICED)  # every held-out frame speaks
    # three contiguous blocks, one in each third of the clip
    blocks = np.split(np.array(test), np.where(np.diff(test) > 1)[0] + 1)
    assert len(blocks) == 3 and [int(b[0]) * 3 // T for b in blocks] == [0, 1, 2]
    # a gap of 2 timesteps on both sides of each block: neither trained nor evaluated
    for b in blocks:
        near = set(range(int(b[0]) - 2, int(b[0]))) | set(range(int(b[-1]) + 1, int(b[-1]) + 3))
        assert not near & set(split.train_timesteps)
    assert not set(test) & set(split.train_timesteps)
    assert len(split.train_timesteps) == T - 10 - 12
    assert split.train_cameras == [0] and split.test_cameras == [0]


def test_tail_policy_is_the_old_split_and_holds_out_silence(tmp_path):
    """The case that must fail: the last-20% policy on the same clip evaluates silent frames."""
    cap = audio_capture(tmp_path)
    tail = cap.split(SplitPolicy(kind="tail"))
    assert tail.policy == "tail" and tail.test_timesteps == list(range(40, 50))
    assert tail.train_timesteps == list(range(40))
    assert not set(tail.test_timesteps or ()) & set(VOICED)
    assert cap.time_split(0.8) == (tail.train_timesteps, tail.test_timesteps)


def test_voiced_frames_do_not_depend_on_loudness(tmp_path):
    loud = timestep_loudness(audio_capture(tmp_path, gain=0.3))
    (tmp_path / "q").mkdir()
    quiet = timestep_loudness(audio_capture(tmp_path / "q", gain=0.3 * 10 ** (-30 / 20)))
    assert loud is not None and quiet is not None
    v = voiced_timesteps(loud)
    assert np.array_equal(v, voiced_timesteps(quiet))
    assert v[8:38].all() and not v[:3].any() and not v[43:].any()


def test_no_audio_or_no_speech_falls_back_to_the_tail(tmp_path):
    cap = audio_capture(tmp_path, audio=False)
    split = cap.split()
    assert split.policy == "tail (no audio)" and split.test_timesteps == list(range(40, 50))
    assert speech_blocks(np.zeros(T, bool), 10, 3, 2) is None
    assert cap.split(SplitPolicy(fraction=0.0)).test_timesteps is None  # 0: evaluate the training frames


def test_bad_policies_raise_input_errors():
    with pytest.raises(InputError, match="speech or tail"):
        SplitPolicy(kind="middle")  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"\[0, 1\)"):
        SplitPolicy(fraction=1.0)
