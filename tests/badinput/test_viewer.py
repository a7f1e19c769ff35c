"""Bad input to a running viewer, over a real websocket on 127.0.0.1 speaking viser's protocol: another site's
page is refused, oversized uploads (by declared size and by received bytes) and a decode bomb (a 0.3 MB,
20-minute Opus file) are refused with the viewer's memory growing by less than 100 MB, a hostile file name is
shown inert, and exports are rate-limited. Each case asserts the message the user sees."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import viser
import viser._messages as vm
import zstandard
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from nerfhead.viewer import ViewerConfig, ViewerServer
from nerfhead.viewer.guard import ORIGIN_CLOSE_CODE, RateLimit, origin_allowed, safe_text
from nerfhead.viewer.mock import MockHead

MB = 2**20
CONFIG = ViewerConfig(port=0, render="server", speech_driver="rules", speech_mode="energy", max_side=48)


@pytest.fixture(scope="module")
def viewer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ViewerServer]:
    v = ViewerServer(MockHead(frames=3), tmp_path_factory.mktemp("run"), CONFIG).start()
    try:
        yield v
    finally:
        v.stop()


class Client:
    """A viser client without a browser: sends messages (first, like a page, its camera: viser makes a client
    handle only then), decodes what the server sends."""

    def __init__(self, viewer: ViewerServer, origin: str | None = None, hello: bool = True):
        self.ws: ClientConnection = connect(
            f"ws://127.0.0.1:{viewer.port}",
            subprotocols=[f"viser-v{viser.__version__}"],  # type: ignore[list-item]
            origin=origin,  # type: ignore[arg-type]
            max_size=None,
            open_timeout=30,
            close_timeout=2,
        )
        self.seen: list[dict[str, Any]] = []
        view = viewer.default_view(64, 48)
        self.camera = vm.ViewerCameraMessage(
            view.wxyz, view.position, view.fov, 0.01, 100.0, 48, 64, (0.0, 0.0, 0.0), (0.0, 1.0, 0.0)
        )
        if hello:
            self.send(self.camera)

    def send(self, message: vm.Message) -> None:
        self.ws.send(msgspec.msgpack.encode(message.as_serializable_dict()))

    def wait_for(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 30.0) -> dict[str, Any]:
        """The first message (new or already seen) for which ``pred`` holds."""
        for m in self.seen:
            if pred(m):
                return m
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            raw = self.ws.recv(timeout=max(0.05, deadline - time.monotonic()))
            assert isinstance(raw, bytes)
            size = int.from_bytes(raw[8:16], "little")
            inner = zstandard.ZstdDecompressor().decompress(raw[16 : 16 + size])
            for m in msgspec.msgpack.decode(inner)["messages"]:
                self.seen.append(m)
                if pred(m):
                    return m
        raise AssertionError("timed out waiting for a message from the viewer")

    def notification(self, title: str, timeout: float = 30.0) -> str:
        """Body of the first notification titled ``title``."""

        def match(m: dict[str, Any]) -> bool:
            return m.get("type") in ("NotificationShowMessage", "NotificationUpdateMessage") and (
                str(m.get("props", {}).get("title")) == title
            )

        return str(self.wait_for(match, timeout)["props"]["body"])

    def close(self) -> None:
        self.ws.close()


def upload_uuid(viewer: ViewerServer) -> str:
    return viewer.panels.upload._impl.uuid


def start_upload(client: Client, viewer: ViewerServer, uuid: str, name: str, size: int, parts: int) -> None:
    client.send(
        vm.FileTransferStartUpload(
            source_component_uuid=upload_uuid(viewer),
            transfer_uuid=uuid,
            filename=name,
            mime_type="audio/ogg",
            part_count=parts,
            size_bytes=size,
        )
    )


def send_parts(
    client: Client, viewer: ViewerServer, uuid: str, data: bytes, count: int, first: int = 0
) -> None:
    for i in range(first, first + count):
        client.send(vm.FileTransferPart(upload_uuid(viewer), uuid, i, data))


def sync_point(client: Client, viewer: ViewerServer, uuid: str) -> None:
    """A one-byte upload: its acknowledgement means the server has handled everything sent before it."""
    client.send(vm.FileTransferStartUpload(upload_uuid(viewer), uuid, "sync.ogg", "audio/ogg", 1, 1))
    send_parts(client, viewer, uuid, b"\0", 1)
    client.wait_for(lambda m: m.get("type") == "FileTransferPartAck" and m.get("transfer_uuid") == uuid, 60)


class PeakRss:
    """Peak resident memory growth of this process (the viewer runs in it) while the block runs, MB."""

    def __enter__(self) -> PeakRss:
        self.base = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(0.005)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.base) / MB


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


# ------------------------------------------------------------------------------------------------- origin
def test_origin_rules():
    assert origin_allowed(None, "127.0.0.1:8080", "127.0.0.1")  # not a browser (scripts, tests)
    assert origin_allowed("http://127.0.0.1:8080", "127.0.0.1:8080", "127.0.0.1")
    assert origin_allowed("http://localhost:8080", "localhost:8080", "127.0.0.1")
    assert not origin_allowed("http://evil.example", "127.0.0.1:8080", "127.0.0.1")
    assert not origin_allowed("http://127.0.0.1:9999", "127.0.0.1:8080", "127.0.0.1")  # another local page
    assert not origin_allowed(
        "http://rebound.example:8080", "rebound.example:8080", "127.0.0.1"
    )  # DNS rebinding
    assert not origin_allowed("null", "127.0.0.1:8080", "127.0.0.1")  # sandboxed iframe, file:// page
    assert origin_allowed("http://192.168.1.5:8080", "192.168.1.5:8080", "192.168.1.5")  # --host 192.168.1.5
    assert not origin_allowed("http://192.168.1.5:8080", "192.168.1.5:8080", "0.0.0.0")


def test_foreign_origin_is_refused(viewer: ViewerServer):
    before = viewer.connected()
    evil = Client(viewer, origin="http://evil.example", hello=False)
    try:
        with pytest.raises(ConnectionClosed) as e:
            evil.send(evil.camera)
            evil.wait_for(lambda m: False, timeout=10)
    finally:
        evil.close()
    assert e.value.rcvd is not None and e.value.rcvd.code == ORIGIN_CLOSE_CODE
    assert e.value.rcvd.reason == "origin http://evil.example refused: only the viewer's own page may connect"
    assert viewer.connected() == before  # no client made: its camera message was never read
    own = Client(viewer, origin=f"http://127.0.0.1:{viewer.port}")  # the viewer's own page is served
    try:
        own.wait_for(lambda m: m.get("type") == "GuiUploadButtonMessage")
        deadline = time.monotonic() + 10
        while len(viewer.connected()) == len(before) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(viewer.connected()) == len(before) + 1
    finally:
        own.close()


# ------------------------------------------------------------------------------------------------- uploads
def test_declared_oversize_upload_is_refused_before_any_byte(viewer: ViewerServer):
    c = Client(viewer)
    try:
        c.wait_for(lambda m: m.get("type") == "GuiUploadButtonMessage")
        with PeakRss() as mem:
            start_upload(c, viewer, "big-1", "big.ogg", 200 * MB, 200)
            assert (
                c.notification("Upload refused") == "big.ogg: upload declares 200.0 MiB, the limit is 20 MiB"
            )
            send_parts(c, viewer, "big-1", b"\0" * MB, 150)  # sent anyway: dropped as it arrives
            sync_point(c, viewer, "probe")
    finally:
        c.close()
    assert "big-1" not in viewer.server.gui._current_file_upload_states
    assert mem.growth_mb < 100, f"memory grew by {mem.growth_mb:.0f} MB"
    print(f"declared-oversize upload: memory growth {mem.growth_mb:.1f} MB")


def test_upload_larger_than_declared_is_cut_off(viewer: ViewerServer):
    c = Client(viewer)
    try:
        c.wait_for(lambda m: m.get("type") == "GuiUploadButtonMessage")
        with PeakRss() as mem:
            start_upload(c, viewer, "liar-1", "liar.ogg", 1 * MB, 2)
            send_parts(c, viewer, "liar-1", b"\0" * MB, 1)
            send_parts(c, viewer, "liar-1", b"\0" * (2 * MB), 1, first=1)  # the second part overshoots
            assert c.notification("Upload refused") == (
                "liar.ogg: upload sent 3.0 MiB (declared 1.0 MiB), the limit is 20 MiB"
            )
            send_parts(c, viewer, "liar-1", b"\0" * MB, 150, first=2)
            sync_point(c, viewer, "probe2")
    finally:
        c.close()
    assert "liar-1" not in viewer.server.gui._current_file_upload_states
    assert viewer.state.speech is None
    assert mem.growth_mb < 100, f"memory grew by {mem.growth_mb:.0f} MB"
    print(f"larger-than-declared upload: memory growth {mem.growth_mb:.1f} MB")


@pytest.fixture(scope="module")
def bomb(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A 20-minute Opus file of silence, about 0.3 MB (decoded at 48 kHz: 230 MB of float32)."""
    import imageio_ffmpeg

    path = tmp_path_factory.mktemp("bomb") / "bomb.opus"
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono"]
    cmd += [
        "-t",
        "1200",
        "-c:a",
        "libopus",
        "-b:a",
        "6k",
        "-frame_duration",
        "120",
        "-compression_level",
        "0",
    ]
    subprocess.run([*cmd, str(path)], check=True)
    return path.read_bytes()


def test_decode_bomb_is_refused_from_its_header(viewer: ViewerServer, bomb: bytes):
    assert len(bomb) < MB
    c = Client(viewer)
    name = '<img src=x onerror="alert(1)">.opus'  # also: the name is shown inert
    try:
        c.wait_for(lambda m: m.get("type") == "GuiUploadButtonMessage")
        with PeakRss() as mem:
            start_upload(c, viewer, "bomb-1", name, len(bomb), 1)
            send_parts(c, viewer, "bomb-1", bomb, 1)
            body = c.notification("Could not load speech", timeout=60)
    finally:
        c.close()
    assert (
        body
        == "?img src=x onerror=?alert?1???.opus: clip is 1200 s long (container header), the limit is 180 s"
    )
    assert viewer.state.speech is None
    assert mem.growth_mb < 100, f"memory grew by {mem.growth_mb:.0f} MB"
    print(f"decode-bomb upload: memory growth {mem.growth_mb:.1f} MB")


def test_decoding_stops_at_the_cap():
    """A header that says nothing (or lies) cannot get past: decoding counts samples, keeps none, and stops at
    the cap."""
    from nerfhead.errors import InputError
    from nerfhead.viewer.speech import decode_capped

    clip = Path(__file__).resolve().parents[2] / "scenes" / "assets" / "audio" / "en_ljspeech_LJ050-0131.wav"
    assert decode_capped(clip, "clip.wav", 10.0) == pytest.approx(7.658, abs=0.01)
    with pytest.raises(
        InputError, match=r"^error: clip.wav: clip decodes to more than 2 s, the limit is 2 s$"
    ) as e:
        decode_capped(clip, "clip.wav", 2.0)
    assert "clip.wav" in e.value.one_line()


def test_names_are_made_inert():
    for hostile in ("<script>alert(1)</script>.wav", "[x](javascript:alert(1)).wav", "a`b`*c*_d_&amp;.wav"):
        shown = safe_text(hostile)
        assert not set(shown) & set("<>&\"'`[]()*"), shown
    assert safe_text("speech take 2.wav") == "speech take 2.wav"
    assert len(safe_text("x" * 500)) == 80


# ------------------------------------------------------------------------------------------------- exports
def test_exports_are_rate_limited(viewer: ViewerServer):
    limit = RateLimit(2.0)
    assert limit.wait_left("a", now=10.0) == 0.0
    assert limit.wait_left("a", now=11.0) == pytest.approx(1.0)  # refused: one second left
    assert limit.wait_left("b", now=11.0) == 0.0  # per page
    assert limit.wait_left("a", now=12.0) == 0.0

    c = Client(viewer)
    try:
        c.wait_for(lambda m: m.get("type") == "GuiUploadButtonMessage")
        button = viewer.panels.save_png._impl.uuid
        exports = viewer.out_dir / "exports"
        for _ in range(3):  # three clicks at once: one PNG, two refusals
            c.send(vm.GuiUpdateMessage(button, {"value": True}))
        assert c.notification("Export refused").startswith("too many exports: wait ")
        time.sleep(0.5)
    finally:
        c.close()
    assert len(list(exports.glob("view_*.png"))) <= 1


@pytest.mark.parametrize(
    ("flag", "value"), [("--page-ack-timeout", "-1"), ("--render", "gpu"), ("--live-late-drop", "nan")]
)
def test_bad_view_option_is_one_line_before_anything_loads(tmp_path: Path, capsys, flag: str, value: str):
    from nerfhead.cli.main import run

    assert run(["view", str(tmp_path / "run"), "--mock", "--port", "0", flag, value]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"error: {flag}:"), err
