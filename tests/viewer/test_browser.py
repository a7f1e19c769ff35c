"""The viewer in a real headless Chromium: the page shows the server's render of the head, a slider changes it,
speech uploaded through the page's file input drives the timeline and plays in an <audio> element, four tabs
get renders at once, and stopping the server frees its port.

Needs Chromium (``apt-get update && apt-get install -y chromium``): skipped without it, failed without it when
the environment variable CI is set. Uses the analytic MockHead so every pixel is known on the server side.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from nerfhead.data import EXPRESSION_INDEX
from nerfhead.viewer import ViewerConfig, ViewerServer, view_to_cameras
from nerfhead.viewer.mock import BACKGROUND, MockHead
from tests.viewer.chromium import APT_LINE, Chromium, Page, find_chromium

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
SPEECH = REPO / "scenes" / "assets" / "audio" / "en_ljspeech_LJ050-0131.wav"
CONFIG = ViewerConfig(
    host="127.0.0.1", port=0, max_side=320, moving_side=128, debounce_s=0.2, render="server"
)


def wait_for(cond: Callable[[], object], timeout: float, what: str, poll: float = 0.2) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def chromium_path() -> str:
    path = find_chromium()
    if path is None:
        message = f"Chromium not found; install it with: {APT_LINE}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Renders on one torch thread: the 2-core CI box also runs Chromium's software WebGL."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@pytest.fixture(scope="module")
def viewer(
    tmp_path_factory: pytest.TempPathFactory, chromium_path: str, one_thread: None
) -> Iterator[ViewerServer]:
    v = ViewerServer(MockHead(), tmp_path_factory.mktemp("run"), CONFIG).start()
    try:
        yield v
    finally:
        v.stop()


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Chromium]:
    ch = Chromium(chromium_path, 1024, 720)
    try:
        yield ch
    finally:
        ch.close()


def settled_view(viewer: ViewerServer, cid: int, timeout: float = 120.0):
    """Wait until client ``cid``'s camera is the viewer's initial one (the browser moves there from viser's
    default pose once the page has loaded) and its loop has sent a full-size image with nothing pending."""
    loop = wait_for(lambda: viewer.loop(cid), timeout, f"client {cid}'s render loop")
    home = np.asarray(viewer.default_view().position)

    def quiet() -> bool:
        view = loop.last_view  # type: ignore[attr-defined]
        if view is None or np.abs(np.asarray(view.position) - home).max() > 1e-3 or not loop.settled:  # type: ignore[attr-defined]
            return False
        n = loop.stats.renders  # type: ignore[attr-defined]
        time.sleep(1.0)  # no camera message for a second: the browser's camera has come to rest
        return loop.settled and loop.stats.renders == n  # type: ignore[attr-defined]

    wait_for(quiet, timeout, "the view to settle")
    return loop.last_view  # type: ignore[attr-defined]


def dismiss_notifications(page: Page) -> None:
    page.evaluate(
        "document.querySelectorAll('.mantine-Notification-closeButton').forEach(b => b.click()); true"
    )


def canvas_shot(page: Page, width: int, height: int) -> np.ndarray:
    """The 3D canvas part of a screenshot, float [H, W, 3] in [0, 1] (the canvas sits at the top left)."""
    time.sleep(1.5)  # let the browser decode and draw the last image
    shot = page.screenshot()
    assert shot.shape[0] >= height and shot.shape[1] >= width, (shot.shape, width, height)
    return shot[:height, :width].astype(np.float32) / 255.0


def box_down(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area-average resize of [H, W, 3] to (w, h) (for comparing with the server's smaller render)."""
    w, h = size
    ys = np.linspace(0, img.shape[0], h + 1).astype(int)
    xs = np.linspace(0, img.shape[1], w + 1).astype(int)
    rows = np.add.reduceat(img, ys[:-1], axis=0) / np.diff(ys)[:, None, None]
    return np.add.reduceat(rows, xs[:-1], axis=1) / np.diff(xs)[None, :, None]


def face_pixel(view, point=(0.0, 0.0, 0.09)) -> tuple[int, int]:
    """Canvas pixel (x, y) where a head-frame point (default: the tip of the face) projects."""
    cams = view_to_cameras(view)
    uv, z = cams.project(torch.tensor([point]))
    assert float(z[0, 0]) > 0
    return int(uv[0, 0, 0]), int(uv[0, 0, 1])


def check_matches_server(viewer: ViewerServer, page: Page, view) -> np.ndarray:
    """The canvas shows the server's render of ``view``: returns the canvas screenshot."""
    canvas = canvas_shot(page, view.width, view.height)
    size = viewer.loop(viewer.clients()[0]).stats.size  # type: ignore[union-attr]
    expected = viewer.render_view(view, size).astype(np.float32) / 255.0
    mae = float(np.abs(box_down(canvas, size) - expected).mean())
    assert mae < 0.03, f"browser canvas differs from the server's render: mean abs error {mae:.4f}"
    return canvas


def test_page_shows_head_and_slider_changes_it(viewer: ViewerServer, browser: Chromium):
    page = browser.open(viewer.url)
    cid = wait_for(lambda: viewer.clients(), 120, "the page to connect")[0]  # type: ignore[index]
    view = settled_view(viewer, cid)
    assert view.width > 300 and view.height > 300
    dismiss_notifications(page)
    before = check_matches_server(viewer, page, view)

    bg = np.asarray(BACKGROUND, dtype=np.float32)
    x, y = face_pixel(view)
    patch = before[y - 3 : y + 4, x - 3 : x + 4].reshape(-1, 3)
    assert float(np.abs(patch - bg).max(axis=1).min()) > 0.1, "no head where the face projects"
    corner = before[-12:-4, 4:12].reshape(-1, 3)
    assert float(np.abs(corner - bg).max()) < 0.03, "the canvas corner is not the background colour"

    # The jawOpen slider, set on the server's GUI handle: the page must show a different, still matching image.
    renders = viewer.render_counts[cid]
    viewer.panels.expression["jawOpen"].value = 1.0
    try:
        assert float(viewer.state.drive_at().expression[0, EXPRESSION_INDEX["jawOpen"]]) == 1.0
        wait_for(lambda: viewer.render_counts[cid] > renders, 60, "a render after the slider change")
        view2 = settled_view(viewer, cid)
        after = check_matches_server(viewer, page, view2)
        chin = face_pixel(view2, (0.0, -0.12, 0.02))  # below the closed jaw's chin, inside the open one
        assert float(np.abs(before[chin[1], chin[0]] - bg).max()) < 0.05
        assert float(np.abs(after[chin[1], chin[0]] - bg).max()) > 0.1
        assert float(np.abs(after - before).mean()) > 0.003
    finally:
        viewer.panels.expression["jawOpen"].value = 0.0


def test_speech_upload_and_playback_in_page(viewer: ViewerServer, browser: Chromium, tmp_path: Path):
    page = browser.pages[0] if browser.pages else browser.open(viewer.url)
    wait_for(lambda: viewer.clients(), 120, "the page to connect")
    doc = page.call("DOM.getDocument", depth=-1, pierce=True)["root"]["nodeId"]
    node = page.call("DOM.querySelector", nodeId=doc, selector="input[type=file]")["nodeId"]
    assert node, "no file input on the page"

    bad = tmp_path / "notes.txt"
    bad.write_text("not audio")
    page.call("DOM.setFileInputFiles", nodeId=node, files=[str(bad)])
    titles = "Array.from(document.querySelectorAll('.mantine-Notification-title')).map(e => e.textContent)"
    wait_for(
        lambda: "Could not load speech" in (page.evaluate(titles) or []), 60, "the upload error notification"
    )
    assert viewer.state.speech is None

    page.call("DOM.setFileInputFiles", nodeId=node, files=[str(SPEECH)])
    wait_for(lambda: viewer.state.speech is not None, 120, "the speech drive")
    duration = viewer.state.speech.duration  # type: ignore[union-attr]
    assert viewer.state.num_frames == pytest.approx(duration * viewer.state.fps, abs=1.5)
    assert viewer.panels.frame.max == viewer.state.num_frames - 1

    viewer.state.set_frame(25)
    click_play = "Array.from(document.querySelectorAll('button')).find(b => b.textContent.trim() === 'Play').click(); true"
    page.evaluate(click_play)
    wait_for(lambda: viewer.state.frame > 25 or not viewer.state.playing, 30, "playback to advance")
    audio = "(() => { const a = document.querySelector('audio'); return a && [a.dataset.offset, a.src.length]; })()"
    offset, src_len = wait_for(lambda: page.evaluate(audio), 30, "the <audio> element")  # type: ignore[misc]
    assert float(offset) == pytest.approx(25 / viewer.state.fps, abs=1e-3)
    assert src_len > len(viewer.state.speech.wav_bytes)  # type: ignore[union-attr]  # base64 data URI
    started = (
        "(() => { const a = document.querySelector('audio'); return a && a.dataset.started === '1'; })()"
    )
    wait_for(lambda: page.evaluate(started), 30, "the browser to start playing the clip")
    page.evaluate(
        "Array.from(document.querySelectorAll('button')).find(b => b.textContent.trim() === 'Pause').click(); true"
    )
    wait_for(lambda: not viewer.state.playing, 30, "pause")
    wait_for(
        lambda: page.evaluate("document.querySelector('audio') === null"), 30, "the player to be removed"
    )
    viewer.panels._set_timeline(None)


@pytest.fixture(scope="module")
def fitted_run(tmp_path_factory: pytest.TempPathFactory, chromium_path: str, one_thread: None) -> Path:
    """A real avatar: the trainer's tiny capture fitted for a few steps by ``nerfhead fit`` (about 10 s)."""
    from nerfhead.cli.fit import run_fit
    from nerfhead.data.nerfstudio import save_capture
    from tests.models.tiny_capture import write_tiny_capture

    root = tmp_path_factory.mktemp("fitted")
    (root / "raw").mkdir()
    save_capture(write_tiny_capture(root / "raw"), root / "capture")
    tiny = {"model.parts": ("head_and_neck",), "model.triangle_stride": 3, "model.backend": "torch"}
    run_fit(
        root / "capture",
        root / "run",
        preset="fast",
        steps=6,
        device="cpu",
        progress=False,
        evaluate=False,
        overrides=tiny,
    )
    return root / "run"


def test_fitted_avatar_in_page(fitted_run: Path, browser: Chromium):
    """``nerfhead view RUN``'s loading path with a real fitted splat head: the page shows its render, and the
    yaw slider (set on the server) changes it."""
    from nerfhead.viewer import load_renderable

    v = ViewerServer(load_renderable(fitted_run), fitted_run, CONFIG).start()
    try:
        page = browser.open(v.url)
        cid = wait_for(lambda: v.clients(), 120, "the page to connect")[0]  # type: ignore[index]
        view = settled_view(v, cid)
        dismiss_notifications(page)
        before = check_matches_server(v, page, view)
        fr = v.renderable.framing()
        x, y = face_pixel(view, fr.center)
        white = np.ones(3, dtype=np.float32)  # the capture's background
        assert float(np.abs(before[y - 2 : y + 3, x - 2 : x + 3] - white).max()) > 0.1, (
            "no head at its centre"
        )
        assert float(np.abs(before[4:12, 4:12] - white).max()) < 0.03
        renders = v.render_counts[cid]
        v.panels.pose["yaw"].value = 45.0  # (this tiny fit is too blurry for jawOpen to show at this size)
        wait_for(lambda: v.render_counts[cid] > renders, 60, "a render after the slider change")
        after = check_matches_server(v, page, settled_view(v, cid))
        changed = int((np.abs(after - before).max(axis=-1) > 0.1).sum())
        assert changed > 500, f"only {changed} pixels changed with the head turned"
    finally:
        v.stop()
        browser.pages.pop().close()


def test_four_clients_all_get_renders(viewer: ViewerServer, browser: Chromium):
    while len(browser.pages) < 4:
        browser.open(viewer.url)
    wait_for(lambda: len(viewer.clients()) >= 4, 240, "four connected clients", poll=1.0)
    before = {cid: viewer.render_counts.get(cid, 0) for cid in viewer.clients()}
    viewer.state.set_pose(20.0, 0.0, 0.0, interactive=False)  # one change: every client must render it
    try:
        wait_for(
            lambda: all(viewer.render_counts.get(c, 0) > n for c, n in before.items()),
            240,
            "a render on every client after a shared change",
            poll=1.0,
        )
    finally:
        viewer.state.set_pose(0.0, 0.0, 0.0)
    assert len(before) >= 4


def test_stop_frees_port_with_a_page_connected(chromium_path: str, one_thread: None, tmp_path: Path):
    v = ViewerServer(MockHead(frames=5), tmp_path, CONFIG).start()
    stopped = False
    try:
        port = v.port
        with Chromium(chromium_path, 640, 480) as ch:
            ch.open(v.url)
            wait_for(lambda: v.render_counts, 120, "a render for the page")
            loops = [v.loop(c) for c in v.clients()]
            v.stop()
            stopped = True
            assert loops and all(loop is not None and not loop.alive for loop in loops)
    finally:
        if not stopped:
            v.stop()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as any server binding it again would
        s.bind(("127.0.0.1", port))
        s.listen(1)
    again = ViewerServer(MockHead(frames=5), tmp_path, ViewerConfig(port=port)).start()
    try:
        assert again.port == port  # viser moves to the next port when the asked one is busy
    finally:
        again.stop()
