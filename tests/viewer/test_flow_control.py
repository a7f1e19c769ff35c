"""Flow control of the browser path (``nerfhead.viewer.splats.PageGate``): a page gets a new pose only once it
has drawn the one before (or after the timeout), and then the newest one; each page at its own speed.

No browser: the pages are stand-ins whose ``flush`` records what was sent and, for a fast page, acknowledges at
once (a browser drawing on a GPU); the socket path of the acknowledgement (page script -> ``PageAudio`` ->
``SplatPusher.ack``) is checked with a websocket client speaking the page's messages.
"""

from __future__ import annotations

import math
import time
from types import SimpleNamespace
from typing import Any, cast

import torch

from nerfhead.data import Drive
from nerfhead.viewer.page_audio import PageAudio, page_html
from nerfhead.viewer.renderable import BrowserSplats
from nerfhead.viewer.splats import SplatPusher
from tests.viewer.test_server import wait_for

G = BrowserSplats(torch.zeros(4, 3), torch.eye(3).expand(4, 3, 3).clone(), torch.ones(4, 3), torch.ones(4, 1))


class FakePage:
    """A viser client stand-in: its own scene node; ``flush`` logs the version of the buffer sent."""

    def __init__(self, key: int, state: dict[str, int], pusher: list[SplatPusher], fast: bool):
        self.key, self.fast, self._pusher = key, fast, pusher
        self.got: list[int] = []
        self.times: list[float] = []
        self._state = state
        node = SimpleNamespace(buffer=None, remove=lambda: None)
        self.scene = SimpleNamespace(add_gaussian_splats=lambda *_a: node)
        self.node = node

    def flush(self) -> None:
        self.got.append(int(self.node.buffer[0, 3]))  # the version, written into the reserved word
        self.times.append(time.monotonic())
        if self.fast:
            self._pusher[0].ack(self.key)  # drawn at once


def run_pages(timeout_s: float, seconds: float) -> tuple[SplatPusher, FakePage, FakePage, list[int]]:
    """A pusher with a fast and a never-acknowledging page, the state changing at 100 Hz for ``seconds``;
    ``pusher.told`` holds what ``on_page_sent`` was told: page -> versions."""
    state = {"version": 0}
    holder: list[SplatPusher] = []
    released: list[int] = []
    told: dict[int, list[int]] = {1: [], 2: []}

    def pose(_d: Drive) -> BrowserSplats:
        return G

    def current() -> tuple[int, Drive]:
        return state["version"], Drive.neutral(1)

    pusher = SplatPusher(
        SimpleNamespace(),
        pose,
        current,
        on_sent=lambda _s, v: released.append(v),
        per_page=True,
        ack_timeout_s=timeout_s,
        on_page_sent=lambda page, v: told[page].append(v),
    )
    pusher.told = told  # type: ignore[attr-defined]
    real_pose_now = pusher.pose_now

    def stamped() -> Any:  # write the version into each buffer's reserved word, so a page knows what it got
        p = real_pose_now()
        p.buffer[:, 3] = p.version
        return p

    pusher.pose_now = stamped  # type: ignore[method-assign]
    holder.append(pusher)
    fast, slow = FakePage(1, state, holder, True), FakePage(2, state, holder, False)
    pusher.add_page(1, fast)
    pusher.add_page(2, slow)
    pusher.start()
    try:
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            state["version"] += 1
            pusher.invalidate()
            time.sleep(0.01)
        wait_for(lambda: released and released[-1] == state["version"], 10, "the newest pose released")
        time.sleep(timeout_s + 0.3)  # the slow page's timeout passes once more
    finally:
        pusher.stop()
    return pusher, fast, slow, released


def test_fast_page_gets_every_pose_and_a_silent_page_one_per_timeout():
    timeout = 0.4
    seconds = 1.6
    pusher, fast, slow, released = run_pages(timeout, seconds)
    # The fast page (acknowledges each draw at once) got every pose the pusher released, in order, none dropped.
    assert fast.got == released and pusher.pages[1].dropped == 0, (fast.got, released)
    assert len(released) > 20  # the state changed at 100 Hz; the pusher releases what it can pose
    # The page that never acknowledges: the first pose at once, then at most one per timeout.
    assert pusher.pages[2].acks == 0
    gaps = [b - a for a, b in zip(slow.times, slow.times[1:], strict=False)]
    assert gaps and min(gaps) >= timeout - 0.02, gaps
    assert len(slow.got) <= 1 + math.ceil((seconds + timeout + 0.3) / timeout) + 1, slow.got
    assert len(slow.got) >= 2  # the timeout does let poses through
    # ... and what it got is always the newest pose: the last one is the final state, never a backlog.
    assert slow.got[-1] == released[-1] and slow.got == sorted(slow.got)
    assert pusher.pages[2].dropped > 10 and pusher.pages[2].timeouts == len(slow.got) - 1
    # Each page is told of exactly the poses it got (its frame markers follow them), not of every pose released.
    told: dict[int, list[int]] = pusher.told  # type: ignore[attr-defined]
    assert told[1] == fast.got and told[2] == slow.got and told[2] != released


def test_without_flow_control_every_page_gets_every_pose():
    """The case that must differ: with the timeout at 0 the silent page is sent every pose (the page that
    drowns the headless browser)."""
    pusher, fast, slow, released = run_pages(0.0, 0.6)
    assert slow.got == released and fast.got == released and len(released) > 10


def test_a_new_page_gets_its_node_once_its_script_runs():
    """A page added with ``ready_wait_s`` gets nothing until its script says it runs (``page_ready``: the shader
    fix is in place before the page compiles the splat shader), and at the latest after ``ready_wait_s``."""
    pusher = SplatPusher(SimpleNamespace(), lambda _d: G, lambda: (1, Drive.neutral(1)), per_page=True)
    holder = [pusher]
    state = {"version": 1}
    ready, late = FakePage(1, state, holder, True), FakePage(2, state, holder, True)
    pusher.add_page(1, ready, ready_wait_s=30.0)
    pusher.add_page(2, late, ready_wait_s=0.6)
    t0 = time.monotonic()
    pusher.start()
    try:
        wait_for(lambda: pusher.latest is not None, 10, "the first pose")
        time.sleep(0.2)
        assert ready.got == [] and late.got == []  # posed, but no page's script has said it runs
        pusher.page_ready(1)
        wait_for(lambda: len(ready.got) == 1, 5, "the pose for the page whose script runs")
        assert late.got == []
        wait_for(lambda: len(late.got) == 1, 5, "the pose for the silent page at its wait's end")
        assert time.monotonic() - t0 >= 0.6 - 0.02
    finally:
        pusher.stop()


def test_acknowledgement_over_the_page_socket():
    """The page script's messages ("H <client id>", then "D" per buffer drawn) reach ``on_draw`` with the
    page's viser client id; the script in the page's HTML element names that id and the socket's port."""
    import base64
    import re

    from websockets.sync.client import connect

    got: list[int] = []
    hello: list[int] = []
    audio = PageAudio("127.0.0.1", got.append, hello.append)
    try:
        html = page_html(audio.port, 7)
        code = base64.b64decode(re.search(r"atob\('([^']+)'\)", html).group(1)).decode()  # type: ignore[union-attr]
        assert f":{audio.port}" in code and '"H 7"' in code and 'postMessage("D")' in code
        assert code.index("__nerfheadShader") < code.index("new Worker")  # the shader fix runs first
        with connect(f"ws://127.0.0.1:{audio.port}") as ws:
            ws.send("D")  # before the hello: nobody to credit
            ws.send("H 7")
            ws.send("D")
            ws.send("D")
            wait_for(lambda: len(got) == 2, 5, "two acknowledgements")
        assert got == [7, 7] and hello == [7]
    finally:
        audio.close()


def test_frame_markers_go_to_the_page_named():
    """``PageAudio.send_frame(t, hold, page)`` reaches only the page that said it is viser client ``page``
    (the one the pose went to); without ``page`` every page gets it. Each marker carries its hold."""
    from websockets.sync.client import connect

    from nerfhead.viewer.page_audio import FRAME_MARKER

    audio = PageAudio("127.0.0.1")
    try:
        with connect(f"ws://127.0.0.1:{audio.port}") as a, connect(f"ws://127.0.0.1:{audio.port}") as b:
            a.send("H 1")
            b.send("H 2")
            wait_for(lambda: len(audio._page_of) == 2, 5, "both pages' hellos")
            audio.send_frame(0.5, 0.3, page=2)
            audio.send_frame(0.54, 0.29)
            got_b = [FRAME_MARKER.unpack(cast(bytes, b.recv(timeout=5))) for _ in range(2)]
            got_a = [FRAME_MARKER.unpack(cast(bytes, a.recv(timeout=5)))]
            try:
                extra = a.recv(timeout=0.3)
            except TimeoutError:
                extra = None
        assert got_b == [(b"F", 0.5, 0.3), (b"F", 0.54, 0.29)]
        assert got_a == [(b"F", 0.54, 0.29)] and extra is None  # page 1 never got page 2's marker
    finally:
        audio.close()


def test_page_that_drew_late_gets_the_next_pose_not_a_stale_one(monkeypatch: Any):
    """A page that finishes drawing after the waiting pose went stale (older than FRESH_S) gets the next pose
    released instead; with no newer pose it gets the stale one after PATIENCE_S (a slider that stopped)."""
    import nerfhead.viewer.splats as splats

    monkeypatch.setattr(splats, "PATIENCE_S", 0.5)  # wide, so that a loaded machine cannot blur the cases
    state = {"version": 0}
    holder: list[SplatPusher] = []
    pusher = SplatPusher(
        SimpleNamespace(), lambda _d: G, lambda: (state["version"], Drive.neutral(1)), per_page=True
    )
    real_pose_now = pusher.pose_now

    def stamped() -> Any:
        p = real_pose_now()
        p.buffer[:, 3] = p.version
        return p

    pusher.pose_now = stamped  # type: ignore[method-assign]
    holder.append(pusher)
    page = FakePage(1, state, holder, fast=False)
    pusher.add_page(1, page)
    pusher.start()
    try:
        wait_for(lambda: page.got == [0], 10, "the first pose")
        state["version"] = 1
        pusher.invalidate()
        wait_for(lambda: pusher.latest is not None and pusher.latest.version == 1, 10, "pose 1 released")
        time.sleep(0.05)  # pose 1 waits for the page and goes stale
        pusher.ack(1)
        time.sleep(0.1)
        assert page.got == [0]  # not the stale pose ...
        state["version"] = 2
        pusher.invalidate()
        wait_for(lambda: page.got == [0, 2], 10, "the next pose instead")  # ... the next one
        state["version"] = 3
        pusher.invalidate()
        wait_for(lambda: pusher.latest is not None and pusher.latest.version == 3, 10, "pose 3 released")
        time.sleep(0.05)
        t_ack = time.monotonic()
        pusher.ack(1)  # nothing newer comes: pose 3 goes after the patience
        wait_for(lambda: page.got == [0, 2, 3], 10, "the stale pose at last")
        assert page.times[-1] - t_ack >= 0.3
    finally:
        pusher.stop()
