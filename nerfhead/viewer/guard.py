"""What a page may do to the viewer: websocket connections only from the viewer's own page, uploads capped while
they stream in, exports rate-limited, user-supplied names made safe to show.

viser 1.1.1 has no hooks for these, so :func:`install` adds them at the websocket layer: a connect callback that
runs before viser's own (a connection whose ``Origin`` is another site is closed with code 1008 before any of its
messages is read) and wrappers around viser's two upload handlers (a declared size over the cap, or parts adding
up to more than the cap or than the declared size, end the transfer and drop what was buffered).

A browser always sends ``Origin`` on a websocket; scripts and tests (Python websockets) send none and are
accepted, as they could write into the run folder directly anyway.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from nerfhead.viewer.config import LOCAL_HOSTS

ORIGIN_CLOSE_CODE = 1008
"""Websocket close code for a refused Origin (policy violation)."""


def origin_allowed(origin: str | None, host_header: str | None, bound_host: str) -> bool:
    """Whether a websocket handshake comes from the viewer's own page.

    Args:
        origin: the ``Origin`` header (None: not a browser).
        host_header: the ``Host`` header of the request.
        bound_host: the interface the viewer listens on.

    Returns:
        True for no Origin, or an ``http://`` Origin equal to the requested host whose name is this machine
        (127.0.0.1, localhost, ::1) or the bound interface (a DNS-rebound name is refused).
    """
    if origin is None:
        return True
    if not host_header:
        return False
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or parts.netloc.lower() != host_header.lower():
        return False
    name = (parts.hostname or "").lower()
    return name in LOCAL_HOSTS or (bound_host not in ("0.0.0.0", "::", "") and name == bound_host.lower())


_UNSAFE = re.compile(r"[^A-Za-z0-9 ._+,=@~:/-]")


def safe_text(text: str, limit: int = 80) -> str:
    """A user-supplied string (e.g. an uploaded file's name) made inert for any GUI element, markdown or HTML:
    every character outside letters, digits and ``._+,=@~:/- `` becomes ``?``, and it is cut to ``limit``."""
    cut = text if len(text) <= limit else text[: limit - 1] + "…"
    return _UNSAFE.sub("?", cut)


class RateLimit:
    """At most one action per ``interval_s`` per key (e.g. per client)."""

    def __init__(self, interval_s: float):
        self.interval_s = interval_s
        self._last: dict[Any, float] = {}
        self._lock = threading.Lock()

    def wait_left(self, key: Any, now: float | None = None) -> float:
        """0.0 and records the action when allowed; else the seconds left before the next one is."""
        now = time.monotonic() if now is None else now
        with self._lock:
            left = self._last.get(key, -1e18) + self.interval_s - now
            if left > 0:
                return left
            self._last[key] = now
            return 0.0


class Guard:
    """The checks :func:`install` puts on a viser server.

    Args:
        server: the started ``viser.ViserServer``.
        max_upload_bytes: upload cap.
        refuse: ``refuse(client_id, title, message)`` tells a client why something was refused.
    """

    def __init__(self, server: Any, max_upload_bytes: int, refuse: Callable[[int, str, str], None]):
        self.server = server
        self.max_upload_bytes = int(max_upload_bytes)
        self._refuse = refuse
        self.refused_origins: list[str] = []
        """Origins of refused connections (newest last)."""
        self.refused_clients: set[int] = set()
        self.refused_uploads: list[str] = []
        """Messages of refused uploads (newest last)."""
        self._received: dict[str, int] = {}
        self._declared: dict[str, int] = {}
        ws = server._websock_server  # viser 1.1.1's websocket layer (no public hook for these checks)
        self._ws = ws
        self._bound_host = str(ws._host)

    def install(self) -> Guard:
        import viser._messages as m

        ws, gui = self._ws, self.server.gui
        ws._client_connect_cb.insert(0, self._check_origin)  # before viser makes a ClientHandle
        start, part = gui._handle_file_transfer_start, gui._handle_file_transfer_part
        ws.unregister_handler(m.FileTransferStartUpload, start)
        ws.unregister_handler(m.FileTransferPart, part)
        ws.register_handler(m.FileTransferStartUpload, lambda cid, msg: self._on_start(cid, msg, start))
        ws.register_handler(m.FileTransferPart, lambda cid, msg: self._on_part(cid, msg, part))
        return self

    # --------------------------------------------------------------------------- origin
    async def _check_origin(self, conn: Any) -> None:
        ws = self._ws._live_connections.get(conn.client_id)
        if ws is None or ws.request is None:
            return
        headers = ws.request.headers
        origin = headers.get("Origin")
        if origin_allowed(origin, headers.get("Host"), self._bound_host):
            return
        self.refused_clients.add(int(conn.client_id))
        self.refused_origins.append(str(origin))
        await ws.close(
            ORIGIN_CLOSE_CODE,
            f"origin {safe_text(str(origin))} refused: only the viewer's own page may connect",
        )

    # --------------------------------------------------------------------------- uploads
    def _on_start(self, client_id: Any, msg: Any, viser_start: Callable[[Any, Any], None]) -> None:
        name = safe_text(str(msg.filename))
        if int(msg.size_bytes) > self.max_upload_bytes or int(msg.size_bytes) < 0:
            self._refuse_upload(client_id, msg.transfer_uuid, name, f"declares {_mib(int(msg.size_bytes))}")
            return
        self._declared[msg.transfer_uuid] = int(msg.size_bytes)
        self._received[msg.transfer_uuid] = 0
        viser_start(client_id, msg)

    def _on_part(self, client_id: Any, msg: Any, viser_part: Callable[[Any, Any], None]) -> None:
        uuid = msg.transfer_uuid
        if uuid not in self._declared:
            return  # refused, finished or never started: drop the bytes
        got = self._received[uuid] + len(msg.content)
        self._received[uuid] = got
        if got > self.max_upload_bytes or got > self._declared[uuid]:
            state = self.server.gui._current_file_upload_states.get(uuid)
            name = safe_text(str(state["filename"])) if state else "upload"
            self._refuse_upload(
                client_id, uuid, name, f"sent {_mib(got)} (declared {_mib(self._declared[uuid])})"
            )
            return
        viser_part(client_id, msg)
        if uuid not in self.server.gui._current_file_upload_states:  # complete (or dropped by viser)
            self._forget(uuid)

    def _refuse_upload(self, client_id: Any, uuid: str, name: str, what: str) -> None:
        self.server.gui._current_file_upload_states.pop(uuid, None)  # drop the buffered parts
        self._forget(uuid)
        message = f"{name}: upload {what}, the limit is {self.max_upload_bytes / 2**20:g} MiB"
        self.refused_uploads.append(message)
        self._refuse(int(client_id), "Upload refused", message)

    def _forget(self, uuid: str) -> None:
        self._declared.pop(uuid, None)
        self._received.pop(uuid, None)


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"
