"""AudioToDrive: shapes, bounds, batching, level invariance, file round trip, the bundled prior on held-out
audio, and fine-tuning on a tiny synthetic case."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nerfhead.audio.network import AudioToDrive, AudioToDriveConfig, load_network, windows_at
from nerfhead.audio.speech import audio_features, prior_path
from nerfhead.audio.train import FinetuneConfig, finetune, pearson, rule_targets
from nerfhead.data.expressions import EXPRESSION_INDEX
from nerfhead.errors import InputError

REPO = Path(__file__).resolve().parents[2]
JAW = EXPRESSION_INDEX["jawOpen"]


def _speechlike(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 48, 80, generator=g) * 2.0 - 14.0


def test_shapes_bounds_and_batching():
    torch.manual_seed(0)
    net = AudioToDrive(AudioToDriveConfig(max_rotation=0.1)).eval()
    x = _speechlike(6)
    with torch.no_grad():
        expr, rot = net(x)
    assert expr.shape == (6, 53) and rot.shape == (6, 3)
    assert float(expr.min()) > 0.0 and float(expr.max()) < 1.0
    assert float(rot.abs().max()) < 0.1
    # batch-capable: each sample's output does not depend on the others in the batch
    one = torch.cat([net.predict(x[i : i + 1])[0] for i in range(6)])
    torch.testing.assert_close(one, expr, atol=1e-5, rtol=1e-5)
    # predict() chunks without changing the numbers
    p, _ = net.predict(x, batch=4)
    torch.testing.assert_close(p, expr, atol=1e-5, rtol=1e-5)
    # a gain change adds a constant to log-mel: the level normalisation removes it
    torch.testing.assert_close(net.predict(x + 1.5)[0], expr, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="windows must be"):
        net(torch.zeros(2, 40, 80))


def test_phonetic_config_widens_input_and_window_is_configurable():
    cfg = AudioToDriveConfig(phonetic=True, window=32)
    net = AudioToDrive(cfg).eval()
    assert cfg.in_dim == 95 and math.isclose(cfg.look_ahead_s, 0.16)
    expr, _ = net(torch.cat([_speechlike(3)[:, :32], torch.zeros(3, 32, 15)], dim=2))
    assert expr.shape == (3, 53)
    with pytest.raises(ValueError, match="multiple of 4"):
        AudioToDrive(AudioToDriveConfig(window=30))


def test_windows_at_centres_and_edges():
    f = torch.arange(10, dtype=torch.float32)[:, None].expand(10, 2)
    w = windows_at(f, torch.tensor([0.0, 4.4, 9.0]), 4)
    assert w.shape == (3, 4, 2)
    assert w[0, :, 0].tolist() == [0, 0, 0, 1]  # centre at index W // 2, left edge repeated
    assert w[1, :, 0].tolist() == [2, 3, 4, 5]
    assert w[2, :, 0].tolist() == [7, 8, 9, 9]


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(1)
    net = AudioToDrive(AudioToDriveConfig(width=32, layers=1)).eval()
    p = net.save(tmp_path / "n.safetensors", {"note": "x"})
    back = load_network(p)
    x = _speechlike(3)
    torch.testing.assert_close(back(x)[0], net(x)[0])
    assert back.config == net.config and back.network_info == {"note": "x"}
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a tensor file")
    with pytest.raises(InputError, match="safetensors"):
        load_network(bad)
    with pytest.raises(InputError, match="not found"):
        load_network(tmp_path / "missing.safetensors")


def test_bundled_prior_is_small_and_follows_rules_on_held_out_audio():
    from nerfhead.media.audio import load_audio

    path = prior_path(False)
    assert path.is_file() and path.stat().st_size < 2_000_000
    net = load_network(path)
    wav, _ = load_audio(REPO / "scenes/assets/audio/fleurs_de-001.ogg", 16000, warn=False)
    feats = audio_features(wav, net.config)
    target = rule_targets(wav)
    n = min(feats.shape[0], target.shape[0])
    held = torch.arange(int(round(n * 0.8)), n)  # the prior never trained on the last 20% of any clip
    pred, _ = net.predict(windows_at(feats, held, net.config.window))
    r = pearson(pred[:, JAW], target[held.numpy(), JAW])
    assert r > 0.7, r
    err = float(np.mean(np.abs(pred[:, JAW].numpy() - target[held.numpy(), JAW])))
    assert err < 0.1, err


def test_finetuning_lowers_held_out_error():
    """Tone bursts whose loudness sets the target jawOpen and whose presence sets a constant smile: the prior
    knows neither mapping's scale; fine-tuning on the first 70% must cut the error on the last 30%."""
    sr, fps, seconds = 16000, 25.0, 6.0
    t = np.arange(int(sr * seconds)) / sr
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 1.3 * t) * np.sin(2 * np.pi * 0.37 * t)
    wav = (0.3 * env * np.sin(2 * np.pi * 300 * t) * (1 + 0.5 * np.sin(2 * np.pi * 7 * t))).astype(np.float32)
    frames = np.arange(int(seconds * fps))
    tf = frames / fps
    envf = 0.5 + 0.5 * np.sin(2 * np.pi * 1.3 * tf) * np.sin(2 * np.pi * 0.37 * tf)
    target = torch.zeros(frames.size, 53)
    target[:, JAW] = torch.from_numpy(0.8 * envf).float()
    target[:, EXPRESSION_INDEX["mouthSmile_L"]] = 0.6
    net = load_network(prior_path(False))
    feats = audio_features(wav, net.config)
    centres = torch.from_numpy(tf * 100.0)
    split = int(0.7 * frames.size)
    test = slice(split, None)

    def err() -> float:
        p, _ = net.predict(windows_at(feats, centres[test], net.config.window))
        return float((p - target[test]).abs().mean())

    before = err()
    finetune(net, feats, centres[:split], target[:split], None, FinetuneConfig(steps=60, lr=2e-3))
    after = err()
    assert after < 0.6 * before, (before, after)


def test_network_driver_and_run_network_choice(tmp_path):
    """The learned driver turns a clip into a Drive whose jaw moves with the speech and rests in silence; the
    drive verb picks the run's fine-tuned network over the bundled prior."""
    from nerfhead.audio.speech import RUN_NETWORK, NetworkDriver, speech_network

    sr, fps = 16000, 25.0
    from nerfhead.media.audio import load_audio

    wav, _ = load_audio(REPO / "scenes/assets/audio/en_ljspeech_LJ050-0131.wav", sr, warn=False)
    clip = np.concatenate([np.zeros(sr, np.float32), wav[: 3 * sr]])  # 1 s silence, then 3 s of speech
    d = NetworkDriver(prior_path(False), blinks=False).drive(clip, fps=fps, sr=sr)
    assert len(d) == 100 and d.fps == fps
    e = d.expression
    assert float(e.min()) >= 0.0 and float(e.max()) <= 1.0
    jaw = e[:, JAW]
    assert float(jaw[:15].max()) < 0.05  # silence (the first 0.6 s, away from the look-ahead) stays closed
    assert float(jaw[25:].std()) > 0.05 and float(jaw[25:].max()) > 0.25  # speech opens and closes the jaw
    assert speech_network(tmp_path) == prior_path(False)
    AudioToDrive(AudioToDriveConfig(width=32, layers=1)).save(tmp_path / RUN_NETWORK)
    assert speech_network(tmp_path) == tmp_path / RUN_NETWORK
