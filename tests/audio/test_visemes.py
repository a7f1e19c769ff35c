"""Rule-based mouth curves: energy tracking on real speech, silence, lip shapes, co-articulation, phones."""

from __future__ import annotations

import numpy as np
import pytest

from nerfhead.assets import asset_path
from nerfhead.audio.driver import RuleDriverConfig, RuleVisemeDriver
from nerfhead.audio.visemes import (
    MOUTH_COLUMNS,
    PhonemeRecognizer,
    PhonemeSegment,
    coarticulate,
    pocketsphinx_available,
)
from nerfhead.data.expressions import EXPRESSION_INDEX
from nerfhead.media.audio import load_audio

SR, FPS = 16000, 25.0
JAW = EXPRESSION_INDEX["jawOpen"]
SPEECH = [
    "audio/en_ljspeech_LJ050-0131.wav",
    "audio/fleurs_en-001.ogg",
    "audio/fleurs_de-001.ogg",
    "audio/fleurs_es-002.ogg",
    "video_grid/grid_bbaf2n.mpg",
]
ENERGY = RuleDriverConfig(mode="energy", blinks=False)


def energy_envelope_db(wav: np.ndarray, n_frames: int, fps: float = FPS) -> np.ndarray:
    """Independent reference: RMS of 25 ms around each video frame's timestamp, in dB, floored 40 dB below
    the loudest frame."""
    centres = np.round(np.arange(n_frames) / fps * SR).astype(int)
    rms = np.array([np.sqrt(np.mean(wav[max(0, c - 200) : c + 200] ** 2)) for c in centres])
    db = 20 * np.log10(rms + 1e-9)
    return np.maximum(db, db.max() - 40.0)


@pytest.mark.parametrize("rel", SPEECH)
def test_energy_jaw_tracks_speech_energy(rel):
    wav, _ = load_audio(asset_path(rel))
    drive = RuleVisemeDriver(ENERGY).drive(wav, FPS)
    assert len(drive) == int(np.ceil(wav.size * FPS / SR - 1e-9))
    drive.check()  # finite, in [0, 1]
    jaw = drive.expression[:, JAW].numpy()
    r = np.corrcoef(jaw, energy_envelope_db(wav, len(drive)))[0, 1]
    assert r >= 0.75, f"jawOpen / energy correlation {r:.3f}"
    assert 0.3 < jaw.max() <= 0.65 + 1e-6  # opens, within the rule's gain


def test_jaw_rests_in_silence():
    speech, _ = load_audio(asset_path("audio/en_ljspeech_LJ050-0131.wav"))
    wav = np.concatenate([np.zeros(SR, np.float32), speech[: 2 * SR], np.zeros(SR, np.float32)])
    e = RuleVisemeDriver(ENERGY).drive(wav, FPS).expression.numpy()
    t = np.arange(e.shape[0]) / FPS
    quiet = (t < 0.6) | (t > 3.5)  # 0.4 s margins: anticipation and smoothing reach that far at most
    assert np.abs(e[quiet][:, list(MOUTH_COLUMNS)]).max() < 0.02
    assert e[(t > 1.0) & (t < 3.0), JAW].max() > 0.3
    zero = RuleVisemeDriver(ENERGY).drive(np.zeros(SR, np.float32), FPS).expression
    assert float(zero.abs().max()) == 0.0  # digital silence: a still face (blinks off)


def test_jaw_rests_in_background_noise():
    """Steady noise (-40 dBFS white) around speech: the noise-floor tracker closes the mouth within ~1 s."""
    speech, _ = load_audio(asset_path("audio/en_ljspeech_LJ050-0131.wav"))
    rng = np.random.default_rng(0)

    def noise(n):
        return (0.01 * rng.standard_normal(n)).astype(np.float32)

    wav = np.concatenate([noise(3 * SR), speech[: 2 * SR] + noise(2 * SR), noise(3 * SR)])
    jaw = RuleVisemeDriver(ENERGY).drive(wav, FPS).expression[:, JAW].numpy()
    t = np.arange(jaw.size) / FPS
    assert jaw[(t > 1.0) & (t < 2.6)].max() < 0.05
    assert jaw[t > 5.5].max() < 0.02
    assert jaw[(t > 3.0) & (t < 5.0)].max() > 0.4


def _vowel(dark: bool, seconds: float = 0.6) -> np.ndarray:
    """Harmonic vowel at 120 Hz: dark (energy below 1 kHz, like /u/) or bright (F1 300 Hz, F2 2300 Hz, /i/)."""
    t = np.arange(int(seconds * SR)) / SR
    x = np.zeros_like(t)
    for h in range(1, 60):
        f = 120.0 * h
        if dark:
            a = 1.0 if f < 900 else 10 ** (-45 / 20)
        else:
            a = np.exp(-(((f - 300) / 120) ** 2)) + np.exp(-(((f - 2300) / 250) ** 2)) + 1e-3
        x += a * np.sin(2 * np.pi * f * t)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def test_lip_rounding_follows_spectral_darkness():
    drv = RuleVisemeDriver(ENERGY)
    mid = slice(5, 12)  # frames well inside the 0.6 s vowel after 0.2 s of lead-in
    pad = np.zeros(int(0.2 * SR), np.float32)

    def shape(x):
        e = drv.drive(np.concatenate([pad, x, pad]), FPS).expression.numpy()[mid]
        return {n: e[:, EXPRESSION_INDEX[n]].mean() for n in ("mouthPucker", "mouthFunnel", "mouthStretch_L")}

    dark, bright = shape(_vowel(True)), shape(_vowel(False))
    assert dark["mouthPucker"] > 0.3 and dark["mouthFunnel"] > 0.25
    assert bright["mouthPucker"] < 0.02 and bright["mouthStretch_L"] > 0.15
    assert dark["mouthStretch_L"] < 0.02


def test_closure_inside_speech_before_a_burst():
    v = _vowel(False, 0.4)
    gap = np.zeros(int(0.08 * SR), np.float32)
    lead = np.zeros(int(0.3 * SR), np.float32)
    wav = np.concatenate([lead, v, gap, v, lead])  # "a-pa": vowel, closure gap, abrupt release
    e = RuleVisemeDriver(ENERGY).drive(wav, 100.0).expression.numpy()  # 100 fps: one row per feature frame
    press = e[:, EXPRESSION_INDEX["mouthPress_L"]]
    gap_at = int((0.3 + 0.4 + 0.04) * 100)
    assert press[gap_at - 3 : gap_at + 4].max() > 0.2
    assert press[: int(0.3 * 100) - 5].max() < 0.01  # no pressing before the utterance starts
    assert e[gap_at, JAW] < 0.5 * e[gap_at - 15, JAW]  # the jaw closes in the gap


def _seg(spec):
    out, t = [], 0.0
    for phone, dur in spec:
        out.append(PhonemeSegment(phone, t, t + dur))
        t += dur
    return out


def test_coarticulation_bilabials_close_and_vowels_open():
    segs = _seg([("SIL", 0.3), ("M", 0.08), ("AA", 0.2), ("M", 0.08), ("AA", 0.2), ("SIL", 0.3)])
    t = np.arange(0, 1.16, 0.01)
    e = coarticulate(segs, t)
    press, jaw = e[:, EXPRESSION_INDEX["mouthPress_L"]], e[:, JAW]
    for m in (segs[1], segs[3]):
        i = int(round((m.start + m.end) / 2 * 100))
        assert press[i] > 0.4 and jaw[i] < 0.1
    for a in (segs[2], segs[4]):
        i = int(round((a.start + a.end) / 2 * 100))
        assert jaw[i] > 0.45 and press[i] < 0.1
    assert np.abs(e[:5]).max() < 0.02 and np.abs(e[-5:]).max() < 0.02  # rest in the silences
    assert ((e >= 0) & (e <= 1)).all()


def test_coarticulation_rounding_anticipates():
    """Protrusion for /uw/ starts ahead, through the preceding consonants (anticipatory co-articulation), and
    reaches further before the vowel than after it."""
    segs = _seg([("SIL", 0.5), ("S", 0.06), ("T", 0.06), ("UW", 0.2), ("T", 0.06), ("S", 0.06), ("SIL", 0.5)])
    uw = segs[3]
    e = coarticulate(segs, np.array([uw.start - 0.1, uw.start + 0.1, uw.end + 0.1]))
    pucker = e[:, EXPRESSION_INDEX["mouthPucker"]]
    assert pucker[1] > 0.5
    assert pucker[0] > 0.25 * pucker[1]
    assert pucker[0] > pucker[2] + 0.05


@pytest.mark.skipif(not pocketsphinx_available(), reason="pocketsphinx (extra 'audio') is not installed")
def test_phonetic_driver_on_english_speech():
    wav, _ = load_audio(asset_path("audio/en_ljspeech_LJ050-0131.wav"))
    segs = PhonemeRecognizer()(wav)
    speech = [s for s in segs if s.viseme != "sil"]
    assert len(speech) > 40  # ~60 phones in the sentence
    covered = sum(s.end - s.start for s in segs)
    assert covered > 0.9 * wav.size / SR
    assert {"PP", "FF", "SS", "aa", "U"} <= {s.viseme for s in speech}  # "...formal review of..."
    drv = RuleVisemeDriver(RuleDriverConfig(mode="phonetic", blinks=False))
    assert drv.mode == "phonetic"
    d = drv.drive(wav, FPS)
    jaw = d.expression[:, JAW].numpy()
    assert np.corrcoef(jaw, energy_envelope_db(wav, len(d)))[0, 1] >= 0.6
    assert d.expression[:, EXPRESSION_INDEX["mouthPucker"]].max() > 0.2  # rounding from /uw/ in "review"
