"""The viewer's speed: browser path (server poses the splat head, the page draws it) against the server path
(the server renders an image per camera), in one run, with the demo avatar by default.

    python scripts/bench_viewer.py --run out/demo/run --out bench_viewer.json
    python scripts/bench_viewer.py --run out/demo/run --live-minutes 10 --skip-browser   # memory over a stream

Prints (and with ``--out`` writes) one JSON object:

- ``pose``: server time of one pose update (drive → world Gaussians → viser's packed buffer), median / p95 ms
  over the timeline's frames, and bytes per update (32 per Gaussian).
- ``server_send``: pose updates per second the viewer poses and hands to the websocket while the state changes
  at 100 Hz (no page connected: the server's own ceiling).
- ``browser``: the same with a headless Chromium page connected (software WebGL: SwiftShader on the CPU, sharing
  the 2 cores): updates sent, updates the page *received* (counted by a hook on the page's WebSocket), and the
  page's ``requestAnimationFrame`` callbacks per second while the camera orbits (what it measures: how often the
  browser produced a frame; headless software WebGL is far slower than any GPU).
- ``live``: a speech clip fed through a pipe at real-time pace with the page connected: speech-to-screen latency
  (audio sample arrival → pose handed to the websocket, and → the page receiving it; same machine, same clock),
  and the page's live audio against the picture (``nerfhead.viewer.page_audio``): the play time the page
  scheduled for the audio at each frame's stream time minus the time the page received that frame's pose.
- ``server_render``: the server path in the same run: one ``render_view`` at 256 x 256 and at the page's canvas
  size, ms and renders per second.
- ``live_memory`` (``--live-minutes``): resident memory sampled every 10 s over a stream looped at real-time pace.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nerfhead.data.drive import Drive
from nerfhead.viewer import ViewCamera, ViewerConfig, ViewerServer, load_renderable
from nerfhead.viewer.camera import look_at_view
from nerfhead.viewer.live_speech import PipeSource, feed_pipe
from nerfhead.viewer.splats import pack_splats
from tests.viewer.chromium import DRAW_HOOK, ReceiptLog, audio_picture_offsets, page_draws

try:
    from nerfhead.viewer.splats import MIN_ALPHA_BYTE
except ImportError:  # a library that sends every Gaussian (a baseline run)
    MIN_ALPHA_BYTE = 0

CLIP = Path(__file__).resolve().parents[1] / "scenes" / "assets" / "audio" / "en_ljspeech_LJ050-0131.wav"
RAF = "window.__raf = 0; (function f() { window.__raf++; requestAnimationFrame(f); })(); true"


def stats(x: list[float] | np.ndarray) -> dict[str, float]:
    a = np.asarray(x, dtype=np.float64)
    if a.size == 0:
        return {"n": 0}
    return {
        "n": int(a.size),
        "median": round(float(np.median(a)), 4),
        "p90": round(float(np.percentile(a, 90)), 4),
        "p95": round(float(np.percentile(a, 95)), 4),
        "max": round(float(a.max()), 4),
    }


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (from /proc/*/stat's parent field)."""
    parent: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    parent[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(c for c, pp in parent.items() if pp == p)
    return out


def thread_cpu(pids: list[int]) -> dict[str, float]:
    """CPU seconds (user + system) so far of every thread of ``pids``, keyed ``process/thread/tid`` (names from
    /proc's ``comm``)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    own = {t.native_id: t.name for t in threading.enumerate()}  # Python's thread names (not in /proc)
    for pid in pids:
        try:
            with open(f"/proc/{pid}/comm") as f:
                pname = f.read().strip()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                kind = [a for a in f.read().split(b"\0") if a.startswith(b"--type=")]
            if kind:  # Chromium's renderer, gpu-process, utility ...
                pname += ":" + kind[0][7:].decode()
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    head, rest = f.read().rsplit(")", 1)
            except OSError:
                continue
            fields = rest.split()
            tname = own.get(int(tid), head.split("(", 1)[1]) if pid == os.getpid() else head.split("(", 1)[1]
            out[f"{pname}/{tname}/{tid}"] = (int(fields[11]) + int(fields[12])) / tick
    return out


class CpuSampler:
    """Per-thread CPU of the server process and the headless Chromium's processes over a stretch of the run:
    where the two cores go while live frames are late. Sampled every ``every`` seconds from a thread; the
    summary groups threads by process and thread name (Chromium's renderer, GPU, network ... threads)."""

    def __init__(self, chromium_pid: int | None, every: float = 0.25):
        self.chromium_pid, self.every = chromium_pid, every
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True, name="bench-cpu-sampler")

    def _pids(self) -> list[int]:
        return [os.getpid(), *(_descendants(self.chromium_pid) if self.chromium_pid else [])]

    def _run(self) -> None:
        while True:
            self.samples.append((time.monotonic(), thread_cpu(self._pids())))
            if self._stop.wait(self.every):
                self.samples.append((time.monotonic(), thread_cpu(self._pids())))
                return

    def __enter__(self) -> CpuSampler:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()

    def summary(self, busy: list[tuple[float, float]] | None = None) -> dict[str, Any]:
        """Cores used per process/thread name over the whole stretch (CPU seconds / wall seconds) and, with
        ``busy`` (time windows, e.g. the late frames' arrival → page receipt), over the samples inside them."""
        if len(self.samples) < 2:
            return {}

        def group(pairs: list[tuple[int, int]]) -> dict[str, float]:
            acc: dict[str, float] = {}
            wall = 0.0
            for i, j in pairs:
                (t0, a), (t1, b) = self.samples[i], self.samples[j]
                wall += t1 - t0
                for k, v in b.items():
                    name = k.rsplit("/", 1)[0]
                    acc[name] = acc.get(name, 0.0) + v - a.get(k, 0.0)
            tops = sorted(acc.items(), key=lambda kv: -kv[1])
            out = {k: round(v / wall, 3) for k, v in tops if v / max(wall, 1e-9) >= 0.01}
            out["(total)"] = round(sum(acc.values()) / max(wall, 1e-9), 3)
            return out

        n = len(self.samples)
        res: dict[str, Any] = {
            "seconds": round(self.samples[-1][0] - self.samples[0][0], 2),
            "cores_by_thread": group([(i, i + 1) for i in range(n - 1)]),  # pairs: threads that ended count
        }
        if busy:
            times = np.asarray([t for t, _ in self.samples])
            pairs = []
            for i in range(n - 1):
                mid = 0.5 * (times[i] + times[i + 1])
                if any(a <= mid <= b for a, b in busy):
                    pairs.append((i, i + 1))
            if pairs:
                res["late_windows_s"] = round(float(sum(float(times[j] - times[i]) for i, j in pairs)), 2)
                res["cores_by_thread_in_late_windows"] = group(pairs)
        return res


def pcm(seconds: float, sr: int = 16000) -> bytes:
    from nerfhead.media.audio import load_audio

    wave, _ = load_audio(CLIP, sr)
    reps = int(math.ceil(seconds * sr / wave.size))
    wave = np.tile(wave, reps)[: int(seconds * sr)]
    return (np.clip(wave, -1, 1) * 32767).astype("<i2").tobytes()


class Changer:
    """Changes the viewer's frame at ``hz`` from a thread (a timeline playing faster than any display)."""

    def __init__(self, viewer: ViewerServer, hz: float = 100.0):
        self.viewer, self.hz = viewer, hz
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        st, i = self.viewer.state, 0
        while not self._stop.is_set():
            i += 1
            st.set_frame(i % st.num_frames)
            time.sleep(1.0 / self.hz)

    def __enter__(self) -> Changer:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def send_rate(viewer: ViewerServer, seconds: float) -> dict[str, float]:
    pusher = viewer.splats
    assert pusher is not None
    n0, d0, t0 = pusher.stats.updates, pusher.stats.dropped, time.monotonic()
    with Changer(viewer):
        time.sleep(seconds)
    dt = time.monotonic() - t0
    return {
        "updates_per_s": round((pusher.stats.updates - n0) / dt, 2),
        "poses_dropped_per_s": round((pusher.stats.dropped - d0) / dt, 2),
        "seconds": round(dt, 2),
    }


def bench_pose(viewer: ViewerServer, frames: int) -> dict[str, Any]:
    """One pose update as the pusher makes it (drive → world Gaussians → packed buffer), timed alone: the
    pusher's own threads are idle meanwhile (the state is not touched). ``ms``: the path the viewer uses
    (``ViewerConfig.fused_pose``); ``ms_by_path``: the fused pose-and-pack kernel and the per-tensor pose step
    then packing, interleaved frame by frame (the reference, same run)."""
    st = viewer.state
    drives = [st.drive_at(i % st.num_frames) for i in range(frames + 1)]
    pose = viewer.renderable.gaussians_at  # type: ignore[attr-defined]
    packed_at = getattr(viewer.renderable, "packed_at", None)
    paths: dict[str, Any] = {"per_tensor": lambda d: pack_splats(pose(d), MIN_ALPHA_BYTE)}
    if packed_at is not None:
        paths["fused"] = lambda d: packed_at(d, MIN_ALPHA_BYTE)
    times: dict[str, list[float]] = {k: [] for k in paths}
    nbytes = 0
    for i, d in enumerate(drives):
        for name, fn in paths.items():
            t0 = time.perf_counter()
            buf = fn(d)
            if i:  # the first is a warm-up
                times[name].append(1000 * (time.perf_counter() - t0))
            nbytes = int(buf.nbytes)
    used = "fused" if "fused" in paths and viewer.config.fused_pose else "per_tensor"
    by_path = {k: stats(v) for k, v in times.items()}
    out: dict[str, Any] = {
        "ms": by_path[used],
        "path": used,
        "ms_by_path": by_path,
        "bytes_per_update": nbytes,
        "gaussians_sent": nbytes // 32,
        "gaussians": int(pose(drives[0]).centers.shape[0]),
    }
    if len(by_path) == 2:
        out["per_tensor_over_fused"] = round(by_path["per_tensor"]["median"] / by_path["fused"]["median"], 2)
    return out


def bench_static_share(
    viewer: ViewerServer, speech: Drive | None = None, timeline_frames: int = 48
) -> dict[str, Any]:
    """Would a static splat node pay (:mod:`nerfhead.viewer.split`)? In head coordinates (the head's rigid
    motion taken out, as a node transform would), the share of the Gaussians that never move visibly over each
    part of the drive range: expression sliders at 1 one by one and all at once, the head-pose sliders' limits,
    random mixes under random head poses, the timeline, a speech drive (``speech``: ``--speech-audio`` through
    the run's speech driver, as ``nerfhead drive`` makes it); also between consecutive timeline frames."""
    from nerfhead.viewer.split import movement, pixels_per_metre, sample_drives, split_static

    pose = viewer.renderable.gaussians_at  # type: ignore[attr-defined]
    fr, fov = viewer.renderable.framing(), viewer.config.fov_deg
    ppm = pixels_per_metre(fov, math.dist(fr.eye(math.radians(fov)), fr.center))
    drives = sample_drives(viewer.state.drive, n_timeline=timeline_frames)
    posed = [pose(d, head_frame=True) for d in drives]
    n_expr = drives[1].expression.shape[1]
    parts = {
        "expression_sliders": posed[: n_expr + 2],
        "pose_sliders": posed[:1] + posed[n_expr + 2 : n_expr + 8],
        "random_mixes": posed[:1] + posed[n_expr + 8 : n_expr + 24],
        "timeline": posed[:1] + posed[n_expr + 24 :],
    }
    if speech is not None:
        parts["speech"] = posed[:1] + [pose(speech[i], head_frame=True) for i in range(len(speech))]
    parts["all"] = [g for v in parts.values() for g in v]
    out: dict[str, Any] = {
        "gaussians": len(posed[0].centers),
        "px_per_metre": round(ppm, 1),
        "samples": len(parts["all"]),
    }
    for px, steps in ((0.25, 1.0), (1.0, 4.0), (2.0, 8.0)):
        label = f"{px}px_{steps:g}steps"
        out[label] = {k: round(split_static(v, ppm, px, steps).share, 4) for k, v in parts.items()}
        seq = parts["timeline"][1:]
        moved = [movement(a, b, ppm) for a, b in zip(seq, seq[1:], strict=False)]
        out[label]["moved_between_frames_share"] = stats(
            [float(((m > px) | (c >= steps)).float().mean()) for m, c in moved]
        )
    return out


def bench_browser(
    viewer: ViewerServer,
    chromium: str,
    seconds: float,
    live_s: float,
    browser_nice: int = 0,
    window: tuple[int, int] = (1024, 720),
) -> dict[str, Any]:
    from tests.viewer.chromium import Chromium

    out: dict[str, Any] = {}
    threshold = viewer.splats.stats.bytes // 2 if viewer.splats and viewer.splats.stats.bytes else 100_000
    with Chromium(chromium, *window, nice=browser_nice) as ch:
        page = ch.open("about:blank")
        page.add_init_script(DRAW_HOOK, reload=False)  # logs when the page draws a new buffer
        frames = ReceiptLog(page._ws_url, threshold)  # the page's workers log receipts (before they start)
        page.navigate(viewer.url)
        deadline = time.monotonic() + 120
        while not viewer.connected() and time.monotonic() < deadline:
            time.sleep(0.2)
        client = viewer._clients[viewer.connected()[0]]
        time.sleep(5.0)  # first draw
        view = ViewCamera.from_handle(client.camera)
        out["canvas"] = [view.width, view.height]

        # Updates sent and received while the state changes at 100 Hz.
        n_page0 = len(frames.times())
        res = send_rate(viewer, seconds)
        n_page1 = len(frames.times())
        res["received_by_page_per_s"] = round((n_page1 - n_page0) / res["seconds"], 2)
        out["updates"] = res

        # Browser frame rate while the camera orbits (set from the server at 30 Hz).
        fr = viewer.renderable.framing()
        page.evaluate(RAF)
        r0, t0 = int(page.evaluate("window.__raf")), time.monotonic()
        dist = float(np.linalg.norm(np.subtract(fr.eye(math.radians(30.0)), fr.center)))
        while time.monotonic() - t0 < min(seconds, 8.0):
            a = 0.6 * math.sin(2 * math.pi * (time.monotonic() - t0) / 4.0)
            eye = np.asarray(fr.center) + dist * np.array([math.sin(a), 0.0, math.cos(a)])
            with client.atomic():
                client.camera.position = tuple(eye)
                client.camera.look_at = fr.center
            time.sleep(1 / 30)
        r1, t1 = int(page.evaluate("window.__raf")), time.monotonic()
        out["orbit_raf_per_s"] = round((r1 - r0) / (t1 - t0), 2)

        # Live speech at real-time pace: every frame's steps, from its audio's arrival to the page's drawing.
        out["live"] = bench_live(viewer, page, frames, live_s, ch.proc.pid)
        frames.close()
    return out


STEPS = ("produced", "pose_started", "posed", "released", "sent", "received", "drawn", "frame")
"""The chain of one live frame, after its audio's arrival: the driver produced it (look-ahead), the pusher
started posing it and had the Gaussians, the hold let it go, it was handed to the websocket, the page received it
(its worker dispatched the message: tests.viewer.chromium.ReceiptLog), the page uploaded it and issued the draw call, the page's next animation frame."""


def page_sends(viewer: ViewerServer) -> list[tuple[int, float]] | None:
    """(version, time) of each pose sent to the one page connected, with flow control (``PageGate.log``: a
    pose waits for the page to draw the one before); None without it (every pose goes to every page when the
    hold releases it: the trace's ``sent``)."""
    pusher = viewer.splats
    pages = getattr(pusher, "pages", None)
    if not pages:
        return None
    gate = next(iter(pages.values()))
    return list(gate.log) if gate.log is not None else None


def live_chain(
    trace: list[Any],
    received: np.ndarray,
    draws: dict[str, np.ndarray],
    delay: float,
    sends: list[tuple[int, float]] | None = None,
) -> list[dict[str, float]]:
    """One row per live frame the page received: the monotonic time of each step of :data:`STEPS` (and the
    arrival), matched by order: a receipt shows the newest frame sent before it, a draw the newest receipt
    before its upload (viser replaces an update still waiting for a page that is behind: some frames sent are
    never received, some received never drawn). With flow control (``sends``: the page's own sends, by state
    version) a frame is sent to the page when the page has drawn the one before: ``sent`` is that time, and
    the frame is the newest live frame in the version sent."""
    if sends is not None:
        versions = np.asarray([r.version for r in trace])
        own = []
        for v, t in sends:
            k = int(np.searchsorted(versions, v, side="right")) - 1
            if k >= 0 and t >= trace[k].released - 1e-6:
                own.append(dataclasses.replace(trace[k], sent=t))
        trace = own
    sent = np.asarray([r.sent for r in trace])
    rows: list[dict[str, float]] = []
    for r in np.sort(received):
        k = int(np.searchsorted(sent, r, side="right")) - 1
        if k < 0:
            continue
        tr = trace[k]
        row = {
            "t": tr.t,
            "arrival": tr.arrival,
            "due": tr.arrival + (getattr(tr, "hold", 0.0) or delay),  # the frame's own hold (adaptive)
            "produced": tr.produced,
            "pose_started": tr.pose_started,
            "posed": tr.posed,
            "released": tr.released,
            "sent": tr.sent,
            "received": float(r),
        }
        if rows and rows[-1]["t"] == tr.t:
            continue  # two receipts after one send (a message of another node): keep the first
        rows.append(row)
    rec = np.asarray([row["received"] for row in rows])
    ups, dr, fr = draws["uploads"], draws["draws"], draws["frames"]
    for i in range(len(ups)):
        k = int(np.searchsorted(rec, ups[i], side="right")) - 1
        if k < 0 or "drawn" in rows[k]:
            continue
        rows[k]["drawn"] = float(dr[i])
        if i < len(fr):
            rows[k]["frame"] = float(fr[i])
    return rows


def chain_summary(rows: list[dict[str, float]]) -> dict[str, Any]:
    """Latency from the audio's arrival to each step (median / p95 / max, seconds), each step's own duration,
    which step makes the tail (frames whose latency to the page is at or above its 90th percentile: each step's
    mean excess over its median, and how many of those frames each step was the largest excess of; a hold that
    waited less than usual for a late frame shows as a negative excess), and every frame's row."""
    out: dict[str, Any] = {"frames": len(rows)}
    if not rows:
        return out
    out["latency_to"] = {k: stats([r[k] - r["arrival"] for r in rows if k in r]) for k in STEPS}
    prev = ["arrival", *STEPS[:-1]]
    steps = {
        f"{a}->{b}": [r[b] - r[a] for r in rows if a in r and b in r]
        for a, b in zip(prev, STEPS, strict=True)
    }
    out["step_s"] = {k: stats(v) for k, v in steps.items()}
    late = [r for r in rows if r["posed"] > r["due"]]
    out["posed_after_due"] = len(late)
    lat = np.asarray([r["received"] - r["arrival"] for r in rows])
    tail = lat >= np.percentile(lat, 90)
    out["tail_frames"] = int(tail.sum())
    # Which step makes the tail: per frame at or above the 90th percentile, each step's excess over that step's
    # median (they add up to the frame's excess over the sum of the medians); the step with the largest excess
    # is the frame's cause. Only the steps up to the page's receipt (what the latency is measured at).
    pairs = list(zip(prev, STEPS, strict=True))[:6]
    medians = {f"{a}->{b}": float(np.median([r[b] - r[a] for r in rows])) for a, b in pairs}
    excess: dict[str, list[float]] = {k: [] for k in medians}
    causes: dict[str, int] = {}
    for r, tl in zip(rows, tail, strict=True):
        if not tl:
            continue
        ex = {f"{a}->{b}": r[b] - r[a] - medians[f"{a}->{b}"] for a, b in pairs}
        for k, v in ex.items():
            excess[k].append(v)
        worst = max(ex, key=lambda k: ex[k])
        causes[worst] = causes.get(worst, 0) + 1
    out["tail_excess_mean_s"] = {k: round(float(np.mean(v)), 4) for k, v in excess.items()}
    out["tail_cause_counts"] = causes
    out["rows_s"] = [  # every frame's steps, seconds after its audio's arrival
        {"t": round(r["t"], 3), **{k: round(r[k] - r["arrival"], 4) for k in STEPS if k in r}} for r in rows
    ]
    return out


def bench_live(
    viewer: ViewerServer, page: Any, frames: ReceiptLog, live_s: float, chromium_pid: int | None = None
) -> dict[str, Any]:
    """A speech clip through a pipe at real-time pace with the page connected: each frame's chain
    (:func:`live_chain`), the page's live audio against the picture, and the CPU each thread of the server and
    of Chromium took meanwhile (:class:`CpuSampler`; also inside the late frames' windows)."""
    viewer.latencies.clear()
    viewer.live_trace.clear()
    getattr(viewer, "live_dropped", []).clear()
    late0 = getattr(viewer.splats.stats, "dropped_late", 0) if viewer.splats else 0
    t_before = time.monotonic()
    r, w = os.pipe()
    writer = feed_pipe(w, pcm(live_s))
    with CpuSampler(chromium_pid) as cpu:
        live = viewer.start_speech_stream(PipeSource(os.fdopen(r, "rb"), 16000))
        writer.join(live_s + 30)
        while live.running:
            time.sleep(0.05)
        time.sleep(1.5)
    received = frames.times()
    received = received[received > t_before]
    trace = list(viewer.live_trace)
    rows = live_chain(trace, received, page_draws(page), viewer._live_delay, page_sends(viewer))
    sync = audio_picture_offsets(page, list(received))
    at_page = [row["received"] - row["arrival"] for row in rows]
    late = [(row["arrival"], row["received"]) for row, lat in zip(rows, at_page, strict=True) if lat > 0.35]
    return {
        "cpu": cpu.summary(late),
        "seconds": live_s,
        "frames": live.frames_in,
        "frames_sent": len(trace),
        "frames_dropped_late": getattr(viewer.splats.stats, "dropped_late", 0) - late0
        if viewer.splats
        else 0,
        "frames_received_by_page": len(received),
        "frames_drawn_by_page": sum("drawn" in row for row in rows),
        "hold_s": stats([getattr(t, "hold", 0.0) or viewer._live_delay for t in trace]),
        "bytes_per_update": stats([t.nbytes for t in trace]),
        "latency_to_websocket_s": stats([t.sent - t.arrival for t in trace]),
        # the frames not sent because they were late against their sound, counted at their pose's end (the
        # earliest they could have left): the same figure over every frame the driver's output reached the pusher
        "latency_to_websocket_incl_dropped_s": stats(
            [t.sent - t.arrival for t in trace] + [p - a for _t, a, p in getattr(viewer, "live_dropped", [])]
        ),
        "latency_to_page_s": stats(at_page),
        "chain": chain_summary(rows),
        "audio_minus_picture_at_page_s": stats(sync["offsets"]),
        "abs_audio_picture_offset_s": stats(np.abs(sync["offsets"])),
        "abs_audio_picture_offset_p90_s": round(float(np.percentile(np.abs(sync["offsets"]), 90)), 4)
        if sync["offsets"]
        else None,
        "within_40ms": round(float(np.mean(np.abs(sync["offsets"]) <= 0.04)), 3) if sync["offsets"] else None,
        "audio_chunks_played": sync["chunks"],
        "audio_chunks_late": sync["late"],
    }


def bench_server_render(viewer: ViewerServer, canvas: tuple[int, int], repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    fr = viewer.renderable.framing()
    fov = math.radians(30.0)
    for label, (w, h) in (("256x256", (256, 256)), (f"{canvas[0]}x{canvas[1]}", canvas)):
        view = look_at_view(fr.eye(fov), fr.center, fr.up, fov, w, h)
        viewer.render_view(view)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            viewer.render_view(view)
            times.append(1000 * (time.perf_counter() - t0))
        ms = float(np.median(times))
        out[label] = {"ms": round(ms, 1), "renders_per_s": round(1000 / ms, 2)}
    return out


def bench_live_memory(viewer: ViewerServer, minutes: float) -> dict[str, Any]:
    r, w = os.pipe()
    seconds = minutes * 60
    writer = feed_pipe(w, pcm(seconds))
    live = viewer.start_speech_stream(PipeSource(os.fdopen(r, "rb"), 16000))
    samples = []
    t0 = time.monotonic()
    while live.running:
        samples.append((round(time.monotonic() - t0, 1), round(rss_mb(), 1)))
        time.sleep(10.0)
    writer.join(5)
    mem = np.asarray([m for _, m in samples])
    half = len(mem) // 2
    return {
        "minutes": minutes,
        "frames": live.frames_in,
        "rss_mb_samples": samples,
        "rss_mb_first": float(mem[0]),
        "rss_mb_last": float(mem[-1]),
        "rss_mb_max": float(mem.max()),
        "rss_mb_growth_second_half": round(float(mem[half:].max() - mem[half]), 1) if half else 0.0,
        "latency_to_websocket_s": stats(list(viewer.latencies)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="out/demo/run")
    ap.add_argument("--out", default=None)
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each rate measurement")
    ap.add_argument("--live-seconds", type=float, default=7.0, help="speech streamed with the page connected")
    ap.add_argument("--frames", type=int, default=40, help="pose updates timed one by one")
    ap.add_argument("--repeats", type=int, default=5, help="server-side renders timed per size")
    ap.add_argument(
        "--live-minutes", type=float, default=0.0, help="memory over a stream this long (0: skip)"
    )
    ap.add_argument("--skip-browser", action="store_true")
    ap.add_argument(
        "--speech-audio", default=None, help="speech whose drive static_share includes (e.g. a wav)"
    )
    ap.add_argument(
        "--live-margin",
        type=float,
        default=ViewerConfig.live_margin_s,
        help="ViewerConfig.live_margin_s: how long past the look-ahead a live frame is held",
    )
    ap.add_argument(
        "--live-margin-min",
        type=float,
        default=getattr(ViewerConfig, "live_margin_min_s", None),
        help="ViewerConfig.live_margin_min_s: the adaptive hold's smallest margin (>= --live-margin: fixed)",
    )
    ap.add_argument(
        "--page-ack-timeout",
        type=float,
        default=ViewerConfig.page_ack_timeout_s,
        help="ViewerConfig.page_ack_timeout_s: page flow control (0: off)",
    )
    ap.add_argument(
        "--window",
        default="1024x720",
        help="headless Chromium's window, WxH (the default is the figure reported; a smaller one is a "
        "diagnostic of how much the page's software drawing costs, to be labelled as such)",
    )
    ap.add_argument(
        "--late-drop",
        type=float,
        default=getattr(ViewerConfig, "live_late_drop_s", 0.0),
        help="ViewerConfig.live_late_drop_s: a live frame posed this long past its due time is not sent (0: off)",
    )
    ap.add_argument(
        "--per-tensor-pose",
        action="store_true",
        help="ViewerConfig.fused_pose=False: pose with the per-tensor step then packing (the reference path)",
    )
    ap.add_argument(
        "--browser-nice",
        type=int,
        default=0,
        help="run the headless Chromium at this niceness (a browser drawing on its own GPU leaves the server "
        "the CPU; 0: the same priority as the server, software WebGL competing for the same cores)",
    )
    args = ap.parse_args()

    renderable = load_renderable(args.run)
    margins: dict[str, Any] = {
        "live_margin_s": args.live_margin,
        "page_ack_timeout_s": args.page_ack_timeout,
    }
    if hasattr(ViewerConfig, "live_late_drop_s"):
        margins["live_late_drop_s"] = args.late_drop
    if args.live_margin_min is not None:
        margins["live_margin_min_s"] = args.live_margin_min
    if hasattr(ViewerConfig, "fused_pose"):
        margins["fused_pose"] = not args.per_tensor_pose
    viewer = ViewerServer(renderable, args.run, ViewerConfig(port=0, render="browser", **margins)).start()
    result: dict[str, Any] = {
        "run": str(args.run),
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "load_average_start": [round(x, 2) for x in os.getloadavg()],
            **margins,
            "browser_nice": args.browser_nice,
        },
    }
    try:
        time.sleep(1.0)
        result["pose"] = bench_pose(viewer, args.frames)
        result["server_send"] = send_rate(viewer, args.seconds)
        speech = None
        if args.speech_audio:
            from nerfhead.export.gltf import speech_drive

            speech = speech_drive(Path(args.run), Path(args.speech_audio), 25.0)
        result["static_share"] = bench_static_share(viewer, speech)
        canvas = (640, 480)
        if not args.skip_browser:
            from tests.viewer.chromium import find_chromium

            chromium = find_chromium()
            if chromium is None:
                result["browser"] = "skipped: no Chromium (apt-get install -y chromium)"
            else:
                w, h = (int(v) for v in args.window.lower().split("x"))
                result["machine"]["window"] = [w, h]
                result["browser"] = bench_browser(
                    viewer, chromium, args.seconds, args.live_seconds, args.browser_nice, (w, h)
                )
                canvas = tuple(result["browser"]["canvas"])  # type: ignore[assignment]
        result["server_render"] = bench_server_render(viewer, canvas, args.repeats)
        if args.live_minutes > 0:
            viewer.latencies.clear()
            result["live_memory"] = bench_live_memory(viewer, args.live_minutes)
    finally:
        viewer.stop()
    result["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    result["machine"]["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
