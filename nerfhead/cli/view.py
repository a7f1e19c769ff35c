"""``nerfhead view``: a web viewer for a trained avatar, rendered on this machine for each browser camera."""

from __future__ import annotations

import signal
import sys
import time
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


def open_viewer(
    run: Path,
    port: int = 8080,
    host: str = "127.0.0.1",
    device: str = "auto",
    mock: bool = False,
    max_side: int = 960,
    moving_side: int = 320,
    speech_driver: str = "auto",
) -> Any:
    """Load the run's avatar (or the analytic mock head) and start the viewer; returns the started
    :class:`~nerfhead.viewer.server.ViewerServer` (call ``stop()`` on it).

    Raises:
        InputError: RUN holds no loadable avatar (without ``mock``); a bad ``speech_driver``.
    """
    import torch

    from nerfhead.errors import InputError
    from nerfhead.viewer.server import ViewerConfig, ViewerServer

    if speech_driver not in ("auto", "network", "rules"):
        raise InputError("--speech-driver", f"must be auto, network or rules, got {speech_driver!r}")
    dev = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    if mock:
        from nerfhead.viewer.mock import MockHead

        renderable: Any = MockHead()
    else:
        from nerfhead.viewer.renderable import load_renderable

        renderable = load_renderable(run, device=dev)
    warning = host_warning(host, run)
    if warning:
        print(warning, file=sys.stderr)
    cfg = ViewerConfig(
        host=host, port=port, max_side=max_side, moving_side=moving_side, speech_driver=speech_driver
    )
    try:
        viewer = ViewerServer(renderable, out_dir=run, config=cfg)
    except ValueError as e:
        raise InputError("--speech-driver", str(e)) from None
    return viewer.start()


def main(
    run: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN")],
    port: int = 8080,
    host: str = "127.0.0.1",
    device: str = "auto",
    mock: bool = False,
    max_side: int = 960,
    moving_side: int = 320,
    speech_driver: str = "auto",
) -> None:
    """Open a web viewer for the avatar in RUN: orbit the camera, scrub or play the timeline, set expression
    and head-pose sliders, load a speech clip to drive the face (played in the browser), export PNG / mp4.

    Args:
        run: run folder written by `nerfhead fit` (exports go to RUN/exports).
        port: port to serve on (the next free one if it is busy).
        host: interface to bind; the default serves this machine only. Anything else (e.g. 0.0.0.0) exposes
            the viewer to the network.
        device: where to render: auto, cpu or cuda.
        mock: show the built-in analytic test head instead of RUN's avatar (RUN is still the export folder).
        max_side: longest image side rendered when the view is at rest.
        moving_side: longest image side rendered while the camera moves or the timeline plays.
        speech_driver: what drives the face from a loaded speech clip: "auto" (the run's fine-tuned speech
            network, else the bundled prior, as `nerfhead drive` does), "network" or "rules".
    """
    viewer = open_viewer(run, port, host, device, mock, max_side, moving_side, speech_driver)
    print(f"nerfhead viewer: {viewer.url}  (Ctrl-C to stop)", flush=True)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as cleanly as Ctrl-C
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        viewer.stop()
        signal.signal(signal.SIGTERM, previous)
        print("nerfhead viewer stopped", flush=True)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
