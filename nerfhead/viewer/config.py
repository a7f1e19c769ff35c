"""Settings of the nerfhead viewer (:class:`ViewerConfig`), apart from the server so that the GUI panels can
name them without importing the server."""

from __future__ import annotations

from dataclasses import dataclass

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ViewerConfig:
    """Viewer server settings."""

    host: str = "127.0.0.1"
    """Interface to bind; anything but 127.0.0.1 / localhost exposes the viewer to the network."""
    port: int = 8080
    """Port to bind (0: any free port; a busy port makes viser try the next ones)."""
    max_side: int = 960
    """Longest image side rendered when the view is at rest."""
    moving_side: int = 320
    """Longest image side rendered while the camera (or anything else) is changing."""
    debounce_s: float = 0.2
    """Quiet time after the last change before the full-size render."""
    jpeg_quality: int = 85
    """JPEG quality of the images sent to the browser."""
    fov_deg: float = 30.0
    """Vertical field of view of a new client's camera."""
    export_max_side: int = 1280
    """Longest image side of PNG and mp4 exports (the browser canvas size, capped)."""
    render: str = "auto"
    """Where the head is drawn: "browser" (the server poses the Gaussians of a splat head, the page sorts and
    draws them on its own GPU), "server" (the server renders an image per browser camera: NeRF heads, or a GPU
    server) or "auto" (browser for a splat head, else server). The Stats panel has a toggle."""
    max_upload_mib: float = 20.0
    """Largest speech upload; refused as soon as its declared size or its received bytes pass this."""
    max_speech_s: float = 180.0
    """Longest speech upload (read from its container header before decoding; decoding stops past it)."""
    export_interval_s: float = 2.0
    """Least time between two exports started by one page (further clicks are refused with a note)."""
    speech_driver: str = "auto"
    """What turns uploaded speech into a drive: "auto" (the learned network: the run's fine-tuned one in the
    export folder, else the bundled prior; the rules when neither exists), "network" (the same, refusing to
    start without one) or "rules"."""
    speech_mode: str = "auto"
    """Rules used by the "rules" speech driver: auto (phonetic when pocketsphinx is installed), phonetic or
    energy (fastest, any language)."""
    page_audio: bool = True
    """Play live speech (``--speech-stream``) in the page, in sync with the picture (a websocket of its own on
    the viewer's host, a free port; :mod:`nerfhead.viewer.page_audio`)."""
    page_ack_timeout_s: float = 0.0
    """Browser path, flow control: a page gets a new pose only once it has drawn the previous one (its page
    script acknowledges each Gaussian buffer it draws, over the page-audio socket), or this long after it was
    sent; always the newest pose, poses in between are dropped. A browser drawing on a GPU acknowledges within
    milliseconds and gets every pose. Each page's audio follows the poses sent to it. 0 (the default): every
    pose to every page at once (no flow control): on this project's 2-core machine the headless page's
    speech-to-screen p95 was worse with it on (a pose waits for the slow page's acknowledgement), so it is an
    option for slow or remote pages (``nerfhead view --page-ack-timeout 1``), not the default."""
    live_margin_s: float = 0.07
    """Live speech: every frame leaves for the pages a hold margin after the driver's look-ahead (0.25 s) past
    the arrival of its audio (frames posed sooner wait): a steady picture the page's audio is scheduled
    against. This is the largest margin (and the first, until poses were timed); the margin adapts down to
    ``live_margin_min_s`` (:class:`nerfhead.viewer.live_speech.HoldMargin`: a high percentile of the measured
    driver output -> pose done times plus a hand-off allowance). Shorter: less latency, but frames that take
    longer to pose arrive late against the sound."""
    live_late_drop_s: float = 0.04
    """Live speech, browser path: a frame whose pose is ready more than this long (one 25 fps frame) after its
    hold's due time is not sent (the page has played its sound: drawn, it would be out of step with it); one
    is still sent when nothing left for 0.2 s, so the face keeps moving under load. 0: every frame is sent,
    however late."""
    fused_pose: bool = True
    """Browser path: pose a splat head with its fused pose-and-pack kernel (``packed_at``:
    :func:`nerfhead.ops.pose_splats.pose_splats`, the same bytes to float rounding, about 2.5x faster on the
    CPU); False: the per-tensor pose step then packing (``gaussians_at``; ``scripts/bench_viewer.py`` compares
    the two)."""
    live_margin_min_s: float = 0.015
    """Live speech: the smallest hold margin the adaptive hold may use (>= ``live_margin_s``: a fixed margin
    of ``live_margin_s``)."""
