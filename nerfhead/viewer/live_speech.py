"""Live speech in the viewer: audio arriving on a pipe (e.g. ``ffmpeg ... | nerfhead view RUN --speech-stream -``)
or from a local input device drives the face as it arrives.

A reader thread takes chunks of samples from an :class:`AudioSource`, pushes them through a streaming speech
driver (the learned network's :class:`~nerfhead.audio.stream.NetworkStreamDriver`, or the energy rules'
:class:`~nerfhead.audio.driver.AudioStreamDriver` when the viewer runs the rules) and hands each completed
video frame to the viewer with the wall-clock time at which the audio sample at that frame's timestamp arrived.
When one chunk completes several frames only the newest is shown (late frames are dropped, never queued). The
viewer reports, per frame shown, the time from that arrival to the frame leaving for the browser: the
speech-to-screen latency in the stats panel.

Memory is bounded: the drivers keep a fixed window, and arrival times are kept for the last few seconds only.
"""

from __future__ import annotations

import math
import os
import queue
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

import numpy as np

from nerfhead.data.drive import Drive
from nerfhead.errors import InputError

if TYPE_CHECKING:
    from nerfhead.audio.network import AudioToDrive

SAMPLE_FORMATS = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}
"""Raw sample formats accepted on a pipe (mono, little-endian), as ffmpeg's ``-f`` names them."""
CHUNK_S = 0.02
"""Seconds of audio per read (20 ms)."""
ARRIVALS_KEPT_S = 5.0
"""How far back arrival times are remembered (bounded memory on a stream of any length)."""
HOLD_ALLOWANCE_S = 0.005
"""Hold margin: time allowed past a frame's pose for handing it to the websockets."""


class HoldMargin:
    """How long past the driver's look-ahead a live frame is held before it leaves for the pages (the page's
    audio is scheduled against the same hold, so picture and sound stay in step).

    Adaptive between ``lo`` and ``hi``: the margin follows a high percentile (``quantile``) of the last
    ``window`` measured needs plus :data:`HOLD_ALLOWANCE_S` for the hand-off, where a live frame's need is the
    time from its driver output (or its due baseline, audio arrival + look-ahead, when the driver was early)
    to its pose being done, and any other pose update's need is its pose time. On a fast machine frames leave
    soon after the look-ahead; under load the margin grows back to ``hi``. It moves by at most ``step_down`` /
    ``step_up`` seconds per measurement, so the page's audio schedule (set about one hold ahead) follows it
    within ~15 ms; at the start of a stream (:meth:`restart`: no audio scheduled yet) it goes to its target at
    once. ``lo >= hi``: a fixed margin ``hi``. It is ``hi`` until ``warmup`` needs are known.
    """

    def __init__(
        self,
        lo: float,
        hi: float,
        quantile: float = 95.0,
        window: int = 100,
        warmup: int = 10,
        step_down: float = 0.002,
        step_up: float = 0.002,
    ):
        if not (0.0 <= lo and 0.0 <= hi and 0.0 < quantile <= 100.0 and window >= 1):
            raise ValueError(
                f"bad hold margin settings: lo={lo}, hi={hi}, quantile={quantile}, window={window}"
            )
        self.lo, self.hi = float(min(lo, hi)), float(hi)
        self.quantile, self.warmup = float(quantile), int(warmup)
        self.step_down, self.step_up = float(step_down), float(step_up)
        self.value = self.hi
        """The margin now, seconds."""
        self._needs: deque[float] = deque(maxlen=int(window))

    @property
    def adaptive(self) -> bool:
        return self.lo < self.hi

    def target(self) -> float:
        """Where the margin is heading: the needs' high percentile plus the allowance, clamped to [lo, hi]."""
        if not self.adaptive or len(self._needs) < self.warmup:
            return self.hi
        q = float(np.percentile(np.fromiter(self._needs, np.float64), self.quantile))
        return float(np.clip(q + HOLD_ALLOWANCE_S, self.lo, self.hi))

    def restart(self) -> float:
        """A new stream: the margin goes to its target at once (the page has no audio scheduled against it)."""
        self.value = self.target()
        return self.value

    def observe(self, need: float) -> float:
        """One measured need (seconds); returns the new margin."""
        if math.isfinite(need):
            self._needs.append(float(need))
        step = self.target() - self.value
        self.value += min(max(step, -self.step_down), self.step_up)
        return self.value


class AudioSource(Protocol):
    """Where live samples come from."""

    sr: int
    """Sample rate in Hz."""

    def read(self) -> np.ndarray | None:
        """The next chunk of mono float32 samples (blocking), or None at the end of the stream."""
        ...

    def close(self) -> None: ...


class PipeSource:
    """Raw mono samples from a binary stream (stdin, a FIFO, a socket file).

    Args:
        stream: readable binary file object.
        sr: sample rate of the stream.
        fmt: ``s16le`` or ``f32le``.
        chunk_s: seconds per read.
    """

    def __init__(self, stream: BinaryIO, sr: int = 16000, fmt: str = "s16le", chunk_s: float = CHUNK_S):
        if fmt not in SAMPLE_FORMATS:
            raise InputError("--speech-format", f"must be one of {', '.join(SAMPLE_FORMATS)}, got {fmt!r}")
        if not 4000 <= sr <= 192000:
            raise InputError("--speech-rate", f"must be a sample rate in Hz (4000 to 192000), got {sr}")
        self.stream, self.sr, self.dtype = stream, int(sr), SAMPLE_FORMATS[fmt]
        self._bytes = max(1, round(chunk_s * sr)) * self.dtype.itemsize
        self._carry = b""

    def read(self) -> np.ndarray | None:
        data = self._carry
        while len(data) < self._bytes:
            read = getattr(self.stream, "read1", self.stream.read)  # read1: what a pipe has, without waiting
            more = read(self._bytes - len(data))
            if not more:
                break
            data += more
        usable = len(data) - len(data) % self.dtype.itemsize
        if usable == 0:
            return None
        self._carry = data[usable:]
        x = np.frombuffer(data[:usable], self.dtype).astype(np.float32)
        return x / 32768.0 if self.dtype.kind == "i" else x

    def close(self) -> None:
        if self.stream is not sys.stdin.buffer:
            self.stream.close()


class DeviceSource:
    """A local input device through sounddevice (PortAudio), mono at ``sr``: ``pip install nerfhead[live]``.

    Args:
        device: sounddevice's device index or name substring (None: the default input).
        sr: sample rate to record at.
        chunk_s: seconds per block.
    """

    def __init__(self, device: int | str | None = None, sr: int = 16000, chunk_s: float = CHUNK_S):
        try:
            import sounddevice  # type: ignore[import-not-found]
        except (ImportError, OSError) as e:
            raise InputError(
                "--speech-stream",
                f"a local input device needs sounddevice and PortAudio ({e})",
                hint="pip install 'nerfhead[live]' (and the libportaudio2 system package)",
            ) from None
        self.sr = int(sr)
        self._q: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=64)  # 1.3 s; older blocks are dropped

        def callback(indata: np.ndarray, frames: int, time_info: object, status: object) -> None:
            block = np.asarray(indata, np.float32).mean(axis=1).copy()
            try:
                self._q.put_nowait(block)
            except queue.Full:
                pass

        try:
            self._stream = sounddevice.InputStream(
                samplerate=sr, blocksize=round(chunk_s * sr), device=device, channels=1, callback=callback
            )
            self._stream.start()
        except Exception as e:  # PortAudioError, ValueError (no such device)
            raise InputError("--speech-stream", f"cannot open input device {device!r}: {e}") from None

    def read(self) -> np.ndarray | None:
        return self._q.get()

    def close(self) -> None:
        self._stream.stop()
        self._stream.close()
        self._q.put(None)


def open_source(spec: str, sr: int = 16000, fmt: str = "s16le") -> AudioSource:
    """The source named on the command line: ``-`` (stdin), ``device`` / ``device:NAME_OR_INDEX`` (sounddevice)
    or the path of a FIFO / file of raw samples.

    Raises:
        InputError: naming ``--speech-stream``.
    """
    if spec == "-":
        return PipeSource(sys.stdin.buffer, sr, fmt)
    if spec == "device" or spec.startswith("device:"):
        name = spec.partition(":")[2]
        dev: int | str | None = int(name) if name.isdigit() else (name or None)
        return DeviceSource(dev, sr)
    path = Path(spec)
    if not path.exists():
        raise InputError("--speech-stream", f"{spec}: no such file or FIFO (use - for stdin, or device)")
    return PipeSource(open(path, "rb"), sr, fmt)  # closed by close()


def feed_pipe(fd: int, data: bytes, sr: int = 16000, chunk_s: float = CHUNK_S) -> threading.Thread:
    """Write raw s16le mono ``data`` into the pipe ``fd`` at real-time pace from a thread, then close it: a
    recorded clip played as a live source (tests, benchmarks)."""

    def run() -> None:
        step = round(chunk_s * sr) * 2
        t0 = time.monotonic()
        with os.fdopen(fd, "wb", buffering=0) as f:
            for k, i in enumerate(range(0, len(data), step)):
                time.sleep(max(0.0, t0 + k * chunk_s - time.monotonic()))
                f.write(data[i : i + step])

    t = threading.Thread(target=run, name="nerfhead-feed-pipe", daemon=True)
    t.start()
    return t


class StreamDriver(Protocol):
    """What both streaming speech drivers provide."""

    latency_s: float

    def push(self, chunk: np.ndarray) -> list[Drive]: ...

    def flush(self) -> list[Drive]: ...


def stream_driver(network: str | os.PathLike | AudioToDrive | None, fps: float, sr: int) -> StreamDriver:
    """The streaming twin of the viewer's speech driver: the learned network's, else the energy rules'."""
    if network is not None:
        from nerfhead.audio.stream import NetworkStreamDriver

        return NetworkStreamDriver(network, fps, sr=sr)  # type: ignore[return-value]
    from nerfhead.audio.driver import AudioStreamDriver

    return AudioStreamDriver(fps, sr=sr)  # type: ignore[return-value]


class LiveSpeech:
    """A reader thread: source → streaming driver → ``show(frame, arrival)``.

    Args:
        source: where samples come from.
        driver: a streaming driver fed at ``source.sr``.
        show: called with each frame to show (one-timestep Drive), the ``time.monotonic()`` at which the
            audio sample at its timestamp arrived and that timestamp (seconds of stream time).
        on_end: called once when the stream ends (or fails).
        on_audio: called with each chunk as it arrives (mono float32 samples) and the stream time of its first
            sample, seconds (the page plays it: :mod:`nerfhead.viewer.page_audio`).
    """

    def __init__(
        self,
        source: AudioSource,
        driver: StreamDriver,
        show: Callable[[Drive, float, float], None],
        on_end: Callable[[], None] | None = None,
        on_audio: Callable[[np.ndarray, float], None] | None = None,
    ):
        self.source, self.driver, self._show, self._on_end = source, driver, show, on_end
        self.on_audio = on_audio
        self.samples_in = 0
        self.frames_in = 0
        """Frames the driver produced."""
        self.frames_shown = 0
        """Frames handed to the viewer (the rest were superseded within a chunk)."""
        self._arrivals: deque[tuple[int, float]] = deque()  # (samples received up to, arrival time)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nerfhead-live-speech", daemon=True)
        self.error: str | None = None

    def start(self) -> LiveSpeech:
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 1.0) -> None:
        """End the stream (a reader blocked on stdin is a daemon thread: it is left to exit with the process)."""
        self._stop.set()
        try:
            self.source.close()
        except Exception:
            pass
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def arrival_of(self, sample: int) -> float | None:
        """When sample index ``sample`` arrived (None when it is older than the kept window)."""
        for end, t in self._arrivals:
            if sample < end:
                return t
        return self._arrivals[-1][1] if self._arrivals else None

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                chunk = self.source.read()
                if chunk is None:
                    self._deliver(self.driver.flush())
                    break
                now = time.monotonic()
                if self.on_audio is not None:
                    self.on_audio(chunk, self.samples_in / self.source.sr)
                self.samples_in += chunk.size
                self._arrivals.append((self.samples_in, now))
                while self._arrivals and self._arrivals[0][1] < now - ARRIVALS_KEPT_S:
                    self._arrivals.popleft()
                self._deliver(self.driver.push(chunk))
        except Exception as e:  # a broken stream ends live mode; the viewer keeps running
            self.error = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        finally:
            if self._on_end is not None:
                self._on_end()

    def _deliver(self, frames: list[Drive]) -> None:
        if not frames:
            return
        self.frames_in += len(frames)
        last = frames[-1]
        j = self.frames_in - 1
        t = j / float(last.fps)
        arrival = self.arrival_of(round(t * self.source.sr))
        self.frames_shown += 1
        self._show(last, time.monotonic() if arrival is None else arrival, t)
