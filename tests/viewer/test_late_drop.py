"""The late drop of the browser path (``SplatPusher(late_drop_s=...)``, ``ViewerConfig.live_late_drop_s``): a
live frame posed after its sound has played is not sent, but the picture does not freeze, and the hold margin
still learns what the dropped frames needed. No browser."""

from __future__ import annotations

import collections
import threading
import time
from types import SimpleNamespace

from nerfhead.data import Drive
from nerfhead.viewer.splats import LATE_GAP_S, SplatPusher
from tests.viewer.test_flow_control import G


def late_run(
    late_by: float, late_drop_s: float, seconds: float = 1.2
) -> tuple[SplatPusher, list[int], list[int]]:
    """A pusher whose every pose is ``late_by`` seconds past its hold's due time, a frame every 40 ms."""
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
    assert len(released) + len(late) >= 20 and pusher.stats.dropped_late == len(late) > 0
    # Sent: about one per LATE_GAP_S (the face keeps moving under load), the rest dropped and reported.
    assert 1.2 / LATE_GAP_S - 2 <= len(released) <= 1.2 / LATE_GAP_S + 3, (released, late)
    assert not set(released) & set(late)
    # On time (ready less than late_drop_s after the due time): every pose is sent.
    _p, on_time, none = late_run(0.01, 0.04, 0.6)
    assert none == [] and len(on_time) >= 10
    # The case that must differ: late_drop_s = 0 sends every late pose.
    _p, all_sent, none = late_run(0.1, 0.0, 0.6)
    assert none == [] and len(all_sent) >= 10


def test_dropped_frames_still_move_the_hold_margin():
    """The viewer's side: a dropped live frame is recorded and its need reaches the adaptive hold."""
    from nerfhead.viewer.live_speech import HoldMargin
    from nerfhead.viewer.server import ViewerServer
    from nerfhead.viewer.splats import Posed

    v = SimpleNamespace(
        _live_lock=threading.Lock(),
        _pending=collections.deque([(5, 100.0, 2.0, 100.2)]),  # version, arrival, t, produced
        _lookahead=0.25,
        hold_margin=HoldMargin(0.015, 0.07, warmup=1, step_up=1.0, step_down=1.0),
        live_dropped=collections.deque(),
    )
    v.hold_margin.observe(0.0)
    assert abs(v.hold_margin.value - 0.015) < 1e-9
    ViewerServer._dropped_late(v, Posed(6, G.centers.numpy(), 100.25, 100.35))  # type: ignore[arg-type]
    assert list(v.live_dropped) == [(2.0, 100.0, 100.35)]
    assert v.hold_margin.value > 0.06  # it needed 0.1 s past arrival + look-ahead: the margin rose to its top
    # The case that must differ: a pose of a version older than every pending frame records nothing.
    ViewerServer._dropped_late(v, Posed(4, G.centers.numpy(), 100.25, 100.35))  # type: ignore[arg-type]
    assert len(v.live_dropped) == 1
