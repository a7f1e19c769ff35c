"""The viewer's web server: a viser page whose 3D view is rendered on the server, per client camera.

Each browser tab (a viser client) gets a :class:`~nerfhead.viewer.loop.RenderLoop` worker thread. Camera moves,
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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from nerfhead.data.drive import Drive
from nerfhead.viewer.camera import ViewCamera, look_at_view, view_to_cameras
from nerfhead.viewer.config import LOCAL_HOSTS, ViewerConfig  # noqa: F401  (re-exported)
from nerfhead.viewer.loop import RenderLoop, RenderStats
from nerfhead.viewer.renderable import Renderable
from nerfhead.viewer.state import ViewerState

if TYPE_CHECKING:
    from nerfhead.audio.speech import Speech


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


def to_uint8(rgb: torch.Tensor) -> np.ndarray:
    """[H, W, 3] float in [0, 1] → uint8 numpy (rounded)."""
    return (rgb.detach().float().clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()


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
            srv.on_client_connect(self._on_connect)
            srv.on_client_disconnect(self._on_disconnect)
            self._player.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop playback, every render loop and the server; the port is free when this returns."""
        self._stop.set()
        self._play_wake.set()
        if self._player.is_alive():
            self._player.join(5.0)
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

        def counted(image: np.ndarray) -> None:
            sink(image)
            self.render_counts[key] = self.render_counts.get(key, 0) + 1

        cfg = self.config
        loop = RenderLoop(
            source,
            lambda v, s: self.render_view(v, s),
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
        with self._loops_lock:
            loops = list(self._loops.values())
        for loop in loops:
            loop.invalidate(interactive)

    def _on_stats(self, stats: RenderStats) -> None:
        if self.panels is not None:
            self.panels.show_stats(stats, len(self._loops))

    # ------------------------------------------------------------ viser clients
    def _on_connect(self, client: Any) -> None:
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
        self.remove_loop(int(client.client_id))

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
