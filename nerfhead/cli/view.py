"""``nerfhead view``: a web viewer for a trained avatar: a splat head is drawn by the browser (posed here), other
heads are rendered on this machine for each browser camera; live speech can drive the face."""

from __future__ import annotations

import dataclasses
import math
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import tyro


def host_warning(host: str, run: Path) -> str | None:
    """The warning printed when ``host`` is not this machine only (None for 127.0.0.1 / localhost / ::1)."""
    from nerfhead.viewer.server import LOCAL_HOSTS

    if host in LOCAL_HOSTS:
        return None
    return (
        f"warning: --host {host} exposes the viewer to the network: anyone who can reach this port can watch "
        f"the avatar, upload files and write exports into {run}"
    )


@dataclass(frozen=True)
class ViewOptions:
    """How the viewer serves and draws: the options of ``nerfhead view`` that :func:`open_viewer` takes too."""

    port: int = 8080
    """port to serve on (the next free one if it is busy)."""
    host: str = "127.0.0.1"
    """interface to bind; the default serves this machine only. Anything else (e.g. 0.0.0.0) exposes the viewer
    to the network."""
    device: str = "auto"
    """where to render: auto, cpu or cuda."""
    mock: bool = False
    """show the built-in analytic test head instead of RUN's avatar (RUN is still the export folder)."""
    max_side: int = 960
    """longest image side rendered when the view is at rest."""
    moving_side: int = 320
    """longest image side rendered while the camera moves or the timeline plays."""
    speech_driver: str = "auto"
    """what drives the face from a loaded speech clip: "auto" (the run's fine-tuned speech network, else the
    bundled prior, as `nerfhead drive` does), "network" or "rules"."""
    render: str = "auto"
    """where the head is drawn: "auto" (in the browser for a splat head, else here), "browser" (this machine
    poses the Gaussians, the browser sorts and draws them) or "server" (rendered here, for a NeRF head or a GPU
    server). The Stats panel toggles it."""
    page_ack_timeout: float = 0.0
    """browser path, flow control for slow pages (seconds; 0: off): a page gets a new pose only once it has
    drawn the previous one, or this long after it was sent, always the newest (e.g. 1.0 for a remote or
    software-rendering browser)."""
    live_late_drop: float = 0.04
    """live speech, browser path: a frame posed more than this many seconds after its hold's due time is not
    sent (its sound has played); 0 sends every frame, however late."""


def open_viewer(run: Path, options: ViewOptions | None = None, **changes: Any) -> Any:
    """Load the run's avatar (or the analytic mock head) and start the viewer with ``options`` (default
    :class:`ViewOptions`, with ``changes`` to its fields applied); returns the started
    :class:`~nerfhead.viewer.server.ViewerServer` (call ``stop()`` on it).

    Raises:
        InputError: RUN holds no loadable avatar (without ``mock``); a bad ``speech_driver`` or ``render``.
    """

    from nerfhead.cli.checks import check_device
    from nerfhead.errors import InputError
    from nerfhead.viewer.server import ViewerConfig, ViewerServer

    o = dataclasses.replace(options if options is not None else ViewOptions(), **changes)
    if o.speech_driver not in ("auto", "network", "rules"):
        raise InputError("--speech-driver", f"must be auto, network or rules, got {o.speech_driver!r}")
    if o.render not in ("auto", "browser", "server"):
        raise InputError("--render", f"must be auto, browser or server, got {o.render!r}")
    if not (math.isfinite(o.page_ack_timeout) and 0.0 <= o.page_ack_timeout <= 60.0):
        raise InputError("--page-ack-timeout", f"must be 0 .. 60 seconds, got {o.page_ack_timeout}")
    if not (math.isfinite(o.live_late_drop) and 0.0 <= o.live_late_drop <= 10.0):
        raise InputError("--live-late-drop", f"must be 0 .. 10 seconds, got {o.live_late_drop}")
    dev = check_device(o.device)
    if o.mock:
        from nerfhead.viewer.mock import MockHead

        renderable: Any = MockHead()
    else:
        from nerfhead.viewer.renderable import load_renderable

        renderable = load_renderable(run, device=dev)
    warning = host_warning(o.host, run)
    if warning:
        print(warning, file=sys.stderr)
    cfg = ViewerConfig(
        host=o.host,
        port=o.port,
        max_side=o.max_side,
        moving_side=o.moving_side,
        speech_driver=o.speech_driver,
        render=o.render,
        page_ack_timeout_s=o.page_ack_timeout,
        live_late_drop_s=o.live_late_drop,
    )
    try:
        viewer = ViewerServer(renderable, out_dir=run, config=cfg)
    except ValueError as e:
        raise InputError("--render" if "render" in str(e) else "--speech-driver", str(e)) from None
    return viewer.start()


def main(
    run: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN")],
    options: Annotated[ViewOptions, tyro.conf.arg(name="")] = ViewOptions(),
    speech_stream: str | None = None,
    speech_rate: int = 16000,
    speech_format: str = "s16le",
) -> None:
    """Open a web viewer for the avatar in RUN: orbit the camera, scrub or play the timeline, set expression
    and head-pose sliders, load a speech clip to drive the face (played in the browser), export PNG / mp4.

    Args:
        run: run folder written by `nerfhead fit` (exports go to RUN/exports).
        options: how it serves and draws (:class:`ViewOptions`).
        speech_stream: live speech that drives the face as it arrives: "-" (raw mono samples on stdin, e.g.
            `ffmpeg -re -i talk.mp3 -f s16le -ac 1 -ar 16000 - | nerfhead view RUN --speech-stream -`), "device"
            or "device:NAME" (a local input device; needs `pip install 'nerfhead[live]'`) or a FIFO path.
        speech_rate: sample rate of --speech-stream, Hz.
        speech_format: sample format of --speech-stream on a pipe: s16le or f32le (mono, little-endian).
    """
    source = None
    if speech_stream is not None:
        from nerfhead.viewer.live_speech import open_source

        source = open_source(speech_stream, speech_rate, speech_format)
    viewer = open_viewer(run, options)
    # `kill` stops it as cleanly as Ctrl-C, from the moment the URL is out (a caller may kill it at once)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    reported = source is None
    try:
        print(f"nerfhead viewer: {viewer.url}  (Ctrl-C to stop)", flush=True)
        if source is not None:
            viewer.start_speech_stream(source)
            print(f"nerfhead viewer: live speech from {speech_stream} at {speech_rate} Hz", flush=True)
        while True:
            time.sleep(0.2)
            if not reported and viewer.live is not None and not viewer.live.running:
                reported = True
                print(live_report(viewer), flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        viewer.stop()
        signal.signal(signal.SIGTERM, previous)
        print("nerfhead viewer stopped", flush=True)


def live_report(viewer: Any) -> str:
    """One line about a live speech stream that ended: frames and speech-to-screen latency."""
    live = viewer.live
    lat = viewer.latency_summary()
    text = f"nerfhead viewer: live speech ended: {live.frames_in} frames"
    if lat is not None:
        text += f", speech → screen median {lat[0]:.3f} s (p95 {lat[1]:.3f} s)"
    else:
        text += ", none shown (no page was open)"
    return text + (f"; stream error: {live.error}" if live.error else "")


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
