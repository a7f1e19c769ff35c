"""Pacing and the late drop of the browser path (``nerfhead.viewer.splats``): a page gets poses at most as often
as it draws them (never later than their release), and a live frame posed after its sound has played is not sent.

No browser: pages are stand-ins (``tests/viewer/test_flow_control.py``'s), acknowledging each pose after a set
draw time from a timer.
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

from nerfhead.data import Drive
from nerfhead.viewer.splats import (
    LATE_GAP_S,
    PACE_FRACTION,
    PACE_WARMUP,
    PATIENCE_S,
    PageGate,
    Posed,
    SplatPusher,
)
from tests.viewer.test_flow_control import FakePage, G
from tests.viewer.test_server import wait_for


def posed(version: int, at: float) -> Posed:
    return Posed(version, G.centers.numpy(), at, at)


def test_gate_interval_follows_the_pages_draw_time():
    gate = PageGate(None, pace=True)
    assert gate.interval() == 0.0  # nothing measured: every pose
    t = 100.0
    for _ in range(4):  # the page takes 0.5 s from a pose sent to its acknowledgement
        gate.on_sent(t)
        gate.on_sent(t + 0.1)  # a second send before the acknowledgement: timed from the first
        gate.on_ack(t + 0.5)
        t += 0.5
    assert abs(gate.interval() - PACE_FRACTION * 0.5) < 1e-9
    gate.on_sent(t)
    gate.waiting, gate.waiting_since = posed(1, t + 0.1), t + 0.1
    assert abs(gate.wait_left(t + 0.1, 0.0) - (PACE_FRACTION * 0.5 - 0.1)) < 1e-9  # too soon: it waits
    gate.waiting, gate.waiting_since = posed(2, t + 0.45), t + 0.45
    assert gate.wait_left(t + 0.45, 0.0) == 0.0  # released after the interval: at once, never later
    # A pose that came while the page was busy waits (up to PATIENCE_S) for a fresher one at the interval's end.
    gate.waiting, gate.waiting_since = posed(3, t + 0.37), t + 0.37
    left = gate.wait_left(t + 0.4, 0.0)
    assert left is not None and 0.0 < left <= PATIENCE_S
    # The case that must differ: the same page without pacing gets every pose at once.
    gate.pace = False
    gate.waiting, gate.waiting_since = posed(4, t + 0.1), t + 0.1
    assert gate.wait_left(t + 0.1, 0.0) == 0.0


class TimedPage(FakePage):
    """A page that acknowledges each pose ``draw_s`` after it got it (a page drawing in software, or on a GPU)."""

    def __init__(self, key: int, holder: list[SplatPusher], draw_s: float):
        super().__init__(key, {}, holder, fast=False)
        self.draw_s = draw_s
        self._busy = False

    def flush(self) -> None:
        super().flush()
        if not self._busy:  # draws the newest buffer it has when it is free again
            self._busy = True

            def done() -> None:
                self._busy = False
                self._pusher[0].ack(self.key)

            threading.Timer(self.draw_s, done).start()


def run(pace: bool, seconds: float = 2.5) -> tuple[SplatPusher, TimedPage, TimedPage, list[int], list[float]]:
    state = {"version": 0}
    holder: list[SplatPusher] = []
    released: list[int] = []
    release_t: list[float] = []

    def on_sent(_s: Any, v: int) -> None:
        released.append(v)
        release_t.append(time.monotonic())

    pusher = SplatPusher(
        SimpleNamespace(),
        lambda _d: G,
        lambda: (state["version"], Drive.neutral(1)),
        on_sent=on_sent,
        per_page=True,
        ack_timeout_s=0.0,
        pace=pace,
    )
    real = pusher.pose_now

    def stamped() -> Any:
        p = real()
        p.buffer[:, 3] = p.version
        return p

    pusher.pose_now = stamped  # type: ignore[method-assign]
    holder.append(pusher)
    gpu, slow = TimedPage(1, holder, 0.005), TimedPage(2, holder, 0.25)
    pusher.add_page(1, gpu)
    pusher.add_page(2, slow)
    pusher.start()
    try:
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:  # a live stream: a new frame every 40 ms
            state["version"] += 1
            pusher.invalidate()
            time.sleep(0.04)
        wait_for(lambda: released and released[-1] == state["version"], 10, "the newest pose released")
        time.sleep(0.4)
    finally:
        pusher.stop()
    return pusher, gpu, slow, released, release_t


def test_paced_slow_page_gets_its_draw_rate_and_a_fast_page_every_pose():
    pusher, gpu, slow, released, release_t = run(pace=True)
    assert len(released) >= 40
    assert gpu.got == released  # a page that draws within a frame is sent every pose
    # The slow page (0.25 s per draw) is sent every pose until PACE_WARMUP draws are timed, then about one per
    # 0.8 x 0.25 s, not one per 40 ms.
    warm = slow.times[0] + PACE_WARMUP * 0.25 + 0.1
    gaps = [b - a for a, b in zip(slow.times, slow.times[1:], strict=False) if a > warm]
    assert len(gaps) >= 4 and min(gaps) >= PACE_FRACTION * 0.25 - 0.01, gaps
    assert len(slow.got) < len(released) / 2, (slow.got, released)
    assert slow.got == sorted(slow.got) and slow.got[-1] == released[-1]  # newest first, the final state too
    # ... and while poses keep coming, none reached it later than PATIENCE_S (+ scheduling slack) after its
    # release; the final one (nothing newer came) at the end of the page's interval.
    when = dict(zip(released, release_t, strict=True))
    lags = [t - when[v] for v, t in zip(slow.got, slow.times, strict=True)]
    assert max(lags[:-1]) <= PATIENCE_S + 0.03, lags
    assert lags[-1] <= PACE_FRACTION * 0.25 + 0.03, lags


def test_unpaced_slow_page_gets_every_pose():
    """The case that must differ: without pacing the slow page is sent every pose (what drowned the page)."""
    _pusher, _gpu, slow, released, _t = run(pace=False, seconds=1.0)
    assert slow.got == released and len(released) >= 15


def late_run(
    late_by: float, late_drop_s: float, seconds: float = 1.2
) -> tuple[SplatPusher, list[int], list[int]]:
    """A pusher whose every pose is ``late_by`` seconds past its hold's due time."""
    state = {"version": 0}
    released: list[int] = []
    late: list[int] = []
    pusher = SplatPusher(
        SimpleNamespace(add_gaussian_splats=lambda *_a: SimpleNamespace(buffer=None, remove=lambda: None)),
        lambda _d: G,
        lambda: (state["version"], Drive.neutral(1)),
        on_sent=lambda _s, v: released.append(v),
        hold=lambda _v: time.monotonic() - late_by,
        late_drop_s=late_drop_s,
        on_late=lambda p: late.append(p.version),
    ).start()
    try:
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            state["version"] += 1
            pusher.invalidate()
            time.sleep(0.04)
        time.sleep(0.2)
    finally:
        pusher.stop()
    return pusher, released, late


def test_late_frames_are_dropped_but_the_picture_does_not_freeze():
    pusher, released, late = late_run(0.1, 0.04)
    n = len(released) + len(late)
    assert n >= 20 and pusher.stats.dropped_late == len(late) > 0
    # Sent: about one per LATE_GAP_S (the picture keeps moving), the rest dropped and reported.
    assert 1.2 / LATE_GAP_S - 2 <= len(released) <= 1.2 / LATE_GAP_S + 3, (released, late)
    assert sorted(released + late) == sorted(set(released + late))
    # On time (ready before the due time + late_drop_s): every pose is sent.
    _p, on_time, none = late_run(0.02, 0.04, 0.6)
    assert none == [] and len(on_time) >= 10
    # The case that must differ: late_drop_s = 0 sends every late pose.
    _p, all_sent, none = late_run(0.1, 0.0, 0.6)
    assert none == [] and len(all_sent) >= 10
