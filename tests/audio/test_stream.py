"""Streaming driver: same frames as the offline driver after its look-ahead, bounded state, cost per chunk."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from nerfhead.assets import asset_path
from nerfhead.audio.driver import AudioStreamDriver, RuleDriverConfig, RuleVisemeDriver
from nerfhead.data.expressions import EXPRESSION_INDEX
from nerfhead.media.audio import load_audio
from tests.audio.streaming import stream_clip

SR = 16000


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return load_audio(asset_path("audio/fleurs_en-001.ogg"))[0]


def _stream(wav, fps, chunk, cfg):
    return stream_clip(AudioStreamDriver(fps, cfg), wav, fps, chunk, SR)


@pytest.mark.parametrize(("fps", "chunk"), [(25.0, 640), (29.97, 320), (60.0, 480)])
def test_stream_matches_offline(speech, fps, chunk):
    cfg = RuleDriverConfig(mode="energy", head_motion=0.05)
    offline = RuleVisemeDriver(cfg).drive(speech, fps)
    online, delays, drv = _stream(speech, fps, chunk, cfg)
    assert len(online) == len(offline) and online.fps == offline.fps
    assert all(len(d) == 1 for d in [online[0], online[-1]])
    torch.testing.assert_close(online.expression, offline.expression, atol=1e-5, rtol=0)
    torch.testing.assert_close(online.rotation, offline.rotation, atol=1e-6, rtol=0)
    assert (
        float(offline.expression[:, EXPRESSION_INDEX["jawOpen"]].max()) > 0.3
    )  # it is speech, not a flat line
    # look-ahead: each frame left as soon as audio reached latency_s past it (up to one chunk), <= 0.5 s
    assert drv.latency_s <= 0.5
    assert delays.max() <= drv.latency_s + chunk / SR + 1e-9
    assert delays.min() >= drv.latency_s - 1.0 / fps - 1e-9


def test_stream_state_is_bounded(speech):
    drv = AudioStreamDriver(25.0)
    long = np.tile(speech, 3)  # ~26 s
    n = 0
    for i in range(0, long.size, 640):
        n += len(drv.push(long[i : i + 640]))
        assert drv._mel._buf.size < 512
        assert drv._desc.shape[0] <= drv._past + drv._future + 8
        assert drv._curves.shape[0] <= 8
    n += len(drv.flush())
    assert n == int(np.ceil(long.size / SR * 25.0))


def test_stream_rejects_misuse():
    with pytest.raises(ValueError, match="energy"):
        AudioStreamDriver(25.0, RuleDriverConfig(mode="phonetic"))
    drv = AudioStreamDriver(25.0)
    drv.push(np.zeros(640, np.float32))
    drv.flush()
    assert drv.flush() == []
    with pytest.raises(RuntimeError):
        drv.push(np.zeros(640, np.float32))


def test_stream_cost_per_40ms_chunk(speech):
    """CPU time (not wall time: the test machine is shared) of one push of 40 ms."""
    drv = AudioStreamDriver(25.0)
    cpu = []
    for i in range(0, 5 * SR, 640):
        t = time.process_time()
        drv.push(speech[i : i + 640])
        cpu.append(time.process_time() - t)
    assert np.median(cpu) * 1e3 < 10.0
