"""``nerfhead fit --viewer``: the viewer showing a model while it trains.

:class:`LiveFit` is the trainer's monitor (see :func:`nerfhead.engine.trainer.fit`): the trainer holds
:attr:`LiveFit.lock` around every optimisation step, and the viewer renders under the same lock, so an image never
sees a half-updated model (or a densification in progress); between steps the render loops take their turn.
Renders run under ``torch.inference_mode`` and leave the model's train/eval mode alone.
Every ``refresh_s`` seconds of training the clients' views are marked stale and re-rendered, and the stats panel
shows the step, the loss and the last evaluation.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import torch

from nerfhead.data.drive import Drive
from nerfhead.viewer.renderable import AvatarRenderable
from nerfhead.viewer.server import ViewerConfig, ViewerServer


class LiveFit:
    """A viewer server over a model in training, and the monitor the trainer reports to.

    Args:
        model: the avatar being trained (``render(cameras, drive, background=None)``).
        drive: the capture's drive (the viewer's timeline).
        out_dir: where the viewer's export buttons write.
        config: viewer settings (host, port, image sizes).
        device: the model's device.
        refresh_s: seconds of training between re-renders of the clients' views.
        yield_s: pause of the training loop after each refresh, so the render loops get the lock (a lock is not
            fair: a trainer that releases and re-takes it at once could starve them).
        name: shown in the viewer's title and stats.
    """

    def __init__(
        self,
        model: Any,
        drive: Drive,
        out_dir: Any,
        config: ViewerConfig = ViewerConfig(),
        device: str | torch.device = "cpu",
        refresh_s: float = 1.0,
        yield_s: float = 0.02,
        name: str = "fit",
    ):
        self.renderable = AvatarRenderable(model, drive, name=name, device=device)
        self.server = ViewerServer(self.renderable, out_dir, config)
        self.refresh_s = refresh_s
        self.yield_s = yield_s
        self.steps_seen = 0
        self.refreshes = 0
        self.status = "starting"
        self._last = 0.0

    @property
    def lock(self) -> threading.Lock:
        """Held by the trainer around each step and by the viewer around each render."""
        return self.server.render_lock

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> LiveFit:
        self.server.start()
        self._last = time.monotonic()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> LiveFit:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ trainer monitor
    def on_step(self, step: int, end: int, scalars: dict[str, float]) -> None:
        """Called by the trainer after each step (outside the lock)."""
        self.steps_seen += 1
        now = time.monotonic()
        if now - self._last < self.refresh_s and step < end:
            return
        self._last = now
        loss = scalars.get("loss")
        self.status = f"training step {step}/{end}" + (f" · loss {loss:.4g}" if loss is not None else "")
        self._show()
        self.refreshes += 1
        self.server.invalidate_all()
        if self.server.clients() or self.server.connected():  # someone is watching: let them have the CPU
            time.sleep(self.yield_s)

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        """Called by the trainer after a periodic evaluation."""
        psnr = metrics.get("psnr")
        if psnr is not None:
            self.status += f" · held-out PSNR {psnr:.2f} dB (step {step})"
            self._show()

    def finished(self, step: int) -> None:
        self.status = f"fit finished at step {step}"
        self._show()
        self.server.invalidate_all()

    def _show(self) -> None:
        panels = self.server.panels
        if panels is not None:
            panels.set_status(self.status)
