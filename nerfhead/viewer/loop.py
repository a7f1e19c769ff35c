"""The per-client render loop: a worker thread that draws one browser view whenever something changed.

While changes keep coming (camera moves, slider drags, playback) the loop renders small; once nothing changed for
``debounce_s`` it renders once at full size. A render that raises is reported and the loop goes on.
"""

from __future__ import annotations

import math
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nerfhead.viewer.camera import ViewCamera, render_size


@dataclass
class RenderStats:
    """What one client's loop measured."""

    renders: int = 0
    """Images sent."""
    last_ms: float = 0.0
    """Duration of the last render (model + conversion), milliseconds."""
    fps: float = 0.0
    """Images sent during the last second."""
    size: tuple[int, int] = (0, 0)
    full: bool = False


class RenderLoop:
    """A worker thread that renders one client's view when it is dirty: small while things change, full size
    once they settle.

    Args:
        source: returns the client's current camera (or None when unknown yet).
        render: ``render(view, (width, height)) -> [H, W, 3] uint8``.
        sink: delivers an image to the client.
        max_side: longest image side at rest.
        moving_side: longest image side while changes keep coming.
        debounce_s: quiet time after the last interactive change before the full-size image.
        on_stats: called after every render with the loop's stats.
    """

    def __init__(
        self,
        source: Callable[[], ViewCamera | None],
        render: Callable[[ViewCamera, tuple[int, int]], np.ndarray],
        sink: Callable[[np.ndarray], None],
        max_side: int = 960,
        moving_side: int = 320,
        debounce_s: float = 0.2,
        on_stats: Callable[[RenderStats], None] | None = None,
    ):
        self._source, self._render, self._sink = source, render, sink
        self.max_side, self.moving_side, self.debounce_s = max_side, moving_side, debounce_s
        self._on_stats = on_stats
        self.stats = RenderStats()
        self.last_view: ViewCamera | None = None
        """The camera of the last image sent."""
        self._sent: deque[float] = deque()
        self._cond = threading.Condition()
        self._dirty = False
        self._last_change = -math.inf
        self._stopping = False
        self._busy = False
        self._thread = threading.Thread(target=self._run, name="nerfhead-render", daemon=True)

    def start(self) -> RenderLoop:
        self._thread.start()
        return self

    def invalidate(self, interactive: bool = False) -> None:
        """Ask for a new image; ``interactive`` changes render small until they settle."""
        with self._cond:
            self._dirty = True
            if interactive:
                self._last_change = time.monotonic()
            self._cond.notify()

    def stop(self, timeout: float = 10.0) -> None:
        """End the thread (after the render in progress, if any)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def settled(self) -> bool:
        """Nothing left to draw: the last image is full size and no change is pending."""
        with self._cond:
            quiet = time.monotonic() - self._last_change >= self.debounce_s
            idle = not (self._dirty or self._busy)
            return quiet and idle and self.stats.full and self.stats.renders > 0

    def _run(self) -> None:
        full_pending = False
        debounce = self.debounce_s
        while True:
            with self._cond:
                while not (self._stopping or self._dirty or full_pending):
                    self._cond.wait()
                if not (self._stopping or self._dirty):
                    self._cond.wait(timeout=max(0.0, self._last_change + debounce - time.monotonic()))
                if self._stopping:
                    return
                dirty, self._dirty = self._dirty, False
                moving = time.monotonic() - self._last_change < debounce
                draw = dirty or (full_pending and not moving)
                self._busy = draw
            if draw:
                try:
                    self._draw(full=not moving)
                except Exception:  # a failed render must not end the client's loop
                    traceback.print_exc()
                finally:
                    with self._cond:
                        self._busy = False
                full_pending = moving

    def _draw(self, full: bool) -> None:
        view = self._source()
        if view is None:
            return
        side = self.max_side if full else self.moving_side
        size = render_size(view.width, view.height, side)
        t0 = time.perf_counter()
        image = self._render(view, size)
        ms = 1000 * (time.perf_counter() - t0)
        if self._stopping:
            return
        self._sink(image)
        self.last_view = view
        now = time.monotonic()
        self._sent.append(now)
        while self._sent and self._sent[0] < now - 1.0:
            self._sent.popleft()
        s = self.stats
        s.renders, s.last_ms, s.size, s.full, s.fps = s.renders + 1, ms, size, full, float(len(self._sent))
        if self._on_stats is not None:
            self._on_stats(s)
