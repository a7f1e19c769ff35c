"""``nerfhead fit --viewer``: the viewer shows the model while it trains (renders interleave with steps under one
lock, views refresh as the fit goes, the status line follows the step), and the port is freed at the end."""

from __future__ import annotations

import math
import socket
import time
import urllib.request

import numpy as np
import pytest
import torch

pytest.importorskip("viser", reason="needs the viewer extra (viser)")

from nerfhead.engine.config import TrainerConfig
from nerfhead.engine.trainer import fit
from nerfhead.models.splat_train import SplatFit, SplatFitConfig
from nerfhead.splats.strategy import BoundStrategy
from nerfhead.viewer import ViewerConfig
from nerfhead.viewer.camera import look_at_view
from nerfhead.viewer.live import LiveFit
from tests.models.tiny_capture import fit_tiny_run_cli, one_thread, tiny_head_config, write_tiny_capture

CONFIG = ViewerConfig(port=0, max_side=64, moving_side=32, debounce_s=0.05)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class _Recorder:
    """Stands in for the trainer's monitor hooks around a LiveFit, keeping what the viewer showed."""

    def __init__(self, live: LiveFit):
        self.live = live
        self.lock = live.lock
        self.images: list[tuple[int, np.ndarray]] = []
        self.step = 0

    def on_step(self, step: int, end: int, scalars: dict[str, float]) -> None:
        self.step = step
        self.live.on_step(step, end, scalars)

    def on_eval(self, step: int, metrics: dict[str, float]) -> None:
        self.live.on_eval(step, metrics)

    def finished(self, step: int) -> None:
        self.live.finished(step)


def test_live_fit_renders_during_training_and_frees_port(tmp_path):
    with one_thread():
        cap = write_tiny_capture(tmp_path / "cap")
        cfg = SplatFitConfig(
            model=tiny_head_config(),
            strategy=BoundStrategy(refine_start=10**6),
            trainer=TrainerConfig(
                steps=60, eval_every=30, checkpoint_every=0, tensorboard=False, progress=False
            ),
        )
        torch.manual_seed(0)
        task = SplatFit(cap, cfg, device="cpu")
        assert cap.drive is not None
        live = LiveFit(task.model, cap.drive, tmp_path / "run", CONFIG, refresh_s=0.0).start()
        port = live.server.port
        try:
            # the page is served on 127.0.0.1
            assert live.url.startswith("http://127.0.0.1:")
            with urllib.request.urlopen(live.url, timeout=10) as r:
                assert r.status == 200
            rec = _Recorder(live)
            fr = live.renderable.framing()
            fov = math.radians(30)
            view = look_at_view(fr.eye(fov), fr.center, fr.up, fov, 48, 48)

            def sink(img: np.ndarray) -> None:
                rec.images.append((rec.step, img.copy()))

            live.server.add_loop(1, lambda: view, sink)
            res = fit(task, tmp_path / "run", cfg.trainer, monitor=rec)
            assert res.step == 60
            # the view was refreshed while training went on, and the status line followed the fit
            assert live.refreshes >= 5
            assert "fit finished at step 60" in live.status
            panels = live.server.panels
            assert panels is not None and "fit finished" in panels.stats.content
            deadline = time.monotonic() + 5
            while len(rec.images) < 3 and time.monotonic() < deadline:
                time.sleep(0.1)
            steps = [s for s, _ in rec.images]
            assert len(rec.images) >= 3 and len(set(steps)) >= 2, steps
            # the picture changes as the model learns (grey start -> coloured head)
            first, last = rec.images[0][1].astype(float), rec.images[-1][1].astype(float)
            assert np.abs(first - last).mean() > 1.0
            # a viewer render leaves the model's mode and its gradients alone
            mode = task.model.training
            assert live.server.render_view(view).shape == (48, 48, 3)
            assert task.model.training == mode
            assert all(p.grad is None for p in task.model.parameters())
        finally:
            live.stop()
    assert _port_free(port)


def test_fit_cli_viewer_flag(tmp_path):
    """`nerfhead fit --viewer --no-viewer-wait` serves the live page on 127.0.0.1 and finishes the fit."""
    run, p = fit_tiny_run_cli(tmp_path, 4, "--viewer", "--viewer-port", "0", "--no-viewer-wait")
    assert p.returncode == 0, p.stderr[-2000:]
    assert "nerfhead viewer (live fit): http://127.0.0.1:" in p.stdout
    assert (run / "fit.json").is_file()
