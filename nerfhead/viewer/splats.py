"""Browser-side rendering of a splat head: the server poses the Gaussians, the page sorts and draws them.

:class:`SplatPusher` is one worker thread for all clients. Whenever the state changes (timeline frame, slider,
live speech frame) it poses the head's Gaussians for the current drive (``Renderable.gaussians_at``: world
centres, covariances, SH degree-0 colours, opacities) and hands them to viser's splat node
(``GaussianSplatHandle.set_gaussians``: 32 bytes per Gaussian), which every page draws on its own GPU at display
rate while its camera moves: camera moves cost the server nothing.

Only what changed is sent, and late frames are dropped, never queued:

- Gaussians the page would never draw (alpha byte below :data:`MIN_ALPHA_BYTE`) are left out of every update;

- the pusher always poses the *latest* state: changes that arrive while it works collapse into one update;
- posing (one thread) and sending (another) overlap, through a one-slot mailbox: a posed frame not yet taken
  by the sender is replaced by the next one;
- viser sends no message when a pose leaves the buffer unchanged, and an update still waiting in a client's
  outgoing buffer is replaced by a newer one for the same node (viser's redundancy keys), so a browser that is
  behind receives the newest pose, not a backlog;
- flow control per page (``clients`` given; :class:`PageGate`): each page has a splat node of its own and gets
  a pose only once it has drawn the one before (its page script acknowledges each Gaussian buffer it drew,
  :mod:`nerfhead.viewer.page_audio`), or ``ack_timeout_s`` after it was sent, and then the *newest* pose (a
  pose that came while the page was drawing replaces the one waiting for it: dropped, never queued; one that
  waited more than ``FRESH_S`` when the page finished waits up to ``PATIENCE_S`` for a newer one). A browser
  drawing on a GPU acknowledges within milliseconds and gets every pose; a slow page (software WebGL) is no
  longer sent buffers it would upload and sort but never show.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from nerfhead.data.drive import Drive
from nerfhead.ops._torch.pose_splats import alpha_bytes, pack_viser
from nerfhead.viewer.renderable import BrowserSplats

SPLAT_NODE = "/nerfhead/splats"
"""Scene node name of the browser-drawn head."""
BYTES_PER_GAUSSIAN = 32
"""viser's packed Gaussian: centre 3 x f32, 4 reserved bytes, covariance 6 x f16, RGBA 4 x u8."""


MIN_ALPHA_BYTE = 3
"""Gaussians whose packed alpha byte is below this are not sent: viser's fragment shader discards any
fragment with alpha x falloff < 0.01, and 2/255 < 0.01, so the page never draws them (5.7% of the demo avatar's
Gaussians). Opacities do not depend on the drive, so the set sent is the same from pose to pose."""


def pack_splats(g: BrowserSplats, min_alpha: int = 0) -> np.ndarray:
    """viser's [N, 8] uint32 Gaussian buffer (``GaussianSplatHandle.buffer``), built with torch: bit-identical
    to viser's own packing (tested) and several times faster (numpy's float16 conversion dominates there).

    Layout per Gaussian: centre 3 x float32, 4 reserved bytes (zero), covariance upper triangle 6 x float16,
    RGBA 4 x uint8 (``floor(255 x value)``, clipped, as viser does).

    Args:
        g: the Gaussians.
        min_alpha: leave out the Gaussians whose alpha byte is below this (the pusher uses
            :data:`MIN_ALPHA_BYTE`: those the page would never draw); 0 keeps all, in order.
    """
    packed = pack_viser(g.centers, g.covariances, g.rgbs, g.opacities)
    if min_alpha > 0:
        keep = alpha_bytes(g.opacities) >= min_alpha
        if not bool(keep.all()):
            packed = packed[keep]
    return packed.numpy().view(np.uint32)


def _new_node(scene: Any, n: int) -> Any:
    """An empty splat node of ``n`` Gaussians (:data:`SPLAT_NODE`) on a scene (server-wide or one page's)."""
    z3 = np.zeros((n, 3), np.float32)
    return scene.add_gaussian_splats(
        SPLAT_NODE, z3, np.zeros((n, 3, 3), np.float32), z3, np.zeros((n, 1), np.float32)
    )


@dataclass(frozen=True)
class Posed:
    """One posed state, waiting to be sent."""

    version: int
    """The state's change counter."""
    buffer: np.ndarray
    """viser's packed Gaussians (:func:`pack_splats`)."""
    started: float
    """``time.monotonic()`` when posing started."""
    posed: float
    """``time.monotonic()`` when the buffer was ready."""


@dataclass
class PushStats:
    """What the pusher measured."""

    updates: int = 0
    """Pose updates sent."""
    last_ms: float = 0.0
    """Server time of the last update (posing + packing + queueing), milliseconds."""
    rate: float = 0.0
    """Updates sent during the last second."""
    bytes: int = 0
    """Bytes of the last update's Gaussian buffer."""
    dropped: int = 0
    """Posed frames replaced by a newer one before the sender took them (changes that arrive while a pose is
    being computed are merged into the next pose and not counted)."""
    dropped_late: int = 0
    """Live frames not sent because they were posed more than ``late_drop_s`` past their hold's due time
    (the page has played their sound: drawn, they would be out of step with it)."""
    last_times: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    """``time.monotonic()`` of the last update's steps: posing started, posing done, released by the hold
    (or taken by the sender), handed to the websockets (flushed)."""


FRESH_S = 0.01
"""Flow control: a pose released at most this long ago goes to a page as soon as the page drew the last one."""
PATIENCE_S = 0.05
"""... an older one waits up to this much longer for a newer pose to replace it (then goes anyway)."""
LATE_GAP_S = 0.2
"""Late drop (``late_drop_s``): a late live frame is still sent when nothing was sent for this long (the picture
does not freeze under sustained load)."""


@dataclass
class PageGate:
    """Flow control of one page: at most one pose on its way to it, not yet drawn."""

    client: Any
    """viser's client handle (``client.scene``, ``client.flush``)."""
    handle: Any = None
    """The page's own splat node."""
    waiting: Posed | None = None
    """The newest pose not yet sent to this page (sent once it has drawn the one before, or at the timeout)."""
    waiting_since: float = 0.0
    """``time.monotonic()`` when ``waiting`` was released for the pages."""
    in_flight: float | None = None
    """``time.monotonic()`` when the pose not yet acknowledged was sent (None: the page has drawn all it got)."""
    last_version: int = -1
    """Version of the last pose sent to the page."""
    sent: int = 0
    """Poses sent to the page."""
    acks: int = 0
    """Draws the page acknowledged."""
    timeouts: int = 0
    """Poses sent without the page's acknowledgement of the one before (``ack_timeout_s`` passed)."""
    dropped: int = 0
    """Poses replaced by a newer one while they waited for the page."""
    log: deque[tuple[int, float]] | None = None
    """(version, ``time.monotonic()``) of the last poses sent to the page."""
    ready_by: float = 0.0
    """``time.monotonic()`` before which the page gets nothing until its page script says it is running
    (:meth:`SplatPusher.page_ready`): the script changes viser's splat shader as the page compiles it, so the
    page's splat node is made after it (a page whose script never runs gets its node at this time)."""

    def wait_left(self, now: float, timeout: float) -> float | None:
        """Seconds until the page gets the pose waiting for it (0: now; None: nothing waits). It gets it once
        it drew the last one, or ``timeout`` seconds after that was sent; a page that drew the last one while
        the waiting pose was already ``FRESH_S`` old waits up to ``PATIENCE_S`` for a newer one (live speech
        releases one per frame), so that it does not spend its next draw on a stale pose."""
        if self.waiting is None:
            return None
        if now < self.ready_by:
            return self.ready_by - now
        if timeout <= 0:
            return 0.0
        if self.in_flight is not None:
            return max(0.0, self.in_flight + timeout - now)
        age = now - self.waiting_since
        return FRESH_S + PATIENCE_S - age if FRESH_S <= age < FRESH_S + PATIENCE_S else 0.0


class SplatPusher:
    """Poses the head's Gaussians after every state change and sends them to the pages.

    Args:
        scene: viser's server-wide scene API (``ViserServer.scene``).
        pose: ``pose(drive) -> BrowserSplats`` (the renderable's ``gaussians_at``), or the packed buffer itself
            (``packed_at(drive, MIN_ALPHA_BYTE)``: [M, 8] uint32, the Gaussians the page would draw).
        current: ``current() -> (version, drive)``: the state's change counter and the drive to show.
        flush: pushes queued messages to the websockets at once (``ViserServer.flush``).
        on_sent: called after each update with the stats and the version sent.
        hold: ``hold(version)``: the ``time.monotonic()`` before which that state must not be sent, or None
            (live speech: every frame leaves a fixed time after its audio arrived, so the page can play the
            audio in step; :meth:`ViewerServer.live_hold`).
        per_page: flow control per page (:class:`PageGate`: pages are added with :meth:`add_page` and
            acknowledge draws with :meth:`ack`); False: one node on ``scene`` for all pages, every pose sent.
        ack_timeout_s: with ``per_page``, a page that has not acknowledged its last pose gets the next one after
            this long (0: every pose at once, no flow control).
        late_drop_s: a pose held by ``hold`` that is ready more than this many seconds after its due time is
            not sent (a live frame whose sound the page has already played), unless nothing was sent for
            :data:`LATE_GAP_S`; ``on_late(posed)`` is told of each (0: send every pose, however late).
    """

    def __init__(
        self,
        scene: Any,
        pose: Callable[[Drive], BrowserSplats],
        current: Callable[[], tuple[int, Drive]],
        flush: Callable[[], None] | None = None,
        on_sent: Callable[[PushStats, int], None] | None = None,
        hold: Callable[[int], float | None] | None = None,
        per_page: bool = False,
        ack_timeout_s: float = 1.0,
        on_page_sent: Callable[[int, int], None] | None = None,
        late_drop_s: float = 0.0,
        on_late: Callable[[Posed], None] | None = None,
    ):
        self._hold = hold
        self._on_page_sent = on_page_sent
        self.per_page = per_page
        self.ack_timeout_s = float(ack_timeout_s)
        self.late_drop_s = float(late_drop_s)
        self._on_late = on_late
        self._last_send_at = -1e9
        self.pages: dict[int, PageGate] = {}
        """Flow control of each page (``per_page``), by viser client id."""
        self.latest: Posed | None = None
        """The newest pose released for the pages."""
        self._pages_due = False
        self._scene, self._pose, self._current, self._flush, self._on_sent = (
            scene,
            pose,
            current,
            flush,
            on_sent,
        )
        self.stats = PushStats()
        self.handle: Any = None
        self._sent: deque[float] = deque()
        self._cond = threading.Condition()
        self._dirty = False
        self._stopping = False
        self._mailbox: Posed | None = None
        self._send_lock = threading.Lock()
        self._last_version = -1
        self._poser = threading.Thread(target=self._pose_loop, name="nerfhead-splat-pose", daemon=True)
        self._sender = threading.Thread(target=self._send_loop, name="nerfhead-splat-send", daemon=True)

    def start(self) -> SplatPusher:
        self._poser.start()
        self._sender.start()
        self.invalidate()
        return self

    def invalidate(self) -> None:
        """Something changed: pose and send the newest state (once, however many calls come meanwhile)."""
        with self._cond:
            self._dirty = True
            self._cond.notify_all()

    def stop(self, timeout: float = 10.0) -> None:
        """End the threads and remove the splat node from the pages."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for t in (self._poser, self._sender):
            if t.is_alive() and threading.current_thread() is not t:
                t.join(timeout)
        with self._send_lock:
            handles = [self.handle] + [g.handle for g in self.pages.values()]
            for h in handles:
                if h is not None:
                    try:
                        h.remove()
                    except Exception:  # the server or the page may be gone already
                        pass
            self.handle = None
            for g in self.pages.values():
                g.handle = None

    @property
    def alive(self) -> bool:
        return self._poser.is_alive() or self._sender.is_alive()

    def _pose_loop(self) -> None:
        while True:
            with self._cond:
                while not (self._stopping or self._dirty):
                    self._cond.wait()
                if self._stopping:
                    return
                self._dirty = False
            try:
                posed = self.pose_now()
            except Exception:  # a failed pose must not end the pusher
                traceback.print_exc()
                continue
            with self._cond:
                if self._mailbox is not None:
                    self.stats.dropped += 1  # the sender never took it: a newer pose replaces it
                self._mailbox = posed
                self._cond.notify_all()

    def _send_loop(self) -> None:
        while True:
            with self._cond:
                while not (self._stopping or self._mailbox is not None or self._pages_due):
                    wait = self._next_timeout()
                    if wait == 0.0:  # a page's acknowledgement is overdue and a pose waits for it
                        break
                    self._cond.wait(wait)
                self._pages_due = False
                posed, self._mailbox = self._mailbox, None
                if self._stopping:
                    return
            if posed is None:  # an acknowledgement, a new page or a timeout: send what waits
                self._serve_pages()
                continue
            due = None if self._hold is None else self._hold(posed.version)  # not under _cond: takes locks
            now = time.monotonic()
            if (
                due is not None
                and self.late_drop_s > 0
                and now - due > self.late_drop_s
                and now - self._last_send_at < LATE_GAP_S
            ):
                self.stats.dropped_late += 1
                if self._on_late is not None:
                    self._on_late(posed)
                continue
            if due is not None:
                with self._cond:
                    while not self._stopping and time.monotonic() < due:
                        self._cond.wait(due - time.monotonic())
                    if self._stopping:
                        return
            try:
                self.send(posed, time.monotonic())
            except Exception:
                traceback.print_exc()

    def _next_timeout(self) -> float | None:
        """Seconds until the first page with a pose waiting may get it (None: none waits; 0: one may now).
        Called under ``_cond``."""
        if not self.per_page:
            return None
        now, best = time.monotonic(), None
        for gate in list(self.pages.values()):
            left = gate.wait_left(now, self.ack_timeout_s)
            if left is not None:
                best = left if best is None else min(best, left)
        return best

    def add_page(self, key: int, client: Any, ready_wait_s: float = 0.0) -> None:
        """A page connected (``per_page``): it gets the newest pose at once, or with ``ready_wait_s`` once its
        page script runs (:meth:`page_ready`) and at the latest that many seconds from now."""
        with self._cond:
            now = time.monotonic()
            gate = self.pages[key] = PageGate(client, log=deque(maxlen=2000), ready_by=now + ready_wait_s)
            gate.waiting, gate.waiting_since = self.latest, now
            self._pages_due = True
            self._cond.notify_all()

    def page_ready(self, key: int) -> None:
        """Page ``key``'s script runs (its shader fix is in place): it may get its splat node now."""
        with self._cond:
            gate = self.pages.get(key)
            if gate is not None and gate.ready_by > 0.0:
                gate.ready_by = 0.0
                self._pages_due = True
                self._cond.notify_all()

    def remove_page(self, key: int) -> None:
        with self._cond:
            self.pages.pop(key, None)

    def ack(self, key: int) -> None:
        """Page ``key`` drew a Gaussian buffer: it may get the next pose (the newest)."""
        with self._cond:
            gate = self.pages.get(key)
            if gate is None:
                return
            gate.acks += 1
            gate.in_flight = None
            if gate.waiting is not None:
                self._pages_due = True
                self._cond.notify_all()

    def _serve_pages(self, notify: bool = True) -> list[tuple[int, int]]:
        """Send each page that may get one the pose waiting for it (sender thread); returns (page, version)
        of each pose sent, and with ``notify`` tells ``on_page_sent`` of each at once."""
        now = time.monotonic()
        todo: list[tuple[PageGate, Posed]] = []
        keys: dict[int, int] = {}
        with self._cond:
            for key, gate in self.pages.items():
                keys[id(gate)] = key
                posed = gate.waiting
                if posed is not None and gate.wait_left(now, self.ack_timeout_s) == 0.0:
                    if gate.in_flight is not None:
                        gate.timeouts += 1
                    todo.append((gate, posed))
                    gate.waiting = None
                    gate.in_flight = now
        done: list[tuple[int, int]] = []
        for gate, posed in todo:
            with self._send_lock:
                if self._stopping:
                    return done
                scene = gate.client.scene
                if gate.handle is None:
                    gate.handle = _new_node(scene, len(posed.buffer))
                gate.handle.buffer = posed.buffer
                gate.client.flush()
                t = time.monotonic()
            gate.last_version = posed.version
            gate.sent += 1
            if gate.log is not None:
                gate.log.append((posed.version, t))
            done.append((keys[id(gate)], posed.version))
        if notify:
            self._notify_pages(done)
        return done

    def _notify_pages(self, done: list[tuple[int, int]]) -> None:
        if self._on_page_sent is not None:
            for key, version in done:
                self._on_page_sent(key, version)

    def pose_now(self) -> Posed:
        """Pose the current state."""
        t0 = time.monotonic()
        version, drive = self._current()
        posed = self._pose(drive)
        buffer = posed if isinstance(posed, np.ndarray) else pack_splats(posed, MIN_ALPHA_BYTE)
        return Posed(version, buffer, t0, time.monotonic())

    def send(self, posed: Posed, released: float | None = None) -> None:
        """Hand a posed buffer to viser (the splat node is made on the first call) and flush it out;
        ``released``: when the hold let it go (default: now)."""
        released = time.monotonic() if released is None else released
        version, buffer = posed.version, posed.buffer
        if self.per_page:
            with self._cond:
                self.latest = posed
                for gate in self.pages.values():
                    if gate.waiting is not None:
                        gate.dropped += 1  # the page is still drawing: the newer pose replaces it
                    gate.waiting, gate.waiting_since = posed, released
            done = self._serve_pages(notify=False)  # told after on_sent (which records the frame)
        else:
            done = []
            with self._send_lock:
                if self._stopping:
                    return
                if self.handle is None:
                    self.handle = _new_node(self._scene, len(buffer))
                self.handle.buffer = buffer
                if self._flush is not None:
                    self._flush()
            self.latest = posed
        now = time.monotonic()
        self._last_send_at = now
        self._sent.append(now)
        while self._sent and self._sent[0] < now - 1.0:
            self._sent.popleft()
        s = self.stats
        s.updates += 1
        s.last_ms = 1000 * (posed.posed - posed.started)
        s.last_times = (posed.started, posed.posed, released, now)
        s.rate = float(len(self._sent))
        s.bytes = int(buffer.nbytes)
        self._last_version = version
        if self._on_sent is not None:
            self._on_sent(s, version)
        self._notify_pages(done)

    def push_now(self) -> int:
        """Pose and send the current state in the calling thread (tests and benchmarks); returns its version."""
        posed = self.pose_now()
        self.send(posed)
        return posed.version
