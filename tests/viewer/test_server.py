"""The viewer without a browser: the analytic mock head, the shared state, the per-client render loop with a
simulated camera, GUI handles set from Python, speech upload and playback, exports, the CLI entry and shutdown."""

from __future__ import annotations

import base64
import io
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from nerfhead.data import EXPRESSION_INDEX, Cameras, Drive
from nerfhead.errors import InputError
from nerfhead.geometry import axis_angle_to_matrix
from nerfhead.viewer import (
    AvatarRenderable,
    RenderLoop,
    ViewCamera,
    ViewerConfig,
    ViewerServer,
    ViewerState,
    render_size,
    view_to_cameras,
)
from nerfhead.viewer.mock import BACKGROUND, RADII, MockHead
from nerfhead.viewer.panels import group_expressions
from nerfhead.viewer.speech import MAX_UPLOAD_BYTES, audio_html, decode_upload, speech_drive
from nerfhead.viewer.state import pose_offset_matrix

REPO = Path(__file__).resolve().parents[2]
SPEECH = REPO / "scenes" / "assets" / "audio" / "fleurs_en-001.ogg"
JAW = EXPRESSION_INDEX["jawOpen"]
CONFIG = ViewerConfig(
    port=0,
    max_side=160,
    moving_side=64,
    debounce_s=0.15,
    export_max_side=96,
    speech_driver="rules",
    speech_mode="energy",
)
VIEW = ViewCamera(
    (0.0, 1.0, 0.0, 0.0), (0.0, -0.01, 0.6), math.radians(30), 240, 180
)  # in front, looking at -z


def wait_for(cond: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@pytest.fixture
def viewer(tmp_path: Path) -> Iterator[ViewerServer]:
    v = ViewerServer(MockHead(frames=20), tmp_path / "run", CONFIG).start()
    try:
        yield v
    finally:
        v.stop()


def click(handle) -> None:
    """Press a GUI button from Python (viser calls its callbacks with no client)."""
    handle.value = True


def upload_event(name: str, content: bytes) -> SimpleNamespace:
    return SimpleNamespace(
        client=None, target=SimpleNamespace(value=SimpleNamespace(name=name, content=content))
    )


# ---------------------------------------------------------------------------------------------- mock head
def test_mock_head_numbers():
    head = MockHead()
    eye = torch.tensor([[0.0, 0.0, 0.6]])
    cams = Cameras.from_look_at(eye, torch.zeros(3), torch.tensor([0.0, 1.0, 0.0]), 100.0, 65, 65)
    out = head.render(cams, Drive.neutral(1))
    # The centre pixel's ray is the optical axis: it meets the ellipsoid's front at z = RADII[2].
    assert float(out.depth[0, 32, 32, 0]) == pytest.approx(0.6 - RADII[2], abs=1e-5)
    assert float(out.alpha[0, 0, 0, 0]) == 0.0 and float(out.depth[0, 0, 0, 0]) == 0.0
    torch.testing.assert_close(out.rgb[0, 0, 0], torch.tensor(BACKGROUND))
    # jawOpen stretches the lower half: more covered pixels, and a pixel below the chin turns into head.
    opened = Drive.neutral(1)
    opened.expression[0, JAW] = 1.0
    out2 = head.render(cams, opened)
    chin_row = 32 + int(100 * 0.12 / 0.6)  # 0.12 m below the centre: outside the closed jaw (0.10)
    assert float(out.alpha[0, chin_row, 32, 0]) == 0.0 and float(out2.alpha[0, chin_row, 32, 0]) == 1.0
    assert float(out2.alpha.sum()) > float(out.alpha.sum()) * 1.1
    # Deterministic, and the drive's head pose turns the head: a 90 degree yaw shows the side (no eyes).
    torch.testing.assert_close(head.render(cams, opened).rgb, out2.rgb, rtol=0, atol=0)
    turned = Drive.neutral(1).replace(rotation=torch.tensor([[0.0, math.pi / 2, 0.0]]))
    side = head.render(cams, turned)
    assert float(side.depth[0, 32, 32, 0]) == pytest.approx(0.6 - RADII[0], abs=1e-5)


# -------------------------------------------------------------------------------------------------- state
def test_state_offsets_pose_and_playback():
    base = MockHead(frames=20).default_drive()
    st = ViewerState(base)
    seen: list[bool] = []
    st.add_listener(seen.append)
    st.set_frame(7)
    st.set_expression(JAW, 0.75)
    e = st.drive_at().expression[0]
    assert float(e[JAW]) == pytest.approx(min(1.0, float(base.expression[7, JAW]) + 0.75))
    st.set_pose(30.0, -10.0, 5.0)
    R = axis_angle_to_matrix(st.drive_at().rotation[0])
    torch.testing.assert_close(R, pose_offset_matrix(30.0, -10.0, 5.0), rtol=0, atol=1e-5)
    Ry = pose_offset_matrix(30.0, 0.0, 0.0)
    torch.testing.assert_close(Ry[0, 2], torch.tensor(math.sin(math.radians(30))), rtol=0, atol=1e-6)
    assert seen == [True, True, True]
    assert len(st.timeline()) == 20
    st.reset_offsets()
    torch.testing.assert_close(st.drive_at(3).expression, base.expression[3:4])
    # Real-time playback with an injected clock: 25 fps, frame = start + floor(elapsed * fps); stops at the end.
    assert st.play(now=100.0) == pytest.approx(7 / 25)
    assert st.tick(now=100.2) and st.frame == 12
    assert not st.tick(now=105.0) and st.frame == 19 and not st.playing
    st.play(now=200.0)  # from the end: starts over
    assert st.frame == 0


def test_expression_groups_cover_every_name_once():
    groups = group_expressions()
    names = [n for g in groups.values() for n in g]
    assert sorted(names) == sorted(EXPRESSION_INDEX) and len(names) == 53
    assert groups["Jaw"] == ["jawForward", "jawLeft", "jawOpen", "jawRight"]
    assert all(n.startswith("brow") for n in groups["Brows"]) and len(groups["Mouth"]) == 23
    assert groups["Other"] == [
        "cheekPuff_L",
        "cheekPuff_R",
        "cheekSquint_L",
        "cheekSquint_R",
        "noseSneer_L",
        "noseSneer_R",
    ]


# ------------------------------------------------------------------------------------------------- server
def test_serves_page_on_localhost(viewer: ViewerServer):
    assert viewer.server.get_host() == "127.0.0.1" and viewer.port > 0
    assert viewer.url == f"http://127.0.0.1:{viewer.port}/"
    with urllib.request.urlopen(viewer.url, timeout=30) as r:
        assert r.status == 200 and b"<html" in r.read(4096).lower()


def test_render_loop_simulated_client(viewer: ViewerServer):
    images: list[np.ndarray] = []
    loop = viewer.add_loop(9001, lambda: VIEW, images.append)
    wait_for(lambda: loop.settled, 30, "the first full-size render")
    full = render_size(VIEW.width, VIEW.height, CONFIG.max_side)
    assert images[0].shape == (full[1], full[0], 3)
    np.testing.assert_array_equal(images[0], viewer.render_view(VIEW, full))  # exactly the server's render
    bg = np.round(np.asarray(BACKGROUND) * 255)
    assert np.abs(images[0][full[1] // 2, full[0] // 2] - bg).max() > 30  # the head fills the middle
    assert np.abs(images[0][2, 2] - bg).max() <= 1
    # A stream of camera moves: small images while it lasts, one full-size image once it stops.
    n0 = len(images)
    for _ in range(12):
        loop.invalidate(interactive=True)
        time.sleep(0.03)
    wait_for(lambda: loop.settled, 30, "the settle render")
    sizes = [im.shape[:2] for im in images[n0:]]
    small = render_size(VIEW.width, VIEW.height, CONFIG.moving_side)
    assert (small[1], small[0]) in sizes and sizes[-1] == (full[1], full[0]), sizes
    assert viewer.render_counts[9001] == len(images)
    assert loop.stats.full and loop.stats.size == full
    stats = viewer.panels.stats.content
    assert re.search(r"render \d+ ms · \d+ fps · \d+x\d+", stats) and "backend torch · device cpu" in stats


def test_render_loop_survives_a_failing_render(capsys: pytest.CaptureFixture[str]):
    calls: list[int] = []
    images: list[np.ndarray] = []

    def render(view: ViewCamera, size: tuple[int, int]) -> np.ndarray:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("model exploded")
        return np.zeros((size[1], size[0], 3), np.uint8)

    loop = RenderLoop(
        lambda: VIEW, render, images.append, max_side=32, moving_side=16, debounce_s=0.05
    ).start()
    try:
        loop.invalidate()
        wait_for(lambda: calls, 10, "the first render")
        loop.invalidate()
        wait_for(lambda: images, 10, "an image after the failure")
        assert loop.alive and images[0].shape == (24, 32, 3) and loop.stats.renders == 1
    finally:
        loop.stop()
    assert not loop.alive and "model exploded" in capsys.readouterr().err


def test_gui_handles_drive_the_state_and_the_image(viewer: ViewerServer):
    images: list[np.ndarray] = []
    loop = viewer.add_loop(1, lambda: VIEW, images.append)
    wait_for(lambda: loop.settled, 30, "the first render")
    before, n = images[-1], len(images)
    panels = viewer.panels
    panels.expression["jawOpen"].value = 0.8
    assert float(viewer.state.drive_at().expression[0, JAW]) == pytest.approx(0.8)
    wait_for(lambda: len(images) > n and loop.settled, 30, "a render after the slider change")
    after = images[-1]
    np.testing.assert_array_equal(after, viewer.render_view(VIEW, (after.shape[1], after.shape[0])))
    assert np.abs(after.astype(int) - before).mean() > 2
    panels.pose["yaw"].value = 30.0
    R = axis_angle_to_matrix(viewer.state.drive_at().rotation[0])
    torch.testing.assert_close(R, pose_offset_matrix(30.0, 0.0, 0.0), rtol=0, atol=1e-5)
    panels.frame.value = 12
    assert viewer.state.frame == 12
    want = (
        viewer.state.drive.expression[12] + panels.expression["jawOpen"].value * torch.eye(53)[JAW]
    ).clamp(0, 1)
    torch.testing.assert_close(viewer.state.drive_at().expression[0], want)
    click(panels.reset)
    assert panels.expression["jawOpen"].value == 0.0 and panels.pose["yaw"].value == 0.0
    assert float(viewer.state.expression_offsets.abs().sum()) == 0.0 and viewer.state.pose_offsets == (
        0,
        0,
        0,
    )


def test_play_button_runs_in_real_time(viewer: ViewerServer):
    panels = viewer.panels
    panels.frame.value = 0
    t0 = time.monotonic()
    click(panels.play)
    assert viewer.state.playing and panels.play.label == "Pause"
    time.sleep(0.4)
    click(panels.play)
    elapsed = time.monotonic() - t0
    frame = viewer.state.frame
    assert not viewer.state.playing and panels.play.label == "Play"
    assert 0.4 * 25 * 0.5 <= frame <= elapsed * 25 + 1, (frame, elapsed)
    assert int(panels.frame.value) == frame  # the slider follows playback
    click(panels.play)  # plays to the end (20 frames at 25 fps) and stops by itself
    # the playback thread clears ``playing`` and then relabels the button: wait for both
    wait_for(lambda: not viewer.state.playing and panels.play.label == "Play", 10, "the end of the timeline")
    assert viewer.state.frame == 19


# ------------------------------------------------------------------------------------------------- speech
def test_speech_upload_drives_timeline_and_audio(viewer: ViewerServer):
    from nerfhead.media.audio import load_audio

    content = SPEECH.read_bytes()
    viewer.panels._on_upload(upload_event("hello.ogg", content))
    clip = viewer.state.speech
    assert clip is not None and clip.name == "hello.ogg"
    wave, sr = load_audio(SPEECH, 16000)
    want = speech_drive(wave, 25.0, mode="energy")
    torch.testing.assert_close(viewer.state.drive.expression, want.expression)
    assert viewer.state.num_frames == len(want) and viewer.panels.frame.max == len(want) - 1
    # Pose is held at the original timeline's first timestep.
    torch.testing.assert_close(viewer.state.drive.translation, torch.zeros(len(want), 3))
    import soundfile

    data, rate = soundfile.read(io.BytesIO(clip.wav_bytes), dtype="float32")
    assert rate == 16000 and data.shape == wave.shape
    assert np.abs(data - wave).max() <= 1 / 32767 + 1e-6  # 16-bit PCM of what drove the face
    viewer.panels.frame.value = 50
    click(viewer.panels.play)
    html = viewer.panels.audio.content
    m = re.search(r'data-offset="([0-9.]+)" src="data:audio/wav;base64,([A-Za-z0-9+/=]+)"', html)
    assert m and float(m.group(1)) == pytest.approx(2.0) and base64.b64decode(m.group(2)) == clip.wav_bytes
    assert "autoplay" in html and "this.currentTime=parseFloat(this.dataset.offset)" in html
    click(viewer.panels.play)
    assert "<audio" not in viewer.panels.audio.content
    viewer.panels._set_timeline(None)
    assert viewer.state.speech is None and viewer.state.num_frames == 20


def test_speech_upload_uses_the_learned_network(tmp_path: Path):
    """By default an upload is driven like `nerfhead drive RUN`: the run's fine-tuned network when it has one,
    else the bundled prior."""
    import dataclasses

    from nerfhead.audio.network import load_network
    from nerfhead.audio.speech import Speech, prior_path
    from nerfhead.media.audio import load_audio

    wave, _ = load_audio(SPEECH, 16000)
    cfg = dataclasses.replace(CONFIG, speech_driver="auto")
    run = tmp_path / "run"
    v = ViewerServer(MockHead(frames=20), run, cfg)  # not started: the upload handler needs no browser
    assert v.speech_network == prior_path()
    want = Speech(prior_path()).drive(wave, 16000, 25.0)
    got = speech_drive(wave, 25.0, network=v.speech_network)
    torch.testing.assert_close(got.expression, want.expression)
    assert float(got.expression[:, JAW].std()) > 0.05  # the mouth moves with the speech
    # a run with its own network (written by `nerfhead eval-drive --save-run RUN`) takes precedence
    net = load_network(prior_path())
    net.out_shift[JAW] = 0.2
    net.save(run / "audio_to_drive.safetensors")
    v2 = ViewerServer(MockHead(frames=20), run, cfg)
    assert v2.speech_network == run / "audio_to_drive.safetensors"
    own = speech_drive(wave, 25.0, network=v2.speech_network)
    assert float((own.expression[:, JAW] - want.expression[:, JAW]).mean()) > 0.1
    assert (
        ViewerServer(MockHead(frames=20), run, dataclasses.replace(cfg, speech_driver="rules")).speech_network
        is None
    )
    with pytest.raises(ValueError, match="speech_driver"):
        ViewerServer(MockHead(frames=20), run, dataclasses.replace(cfg, speech_driver="magic"))


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("notes.txt", b"hello", "not an audio file type"),
        ("empty.wav", b"", "empty file"),
        ("noise.wav", b"RIFF\x00\x00garbage" * 10, "not a readable audio"),
        ("huge.mp3", b"\x00" * (MAX_UPLOAD_BYTES + 1), "limit is 20 MiB"),
    ],
)
def test_bad_uploads_are_refused(name: str, content: bytes, match: str):
    with pytest.raises(InputError, match=match) as e:
        decode_upload(name, content)
    assert e.value.path == name


def test_bad_upload_leaves_the_timeline(viewer: ViewerServer):
    viewer.panels._on_upload(upload_event("notes.txt", b"hello"))
    assert viewer.state.speech is None and viewer.state.num_frames == 20


def test_audio_html_escapes_names():
    from nerfhead.viewer.state import SpeechClip

    html = audio_html(SpeechClip('<b>"x".wav', b"RIFF", 1.0), None)
    assert "<b>" not in html and "&lt;b&gt;" in html and "<audio" not in html


# ------------------------------------------------------------------------------------------------ exports
def test_export_png_and_mp4(viewer: ViewerServer):
    import av
    import imageio.v3 as iio

    click(viewer.panels.save_png)
    pngs = list((viewer.out_dir / "exports").glob("view_*.png"))
    assert len(pngs) == 1 and str(pngs[0]) in viewer.panels.last_export.content
    view = viewer.default_view()
    size = render_size(view.width, view.height, CONFIG.export_max_side)
    np.testing.assert_array_equal(iio.imread(pngs[0])[..., :3], viewer.render_view(view, size))

    viewer.panels._on_upload(upload_event("speech.ogg", SPEECH.read_bytes()))
    clip = viewer.state.speech
    assert clip is not None
    viewer.state.set_speech(viewer.state.drive[:10], clip)  # keep the clip, 10 frames
    click(viewer.panels.save_mp4)
    mp4s = list((viewer.out_dir / "exports").glob("timeline_*.mp4"))
    assert len(mp4s) == 1
    with av.open(str(mp4s[0])) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        assert c.streams.audio and c.streams.video[0].average_rate == 25
    assert len(frames) == 10 and frames[0].shape == (size[1], size[0], 3)
    first = viewer.render_view(view, size, viewer.state.drive_at(0))
    assert np.abs(frames[0].astype(int) - first).mean() < 4  # H.264 of the same image


# ---------------------------------------------------------------------------------------------- renderable
def test_avatar_renderable_wraps_any_avatar():
    calls = []

    class Fake:
        def render(self, cameras, drive, background=None):
            calls.append((len(cameras), len(drive), background))
            return MockHead().render(cameras, drive)

    drive = Drive.neutral(4).replace(translation=torch.tensor([[0.0, 0.1, 0.0]]).expand(4, 3).clone())
    r = AvatarRenderable(Fake(), drive, name="fake")
    assert r.framing().center == pytest.approx((0.0, 0.1, 0.0)) and r.default_drive() is drive
    assert not hasattr(r, "gaussians_at") and r.describe()["model"] == "Fake"
    v = ViewerServer(r, "unused", CONFIG)
    img = v.render_view(VIEW, (32, 24))
    assert img.shape == (24, 32, 3) and calls == [(1, 1, None)]


def test_packed_splats_match_viser_and_only_changes_are_sent():
    """Our torch packing gives viser's buffer bit for bit; a pose update that changes nothing sends no message,
    one that changes the head sends exactly one (without the Gaussians the page never draws)."""
    from nerfhead.viewer.renderable import BrowserSplats
    from nerfhead.viewer.splats import MIN_ALPHA_BYTE, SplatPusher, pack_splats

    gen = torch.Generator().manual_seed(0)
    n = 500
    A = torch.randn(n, 3, 3, generator=gen) * 0.01
    g = BrowserSplats(
        torch.randn(n, 3, generator=gen),
        A @ A.transpose(1, 2) + 1e-5 * torch.eye(3),
        torch.rand(n, 3, generator=gen) * 1.2 - 0.1,  # out-of-range colours are clipped like viser does
        torch.rand(n, 1, generator=gen),
    )
    import viser

    srv = viser.ViserServer(port=0, verbose=False)
    try:
        arrays = (g.centers.numpy(), g.covariances.numpy(), g.rgbs.numpy(), g.opacities.numpy())
        handle = srv.scene.add_gaussian_splats("/ref", *arrays)
        np.testing.assert_array_equal(pack_splats(g), handle.buffer)

        state = {"version": 0, "shift": 0.0}

        def pose(_drive: Drive) -> BrowserSplats:
            return BrowserSplats(g.centers + state["shift"], g.covariances, g.rgbs, g.opacities)

        sent: list[int] = []
        pusher = SplatPusher(
            srv.scene,
            pose,
            lambda: (state["version"], Drive.neutral(1)),
            on_sent=lambda _s, v: sent.append(v),
        )
        buffer = srv._websock_server._broadcast_buffer
        pusher.push_now()
        count = buffer.message_counter
        pusher.push_now()  # the same pose: nothing goes out
        assert buffer.message_counter == count
        state["version"], state["shift"] = 1, 0.01
        pusher.push_now()  # a moved head: one message
        assert buffer.message_counter == count + 1 and sent == [0, 0, 1]
        keep = (g.opacities[:, 0] * 255).floor() >= MIN_ALPHA_BYTE
        assert 0 < int((~keep).sum()) < 0.05 * n  # uniform opacities: ~1.2% never drawn
        assert pusher.stats.bytes == 32 * int(keep.sum()) and pusher.stats.updates == 3
        np.testing.assert_allclose(pusher.handle.centers, g.centers[keep].numpy() + 0.01, rtol=1e-6)
        pusher.stop()
    finally:
        srv.stop()


def test_pusher_drops_late_poses_instead_of_queueing():
    """A sender slower than the changes: poses that were not taken are replaced by newer ones (counted as
    dropped), and the last state is the one that ends up sent, with no backlog after it."""
    from nerfhead.viewer.renderable import BrowserSplats
    from nerfhead.viewer.splats import SplatPusher

    g = BrowserSplats(
        torch.zeros(4, 3), torch.eye(3).expand(4, 3, 3).clone(), torch.ones(4, 3), torch.ones(4, 1)
    )
    state = {"version": 0}
    sent: list[int] = []

    def slow_flush() -> None:
        time.sleep(0.2)  # a browser far behind

    class Scene:
        def add_gaussian_splats(self, *_a: Any) -> Any:
            return SimpleNamespace(buffer=None, remove=lambda: None)

    pusher = SplatPusher(
        Scene(),
        lambda _d: g,
        lambda: (state["version"], Drive.neutral(1)),
        slow_flush,
        lambda _s, v: sent.append(v),
    ).start()
    try:
        for v in range(1, 31):  # 30 changes in 0.3 s
            state["version"] = v
            pusher.invalidate()
            time.sleep(0.01)
        wait_for(lambda: sent and sent[-1] == 30, 10, "the newest state to be sent")
        time.sleep(0.5)
    finally:
        pusher.stop()
    assert sent[-1] == 30 and len(sent) < 10, sent  # far fewer sends than changes, the newest last
    assert sent == sorted(sent)
    assert pusher.stats.dropped > 0


def test_splat_head_through_the_viewer():
    """H8's splat head (a small untrained one) through the Renderable adapter: render, framing, splats."""
    from nerfhead.models.deform import DeformConfig
    from nerfhead.models.splat_head import SplatHead, SplatHeadConfig
    from nerfhead.viewer.splats import MIN_ALPHA_BYTE, pack_splats

    head = SplatHead(
        SplatHeadConfig(
            parts=("eyeball_left",), sh_degree=0, deform=DeformConfig(enabled=False), backend="torch"
        )
    )
    r = AvatarRenderable(head, Drive.neutral(2))
    fr = r.framing()  # the whole posed ICT mesh (about 25 x 34 x 22 cm), facing +z
    assert 0.15 < fr.radius < 0.3 and fr.forward == pytest.approx((0.0, 0.0, 1.0))
    v = ViewerServer(r, "unused", CONFIG)
    assert v.panels is None  # not started: rendering works without a server
    view = v.default_view(96, 72)
    img = v.render_view(view)
    g = r.gaussians_at(Drive.neutral(1))  # type: ignore[attr-defined]
    uv, _ = view_to_cameras(view).project(g.centers.mean(0, keepdim=True))
    x, y = (int(c) for c in uv[0, 0])
    assert np.abs(img[y, x].astype(int) - 255).max() > 20  # the eyeball where its Gaussians project
    assert np.abs(img[1, 1].astype(int) - 255).max() <= 1  # white background elsewhere
    g = r.gaussians_at(Drive.neutral(1))  # type: ignore[attr-defined]
    n = len(head.splats)
    assert g.centers.shape == (n, 3) and g.covariances.shape == (n, 3, 3) and g.opacities.shape == (n, 1)
    assert float(torch.linalg.eigvalsh(g.covariances.double()).min()) > 0
    torch.testing.assert_close(g.covariances, g.covariances.transpose(1, 2))
    assert v.render_mode == "browser"  # a splat head is drawn by the browser by default
    v.start()  # the "draw in the browser" toggle switches between the splat node and per-client render loops
    try:
        panels: Any = v.panels
        pusher = v.splats
        assert pusher is not None and panels.browser.value
        wait_for(lambda: pusher.stats.updates > 0, 30, "the first pose update")
        # one splat node per page (flow control; no page here), the newest pose kept for the next page
        sent = pack_splats(g, MIN_ALPHA_BYTE)
        assert pusher.stats.bytes == sent.nbytes and pusher.per_page and pusher.latest is not None
        np.testing.assert_array_equal(pusher.latest.buffer, sent)
        panels.browser.value = False
        assert v.render_mode == "server" and v.splats is None and pusher.handle is None and not pusher.alive
        panels.browser.value = True
        assert v.render_mode == "browser" and v.splats is not None
    finally:
        v.stop()


# ------------------------------------------------------------------------------------------- CLI and stop
def test_cli_open_viewer(tmp_path: Path):
    from nerfhead.cli.view import host_warning, open_viewer

    with pytest.raises(InputError, match="avatar.json"):
        open_viewer(tmp_path / "no_run", port=0)
    with pytest.raises(InputError, match="auto, network or rules"):
        open_viewer(tmp_path / "mockrun", port=0, mock=True, speech_driver="magic")
    assert host_warning("127.0.0.1", tmp_path) is None and host_warning("localhost", tmp_path) is None
    assert "exposes the viewer to the network" in (host_warning("0.0.0.0", tmp_path) or "")
    v = open_viewer(tmp_path / "mockrun", port=0, mock=True, max_side=64, live_late_drop=0.0)
    try:
        assert v.server.get_host() == "127.0.0.1" and v.renderable.name == "mock head"
        assert v.config.live_late_drop_s == 0.0  # --live-late-drop reaches the server
    finally:
        v.stop()


def test_cli_process_serves_and_stops_on_sigterm(tmp_path: Path):
    """The verb function in its own process: it prints the URL, serves the page, and SIGTERM stops it cleanly."""
    code = "import sys; from pathlib import Path; from nerfhead.cli.view import ViewOptions, main; "
    code += "main(Path(sys.argv[1]), ViewOptions(port=0, mock=True, max_side=64))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        url = None
        assert proc.stdout is not None
        for line in proc.stdout:
            m = re.search(r"nerfhead viewer: (http://127\.0\.0\.1:(\d+)/)", line)
            if m:
                url, port = m.group(1), int(m.group(2))
                break
        assert url is not None, "no URL printed"
        with urllib.request.urlopen(url, timeout=30) as r:
            assert r.status == 200
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0 and "nerfhead viewer stopped" in out
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", port))


def test_stop_frees_port_and_threads(tmp_path: Path):
    v = ViewerServer(MockHead(frames=3), tmp_path, CONFIG).start()
    loop = v.add_loop(5, lambda: VIEW, lambda im: None)
    wait_for(lambda: v.render_counts.get(5), 30, "a render")
    port = v.port
    v.stop()
    assert not loop.alive and not v._player.is_alive()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", port))  # no SO_REUSEADDR: nothing may hold the port
    v.stop()  # a second stop is harmless
