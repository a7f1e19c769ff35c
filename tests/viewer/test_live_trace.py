"""The steps of every live speech frame on the browser path (``ViewerServer.live_trace``): audio arrival, the
driver's frame, posing, the hold, the hand-off to the websocket, in order and timed on one clock; the hold sets
when a frame leaves."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from nerfhead.data.drive import Drive
from nerfhead.models.deform import DeformConfig
from nerfhead.models.splat_head import SplatHead, SplatHeadConfig
from nerfhead.viewer import AvatarRenderable, ViewerConfig, ViewerServer
from nerfhead.viewer.live_speech import PipeSource, feed_pipe
from tests.viewer.test_live_speech import pcm

SECONDS = 2.0


def _small_head() -> AvatarRenderable:
    cfg = SplatHeadConfig(
        parts=("eyeball_left", "teeth"), sh_degree=0, deform=DeformConfig(enabled=False), backend="torch"
    )
    return AvatarRenderable(SplatHead(cfg), Drive.neutral(2))


def _stream(v: ViewerServer) -> None:
    r, w = os.pipe()
    writer = feed_pipe(w, pcm(SECONDS))
    live = v.start_speech_stream(PipeSource(os.fdopen(r, "rb"), 16000))
    writer.join(SECONDS + 20)
    deadline = time.monotonic() + 20
    while live.running and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert not live.running and live.error is None


@pytest.mark.parametrize("lo", [0.015, 0.07])
def test_live_trace_orders_and_times_every_step(tmp_path: Path, lo: float):
    """With the adaptive hold (lo < hi) a fast pose (this small head: a few ms) brings the margin down from
    0.07 s; with lo = hi (the case that must fail that) it stays at 0.07 s. Either way every frame leaves at its
    own hold."""
    margin = 0.07
    v = ViewerServer(
        _small_head(),
        tmp_path,
        ViewerConfig(port=0, render="browser", live_margin_s=margin, live_margin_min_s=lo, page_audio=False),
    ).start()
    try:
        _stream(v)
        trace = list(v.live_trace)
    finally:
        v.stop()
    assert len(trace) >= 0.6 * SECONDS * v.state.fps  # most frames left (a late one is replaced by the next)
    look_ahead = v._lookahead
    assert abs(look_ahead - 0.251) < 0.01  # the network's look-ahead
    holds = np.asarray([tr.hold for tr in trace])
    assert (holds >= look_ahead + lo - 1e-9).all() and (holds <= look_ahead + margin + 1e-9).all()
    if lo < margin:  # fast poses: the margin comes down (by <= 2 ms per pose once 10 poses were timed)
        assert holds[-1] < look_ahead + margin - 0.005 and holds[0] > holds[-1]
    else:
        np.testing.assert_allclose(holds, look_ahead + margin, atol=1e-12)
    for tr in trace:
        delay = tr.hold
        assert tr.arrival <= tr.produced <= tr.posed and tr.pose_started <= tr.posed <= tr.released <= tr.sent
        if tr.t < SECONDS - 0.3:  # (the last frames come when the stream ends, without their look-ahead)
            assert tr.produced - tr.arrival > 0.2  # the driver waits for its look-ahead
        assert tr.released >= min(tr.arrival + delay, tr.posed) - 1e-3  # held until due, unless posed late
        assert tr.nbytes == 32 * len(v.renderable.avatar.splats)  # type: ignore[attr-defined]
    t = np.asarray([tr.t for tr in trace])
    assert (np.diff(t) > 0).all()
    # The hold sets when a frame leaves: on time, at its due time give or take a few ms.
    on_time = [tr.released - tr.arrival - tr.hold for tr in trace if tr.posed < tr.arrival + tr.hold]
    assert len(on_time) >= 0.5 * len(trace) and abs(float(np.median(on_time))) < 0.01
    # The latency in the Stats panel is the trace's arrival to hand-off.
    lat = np.asarray([tr.sent - tr.arrival for tr in trace])
    np.testing.assert_allclose(np.asarray(list(v.latencies))[-len(lat) :], lat, atol=1e-3)
