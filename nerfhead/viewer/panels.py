"""The viewer's GUI: timeline and playback, speech upload, head pose and expression sliders, exports, stats.

Every control writes to the shared :class:`~nerfhead.viewer.state.ViewerState` (also when a handle's value is
set from Python), and :meth:`Panels.sync` writes the state back to the controls that follow it (the timeline
slider while playing, the play button's label, the speech player).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from nerfhead.data.expressions import EXPRESSION_NAMES
from nerfhead.errors import InputError
from nerfhead.viewer import exports, speech
from nerfhead.viewer.camera import ViewCamera, render_size
from nerfhead.viewer.guard import RateLimit, safe_text

if TYPE_CHECKING:
    import numpy as np

    from nerfhead.audio.speech import Speech
    from nerfhead.data.drive import Drive
    from nerfhead.viewer.config import ViewerConfig
    from nerfhead.viewer.loop import RenderStats
    from nerfhead.viewer.renderable import Renderable
    from nerfhead.viewer.splats import PushStats
    from nerfhead.viewer.state import ViewerState


class PanelHost(Protocol):
    """What the panels need of the viewer (:class:`~nerfhead.viewer.server.ViewerServer` provides it): settings,
    the head, the export folder, the speech policy and rendering of a view."""

    config: ViewerConfig
    renderable: Renderable
    out_dir: Path
    speech: Speech
    render_mode: str
    browser_capable: bool
    export_limit: RateLimit

    def set_render_mode(self, mode: str) -> None: ...

    def latency_summary(self) -> tuple[float, float] | None: ...

    def render_view(
        self, view: ViewCamera, size: tuple[int, int] | None = None, drive: Drive | None = None
    ) -> np.ndarray: ...

    def default_view(self, width: int = 640, height: int = 480) -> ViewCamera: ...


EXPRESSION_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Brows", ("brow",)),
    ("Eyes", ("eye",)),
    ("Jaw", ("jaw",)),
    ("Mouth", ("mouth",)),
    ("Other", ()),
)
"""Folder label and name prefixes of the expression sliders; "Other" takes the rest (cheeks, nose)."""


def group_expressions() -> dict[str, list[str]]:
    """Expression names per slider folder, in ``EXPRESSION_NAMES`` order; every name in exactly one folder."""
    out: dict[str, list[str]] = {label: [] for label, _ in EXPRESSION_GROUPS}
    for name in EXPRESSION_NAMES:
        label = next((lb for lb, pre in EXPRESSION_GROUPS if pre and name.startswith(pre)), "Other")
        out[label].append(name)
    return out


class Panels:
    """Builds the GUI on a viser server and keeps it in step with the state.

    Args:
        server: the ``viser.ViserServer``.
        state: the shared viewer state.
        viewer: the viewer (a :class:`PanelHost`: rendering, settings and the run folder for exports).

    Attributes:
        frame: timeline slider; play: play/pause button; expression: name → slider; pose: yaw/pitch/roll
        sliders; upload: speech upload button; audio: the HTML element holding the ``<audio>`` player;
        save_png / save_mp4: export buttons; last_export: text with the last exported path; stats: stats text.
    """

    def __init__(self, server: Any, state: ViewerState, viewer: PanelHost):
        self.server, self.state, self.viewer = server, state, viewer
        gui = server.gui
        self._export_lock = threading.Lock()
        self._stats_t = 0.0
        self._was_playing = False
        info = viewer.renderable.describe()
        self._static_stats = " · ".join(f"{k} {v}" for k, v in info.items())
        self._status = ""
        self._last_stats = ""
        gui.add_markdown(f"**nerfhead** · {safe_text(viewer.renderable.name)}")

        with gui.add_folder("Timeline"):
            self.frame = gui.add_slider("Frame", 0, max(state.num_frames - 1, 1), 1, 0)
            self.play = gui.add_button("Play", icon="player-play")
            self.time = gui.add_markdown(self._time_text())
        with gui.add_folder("Speech"):
            self.upload = gui.add_upload_button("Load speech", icon="upload", mime_type="audio/*")
            self.audio = gui.add_html(speech.audio_html(None, None))
            self.clear_speech = gui.add_button("Back to the fitted timeline", visible=False)
        with gui.add_folder("Head pose"):
            self.pose = {
                k: gui.add_slider(f"{k.capitalize()} (deg)", -lim, lim, 1.0, 0.0)
                for k, lim in (("yaw", 60.0), ("pitch", 45.0), ("roll", 30.0))
            }
        self.expression: dict[str, Any] = {}
        with gui.add_folder("Expression (added to the timeline)"):
            self.reset = gui.add_button("Reset pose and expression")
            for label, names in group_expressions().items():
                with gui.add_folder(label, expand_by_default=label == "Jaw"):
                    for name in names:
                        self.expression[name] = gui.add_slider(name, 0.0, 1.0, 0.01, 0.0)
        with gui.add_folder("Export", expand_by_default=False):
            self.save_png = gui.add_button("Save PNG of this view", icon="photo")
            self.save_mp4 = gui.add_button("Save mp4 of the timeline", icon="movie")
            self.last_export = gui.add_markdown(
                f"Files go to `{safe_text(str(viewer.out_dir / 'exports'), 200)}`"
            )
        with gui.add_folder("Stats"):
            self.browser = gui.add_checkbox(
                "Draw in the browser",
                viewer.render_mode == "browser",
                disabled=not viewer.browser_capable,
                hint="On: the server poses the Gaussians, your browser draws them. Off: the server renders images.",
            )
            self.stats = gui.add_markdown(self._static_stats)
        self._connect()

    # -------------------------------------------------------------- callbacks
    def _connect(self) -> None:
        st = self.state
        self.frame.on_update(self._on_frame)
        self.play.on_click(self._on_play)
        for i, name in enumerate(EXPRESSION_NAMES):
            self.expression[name].on_update(lambda e, i=i: st.set_expression(i, float(e.target.value)))
        pose = self.pose
        for handle in pose.values():
            handle.on_update(
                lambda _e: st.set_pose(
                    float(pose["yaw"].value), float(pose["pitch"].value), float(pose["roll"].value)
                )
            )
        self.reset.on_click(self._on_reset)
        self.upload.on_upload(self._on_upload)
        self.clear_speech.on_click(lambda _e: self._set_timeline(None))
        self.save_png.on_click(self._on_save_png)
        self.save_mp4.on_click(self._on_save_mp4)
        self.browser.on_update(self._on_browser_toggle)

    def _on_browser_toggle(self, event: Any) -> None:
        self.viewer.set_render_mode("browser" if self.browser.value else "server")

    def show_mode(self) -> None:
        """Show the viewer's render path on the toggle."""
        want = self.viewer.render_mode == "browser"
        if bool(self.browser.value) != want:
            self.browser.value = want
        self._last_stats = ""
        self._write_stats()

    def _on_frame(self, event: Any) -> None:
        value = int(round(float(event.target.value)))
        if value == self.state.frame:
            return
        self.state.set_frame(value)
        if self.state.playing:  # scrubbed while playing: restart the sound here
            self._start(self.state.play())

    def _on_play(self, _event: Any) -> None:
        if self.state.playing:
            self.state.pause()
            self.audio.content = speech.audio_html(self.state.speech, None)
            self.sync()
        else:
            self._start(self.state.play())

    def _start(self, offset: float) -> None:
        self._was_playing = True
        if self.state.speech is not None:
            self.audio.content = speech.audio_html(self.state.speech, offset)
        self.sync()

    def _on_reset(self, _event: Any) -> None:
        for h in (*self.expression.values(), *self.pose.values()):
            h.value = 0.0
        self.state.reset_offsets()

    def _on_upload(self, event: Any) -> None:
        f = event.target.value
        name = safe_text(f.name)  # the file name is shown, and named in errors, only in this inert form
        note = self._notify(event, "Loading speech", name, loading=True)
        cfg = self.viewer.config
        try:
            wave, notes = speech.decode_upload(
                name, f.content, max_bytes=int(cfg.max_upload_mib * 2**20), max_seconds=cfg.max_speech_s
            )
            drive = self.viewer.speech.drive(wave, speech.SAMPLE_RATE, self.state.fps)
        except InputError as e:
            self._finish_note(note, "Could not load speech", e.one_line().removeprefix("error: "), "red")
            return
        self._set_timeline((drive, speech.make_clip(name, wave)))
        body = f"{name}: {len(drive)} frames at {drive.fps:g} fps" + "".join(f"; {n}" for n in notes)
        self._finish_note(note, "Speech loaded", body, "yellow" if notes else "green")

    def _set_timeline(self, loaded: tuple[Any, Any] | None) -> None:
        if loaded is None:
            self.state.clear_speech()
        else:
            self.state.set_speech(*loaded)
        self.frame.max = max(self.state.num_frames - 1, 1)
        self.clear_speech.visible = loaded is not None
        self.audio.content = speech.audio_html(self.state.speech, None)
        self.sync()

    def _rate_limited(self, event: Any) -> bool:
        """Refuse an export that comes too soon after the last one of the same page (with a note); exports
        started from Python (no page) are not limited."""
        key = getattr(getattr(event, "client", None), "client_id", None)
        if key is None:
            return False
        left = self.viewer.export_limit.wait_left(key)
        if left > 0:
            self._notify(event, "Export refused", f"too many exports: wait {left:.1f} s", color="yellow")
        return left > 0

    def _on_save_png(self, event: Any) -> None:
        if self._rate_limited(event):
            return
        view = self._view_of(event)
        size = render_size(view.width, view.height, self.viewer.config.export_max_side)
        path = exports.save_png(
            self.viewer.render_view(view, size), exports.export_path(self.viewer.out_dir, "view", ".png")
        )
        self._exported(event, path)

    def _on_save_mp4(self, event: Any) -> None:
        if not self._export_lock.acquire(blocking=False):
            self._notify(event, "Export running", "an mp4 export is already in progress", color="yellow")
            return
        if self._rate_limited(event):
            self._export_lock.release()
            return
        try:
            view = self._view_of(event)
            w, h = render_size(view.width, view.height, self.viewer.config.export_max_side)
            size = (max(2, w - w % 2), max(2, h - h % 2))
            timeline = self.state.timeline()
            clip = self.state.speech
            note = self._notify(event, "Exporting mp4", f"0 / {len(timeline)} frames", loading=True)
            path = exports.export_path(self.viewer.out_dir, "timeline", ".mp4")

            def frames() -> Any:
                for i in range(len(timeline)):
                    if note is not None and i % 10 == 0:
                        note.body = f"{i} / {len(timeline)} frames"
                    yield self.viewer.render_view(view, size, timeline[i])

            try:
                exports.write_mp4(
                    frames(), size, timeline.fps, path, None if clip is None else clip.wav_bytes
                )
            except Exception as e:  # ffmpeg failures are shown, not raised into viser's thread pool
                self._finish_note(note, "mp4 export failed", f"{type(e).__name__}: {e}", "red")
                return
            self._finish_note(note, "mp4 saved", str(path), "green")
            self.last_export.content = f"Last export: `{safe_text(str(path), 300)}`"
        finally:
            self._export_lock.release()

    def _exported(self, event: Any, path: Any) -> None:
        self.last_export.content = f"Last export: `{safe_text(str(path), 300)}`"
        self._notify(event, "Saved", str(path), color="green", auto_close=8.0)

    def _view_of(self, event: Any) -> ViewCamera:
        """The camera of the client that clicked (the default view when set from Python)."""
        client = getattr(event, "client", None)
        if client is not None:
            try:
                return ViewCamera.from_handle(client.camera)
            except (AssertionError, ValueError):
                pass
        return self.viewer.default_view()

    def _notify(
        self,
        event: Any,
        title: str,
        body: str,
        loading: bool = False,
        color: str | None = None,
        auto_close: float | None = None,
    ) -> Any:
        client = getattr(event, "client", None)
        if client is None:
            return None
        return client.add_notification(
            title, body, loading=loading, with_close_button=True, auto_close_seconds=auto_close, color=color
        )

    @staticmethod
    def _finish_note(note: Any, title: str, body: str, color: str) -> None:
        if note is None:
            return
        note.title, note.body, note.loading, note.color = title, body, False, color
        note.auto_close_seconds = 10.0 if color == "green" else None

    # ----------------------------------------------------------------- syncing
    def _time_text(self) -> str:
        st = self.state
        return f"{st.frame / st.fps:.2f} s / {st.num_frames / st.fps:.2f} s · {st.fps:g} fps"

    def sync(self) -> None:
        """Show the state on the controls that follow it (timeline slider, play label, time, speech player)."""
        st = self.state
        if int(self.frame.value) != st.frame:
            self.frame.value = st.frame
        self.time.content = self._time_text()
        playing = st.playing
        label = "Pause" if playing else "Play"
        if self.play.label != label:
            self.play.label = label
            self.play.icon = "player-pause" if playing else "player-play"
        if self._was_playing and not playing:
            self._was_playing = False
            self.audio.content = speech.audio_html(st.speech, None)

    def show_stats(self, stats: RenderStats, clients: int) -> None:
        """Update the stats text (at most four times a second)."""
        now = time.monotonic()
        if now - self._stats_t < 0.25:
            return
        self._stats_t = now
        w, h = stats.size
        self._last_stats = (
            f"server render {stats.last_ms:.0f} ms · {stats.fps:.0f} fps · {w}x{h}"
            f"{'' if stats.full else ' (moving)'}{self._latency_text()}  \n{self._static_stats} · clients {clients}"
        )
        self._write_stats()

    def show_push_stats(self, stats: PushStats, clients: int) -> None:
        """Stats of the browser path: pose time, updates per second, bytes per update, live latency (at most
        four times a second)."""
        now = time.monotonic()
        if now - self._stats_t < 0.25:
            return
        self._stats_t = now
        self._last_stats = (
            f"browser draws · pose {stats.last_ms:.0f} ms · {stats.rate:.0f} updates/s · "
            f"{stats.bytes / 2**20:.2f} MiB/update{self._latency_text()}  \n{self._static_stats} · clients {clients}"
        )
        self._write_stats()

    def _latency_text(self) -> str:
        lat = self.viewer.latency_summary()
        if lat is None or not self.state.live:
            return ""
        return f"  \nspeech → screen {lat[0]:.3f} s (p95 {lat[1]:.3f} s)"

    def set_status(self, text: str) -> None:
        """A status line above the render stats (``nerfhead fit --viewer`` shows the training step there)."""
        self._status = text
        self._write_stats()

    def _write_stats(self) -> None:
        body = self._last_stats or self._static_stats
        self.stats.content = f"{self._status}  \n{body}" if self._status else body
