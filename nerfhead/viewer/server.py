"""The viewer's web server: a viser page showing a head, drawn in the browser or rendered on the server.

Browser path (the default for a splat head, ``ViewerConfig.render``): a :class:`~nerfhead.viewer.splats.SplatPusher`
poses the head's Gaussians after every change and sends them to all pages; each page sorts and draws them on its
own GPU while its camera moves. Server path (NeRF heads, a GPU server, or the Stats panel's toggle): each browser tab (a viser client) gets a :class:`~nerfhead.viewer.loop.RenderLoop` worker thread. Camera moves,
slider drags and playback ticks mark the view dirty; while changes keep coming the loop renders at a reduced size
(``ViewerConfig.moving_side``), and once nothing changed for ``debounce_s`` it renders once at full size. Images
go to the browser as JPEG background images. Renders are serialised by one lock (one model, many clients).

>>> from nerfhead.viewer.mock import MockHead  # doctest: +SKIP
>>> with ViewerServer(MockHead(), out_dir="runs/mock", config=ViewerConfig(port=0)) as v:  # doctest: +SKIP
...     print(v.url)
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nerfhead.data.drive import Drive
from nerfhead.media.image import to_uint8
from nerfhead.viewer.camera import ViewCamera, look_at_view, view_to_cameras
from nerfhead.viewer.config import LOCAL_HOSTS, ViewerConfig  # noqa: F401  (re-exported)
from nerfhead.viewer.guard import Guard, RateLimit
from nerfhead.viewer.live_speech import AudioSource, HoldMargin, LiveSpeech, stream_driver
from nerfhead.viewer.loop import RenderLoop, RenderStats
from nerfhead.viewer.page_audio import PageAudio, page_html, shader_fix_html
from nerfhead.viewer.renderable import Renderable
from nerfhead.viewer.splats import MIN_ALPHA_BYTE, Posed, PushStats, SplatPusher
from nerfhead.viewer.state import ViewerState

if TYPE_CHECKING:
    from nerfhead.audio.speech import Speech

RENDER_MODES = ("auto", "browser", "server")
PAGE_READY_WAIT_S = 3.0
"""Browser path: a new page's splat node is made once its page script runs (it changes viser's splat shader as the
page compiles it: :data:`nerfhead.viewer.page_audio.SHADER_FIX`), at the latest this long after it connected."""


@dataclass(frozen=True)
class LiveTrace:
    """When each step of one live speech frame happened on the server (``time.monotonic()``, seconds). On the
    server path (an image per client) the four pusher steps are all the time the image was sent."""

    t: float
    """Stream time of the frame (seconds of audio)."""
    arrival: float
    """The audio sample at ``t`` arrived (its chunk was read)."""
    produced: float
    """The streaming driver produced the frame (its look-ahead had arrived)."""
    pose_started: float
    """The pusher started posing the state that shows it."""
    posed: float
    """The posed Gaussians were ready."""
    released: float
    """The hold (arrival + look-ahead + ``ViewerConfig.live_margin_s``) let it go."""
    sent: float
    """Handed to the websockets (flushed)."""
    nbytes: int = 0
    """Bytes of Gaussians sent with it (0 on the server path)."""
    version: int = -1
    """The state version sent (the newest live frame it holds is this one)."""
    hold: float = 0.0
    """The hold applied, seconds: the frame was due at ``arrival + hold`` (look-ahead + the margin then)."""


def _speech_policy(config: ViewerConfig, run: Path, renderable: Renderable) -> Speech:
    """The speech policy uploads are driven by: :class:`nerfhead.audio.speech.Speech` for the run, as
    ``nerfhead drive RUN`` builds it (a run without drive.npz poses speech like the renderable's timeline)."""
    from nerfhead.audio.speech import PersonData, Speech, SpeechConfig, check_config, person_of_run
    from nerfhead.errors import InputError

    if config.speech_driver not in ("auto", "network", "rules"):
        raise ValueError(f"speech_driver must be auto, network or rules, got {config.speech_driver!r}")
    cfg = SpeechConfig(driver=config.speech_driver, rules_mode=config.speech_mode)  # type: ignore[arg-type]
    try:
        check_config(cfg)
        if person_of_run(run) is not None:
            return Speech.for_run(run, cfg)
        pol = Speech.for_run(run, cfg)
    except InputError as e:
        raise ValueError(e.what) from None
    return Speech(pol.network, PersonData(renderable.default_drive()), cfg)


def newest_pending(
    pending: Iterable[tuple[int, float, float, float]], version: int
) -> tuple[int, float, float, float] | None:
    """The newest live frame (version, audio arrival, stream time, driver output) among ``pending`` (oldest
    first) that state ``version`` contains, or None."""
    newest = None
    for entry in pending:
        if entry[0] > version:
            break
        newest = entry
    return newest


def needed_margin(posed_at: float, arrival: float, produced: float, lookahead: float) -> float:
    """The hold margin a live frame posed at ``posed_at`` needed, had its driver output been on time (its audio's
    ``arrival`` plus the driver's ``lookahead``; ``produced``: when the output came)."""
    return posed_at - max(produced, arrival + lookahead)


class ViewerServer:
    """The nerfhead viewer: a viser server, the shared state, the GUI panels and one render loop per client.

    Args:
        renderable: the head to show.
        out_dir: folder the export buttons write into (``out_dir/exports``).
        config: server settings.
    """

    def __init__(
        self, renderable: Renderable, out_dir: str | os.PathLike, config: ViewerConfig = ViewerConfig()
    ):
        self.renderable = renderable
        self.out_dir = Path(out_dir)
        self.config = config
        self.speech = _speech_policy(config, self.out_dir, renderable)
        """The speech policy uploads are driven by (the same as ``nerfhead drive RUN``)."""
        net = self.speech.network
        self.speech_network: Path | None = Path(net) if isinstance(net, (str, os.PathLike)) else None
        """The speech network uploads are driven by (None: the viseme rules)."""
        if config.render not in RENDER_MODES:
            raise ValueError(f"render must be auto, browser or server, got {config.render!r}")
        self.browser_capable = hasattr(renderable, "gaussians_at")
        """Whether the head can be drawn in the browser (a splat head)."""
        if config.render == "browser" and not self.browser_capable:
            raise ValueError("render='browser' needs a splat head (this head has no Gaussians); use server")
        self.render_mode = "server" if config.render == "server" or not self.browser_capable else "browser"
        """Where the head is drawn now: "browser" or "server" (:meth:`set_render_mode`)."""
        self.splats: SplatPusher | None = None
        self.guard: Guard | None = None
        self.live: LiveSpeech | None = None
        self._live_calibration: Any = None
        self.latencies: deque[float] = deque(maxlen=250)
        """Speech-to-screen latency of the last live frames shown, seconds."""
        self.export_limit = RateLimit(config.export_interval_s)
        self._pending: deque[tuple[int, float, float, float]] = deque(
            maxlen=64
        )  # (state version, arrival, stream time, when the driver produced it)
        self.live_trace: deque[LiveTrace] = deque(maxlen=1000)
        """The steps of the last live frames sent (:class:`LiveTrace`)."""
        self.live_dropped: deque[tuple[float, float, float]] = deque(maxlen=1000)
        """(stream time, audio arrival, pose done) of the live frames not sent because they were late against
        their sound (``ViewerConfig.live_late_drop_s``; monotonic seconds)."""
        self._lookahead = 0.0
        self.hold_margin = HoldMargin(config.live_margin_min_s, config.live_margin_s)
        """The live hold's margin past the look-ahead, adapted to the measured pose times (kept across
        streams: non-live pose updates are timed too)."""
        self._last_hold = (-1, 0.0)  # (version, hold) of the last live_hold answer
        self._marks: deque[tuple[int, float, float]] = deque(maxlen=64)  # (version, stream time, hold) sent
        self._page_marked: dict[int, float] = {}  # page -> stream time of the last frame marker it got
        self.page_audio: PageAudio | None = None
        """The pages' own socket: live audio to them, draw acknowledgements (flow control) from them (made at
        :meth:`start` when the page plays live audio or a splat head is drawn with flow control)."""
        self._live_lock = threading.Lock()
        self._clients: dict[int, Any] = {}
        self.state = ViewerState(renderable.default_drive())
        self.render_counts: dict[int, int] = {}
        """Images sent per client id (kept after a client leaves)."""
        self.server: Any = None
        self.panels: Any = None
        self._loops: dict[int, RenderLoop] = {}
        self._loops_lock = threading.Lock()
        self.render_lock = threading.Lock()
        self._stop = threading.Event()
        self._player = threading.Thread(target=self._play_loop, name="nerfhead-player", daemon=True)
        self._play_wake = threading.Event()
        self.state.add_listener(self._on_state_change)

    # ------------------------------------------------------------------ lifetime
    def start(self) -> ViewerServer:
        """Bind the port, build the GUI and start serving (returns at once)."""
        import viser

        from nerfhead.viewer.panels import Panels

        if self.server is not None:
            raise RuntimeError("viewer already started")
        self.server = viser.ViserServer(host=self.config.host, port=self.config.port, verbose=False)
        srv = self.server
        try:
            fr = self.renderable.framing()
            fov = math.radians(self.config.fov_deg)
            srv.scene.set_up_direction(tuple(float(v) for v in fr.up))
            srv.initial_camera.fov = fov
            srv.initial_camera.up = fr.up
            srv.initial_camera.position = fr.eye(fov)
            srv.initial_camera.look_at = fr.center
            srv.initial_camera.near = 0.01
            srv.gui.configure_theme(show_share_button=False, control_width="medium", show_logo=False)
            srv.gui.main_panel.dock_right()
            self.panels = Panels(srv, self.state, self)
            self.guard = Guard(srv, int(self.config.max_upload_mib * 2**20), self._refuse).install()
            cfg = self.config
            if cfg.page_audio or (self.browser_capable and cfg.page_ack_timeout_s > 0):
                self.page_audio = PageAudio(cfg.host, self._on_page_draw, self._on_page_hello)
            srv.on_client_connect(self._on_connect)
            srv.on_client_disconnect(self._on_disconnect)
            self._player.start()
            if self.render_mode == "browser":
                self._start_splats()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop playback, every render loop and the server; the port is free when this returns."""
        self._stop.set()
        self._play_wake.set()
        if self.live is not None:
            self.live.stop()
        if self._player.is_alive():
            self._player.join(5.0)
        if self.splats is not None:
            self.splats.stop()
            self.splats = None
        if self.page_audio is not None:
            self.page_audio.close()
            self.page_audio = None
        with self._loops_lock:
            loops, self._loops = list(self._loops.values()), {}
        for loop in loops:
            loop.stop()
        if self.server is not None:
            self.server.stop()
            self.server = None

    def __enter__(self) -> ViewerServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self.server.get_port())

    @property
    def url(self) -> str:
        host = self.config.host
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        return f"http://{shown}:{self.port}/"

    def clients(self) -> list[int]:
        """Ids of the clients with a render loop."""
        with self._loops_lock:
            return sorted(self._loops)

    def connected(self) -> list[int]:
        """Ids of the connected pages (refused origins excluded), whichever path draws the head."""
        return sorted(self._clients)

    def loop(self, key: int) -> RenderLoop | None:
        """The render loop of client ``key``."""
        with self._loops_lock:
            return self._loops.get(key)

    # ---------------------------------------------------------------- rendering
    def render_view(
        self, view: ViewCamera, size: tuple[int, int] | None = None, drive: Drive | None = None
    ) -> np.ndarray:
        """[H, W, 3] uint8 image of ``view`` at ``size`` (default: the canvas size) for ``drive`` (default: the
        current frame with the GUI's offsets)."""
        cams = view_to_cameras(view, size)
        d = self.state.drive_at() if drive is None else drive
        with self.render_lock:
            out = self.renderable.render(cams, d)
        return to_uint8(out.rgb[0])

    def default_view(self, width: int = 640, height: int = 480) -> ViewCamera:
        """The camera a new client starts with (at a given canvas size)."""
        fr = self.renderable.framing()
        fov = math.radians(self.config.fov_deg)
        return look_at_view(fr.eye(fov), fr.center, fr.up, fov, width, height)

    def add_loop(
        self, key: int, source: Callable[[], ViewCamera | None], sink: Callable[[np.ndarray], None]
    ) -> RenderLoop:
        """Start a render loop for a client ``key`` (viser clients get one on connect; tests add their own)."""

        version = [0]

        def render(view: ViewCamera, size: tuple[int, int]) -> np.ndarray:
            version[0] = self.state.version
            return self.render_view(view, size)

        def counted(image: np.ndarray) -> None:
            sink(image)
            self.render_counts[key] = self.render_counts.get(key, 0) + 1
            self._delivered(version[0])

        cfg = self.config
        loop = RenderLoop(
            source,
            render,
            counted,
            cfg.max_side,
            cfg.moving_side,
            cfg.debounce_s,
            self._on_stats,
        )
        with self._loops_lock:
            old = self._loops.pop(key, None)
            self._loops[key] = loop
        if old is not None:
            old.stop()
        loop.start().invalidate()
        return loop

    def remove_loop(self, key: int) -> None:
        with self._loops_lock:
            loop = self._loops.pop(key, None)
        if loop is not None:
            loop.stop()

    def invalidate_all(self, interactive: bool = False) -> None:
        """Draw again on every page (the head changed, e.g. a training step of ``nerfhead fit --viewer``)."""
        if self.splats is not None:
            self.splats.invalidate()
        with self._loops_lock:
            loops = list(self._loops.values())
        for loop in loops:
            loop.invalidate(interactive)

    def _on_stats(self, stats: RenderStats) -> None:
        if self.panels is not None:
            self.panels.show_stats(stats, len(self._loops))

    # ---------------------------------------------------------- browser path
    def _start_splats(self) -> None:
        def current() -> tuple[int, Drive]:
            v = self.state.version  # read first: a change after it is sent again
            return v, self.state.drive_at()

        packed_at = getattr(self.renderable, "packed_at", None)

        def pose(drive: Drive) -> Any:
            with self.render_lock:  # the lock the renders take (a live fit trains between them)
                if packed_at is not None and self.config.fused_pose:
                    return packed_at(drive, MIN_ALPHA_BYTE)
                return self.renderable.gaussians_at(drive)  # type: ignore[attr-defined]

        per_page = self.page_audio is not None  # flow control needs the pages' acknowledgements
        self.splats = SplatPusher(
            self.server.scene,
            pose,
            current,
            self.server.flush,
            self._on_pushed,
            self.live_hold,
            per_page=per_page,
            ack_timeout_s=self.config.page_ack_timeout_s,
            on_page_sent=self._on_page_sent,
            late_drop_s=self.config.live_late_drop_s,
            on_late=self._dropped_late,
        )
        if per_page:
            for cid, client in list(self._clients.items()):
                self.splats.add_page(cid, client)  # connected before: its script runs already
        self.splats.start()

    def _on_page_sent(self, page: int, version: int) -> None:
        """The pose of state ``version`` went to page ``page`` (browser path, per page): that page's audio gets
        the marker of the newest live frame in it, once, so its audio follows the poses it actually received
        (with flow control a page gets only some of them, later)."""
        audio = self.page_audio
        if audio is None or not self.config.page_audio:
            return
        with self._live_lock:
            mark = None
            for v, t, hold in self._marks:
                if v > version:
                    break
                mark = (t, hold)
            if mark is None or self._page_marked.get(page, -1.0) >= mark[0]:
                return
            self._page_marked[page] = mark[0]
        audio.send_frame(mark[0], mark[1], page)

    def _on_page_draw(self, client: int) -> None:
        pusher = self.splats
        if pusher is not None:
            pusher.ack(client)

    def set_render_mode(self, mode: str) -> None:
        """Switch between drawing in the browser ("browser", splat heads only) and rendering on the server."""
        if mode not in ("browser", "server"):
            raise ValueError(f"render mode must be browser or server, got {mode!r}")
        if mode == "browser" and not self.browser_capable:
            raise ValueError("this head has no Gaussians to draw in the browser")
        if mode == self.render_mode:
            return
        self.render_mode = mode
        if self.server is None:
            return
        if mode == "browser":
            for key in self.clients():
                self.remove_loop(key)
            for client in list(self._clients.values()):
                client.scene.set_background_image(None)
            self._start_splats()
        else:
            if self.splats is not None:
                self.splats.stop()
                self.splats = None
            for client in list(self._clients.values()):
                self._add_client_loop(client)
        if self.panels is not None:
            self.panels.show_mode()

    def _on_pushed(self, stats: PushStats, version: int) -> None:
        self._delivered(version, stats.last_times, stats.bytes)
        if self.panels is not None:
            self.panels.show_push_stats(stats, len(self._clients))

    # ----------------------------------------------------------- live speech
    def start_speech_stream(self, source: AudioSource) -> LiveSpeech:
        """Drive the face from live audio (``nerfhead view --speech-stream``) until the stream ends; the frame
        rate is the timeline's. Stops a stream already running."""
        if self.live is not None:
            self.live.stop()
        driver = stream_driver(self.speech.network, self.state.fps, source.sr)
        self._live_calibration = self.speech.calibration()  # fitted once, before the first frame
        self._lookahead = float(driver.latency_s)
        self.hold_margin.restart()
        with self._live_lock:  # stream times start again at 0
            self._marks.clear()
            self._page_marked.clear()
        audio = self.page_audio if self.config.page_audio else None
        self.live = LiveSpeech(
            source,
            driver,
            self.show_live_frame,
            lambda: self.state.set_live(None),
            None if audio is None else (lambda chunk, t0: audio.send_audio(chunk, t0, source.sr)),
        ).start()
        return self.live

    def show_live_frame(self, frame: Drive, arrival: float, t: float = 0.0) -> None:
        """Show one live speech frame (the streaming driver's; the speech policy's calibration and head pose
        are applied here, as ``nerfhead drive`` applies them offline); ``arrival``: when the audio at its
        timestamp ``t`` (seconds of stream time) arrived (monotonic)."""
        cal = self._live_calibration
        expr = cal.apply(frame.expression) if cal is not None else frame.expression.float()
        rot, trans = self.speech.pose(1, frame.fps, frame.rotation.float())
        shown = Drive(rotation=rot, translation=trans, expression=expr, latent=None, fps=frame.fps)
        produced = time.monotonic()
        with self._live_lock:
            self.state.set_live(shown)
            self._pending.append((self.state.version, arrival, t, produced))

    @property
    def _live_delay(self) -> float:
        """The live hold now: the driver's look-ahead plus the hold margin (:attr:`hold_margin`), seconds."""
        return self._lookahead + self.hold_margin.value

    def live_hold(self, version: int) -> float | None:
        """When state ``version`` may leave for the pages: a live frame's audio arrival plus the driver's
        look-ahead and the hold margin (:class:`~nerfhead.viewer.live_speech.HoldMargin`, between
        ``ViewerConfig.live_margin_min_s`` and ``live_margin_s``; a frame posed sooner waits, so every frame
        reaches the page the same time after its audio and the page's audio, told the hold with each frame
        marker, stays in step); None for any other state."""
        with self._live_lock:
            entry = newest_pending(self._pending, version)
            if entry is None:
                return None
            arrival = entry[1]
            hold = self._live_delay
            self._last_hold = (version, hold)
        return arrival + hold

    def _delivered(
        self, version: int, times: tuple[float, float, float, float] | None = None, nbytes: int = 0
    ) -> None:
        """State ``version`` has left for the browser(s): the newest live frame it contains gets its latency,
        and the pages' audio a marker of its stream time. ``times``: the pusher's steps of this update
        (posing started, posed, released, handed to the websockets)."""
        now = time.monotonic()
        hold = 0.0
        with self._live_lock:
            newest = None
            while self._pending and self._pending[0][0] <= version:
                newest = self._pending.popleft()
            if newest is not None:
                self.latencies.append(now - newest[1])
                _v, arrival, t, produced = newest
                steps = times if times is not None else (now, now, now, now)
                hold = self._last_hold[1] if self._last_hold[0] == version else self._live_delay
                self.live_trace.append(LiveTrace(t, arrival, produced, *steps, nbytes, version, hold))
                self._marks.append((version, t, hold))
                if times is not None:
                    self.hold_margin.observe(needed_margin(times[1], arrival, produced, self._lookahead))
            elif times is not None:  # any other pose: its pose time
                self.hold_margin.observe(times[1] - times[0])
        pusher = self.splats
        per_page = pusher is not None and pusher.per_page  # then each page's marker follows its own pose
        if newest is not None and self.page_audio is not None and self.config.page_audio and not per_page:
            self.page_audio.send_frame(newest[2], hold)

    def _dropped_late(self, posed: Posed) -> None:
        """The pusher did not send the pose of a live frame that was ready after its sound had played
        (``ViewerConfig.live_late_drop_s``): the hold margin still learns what that frame needed."""
        with self._live_lock:
            newest = newest_pending(self._pending, posed.version)
            if newest is not None:
                _v, arrival, t, produced = newest
                self.live_dropped.append((t, arrival, posed.posed))
                self.hold_margin.observe(needed_margin(posed.posed, arrival, produced, self._lookahead))

    def latency_summary(self) -> tuple[float, float] | None:
        """(median, 95th percentile) speech-to-screen latency of the recent live frames, seconds."""
        if not self.latencies:
            return None
        x = np.asarray(self.latencies)
        return float(np.median(x)), float(np.percentile(x, 95))

    # ------------------------------------------------------------ viser clients
    def _refuse(self, client_id: int, title: str, message: str) -> None:
        client = self._clients.get(client_id) or (
            self.server.get_clients().get(client_id) if self.server else None
        )
        if client is not None:
            client.add_notification(title, message, color="red", with_close_button=True)

    def _on_connect(self, client: Any) -> None:
        cid = int(client.client_id)
        if self.guard is not None and cid in self.guard.refused_clients:
            return
        self._clients[cid] = client
        pusher = self.splats
        if self.render_mode == "server":
            self._add_client_loop(client)
        elif pusher is not None and pusher.per_page:  # before the script goes out: its hello finds the page
            pusher.add_page(cid, client, PAGE_READY_WAIT_S)
        if self.page_audio is not None:  # the page's script: live audio, draw acknowledgements, shader fix
            client.gui.add_html(page_html(self.page_audio.port, cid))
        else:
            client.gui.add_html(shader_fix_html())

    def _on_page_hello(self, cid: int) -> None:
        pusher = self.splats
        if pusher is not None and pusher.per_page:
            pusher.page_ready(cid)

    def _add_client_loop(self, client: Any) -> None:
        cid = int(client.client_id)

        def source() -> ViewCamera | None:
            try:
                return ViewCamera.from_handle(client.camera)
            except (AssertionError, ValueError, ZeroDivisionError):
                return None  # no camera message yet, or a zero-size canvas

        def sink(image: np.ndarray) -> None:
            client.scene.set_background_image(image, format="jpeg", jpeg_quality=self.config.jpeg_quality)
            client.flush()

        loop = self.add_loop(cid, source, sink)
        client.camera.on_update(lambda _cam: loop.invalidate(interactive=True))

    def _on_disconnect(self, client: Any) -> None:
        self._clients.pop(int(client.client_id), None)
        self.remove_loop(int(client.client_id))
        pusher = self.splats
        if pusher is not None:
            pusher.remove_page(int(client.client_id))

    # ---------------------------------------------------------------- playback
    def _on_state_change(self, interactive: bool) -> None:
        if self.state.playing:
            self._play_wake.set()
        if self.panels is not None:
            self.panels.sync()
        self.invalidate_all(interactive)

    def _play_loop(self) -> None:
        while not self._stop.is_set():
            if not self.state.playing:
                self._play_wake.wait(0.5)
                self._play_wake.clear()
                continue
            self.state.tick()
            time.sleep(min(0.02, 0.5 / self.state.fps))
