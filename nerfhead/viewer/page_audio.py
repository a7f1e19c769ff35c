"""Live speech played in the page, in sync with the picture.

While a live stream drives the face (``nerfhead view RUN --speech-stream ...``) the server streams the audio to
every page over a websocket of its own (:class:`PageAudio`, on the viewer's host, a free port) as it arrives,
together with a marker for each pose update that leaves for the page (the stream time of the audio it was
posed from; on the browser path each page gets the markers of the poses sent to it, right after them: with flow
control a page gets only some poses, later, and its audio follows those). A small script in the page (:data:`PAGE_SCRIPT`, added through a GUI HTML element) plays the
audio with WebAudio, scheduled against the markers: the audio at stream time ``t`` plays at the page time at
which the frame posed from ``t`` arrives. The server holds every live frame until a set time (the hold:
look-ahead + margin, :class:`nerfhead.viewer.live_speech.HoldMargin`) after its audio arrived, and each marker
carries the hold that applied, so that ``arrival - t - hold`` is steady: the page takes the 20th percentile
of it over the last 50 markers (the frames that came on time; one the server could not pose in time is late
against its sound) and plays the audio that much plus the newest hold after its stream time; when the
adaptive hold moves, the audio schedule moves with it. The page's socket lives in a Web Worker, so arrival times are taken when messages
arrive, not when a page busy drawing gets round to them, and the worker also makes the schedule and hands each
chunk with its play time straight to an AudioWorklet, which plays it on the audio thread: a page whose main
thread is busy drawing (software WebGL: 0.3 s and more per frame) still plays every chunk on time (without
AudioWorklet the main thread schedules the chunks, and skips those it gets to after their play time). Audio arrives about one look-ahead (0.25 s) before the frame posed from it, so every chunk is
scheduled ahead of time; consecutive chunks are joined without gaps while the estimate moves by less than
15 ms. The page keeps what it did in ``window.__nerfheadAudio`` (the browser tests read it).

Browsers start audio only after a user gesture: the element shows a button that enables it (headless tests
run Chromium with ``--autoplay-policy=no-user-gesture-required``).

The same socket carries the browser path's flow control (:class:`nerfhead.viewer.splats.PageGate`): the page
script watches the page's WebGL calls and, each time the page uploads a large texture (viser's Gaussian buffer)
and then issues a draw call, tells the server it drew a pose (at the next animation frame: the frame is done);
the server sends that page its next pose only then (or after ``ViewerConfig.page_ack_timeout_s``). The script is added to each page on its own (a GUI element per
viser client) and names its client id when it connects.

Messages (little-endian), server to page: audio ``b"A"``, 7 pad bytes, float64 stream time of the first sample
(s), uint32 sample rate, 4 pad bytes, int16 mono samples; frame marker ``b"F"``, 7 pad bytes, float64 stream
time (s), float64 hold (s). Page to server (text): ``"H <client id>"`` once, then ``"D"`` per Gaussian buffer drawn.
"""

from __future__ import annotations

import base64
import struct
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

AUDIO_HEADER = struct.Struct("<c7xdI4x")
FRAME_MARKER = struct.Struct("<c7xdd")

SHADER_FIX = r"""
(() => {
  // Two changes to viser's splat vertex shader, made as the page compiles it (counted in
  // window.__nerfheadShader: the cull removed, the axis made safe):
  // - it drops every Gaussian whose opacity x det(projected covariance + 0.3 px^2) is below 0.25 px^4: all
  //   those under about half a pixel across (eyelashes, lip lines, the eyes' and mouth's fine detail of a fitted
  //   head) and faint large ones. Our rasteriser (like gsplat and 3DGS) draws them: the test goes.
  // - a Gaussian whose projected covariance is exactly round has no major axis: normalize(0, 0) is NaN and the
  //   Gaussian vanishes; any axis will do.
  if (window.__nerfheadShader) return;
  const S = (window.__nerfheadShader = { patched: 0, axis: 0 });
  const CULL = /if\s*\(\s*weightedDeterminant\s*<\s*0\.25\s*\)\s*return\s*;/;
  const AXIS = /vec2\s+diagonalVector\s*=\s*normalize\(\s*vec2\(\s*offDiag\s*,\s*lambda1\s*-\s*diag1\s*\)\s*\)\s*;/;
  const SAFE_AXIS = "vec2 nerfheadAxis = vec2(offDiag, lambda1 - diag1); vec2 diagonalVector = " +
    "dot(nerfheadAxis, nerfheadAxis) > 0.0 ? normalize(nerfheadAxis) : vec2(1.0, 0.0);";
  for (const C of [window.WebGL2RenderingContext, window.WebGLRenderingContext]) {
    if (!C || !C.prototype.shaderSource) continue;
    const orig = C.prototype.shaderSource;
    C.prototype.shaderSource = function (shader, src) {
      if (typeof src === "string" && CULL.test(src)) {
        src = src.replace(CULL, "");
        S.patched++;
        if (AXIS.test(src)) { src = src.replace(AXIS, SAFE_AXIS); S.axis++; }
      }
      return orig.call(this, shader, src);
    };
  }
})();
"""
"""JavaScript run first in every page: viser's Gaussian splat shader without its size-and-opacity cull and with a
safe major axis (the page counts the shaders it changed in ``window.__nerfheadShader``)."""

PAGE_SCRIPT = r"""
__SHADER_FIX__
(() => {
  if (window.__nerfheadAudio) {
    // Run again: the page's viser client reconnected and got this script with its new id. To the same viewer
    // (same page socket port), the socket already open says the new id (a hello), so the server credits this
    // page's draws and sends it its frame markers and splat node under that id. To a restarted viewer (a new
    // port: the open socket's server is gone), the page starts afresh.
    if (window.__nerfheadAudio.port !== __PORT__) { location.reload(); return; }
    const W = window.__nerfheadAudio.worker;
    if (W) W.postMessage("H __CLIENT__");
    return;
  }
  const A = (window.__nerfheadAudio = {
    frames: [], chunks: [], off: null, end: 0, late: 0, connected: false, worklet: false, port: __PORT__,
  });
  const Ctx = window.AudioContext || window.webkitAudioContext;
  const ctx = new Ctx({ latencyHint: "interactive" });
  A.ctx = ctx;
  A.enable = () => ctx.resume();
  const toCtx = (ms) => {  // page clock (performance.now, ms) to the audio clock (s)
    const ts = ctx.getOutputTimestamp ? ctx.getOutputTimestamp() : {};
    if (ts.performanceTime) return ts.contextTime + (ms - ts.performanceTime) / 1000;
    return ctx.currentTime + (ms - performance.now()) / 1000;
  };
  const keep = (list, row) => { list.push(row); if (list.length > 3000) list.splice(0, 1000); };
  // Fallback (no AudioWorklet): the page's main thread schedules each chunk; a page busy drawing gets to a
  // chunk late and skips it.
  const play = (want, t0, sr, pcm) => {
    let at = toCtx(want);
    if (Math.abs(at - A.end) < 0.015) at = A.end;  // join to the previous chunk
    if (at < ctx.currentTime) { A.late++; return; }
    const buf = ctx.createBuffer(1, pcm.length, sr);
    const ch = buf.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) ch[i] = pcm[i] / 32768;
    const src = ctx.createBufferSource();
    src.buffer = buf;
    src.connect(ctx.destination);
    src.start(at);
    A.end = at + pcm.length / sr;
    keep(A.chunks, [t0, want + (at - toCtx(want)) * 1000, pcm.length / sr]);
  };
  // The socket lives in a worker, so that arrival times are taken when messages arrive, not when a busy
  // page (drawing) gets round to them; times travel as wall-clock ms (performance.timeOrigin + now). The
  // worker also schedules the audio: it takes the play offset from the markers and hands each chunk, with
  // its wall-clock play time, straight to an AudioWorklet (the audio thread), so the page's main thread is
  // not in the audio path at all.
  const src = `
    const ws = new WebSocket(${JSON.stringify(`ws://${location.hostname}:__PORT__`)});
    ws.binaryType = "arraybuffer";
    let sink = null, off = null;  // the worklet's port (or "main"), the play offset (wall ms)
    const recent = [], pending = [];
    const send = (t, sr, pcm) => {
      const want = off + t * 1000;
      if (sink === "main") postMessage({ audio: [want, t, sr, pcm] }, [pcm.buffer]);
      else sink.postMessage({ want, t, sr, pcm }, [pcm.buffer]);
    };
    const flush = () => { if (sink !== null && off !== null) for (const p of pending.splice(0)) send(...p); };
    ws.onopen = () => { ws.send("H __CLIENT__"); postMessage({ open: true }); };
    ws.onmessage = (ev) => {
      const at = performance.timeOrigin + performance.now();
      const dv = new DataView(ev.data);
      const kind = String.fromCharCode(dv.getUint8(0));
      const t = dv.getFloat64(8, true);
      if (kind === "F") {
        const hold = ev.data.byteLength >= 24 ? dv.getFloat64(16, true) * 1000 : 0;  // the server's hold, ms
        recent.push(at - t * 1000 - hold);
        if (recent.length > 50) recent.shift();
        const s = [...recent].sort((a, b) => a - b);
        off = s[Math.floor(s.length / 5)] + hold;  // frames on time: each leaves its hold after its audio
        postMessage({ frame: [t, at, off] });
        flush();
      } else if (kind === "A") {
        const pcm = new Int16Array(ev.data.slice(24));
        const sr = dv.getUint32(16, true);
        if (sink === null || off === null) { pending.push([t, sr, pcm]); if (pending.length > 200) pending.shift(); }
        else send(t, sr, pcm);
      }
    };
    onmessage = (msg) => {
      if (msg.data && msg.data.sink) { sink = msg.data.sink === "main" ? "main" : msg.data.port; flush(); return; }
      if (ws.readyState === 1) ws.send(msg.data);
    };
  `;
  // The worklet plays each chunk at its wall-clock time (the main thread tells it how the audio clock maps to
  // wall-clock ms now and then; both run at real time); the part of a chunk whose time has passed is skipped.
  const proc = `
    class Live extends AudioWorkletProcessor {
      constructor() {
        super();
        this.q = []; this.map = null; this.end = -1e12;
        this.port.onmessage = (e) => {
          if (e.data.map) this.map = e.data.map;
          else if (e.data.port) e.data.port.onmessage = (m) => this.add(m.data);
        };
      }
      add(d) {
        if (this.map === null) { this.port.postMessage({ late: 1 }); return; }
        let start = (this.map.ctx + (d.want - this.map.wall) / 1000) * sampleRate;  // audio frames
        const n = d.pcm.length * sampleRate / d.sr;
        if (Math.abs(start - this.end) < 0.015 * sampleRate) start = this.end;  // join to the previous chunk
        if (start + n <= currentFrame) { this.port.postMessage({ late: 1 }); return; }
        this.q.push({ start, n, k: d.sr / sampleRate, pcm: d.pcm });
        this.end = start + n;
        const wall = this.map.wall + (start / sampleRate - this.map.ctx) * 1000;
        this.port.postMessage({ chunk: [d.t, wall, d.pcm.length / d.sr] });
      }
      process(inputs, outputs) {
        const out = outputs[0][0];
        const g = currentFrame, m = out.length;
        while (this.q.length && this.q[0].start + this.q[0].n <= g) this.q.shift();
        for (const c of this.q) {
          if (c.start >= g + m) continue;
          const i1 = Math.min(m, Math.floor(c.start + c.n - g));
          for (let i = Math.max(0, Math.ceil(c.start - g)); i < i1; i++) {
            const x = (g + i - c.start) * c.k, j = Math.floor(x), f = x - j;
            const a = c.pcm[j], b = j + 1 < c.pcm.length ? c.pcm[j + 1] : a;
            out[i] += (a + (b - a) * f) / 32768;
          }
        }
        return true;
      }
    }
    registerProcessor("nerfhead-live", Live);
  `;
  const worker = new Worker(URL.createObjectURL(new Blob([src], { type: "text/javascript" })));
  A.worker = worker;
  const mainSink = () => worker.postMessage({ sink: "main" });
  if (ctx.audioWorklet && window.AudioWorkletNode) {
    ctx.audioWorklet.addModule(URL.createObjectURL(new Blob([proc], { type: "text/javascript" }))).then(() => {
      let node;
      try {
        node = new AudioWorkletNode(ctx, "nerfhead-live", { numberOfInputs: 0, outputChannelCount: [1] });
      } catch (e) { mainSink(); return; }
      node.connect(ctx.destination);
      const clock = () => {
        const ts = ctx.getOutputTimestamp ? ctx.getOutputTimestamp() : {};
        const map = ts.performanceTime
          ? { ctx: ts.contextTime, wall: performance.timeOrigin + ts.performanceTime }
          : { ctx: ctx.currentTime, wall: performance.timeOrigin + performance.now() };
        node.port.postMessage({ map });
      };
      clock();
      setInterval(clock, 500);
      node.port.onmessage = (e) => {
        if (e.data.late) A.late++;
        else if (e.data.chunk) {
          const [t0, wall, dur] = e.data.chunk;
          keep(A.chunks, [t0, wall - performance.timeOrigin, dur]);
        }
      };
      const ch = new MessageChannel();
      node.port.postMessage({ port: ch.port1 }, [ch.port1]);
      worker.postMessage({ sink: "port", port: ch.port2 }, [ch.port2]);
      A.worklet = true;
    }, mainSink);
  } else mainSink();
  // Flow control: a large texture upload (viser's Gaussian buffer, 32 bytes per Gaussian) followed by a draw
  // call is a pose drawn; the server sends the next one only then (or after its timeout).
  A.drawn = 0;
  __WATCH_DRAWS__
  // Acknowledged at the next animation frame after the draw call, when the frame that shows it is done (a page
  // drawing in software takes long after the call), so the next pose arrives when the page can take it.
  watchDraws(32768, () => {}, () => requestAnimationFrame(() => { A.drawn++; worker.postMessage("D"); }));
  worker.onmessage = (msg) => {
    const d = msg.data;
    if (d.open) { A.connected = true; return; }
    if (d.frame) {
      const [t, at, off] = d.frame;
      A.off = off - performance.timeOrigin;  // page clock
      keep(A.frames, [t, at - performance.timeOrigin, A.off]);
    } else if (d.audio) {
      const [want, t, sr, pcm] = d.audio;
      play(want - performance.timeOrigin, t, sr, pcm);
    }
  };
})();
"""


WATCH_DRAWS = r"""
const watchDraws = (minBytes, onUpload, onDraw) => {
  // onUpload() after each WebGL texture upload of at least minBytes (viser's Gaussian buffer), onDraw() at the
  // first instanced draw call after one: a new pose drawn.
  let uploaded = false;
  const wrap = (proto, name, fn) => {
    const orig = proto[name];
    if (!orig) return;
    proto[name] = function (...args) { const r = orig.apply(this, args); fn(args); return r; };
  };
  for (const C of [window.WebGL2RenderingContext, window.WebGLRenderingContext]) {
    if (!C) continue;
    for (const name of ["texImage2D", "texSubImage2D"]) {
      wrap(C.prototype, name, (args) => {
        for (const a of args) if (a && a.byteLength >= minBytes) { uploaded = true; onUpload(); return; }
      });
    }
    for (const name of ["drawElementsInstanced", "drawArraysInstanced"]) {
      wrap(C.prototype, name, () => { if (uploaded) { uploaded = false; onDraw(); } });
    }
  }
};
"""
"""JavaScript: ``watchDraws(minBytes, onUpload, onDraw)``, hooks on the page's WebGL calls that tell when a new
Gaussian buffer was uploaded and drawn (the page script's acknowledgements; the benchmark's draw log)."""
PAGE_SCRIPT = PAGE_SCRIPT.replace("__WATCH_DRAWS__", WATCH_DRAWS.strip()).replace(
    "__SHADER_FIX__", SHADER_FIX.strip()
)


def page_html(port: int, client: int = -1) -> str:
    """The GUI element that runs :data:`PAGE_SCRIPT` in the page of viser client ``client`` (connecting to
    ``port``) and offers the button browsers need before they play audio."""
    script = PAGE_SCRIPT.replace("__PORT__", str(int(port))).replace("__CLIENT__", str(int(client)))
    return (
        '<div style="font-size:0.8em">live speech audio '
        '<button onclick="window.__nerfheadAudio &amp;&amp; window.__nerfheadAudio.enable()">enable sound</button>'
        f"{_script_element(script)}</div>"
    )


def shader_fix_html() -> str:
    """The GUI element that runs only :data:`SHADER_FIX` in a page (when the viewer has no page socket). Best
    effort: without the page's hello the server cannot wait for it, and a splat node the page already had when
    it connected may be compiled before it runs."""
    return _script_element(SHADER_FIX.strip())


def _script_element(script: str) -> str:
    """An invisible HTML element that runs ``script`` when the page shows it (GUI HTML has no script tags)."""
    code = base64.b64encode(script.encode()).decode()
    return f'<img alt="" src="data:image/png;base64,AA==" style="display:none" onerror="window.eval(atob(\'{code}\'))">'


class PageAudio:
    """The websocket the pages' audio comes from and their draw acknowledgements go to (one server thread;
    sends go out from the caller's thread).

    Args:
        host: interface to bind (the viewer's).
        on_draw: called with the page's viser client id each time a page says it drew a Gaussian buffer (from
            the socket's thread).
        on_hello: called with the page's viser client id when its script connects (its WebGL hooks, the
            shader fix included, are in place; from the socket's thread).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        on_draw: Callable[[int], None] | None = None,
        on_hello: Callable[[int], None] | None = None,
    ):
        from websockets.sync.server import serve

        self._on_draw = on_draw
        self._on_hello = on_hello
        self._clients: set[Any] = set()
        self._page_of: dict[Any, int] = {}  # connection -> viser client id (from its "H" message)
        self._lock = threading.Lock()
        self._server = serve(self._handle, host, 0, compression=None, max_size=2**16)
        self.port = int(self._server.socket.getsockname()[1])
        self.sent_audio = 0
        """Audio messages sent (to all pages)."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="nerfhead-page-audio", daemon=True
        )
        self._thread.start()

    def _handle(self, conn: Any) -> None:
        with self._lock:
            self._clients.add(conn)
        client = -1
        try:
            for msg in conn:  # "H <client id>" once, then "D" per Gaussian buffer drawn
                if msg == "D":
                    if self._on_draw is not None and client >= 0:
                        self._on_draw(client)
                elif isinstance(msg, str) and msg.startswith("H "):
                    try:
                        client = int(msg[2:])
                    except ValueError:
                        client = -1
                    with self._lock:
                        self._page_of[conn] = client
                    if self._on_hello is not None and client >= 0:
                        self._on_hello(client)
        except Exception:
            pass
        finally:
            with self._lock:
                self._clients.discard(conn)
                self._page_of.pop(conn, None)

    @property
    def clients(self) -> int:
        """Pages connected."""
        with self._lock:
            return len(self._clients)

    def _broadcast(self, data: bytes, page: int | None = None) -> None:
        with self._lock:
            clients = (
                list(self._clients) if page is None else [c for c, p in self._page_of.items() if p == page]
            )
        for c in clients:
            try:
                c.send(data)
            except Exception:  # a page that left; its handler removes it
                pass

    def send_audio(self, samples: np.ndarray, t0: float, sr: int) -> None:
        """Samples (mono float in [-1, 1]) whose first is at stream time ``t0`` seconds."""
        pcm = (np.clip(np.asarray(samples, np.float32), -1.0, 1.0) * 32767.0).astype("<i2")
        self._broadcast(AUDIO_HEADER.pack(b"A", float(t0), int(sr)) + pcm.tobytes())
        self.sent_audio += 1

    def send_frame(self, t: float, hold: float = 0.0, page: int | None = None) -> None:
        """A pose posed from the audio at stream time ``t`` has left for the pages (``page``: for the page of
        that viser client id only, the one it was sent to); ``hold``: the seconds it was held to after its audio
        arrived (the page schedules the audio by the same hold)."""
        self._broadcast(FRAME_MARKER.pack(b"F", float(t), float(hold)), page)

    def close(self) -> None:
        """Stop serving; the port is free when this returns."""
        self._server.shutdown()
        self._thread.join(5.0)
        with self._lock:
            clients, self._clients = list(self._clients), set()
            self._page_of.clear()
        for c in clients:
            try:
                c.close()
            except Exception:
                pass
