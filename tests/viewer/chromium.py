"""A headless Chromium driven over the DevTools protocol, for the viewer's browser tests.

Chromium runs with the flags that make viser draw with software WebGL (shared/reference/machine-notes.md) in a
process group of its own and a fresh profile folder; :meth:`Chromium.close` kills the group and removes the
folder. Pages are opened as tabs and screenshotted when the test decides (not at a fixed virtual time), so a
test can wait for the server's renders first.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from nerfhead.viewer.page_audio import WATCH_DRAWS

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
APT_LINE = "apt-get update && apt-get install -y chromium"

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-background-timer-throttling",  # tabs in the background keep drawing (one client each)
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    "--autoplay-policy=no-user-gesture-required",
    "--mute-audio",
)


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable, or None."""
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class Page:
    """One tab, spoken to over its DevTools websocket."""

    def __init__(self, ws_url: str, target_id: str):
        from websockets.sync.client import connect

        self.target_id = target_id
        self._ws_url = ws_url
        self._ws = connect(ws_url, max_size=None, open_timeout=30, ping_interval=None, close_timeout=1)
        self._id = 0

    def call(self, method: str, timeout: float = 60.0, **params: Any) -> dict[str, Any]:
        """Send a DevTools command and return its result (events in between are dropped)."""
        self._id += 1
        self._ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self._ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def add_init_script(self, source: str, reload: bool = True) -> None:
        """Run ``source`` in every document this tab loads, before the page's own scripts (and load the page
        again, so that it runs now)."""
        self.call("Page.enable")
        self.call("Page.addScriptToEvaluateOnNewDocument", source=source)
        if reload:
            self.call("Page.reload", ignoreCache=False)

    def evaluate(self, expression: str) -> Any:
        """Value of a JavaScript expression in the page."""
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return res.get("result", {}).get("value")

    def screenshot(self) -> np.ndarray:
        """[H, W, 3] uint8 of the viewport."""
        import imageio.v3 as iio

        data = self.call("Page.captureScreenshot", format="png")["data"]
        return np.asarray(iio.imread(base64.b64decode(data), extension=".png"))[..., :3]

    def close(self) -> None:
        try:
            self._ws.close()
        except Exception:
            pass


class Chromium:
    """A headless Chromium process with DevTools on a free local port.

    Args:
        executable: the browser binary.
        width, height: window size of every tab.
        nice: niceness added to the browser's processes (0: the caller's priority).
    """

    def __init__(self, executable: str, width: int = 1280, height: int = 800, nice: int = 0):
        self.profile = Path(tempfile.mkdtemp(prefix="nerfhead_chromium_"))
        cmd = [
            executable,
            *FLAGS,
            f"--user-data-dir={self.profile}",
            f"--window-size={width},{height}",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "about:blank",
        ]
        if nice:
            cmd = ["nice", "-n", str(int(nice)), *cmd]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        self.pages: list[Page] = []
        try:
            self.port = self._devtools_port(timeout=60.0)
        except BaseException:
            self.close()
            raise

    def _devtools_port(self, timeout: float) -> int:
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with code {self.proc.returncode}")
            if marker.is_file():
                lines = marker.read_text().split()
                if len(lines) >= 2:
                    self._browser_path = lines[1]
                    return int(lines[0])
            time.sleep(0.1)
        raise TimeoutError("chromium did not open its DevTools port")

    def _http(self, path: str, method: str = "GET") -> Any:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method)
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def open(self, url: str) -> Page:
        """A new tab showing ``url`` (the first call reuses the blank start tab)."""
        if not self.pages:
            tabs = [t for t in self._http("/json/list") if t.get("type") == "page"]
            page = Page(tabs[0]["webSocketDebuggerUrl"], tabs[0]["id"])
            page.navigate(url)
        else:  # a window of its own: a hidden background tab would not draw, so viser would not connect it
            browser = Page(f"ws://127.0.0.1:{self.port}{self._browser_path}", "browser")
            try:
                target = browser.call("Target.createTarget", url=url, newWindow=True)["targetId"]
            finally:
                browser.close()
            t = next(t for t in self._http("/json/list") if t["id"] == target)
            page = Page(t["webSocketDebuggerUrl"], t["id"])
        self.pages.append(page)
        return page

    def close(self) -> None:
        """Kill the browser's whole process group and remove its profile folder."""
        for p in self.pages:
            p.close()
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=3)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers (renderer, GPU processes)
        except ProcessLookupError:
            pass
        if self.proc.poll() is None:
            self.proc.wait(timeout=10)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Attached:
    """A DevTools connection to a page that attaches to the page's workers (auto-attach, flat sessions) and
    handles their events in a thread of its own (:meth:`_handle`); replies to :meth:`_send` are kept."""

    def __init__(self, ws_url: str, pause_workers: bool):
        from websockets.sync.client import connect

        self._ws = connect(ws_url, max_size=None, ping_interval=None, close_timeout=1)
        self._id = 0
        self._replies: dict[int, Any] = {}
        self._cv = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._send(
            "Target.setAutoAttach", autoAttach=True, waitForDebuggerOnStart=pause_workers, flatten=True
        )

    def _send(self, method: str, session: str | None = None, **params: Any) -> int:
        with self._cv:
            self._id += 1
            i = self._id
        msg: dict[str, Any] = {"id": i, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        self._ws.send(json.dumps(msg))
        return i

    def _call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        i = self._send(method, session, **params)
        with self._cv:
            self._cv.wait_for(lambda: i in self._replies, timeout=30)
            return self._replies.pop(i, {})

    def _handle(self, msg: dict[str, Any]) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                msg = json.loads(self._ws.recv(timeout=0.5))
            except TimeoutError:
                continue
            except Exception:
                return
            if "id" in msg and "method" not in msg:
                with self._cv:
                    self._replies[int(msg["id"])] = msg
                    self._cv.notify_all()
            else:
                self._handle(msg)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._ws.close()


class FrameLog(_Attached):
    """Times (``time.monotonic`` clock: Chromium's DevTools timestamps are CLOCK_MONOTONIC seconds on Linux) at
    which the page received websocket frames larger than ``min_bytes``. viser's page talks to the server from a
    Web Worker, so this attaches to the page's workers over a DevTools connection of its own and listens to
    ``Network.webSocketFrameReceived`` there."""

    def __init__(self, ws_url: str, min_bytes: int):
        self.min_chars = int(min_bytes * 4 / 3)  # binary payloads arrive base64-encoded
        self.times: list[float] = []
        super().__init__(ws_url, pause_workers=False)

    def _handle(self, msg: dict[str, Any]) -> None:
        method = msg.get("method")
        if method == "Target.attachedToTarget":
            self._send("Network.enable", msg["params"]["sessionId"])
            self._send("Runtime.runIfWaitingForDebugger", msg["params"]["sessionId"])
        elif method == "Network.webSocketFrameReceived":
            p = msg["params"]
            if len(p["response"].get("payloadData", "")) >= self.min_chars:
                self.times.append(float(p["timestamp"]))


DRAW_HOOK = (
    "(() => {\n"
    + WATCH_DRAWS
    + r"""
  // The times (performance.now, ms) at which the page uploaded a large texture (viser's Gaussian buffer:
  // 32 bytes per Gaussian) and then issued the draw call that uses it, and the next animation frame after it.
  const log = (window.__nerfheadDraws = { uploads: [], draws: [], frames: [], pending: null, minBytes: 200000 });
  watchDraws(log.minBytes, () => { log.pending = performance.now(); }, () => {
    log.uploads.push(log.pending);
    log.draws.push(performance.now());
    requestAnimationFrame(() => log.frames.push(performance.now()));
    if (log.draws.length > 5000) { log.uploads.splice(0, 1000); log.draws.splice(0, 1000); log.frames.splice(0, 1000); }
  });
})();
"""
)
"""An init script (:meth:`Page.add_init_script`) that logs when the page draws a new Gaussian buffer:
``window.__nerfheadDraws`` holds, per buffer drawn, the upload time, the draw call's time and the next animation
frame's time (page clock, ms)."""


def page_draws(page: Page) -> dict[str, np.ndarray]:
    """:data:`DRAW_HOOK`'s log in ``time.monotonic()`` seconds: ``uploads``, ``draws``, ``frames``."""
    s = json.loads(page.evaluate("JSON.stringify(window.__nerfheadDraws || {})") or "{}")
    to_mono = page_to_monotonic(page)
    return {
        k: np.asarray(s.get(k, []), np.float64) / 1000.0 + to_mono for k in ("uploads", "draws", "frames")
    }


def page_to_monotonic(page: Page) -> float:
    """Seconds to add to the page's ``performance.now() / 1000`` to get ``time.monotonic()`` (both clocks read
    through the wall clock; DevTools' network timestamps are already monotonic)."""
    origin_ms = float(page.evaluate("performance.timeOrigin"))
    return origin_ms / 1000.0 - (time.time() - time.monotonic())


def audio_picture_offsets(page: Page, receipts: list[float], after: float = 0.0) -> dict[str, Any]:
    """How far the page's live audio plays from the picture (``nerfhead.viewer.page_audio``): for each frame
    marker the page got, the play time the page scheduled for the audio at the frame's stream time, minus the
    time the page received the pose posed from it (``receipts``: :class:`FrameLog` times, monotonic seconds;
    matched to the marker nearest in time, within 0.1 s; only receipts after ``after``, monotonic). Positive:
    the sound comes after the picture.

    Returns:
        ``offsets`` (s, one per matched frame), ``t`` (their stream times), ``marker_minus_receipt`` (s: how much earlier the marker came
        than the pose it marks), ``late`` (chunks that arrived after their play time, dropped), ``chunks``.
    """
    state = page.evaluate(
        "JSON.stringify({f: __nerfheadAudio.frames, c: __nerfheadAudio.chunks, late: __nerfheadAudio.late})"
    )
    s = json.loads(state)
    to_mono = page_to_monotonic(page)
    chunks = np.asarray(s["c"], dtype=np.float64).reshape(-1, 3)  # (t0, play page ms, duration)
    rec = np.sort(np.asarray(receipts, dtype=np.float64))
    offsets, lead, times = [], [], []
    for t, r_ms, _off in s["f"]:
        r = r_ms / 1000.0 + to_mono
        k = int(np.searchsorted(rec, r))
        near = [i for i in (k - 1, k) if 0 <= i < len(rec)]
        if not near or not len(chunks):
            continue
        d = rec[min(near, key=lambda i: abs(rec[i] - r))]
        if abs(d - r) > 0.1 or d < after:
            continue
        j = int(np.searchsorted(chunks[:, 0], t, side="right")) - 1
        if j < 0 or t >= chunks[j, 0] + chunks[j, 2] + 1e-6:
            continue  # the audio at t was never scheduled (arrived late)
        play = (chunks[j, 1] / 1000.0 + to_mono) + (t - chunks[j, 0])
        offsets.append(play - d)
        lead.append(r - d)
        times.append(t)
    return {
        "offsets": offsets,
        "t": times,
        "marker_minus_receipt": lead,
        "late": int(s["late"]),
        "chunks": len(chunks),
    }


RECEIPT_HOOK = r"""
(() => {
  // In a worker, before its code runs: the time (wall-clock ms: performance.timeOrigin + now) at which each
  // websocket message of at least MIN bytes arrives, kept in self.__nerfheadReceipts.
  if (self.__nerfheadReceipts || typeof self.WebSocket === "undefined") return;
  const log = (self.__nerfheadReceipts = []);
  const W = self.WebSocket;
  const Hooked = function (...args) {
    const s = new W(...args);
    s.addEventListener("message", (ev) => {
      const n = ev.data && (ev.data.byteLength !== undefined ? ev.data.byteLength : ev.data.size || 0);
      if (n >= __MIN__) log.push(performance.timeOrigin + performance.now());
    });
    return s;
  };
  Hooked.prototype = W.prototype;
  for (const k of ["CONNECTING", "OPEN", "CLOSING", "CLOSED"]) Hooked[k] = W[k];
  self.WebSocket = Hooked;
})();
"""
"""Run in each of the page's workers before their code (:class:`ReceiptLog`); ``__MIN__``: least bytes."""


class ReceiptLog(_Attached):
    """When the page received websocket messages of at least ``min_bytes`` (viser's Gaussian buffers), timed
    in the page itself: viser's page talks to the server from a Web Worker, so this attaches to the page's
    workers as they start (DevTools auto-attach, paused until :data:`RECEIPT_HOOK` is in) and reads their logs
    at the end; no network events, so no payload crosses DevTools (:class:`FrameLog` gets every payload
    base64-encoded and parses it in the observing process). Make it before the page loads the viewer.

    The times are the worker's ``message`` events: when the worker's event loop dispatched the message, on the
    wall clock, converted to ``time.monotonic()`` like :func:`page_to_monotonic`."""

    def __init__(self, ws_url: str, min_bytes: int):
        self._hook = RECEIPT_HOOK.replace("__MIN__", str(int(min_bytes)))
        self._sessions: list[str] = []
        super().__init__(ws_url, pause_workers=True)

    def _handle(self, msg: dict[str, Any]) -> None:
        if msg.get("method") == "Target.attachedToTarget":
            sid = msg["params"]["sessionId"]
            if msg["params"]["targetInfo"].get("type") in ("worker", "shared_worker", "service_worker"):
                self._sessions.append(sid)
                self._send("Runtime.evaluate", sid, expression=self._hook)
            self._send("Runtime.runIfWaitingForDebugger", sid)

    def times(self) -> np.ndarray:
        """Receipt times so far (``time.monotonic()`` seconds, sorted), over all the page's workers."""
        out: list[float] = []
        for sid in list(self._sessions):
            reply = self._call(
                "Runtime.evaluate",
                sid,
                expression="JSON.stringify(self.__nerfheadReceipts || [])",
                returnByValue=True,
            )
            value = reply.get("result", {}).get("result", {}).get("value")
            if value:
                out += json.loads(value)
        to_mono = -(time.time() - time.monotonic())
        return np.sort(np.asarray(out, np.float64) / 1000.0 + to_mono)
