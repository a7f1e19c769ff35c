"""Streaming learned driver: the same frames as the offline NetworkDriver, emitted within its look-ahead, with
bounded state."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nerfhead.assets import asset_path
from nerfhead.audio.network import AudioToDrive, AudioToDriveConfig, load_network
from nerfhead.audio.speech import NetworkDriver, prior_path
from nerfhead.audio.stream import NetworkStreamDriver
from nerfhead.data.drive import Drive
from nerfhead.data.expressions import EXPRESSION_INDEX
from nerfhead.media.audio import load_audio
from tests.audio.streaming import stream_clip

SR = 16000


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return load_audio(asset_path("audio/fleurs_en-001.ogg"))[0]


@pytest.fixture(scope="module")
def network() -> AudioToDrive:
    """The bundled prior with a non-zero rotation read-out, so head motion is compared too."""
    net = load_network(prior_path())
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        net.rotation.weight.copy_(torch.randn(net.rotation.weight.shape, generator=g) * 0.3)
    return net.eval()


def _stream(net, wav, fps, chunk):
    def bounded(drv):
        assert drv._feats.shape[0] <= net.config.window + chunk // 160 + 2

    return stream_clip(NetworkStreamDriver(net, fps), wav, fps, chunk, SR, bounded)


@pytest.mark.parametrize(("fps", "chunk"), [(25.0, 640), (29.97, 320), (60.0, 777)])
def test_network_stream_matches_offline(network, speech, fps, chunk):
    offline = NetworkDriver(network).drive(speech, fps)
    online, delays, drv = _stream(network, speech, fps, chunk)
    assert len(online) == len(offline) == int(np.ceil(speech.size / SR * fps - 1e-9))
    torch.testing.assert_close(online.expression, offline.expression, atol=1e-5, rtol=0)
    torch.testing.assert_close(online.rotation, offline.rotation, atol=1e-5, rtol=0)
    assert float(online.rotation.abs().max()) > 1e-3  # the head-motion read-out is exercised
    jaw = online.expression[:, EXPRESSION_INDEX["jawOpen"]]
    assert float(jaw.max()) > 0.3 and float(jaw.std()) > 0.05  # it talks
    # each frame leaves once audio reached latency_s past it (up to one chunk); the look-ahead is <= 0.5 s
    assert drv.latency_s <= 0.5
    assert delays.max() <= drv.latency_s + chunk / SR + 1e-9
    assert delays.min() >= drv.latency_s - 1.0 / fps - 0.01 - 1e-9


def test_network_stream_takes_other_rates(network, speech):
    """Chunks at 44.1 kHz are resampled per chunk: close to, not equal to, the offline frames."""
    from nerfhead.media.audio import resample

    wav44 = resample(speech[: 4 * SR], SR, 44100)
    drv = NetworkStreamDriver(network, 25.0, sr=44100)
    frames = [f for i in range(0, wav44.size, 1764) for f in drv.push(wav44[i : i + 1764])] + drv.flush()
    online = Drive.concat(frames)
    offline = NetworkDriver(network).drive(wav44, 25.0, sr=44100)
    assert len(online) == len(offline)
    jaw = EXPRESSION_INDEX["jawOpen"]
    assert float((online.expression[:, jaw] - offline.expression[:, jaw]).abs().mean()) < 0.02


def test_network_stream_rejects_misuse(network):
    with pytest.raises(ValueError, match="log-mel"):
        NetworkStreamDriver(AudioToDrive(AudioToDriveConfig(phonetic=True)), 25.0)
    with pytest.raises(ValueError, match="fps"):
        NetworkStreamDriver(network, 0.0)
    drv = NetworkStreamDriver(network, 25.0)
    assert drv.push(np.zeros(100, np.float32)) == []
    out = drv.flush()
    assert len(out) == 1 and drv.flush() == []  # 100 samples: one frame (t = 0)
    with pytest.raises(RuntimeError):
        drv.push(np.zeros(640, np.float32))


def test_network_stream_loads_a_file(speech):
    drv = NetworkStreamDriver(prior_path(), 25.0, blinks=False)
    frames = drv.push(speech[: 2 * SR]) + drv.flush()
    assert len(frames) == 50 and drv.frames_emitted == 50
    assert all(float(f.expression[0, EXPRESSION_INDEX["eyeBlink_L"]]) < 0.5 for f in frames)
