"""Log-mel front end: frame layout, streaming parity, alignment to video frames by timestamp."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nerfhead.audio.features import (
    LogMelConfig,
    StreamingLogMel,
    feature_times,
    frames_for_video,
    log_mel,
    mel_frequencies,
    resample_to_frames,
)

SR = 16000


def _impulse_at(t: float, seconds: float = 2.0) -> np.ndarray:
    x = np.zeros(int(seconds * SR), np.float32)
    x[int(round(t * SR))] = 1.0
    return x


def test_frame_count_and_times():
    cfg = LogMelConfig()
    assert cfg.frame_rate == 100.0
    for n in (0, 159, 160, 16000, 16123):
        assert log_mel(torch.zeros(n)).shape == (1 + n // 160, 80)
    assert torch.allclose(feature_times(5), torch.tensor([0.0, 0.01, 0.02, 0.03, 0.04], dtype=torch.float64))


def test_sine_lands_in_its_mel_band():
    t = np.arange(SR) / SR
    f = log_mel(0.5 * np.sin(2 * np.pi * 1000.0 * t))
    band = int(f[20:-20].mean(0).argmax())
    assert band == int(np.abs(mel_frequencies() - 1000.0).argmin())
    # window normalised to sum 1: the sine's power A^2/4 = 0.0625 spread over ~2 bands of peak weight <= 1
    assert -4.5 < float(f[20:-20, band].mean()) < float(np.log(0.0625)) + 0.01


def test_batched_equals_single():
    x = torch.randn(2, 8000, generator=torch.Generator().manual_seed(0)) * 0.1
    f = log_mel(x)
    assert f.shape == (2, 51, 80)
    torch.testing.assert_close(f[1], log_mel(x[1]))


@pytest.mark.parametrize("chunks", [[640], [320], [1, 17, 333, 640, 5]])
def test_streaming_equals_offline(chunks):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(SR) * np.linspace(0.01, 0.5, SR)).astype(np.float32)
    s = StreamingLogMel()
    out, i, k = [], 0, 0
    while i < x.size:
        n = chunks[k % len(chunks)]
        out.append(s.push(x[i : i + n]))
        i, k = i + n, k + 1
        assert s._buf.size < 512  # bounded state: never the whole history
    out.append(s.flush())
    got = np.concatenate(out)
    want = log_mel(x).numpy()
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 1e-3


def test_impulse_at_one_second_lands_on_frame_25_at_25fps():
    f = log_mel(_impulse_at(1.0))  # [201, 80]
    energy = f.exp().sum(-1)
    assert int(energy.argmax()) == 100  # feature frame centred at t = 1.00 s
    w = frames_for_video(f, fps=25.0, n_frames=50, k=2)  # [50, 5, 80]
    assert w.shape == (50, 5, 80)
    per_frame = w[:, 2].exp().sum(-1)
    assert int(per_frame.argmax()) == 25
    torch.testing.assert_close(w[25, 2], f[100])
    torch.testing.assert_close(w[25, 3], f[101])
    torch.testing.assert_close(w[25, 0], f[98])


@pytest.mark.parametrize(("fps", "frame"), [(30.0, 30), (29.97, 30), (24.0, 24), (60.0, 60)])
def test_alignment_by_timestamp_other_rates(fps, frame):
    f = log_mel(_impulse_at(1.0))
    w = frames_for_video(f, fps=fps, n_frames=int(2 * fps), k=1)
    assert int(w[:, 1].exp().sum(-1).argmax()) == frame


def test_alignment_with_video_offset():
    f = log_mel(_impulse_at(1.0))
    w = frames_for_video(f, fps=25.0, n_frames=40, k=0, t0=0.2)  # video frame 0 is at audio time 0.2 s
    assert int(w[:, 0].exp().sum(-1).argmax()) == 20


def test_frames_for_video_batch_and_edges():
    feats = torch.arange(2 * 30 * 3, dtype=torch.float32).reshape(2, 30, 3)  # 0.3 s of "features"
    w = frames_for_video(feats, fps=10.0, n_frames=5, k=2)  # frames at 0, .1, .2, .3, .4 s
    assert w.shape == (2, 5, 5, 3)
    torch.testing.assert_close(w[1], frames_for_video(feats[1], 10.0, 5, k=2))
    # frame 0 repeats feature 0 on its left; frames 3 and 4 lie past the end and hold feature 29
    assert torch.equal(w[0, 0, :, 0], torch.tensor([0.0, 0.0, 0.0, 3.0, 6.0]))
    assert torch.equal(w[0, 1, :, 0], torch.tensor([24.0, 27.0, 30.0, 33.0, 36.0]))
    assert torch.equal(w[0, 4, :, 0], torch.full((5,), 87.0))


def test_resample_to_frames_is_linear_in_time():
    ramp = torch.arange(200, dtype=torch.float64)[:, None]  # value = feature index
    got = resample_to_frames(ramp, fps=30.0, n_frames=50)
    want = torch.arange(50, dtype=torch.float64) / 30.0 * 100.0
    torch.testing.assert_close(got[:, 0], want)
    held = resample_to_frames(ramp[:10], fps=30.0, n_frames=5)  # past the end: the last value
    assert float(held[-1, 0]) == 9.0
