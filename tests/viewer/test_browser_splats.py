"""The browser path in a real headless Chromium: the page draws the splat head the server posed, and it looks like
our rasteriser's render of the same pose at the same camera; the yaw slider turns it; a live speech stream moves
the mouth; stopping the server frees its port.

Metric: PSNR (dB) between the canvas screenshot (software WebGL, viser's splat renderer: float16 covariances,
8-bit colours, its own sort) and ``nerfhead``'s rasteriser at the browser's camera and canvas size, over the
pixels where either image shows the head (the white background left out, so it cannot inflate the score). Bound: >= ``PSNR_BOUND``; the same comparison with the head turned by 10 degrees must fall below it.

The head is a small untrained splat head (about 7,400 Gaussians on the ICT face and head) coloured by position,
so that every part of it is told apart. Needs Chromium like ``test_browser.py``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from nerfhead.data import EXPRESSION_INDEX, Drive
from nerfhead.viewer import AvatarRenderable, ViewCamera, ViewerConfig, ViewerServer
from nerfhead.viewer.camera import view_to_cameras
from nerfhead.viewer.live_speech import PipeSource, feed_pipe
from nerfhead.viewer.renderable import BrowserSplats
from tests.viewer.chromium import Chromium, FrameLog, Page, audio_picture_offsets
from tests.viewer.test_browser import (  # noqa: F401  (fixtures used by name)
    chromium_path,
    dismiss_notifications,
    one_thread,
    wait_for,
)
from tests.viewer.test_live_speech import pcm

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

PSNR_BOUND = 30.0
"""Least PSNR (dB) between the browser's drawing and our rasteriser's render of the same pose and camera."""
FINE_PX = 0.25
"""The fine-detail test's Gaussians: largest standard deviation on screen, pixels (median)."""
FINE_PSNR_BOUND = 25.0
"""Least PSNR (dB) between the page and our rasteriser when the head is made of such Gaussians."""
CONFIG = ViewerConfig(port=0, render="auto", speech_driver="auto")
SPEECH_S = 6.0
"""Seconds of live speech streamed to the page."""


def coloured_head() -> AvatarRenderable:
    from nerfhead.models.deform import DeformConfig
    from nerfhead.models.splat_head import SplatHead, SplatHeadConfig
    from nerfhead.viewer.renderable import SH_C0

    cfg = SplatHeadConfig(
        parts=("face", "head_and_neck"),
        sh_degree=0,
        deform=DeformConfig(enabled=False),
        backend="torch",
        triangle_stride=3,
    )
    head = SplatHead(cfg)
    with torch.no_grad():
        pos, _ = head.canonical_positions()
        u = (pos - pos.min(0).values) / (pos.max(0).values - pos.min(0).values)
        rgb = torch.stack([u[:, 0], 0.3 + 0.5 * u[:, 1], 1 - u[:, 2]], -1)
        head.splats.params["sh0"][:] = ((rgb - 0.5) / SH_C0)[:, None, :]
        head.splats.params["opacities"][:] = 3.0
    return AvatarRenderable(head, Drive.neutral(2), name="coloured head", background=torch.ones(3))


@pytest.fixture(scope="module")
def viewer(
    chromium_path: str,  # noqa: F811
    one_thread: None,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ViewerServer]:
    v = ViewerServer(coloured_head(), tmp_path_factory.mktemp("run"), CONFIG).start()
    try:
        yield v
    finally:
        v.stop()


@pytest.fixture(scope="module")
def page(viewer: ViewerServer, chromium_path: str) -> Iterator[Page]:  # noqa: F811
    with Chromium(chromium_path, 800, 600) as ch:
        # fixedDpr=1: the canvas keeps its size in pixels (viser lowers its resolution while a page draws slowly,
        # as software WebGL does), so that the screenshots compare with our renders pixel for pixel
        p = ch.open(viewer.url.rstrip("/") + "/?fixedDpr=1")
        wait_for(lambda: viewer.connected(), 120, "the page to connect")
        yield p


def drawn(viewer: ViewerServer, page: Page, timeout: float = 90.0) -> tuple[ViewCamera, np.ndarray]:
    """Once the newest pose has been sent and the page has drawn it: the page's camera and its canvas, float
    [H, W, 3]. Drawn means two screenshots a second apart agree at the same camera (software WebGL on a loaded
    machine can take seconds to sort and draw)."""
    pusher = viewer.splats
    assert pusher is not None
    wait_for(lambda: pusher._last_version >= viewer.state.version, 60, "the newest pose to be sent")
    client = viewer._clients[viewer.connected()[0]]
    dismiss_notifications(page)

    def shot() -> tuple[ViewCamera, np.ndarray]:
        view = ViewCamera.from_handle(client.camera)
        return view, page.screenshot()[: view.height, : view.width].astype(np.float32) / 255.0

    deadline = time.monotonic() + timeout
    view, canvas = shot()
    while time.monotonic() < deadline:
        time.sleep(1.0)
        dismiss_notifications(page)
        view2, canvas2 = shot()
        if view2 == view and canvas2.shape == canvas.shape and float(np.abs(canvas2 - canvas).mean()) < 1e-3:
            return view2, canvas2
        view, canvas = view2, canvas2
    raise AssertionError("the page did not settle on one drawing")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR over the pixels where either image shows the head (not the white background)."""
    head = (np.abs(a - 1.0).max(-1) > 0.02) | (np.abs(b - 1.0).max(-1) > 0.02)
    assert head.sum() > 1000, "no head on the canvas"
    return -10.0 * math.log10(max(float(((a - b)[head] ** 2).mean()), 1e-12))


def ours(viewer: ViewerServer, view: ViewCamera) -> np.ndarray:
    return viewer.render_view(view).astype(np.float32) / 255.0


def test_browser_draws_what_our_rasteriser_renders(viewer: ViewerServer, page: Page):
    assert viewer.render_mode == "browser" and viewer.clients() == []  # no server-side render loop
    view, canvas = drawn(viewer, page)
    assert view.width > 300 and view.height > 300
    head = canvas[view.height // 3, view.width // 2]
    assert float(np.abs(head - 1.0).max()) > 0.2, "no head in the middle of the canvas"
    score = psnr(canvas, ours(viewer, view))
    print(f"browser vs rasteriser: PSNR {score:.1f} dB at {view.width}x{view.height}")
    assert score >= PSNR_BOUND
    # The case that must fail: our render with the head turned by 10 degrees.
    viewer.state.set_pose(10.0, 0.0, 0.0, interactive=False)
    try:
        turned = ours(viewer, view)
    finally:
        viewer.state.set_pose(0.0, 0.0, 0.0, interactive=False)
    wrong = psnr(canvas, turned)
    print(f"browser vs rasteriser with the head turned 10 degrees: PSNR {wrong:.1f} dB")
    assert wrong < PSNR_BOUND
    # Flow control: the page's script acknowledged the buffers it drew, over the page socket.
    gate = viewer.splats.pages[viewer.connected()[0]]  # type: ignore[union-attr]
    assert gate.acks >= 1 and gate.sent >= 1, (gate.acks, gate.sent)


def viser_would_drop(g: BrowserSplats, view: ViewCamera) -> torch.Tensor:
    """[N] bool: the Gaussians viser's own splat shader leaves out at ``view``: opacity x det(projected covariance
    + 0.3 px^2) < 0.25 px^4 (what the page script's shader fix takes out of it)."""
    cams = view_to_cameras(view)
    W, K = cams.viewmat[0], cams.K[0]
    t = g.centers @ W[:3, :3].T + W[:3, 3]
    J = torch.zeros(len(t), 2, 3)
    J[:, 0, 0], J[:, 0, 2] = K[0, 0] / t[:, 2], -K[0, 0] * t[:, 0] / t[:, 2] ** 2
    J[:, 1, 1], J[:, 1, 2] = K[1, 1] / t[:, 2], -K[1, 1] * t[:, 1] / t[:, 2] ** 2
    A = J @ W[:3, :3]
    c2 = A @ g.covariances @ A.transpose(1, 2) + 0.3 * torch.eye(2)
    det = c2[:, 0, 0] * c2[:, 1, 1] - c2[:, 0, 1] ** 2
    return g.opacities[:, 0] * det < 0.25


def test_fine_gaussians_are_drawn_like_our_rasteriser_draws_them(viewer: ViewerServer, page: Page):
    """Gaussians under a pixel across (a fitted head's eyelashes, lip lines, eyes): viser's shader would leave
    out nearly every one (:func:`viser_would_drop`), the page script's shader fix draws them as our
    rasteriser does. On the demo avatar the unfixed page left out 59% of the Gaussians: white holes at the eyes
    and mouth (BENCHMARKS.md)."""
    view, _ = drawn(viewer, page)
    scales = viewer.renderable.avatar.splats.params["scales"]  # type: ignore[attr-defined]
    before = scales.detach().clone()
    try:
        g = viewer.renderable.gaussians_at(viewer.state.drive_at())  # type: ignore[attr-defined]
        cams = view_to_cameras(view)
        depth = (g.centers @ cams.viewmat[0, :3, :3].T + cams.viewmat[0, :3, 3])[:, 2]
        px = (
            torch.linalg.eigvalsh(g.covariances)[:, 2].sqrt() * cams.K[0, 0, 0] / depth
        )  # largest std, pixels
        with torch.no_grad():  # the head's Gaussians shrunk to about FINE_PX px (largest standard deviation)
            scales.sub_(math.log(float(px.median()) / FINE_PX))
        viewer.state.set_pose(0.01, 0.0, 0.0, interactive=False)  # a new state version: posed and sent again
        g = viewer.renderable.gaussians_at(viewer.state.drive_at())  # type: ignore[attr-defined]
        dropped = float(viser_would_drop(g, view).float().mean())
        assert dropped > 0.9, f"viser's own shader would leave out only {dropped:.0%}: not a test of the fix"
        view2, canvas = drawn(viewer, page)
        assert view2 == view
        fixed = json.loads(page.evaluate("JSON.stringify(window.__nerfheadShader || {})"))
        assert fixed.get("patched", 0) >= 1 and fixed.get("axis") == fixed["patched"], fixed  # both changes
        score = psnr(canvas, ours(viewer, view))
        print(
            f"fine Gaussians (viser's shader would drop {dropped:.0%}): browser vs rasteriser PSNR {score:.1f} dB"
        )
        assert score >= FINE_PSNR_BOUND
    finally:
        with torch.no_grad():
            scales.copy_(before)
        viewer.state.set_pose(0.0, 0.0, 0.0, interactive=False)


def test_yaw_slider_turns_the_head_in_the_page(viewer: ViewerServer, page: Page):
    _, before = drawn(viewer, page)
    sent = viewer.splats.stats.updates  # type: ignore[union-attr]
    viewer.panels.pose["yaw"].value = 30.0
    try:
        view, after = drawn(viewer, page)
        assert viewer.splats.stats.updates > sent  # type: ignore[union-attr]
        gate = viewer.splats.pages[viewer.connected()[0]]  # type: ignore[union-attr]
        assert gate.last_version == viewer.splats._last_version  # type: ignore[union-attr]  # the newest pose
        assert psnr(after, ours(viewer, view)) >= PSNR_BOUND
        assert psnr(after, before) < PSNR_BOUND - 6
    finally:
        viewer.panels.pose["yaw"].value = 0.0


def test_live_speech_moves_the_mouth_in_the_page(viewer: ViewerServer, page: Page):
    jaw = EXPRESSION_INDEX["jawOpen"]
    view, _ = drawn(viewer, page)
    closed = ours(viewer, view)  # where an open jaw changes our render: the mouth region
    viewer.state.set_expression(jaw, 1.0, interactive=False)
    try:
        mouth = np.abs(ours(viewer, view) - closed).max(-1) > 0.1
    finally:
        viewer.state.set_expression(jaw, 0.0, interactive=False)
    assert mouth.sum() > 200
    drawn(viewer, page)
    frames = FrameLog(page._ws_url, viewer.splats.stats.bytes // 2)  # type: ignore[union-attr]
    r, w = os.pipe()
    writer = feed_pipe(w, pcm(SPEECH_S))
    live = viewer.start_speech_stream(PipeSource(os.fdopen(r, "rb"), 16000))
    audio = viewer.page_audio
    assert audio is not None
    shots: list[np.ndarray] = []
    until = time.monotonic() + SPEECH_S / 2
    while live.running and len(shots) < 15 and time.monotonic() < until:
        shots.append(page.screenshot()[: view.height, : view.width].astype(np.float32) / 255.0)
        time.sleep(0.15)
    quiet = time.monotonic() + 0.5  # screenshots stall the 2-core machine: audio sync is measured after them
    writer.join(20)
    wait_for(lambda: not live.running, 30, "the stream to end")
    time.sleep(0.5)
    frames.close()
    sync = audio_picture_offsets(page, frames.times, after=quiet)
    assert live.error is None and live.frames_shown > 50
    assert len(viewer.latencies) > 20  # frames that reached the websocket, each with its latency
    # The mouth region changes between screenshots while the stream plays; the rest of the canvas barely does.
    change = [np.abs(s - shots[0]).max(-1) for s in shots[1:]]
    in_mouth = max(float(c[mouth].mean()) for c in change)
    elsewhere = max(float(c[~mouth].mean()) for c in change)
    print(
        f"live speech in the page: mean change {in_mouth:.4f} in the mouth region, {elsewhere:.4f} elsewhere"
    )
    assert in_mouth > 0.01 and in_mouth > 5 * elsewhere
    # The live audio plays in the page in step with the picture: the audio at a frame's stream time is scheduled
    # within one frame (40 ms) of the page receiving the pose posed from it (a GPU browser draws it at its next
    # display refresh; headless software WebGL draws far later, so the receipt stands for the display).
    # Measured once the screenshots are over (the last ~2 s of the stream), over the frames the server sent on
    # time (within 20 ms of its own hold, which the adaptive margin moves): one it could not pose in time (this
    # machine under other load) is late against its sound whatever the page does; their share is printed.
    t_all = np.asarray(sync["t"])
    off_all = np.abs(np.asarray(sync["offsets"]))
    late = {tr.t: tr.sent - tr.arrival - tr.hold for tr in viewer.live_trace}  # stream time -> past its hold
    on_time = np.asarray([late.get(t, 9.0) <= 0.02 for t in t_all], bool)
    off = off_all[on_time] if on_time.any() else off_all
    print(
        f"live audio vs picture at the page: {off_all.size} frames, {int(on_time.sum())} sent on time; "
        f"|offset| of those median {np.median(off) * 1000:.1f} ms, p90 {np.percentile(off, 90) * 1000:.1f} ms, "
        f"max {off.max() * 1000:.1f} ms (all frames: median {np.median(off_all) * 1000:.1f} ms); markers "
        f"{np.median(sync['marker_minus_receipt']) * 1000:.1f} ms from the poses; {sync['late']} of "
        f"{sync['chunks'] + sync['late']} chunks arrived after their play time"
    )
    assert sync["chunks"] >= 0.5 * SPEECH_S / 0.02  # the page played the stream's audio
    # from the audio thread (an AudioWorklet fed by the page's worker), not the page's busy main thread
    assert page.evaluate("__nerfheadAudio.worklet") is True
    assert on_time.sum() >= 10
    assert float(np.median(off)) <= 0.040
    # The case that must fail: audio played as it arrives (no schedule) is a look-ahead early.
    assert float(np.median(np.abs(np.asarray(sync["offsets"]) - live.driver.latency_s))) > 0.040


def _page_script(port: int, client: int) -> str:
    """The JavaScript of the page-script element the viewer sends a page (``page_html``)."""
    import base64
    import re

    from nerfhead.viewer.page_audio import page_html

    html = page_html(port, client)
    return base64.b64decode(re.search(r"atob\('([^']+)'\)", html).group(1)).decode()  # type: ignore[union-attr]


def test_a_reconnected_page_says_its_new_client_id(viewer: ViewerServer, page: Page):
    """A page whose viser client reconnects gets the page script again, with its new client id; the script already
    running says that id on its open socket, so the server credits the page's draws and sends its frame markers
    and splat node under the new id (the case that must fail: a script that ignores the second run, as before,
    leaves the socket under the old id and the new page's node waiting for the fallback)."""
    audio = viewer.page_audio
    assert audio is not None
    cid = viewer.connected()[0]
    wait_for(lambda: cid in audio._page_of.values(), 30, "the page's hello")
    page.evaluate(_page_script(audio.port, 4242))  # what the page does with a reconnected client's element
    try:
        wait_for(lambda: 4242 in audio._page_of.values(), 15, "the hello with the new client id")
    finally:
        page.evaluate(_page_script(audio.port, cid))  # the real id again, for the tests after this one
        wait_for(lambda: cid in audio._page_of.values(), 15, "the hello with the page's own id")


def test_live_audio_falls_back_to_the_main_thread_without_audioworklet(
    chromium_path: str,  # noqa: F811
    one_thread: None,  # noqa: F811
    tmp_path: Path,
):
    """A browser without AudioWorklet plays the live audio from the page's main thread instead."""
    v = ViewerServer(coloured_head(), tmp_path, CONFIG).start()
    seconds = 4.0
    try:
        with Chromium(chromium_path, 640, 480) as ch:
            page = ch.open(v.url)
            page.add_init_script("delete window.AudioWorkletNode;")  # and reloads the page
            wait_for(
                lambda: v.connected() and v.splats and v.splats.stats.updates, 120, "a pose for the page"
            )
            r, w = os.pipe()
            writer = feed_pipe(w, pcm(seconds))
            live = v.start_speech_stream(PipeSource(os.fdopen(r, "rb"), 16000))
            writer.join(20)
            wait_for(lambda: not live.running, 30, "the stream to end")
            time.sleep(0.5)
            state = json.loads(
                page.evaluate(
                    "JSON.stringify({w: __nerfheadAudio.worklet, c: __nerfheadAudio.chunks.length,"
                    " late: __nerfheadAudio.late})"
                )
            )
    finally:
        v.stop()
    print(f"main-thread audio: {state['c']} chunks played, {state['late']} late")
    assert state["w"] is False  # the fallback was taken (no worklet to find)
    assert state["c"] >= 0.25 * seconds / 0.02  # must fail: a page that lost its audio without the worklet


def test_stop_frees_the_port_with_the_page_drawing(chromium_path: str, one_thread: None, tmp_path: Path):  # noqa: F811
    v = ViewerServer(coloured_head(), tmp_path, CONFIG).start()
    stopped = False
    try:
        port = v.port
        with Chromium(chromium_path, 640, 480) as ch:
            ch.open(v.url)
            wait_for(
                lambda: v.connected() and v.splats and v.splats.stats.updates, 120, "a pose for the page"
            )
            pusher = v.splats
            live = v.start_speech_stream(PipeSource(open(os.devnull, "rb"), 16000))  # opens the audio port
            audio = v.page_audio
            assert audio is not None
            wait_for(lambda: not live.running, 30, "the empty stream to end")
            v.stop()
            stopped = True
            assert pusher is not None and not pusher.alive and v.splats is None
    finally:
        if not stopped:
            v.stop()
    for p in (port, audio.port):  # the viewer's and the page audio's
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", p))
            s.listen(1)


def test_a_page_left_open_follows_a_restarted_viewer(chromium_path: str, one_thread: None, tmp_path: Path):  # noqa: F811
    """A viewer stopped and started again on the same port, its page left open: viser's page reconnects and gets
    the page script with the new viewer's page-socket port; the page starts afresh, so the new viewer hears its
    hello (the case that must fail: a script that ignores the second run keeps its socket to the stopped viewer,
    and the new one never hears from the page, so its live audio stays silent)."""
    first = ViewerServer(coloured_head(), tmp_path / "a", CONFIG).start()
    second = None
    first_stopped = False
    try:
        with Chromium(chromium_path, 640, 480) as ch:
            page = ch.open(first.url)
            audio = first.page_audio
            assert audio is not None
            wait_for(lambda: len(audio._page_of) == 1, 120, "the page's hello to the first viewer")
            page.call(
                "Emulation.setFocusEmulationEnabled", enabled=True
            )  # viser retries only in a focused tab
            port = first.port
            first.stop()
            first_stopped = True
            second = ViewerServer(
                coloured_head(), tmp_path / "b", dataclasses.replace(CONFIG, port=port)
            ).start()
            audio2 = second.page_audio
            assert audio2 is not None and audio2.port != audio.port
            wait_for(lambda: len(audio2._page_of) >= 1, 90, "the page's hello to the restarted viewer")
            wait_for(
                lambda: bool(second.connected()) and second.connected()[0] in audio2._page_of.values(),
                30,
                "the hello naming the page's client id",
            )
    finally:
        if not first_stopped:
            first.stop()
        if second is not None:
            second.stop()
