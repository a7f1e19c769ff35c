"""Audio decoding: bundled clips, resampling accuracy, bad inputs, silence and clipping."""

from __future__ import annotations

import math
import warnings
from typing import Any

import imageio.v2 as iio
import numpy as np
import pytest
import soundfile as sf

from nerfhead.assets import asset_path
from nerfhead.audio.features import log_mel
from nerfhead.errors import InputError
from nerfhead.media.audio import AudioWarning, audio_stats, load_audio

# (file, duration in seconds from scenes/assets/*/SOURCE.md)
BUNDLED = [
    ("audio/en_ljspeech_LJ050-0131.wav", 7.66),
    ("audio/fleurs_en-001.ogg", 8.77),
    ("audio/fleurs_de-001.ogg", 11.17),
    ("audio/fleurs_es-002.ogg", 9.73),
    ("video_grid/grid_bbaf2n.mpg", 3.0),
    ("video_grid/grid_lrwp9a.mpg", 3.0),
    ("video_grid/grid_swiz3n.mpg", 3.0),
]
FRAME_S = 1.0 / 25.0


@pytest.mark.parametrize(("rel", "duration"), BUNDLED)
def test_bundled_clip_loads_mono_16k(rel, duration):
    with warnings.catch_warnings():
        warnings.simplefilter("error", AudioWarning)  # real speech: neither silent nor clipped
        wav, sr = load_audio(asset_path(rel))
    assert sr == 16000 and wav.dtype == np.float32 and wav.ndim == 1
    assert abs(wav.size / sr - duration) <= FRAME_S
    assert np.isfinite(wav).all() and 0.05 < np.abs(wav).max() <= 1.0
    assert audio_stats(wav, sr).rms > 0.01


def test_wav_sample_count_is_exact():
    wav, _ = load_audio(asset_path("audio/en_ljspeech_LJ050-0131.wav"))
    assert wav.size == math.ceil(168861 * 16000 / 22050)  # 22.05 kHz source, 168,861 samples


def _tone(freq, sr, seconds, amp=0.5, channels=2):
    t = np.arange(int(round(sr * seconds))) / sr
    x = amp * np.sin(2 * np.pi * freq * t)
    return np.stack([x] * channels, axis=1).astype(np.float32)


def test_sine_440_stereo_44k_resampled(tmp_path):
    path = tmp_path / "sine.wav"
    sf.write(path, _tone(440.0, 44100, 1.5), 44100, subtype="FLOAT")
    wav, sr = load_audio(path)
    assert wav.size == 24000  # 1.5 s at 16 kHz, exactly
    spec = np.abs(np.fft.rfft(wav * np.hanning(wav.size)))
    peak_hz = np.argmax(spec) * sr / wav.size
    assert abs(peak_hz - 440.0) < 1.0
    mid = wav[2000:-2000]  # away from the filter's edge transients
    assert abs(np.sqrt(np.mean(mid**2)) - 0.5 / math.sqrt(2)) < 2e-3


def test_resampler_filters_aliases(tmp_path):
    """A 10 kHz tone is above the 8 kHz Nyquist of 16 kHz: a proper filter removes it, decimation would fold
    it to 6 kHz."""
    path = tmp_path / "hf.wav"
    sf.write(path, _tone(10000.0, 44100, 1.0), 44100, subtype="FLOAT")
    wav, _ = load_audio(path)
    assert np.sqrt(np.mean(wav[1000:-1000] ** 2)) < 0.01 * (0.5 / math.sqrt(2))


def _expect_input_error(path, words):
    with pytest.raises(InputError) as e:
        load_audio(path)
    assert e.value.path == str(path) and str(path) in str(e.value)
    assert any(w in e.value.what for w in words), e.value.what
    return e.value


def test_missing_file(tmp_path):
    _expect_input_error(tmp_path / "nope.wav", ["not found"])


def test_text_renamed_wav(tmp_path):
    p = tmp_path / "notes.wav"
    p.write_text("this is not audio\n" * 50)
    _expect_input_error(p, ["not a readable"])


def test_zero_length_wav(tmp_path):
    p = tmp_path / "zero.wav"
    sf.write(p, np.zeros(0, np.float32), 16000)
    _expect_input_error(p, ["no samples", "zero-length"])
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    _expect_input_error(empty, ["empty"])


def test_video_without_audio(tmp_path):
    p = tmp_path / "silent_video.mp4"
    with iio.get_writer(p, fps=25, codec="libx264", macro_block_size=1) as w:
        for i in range(8):
            w.append_data(np.full((32, 32, 3), 30 * i, np.uint8))  # pyright: ignore[reportAttributeAccessIssue]
    _expect_input_error(p, ["no audio stream"])


def test_truncated_ogg(tmp_path):
    data = asset_path("audio/fleurs_en-001.ogg").read_bytes()
    p = tmp_path / "cut.ogg"
    p.write_bytes(data[: len(data) // 2])
    _expect_input_error(p, ["truncated"])
    head = tmp_path / "head.ogg"
    head.write_bytes(data[:300])
    _expect_input_error(head, ["not a readable", "truncated", "no samples"])


def test_corrupt_ogg(tmp_path):
    data = bytearray(asset_path("audio/fleurs_en-001.ogg").read_bytes())
    data[5000:9000] = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    p = tmp_path / "garbled.ogg"
    p.write_bytes(bytes(data))
    _expect_input_error(p, ["corrupt", "truncated"])


def test_truncated_wav(tmp_path):
    full = tmp_path / "full.wav"
    sf.write(full, _tone(300.0, 16000, 2.0, channels=1)[:, 0], 16000)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[:20000])  # header still claims 2 s
    _expect_input_error(cut, ["truncated"])


def test_silence_warns_and_features_stay_finite(tmp_path):
    p = tmp_path / "silence.wav"
    sf.write(p, np.zeros(16000, np.float32), 16000)
    with pytest.warns(AudioWarning, match="silent"):
        wav, sr = load_audio(p)
    stats = audio_stats(wav, sr)
    assert stats.rms == 0.0 and stats.peak == 0.0 and stats.duration_s == 1.0 and stats.silent
    f = log_mel(wav)
    assert f.shape == (101, 80) and bool(f.isfinite().all())
    assert float(f.max()) == pytest.approx(math.log(1e-10), abs=1e-4)


def test_clipping_warns_with_stats(tmp_path):
    x = np.clip(2.0 * _tone(200.0, 16000, 1.0, amp=1.0, channels=1)[:, 0], -1.0, 1.0)
    p = tmp_path / "clipped.wav"
    sf.write(p, x, 16000, subtype="FLOAT")
    with pytest.warns(AudioWarning, match="clipped"):
        wav, sr = load_audio(p)
    stats = audio_stats(x, 16000)
    # |2 sin| >= 0.999 for a third of each period: asin(0.4995)/(pi/2) = 0.333
    assert stats.clipped_fraction == pytest.approx(1 - 2 * math.asin(0.4995) / math.pi, abs=0.01)
    assert stats.peak == 1.0 and stats.clipped
    assert bool(log_mel(wav).isfinite().all())


def test_audio_stats_of_a_sine():
    x = _tone(440.0, 16000, 2.0, amp=0.5).T  # [2, S]
    s = audio_stats(x, 16000)
    assert s.channels == 2 and s.duration_s == 2.0 and s.clipped_fraction == 0.0
    assert s.rms == pytest.approx(0.5 / math.sqrt(2), rel=1e-3)
    assert s.peak == pytest.approx(0.5, abs=1e-3)
    assert s.rms_dbfs == pytest.approx(20 * math.log10(0.5 / math.sqrt(2)), abs=0.01)


def _encode(path, codec: str, rate: int = 44100) -> None:
    """Write 1 s of a 440 Hz stereo tone with PyAV's encoder ``codec``."""
    import av

    t = np.arange(rate) / rate
    x = (0.4 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    with av.open(str(path), "w") as c:
        s: Any = c.add_stream(codec, rate=rate)
        s.layout = "stereo"
        for i in range(0, rate, 1024):
            f = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(np.stack([x[i : i + 1024]] * 2)), format="fltp", layout="stereo"
            )
            f.sample_rate, f.pts = rate, i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)


@pytest.mark.parametrize(("suffix", "codec"), [("m4a", "aac"), ("mp3", "libmp3lame"), ("flac", "flac")])
def test_compressed_formats(tmp_path, suffix, codec):
    p = tmp_path / f"tone.{suffix}"
    _encode(p, codec)
    wav, sr = load_audio(p)
    assert abs(wav.size / sr - 1.0) <= FRAME_S  # encoder padding (AAC priming) stays under a video frame
    spec = np.abs(np.fft.rfft(wav * np.hanning(wav.size)))
    assert abs(np.argmax(spec) * sr / wav.size - 440.0) < 1.5
