"""The training loop on the splat head: a smoke fit that learns, an exact resume across densification, the NaN
guard, configs and presets, and the fit / eval / export verbs end to end on a tiny capture."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from nerfhead.engine.config import TrainerConfig, from_dict, replace_nested, to_dict
from nerfhead.engine.trainer import fit
from nerfhead.errors import InputError
from nerfhead.models.registry import preset
from nerfhead.models.splat_train import SplatFit, SplatFitConfig, SplatOptimConfig
from nerfhead.splats.strategy import BoundStrategy
from tests.models.tiny_capture import one_thread, psnr_of_grey, tiny_head_config, write_tiny_capture


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    with one_thread():
        return write_tiny_capture(tmp_path_factory.mktemp("tiny"))


def tiny_cfg(steps: int, **trainer: Any) -> SplatFitConfig:
    base = TrainerConfig(
        steps=steps, eval_every=0, checkpoint_every=0, log_every=5, tensorboard=False, progress=False
    )
    return SplatFitConfig(
        model=tiny_head_config(),
        optim=SplatOptimConfig(sh0=0.05, opacities=0.05, means=0.01),
        strategy=BoundStrategy(refine_start=4, refine_every=4, refine_stop=14, grow_grad2d=5e-5),
        trainer=dataclasses.replace(base, **trainer),
        sh_increase_every=6,
        eval_views=3,
    )


def make_task(capture, cfg: SplatFitConfig) -> SplatFit:
    torch.manual_seed(cfg.trainer.seed)
    return SplatFit(capture, cfg)


def test_smoke_fit_learns(capture, tmp_path):
    cfg = tiny_cfg(40)
    task = make_task(capture, cfg)
    start = task.evaluate()["psnr_heldout"]
    res = fit(task, tmp_path / "run", cfg.trainer)
    grey = psnr_of_grey(capture)
    assert abs(start - grey) < 0.5  # a fresh head renders grey
    assert res.step == 40 and res.nan_restores == 0
    assert res.eval["psnr_heldout"] > grey + 3.0, (grey, res.eval)
    assert len(task.model.splats) > 0 and (tmp_path / "run" / "avatar.json").is_file()


def _state(task: SplatFit, opts_dir: Path) -> dict[str, torch.Tensor]:
    from nerfhead.engine.checkpoint import latest_checkpoint, load_checkpoint

    data = load_checkpoint(latest_checkpoint(opts_dir))  # type: ignore[arg-type]
    out = dict(data["model"])
    for name, od in data["optimizers"].items():
        for pid, st in od["state"].items():
            for k, v in st.items():
                if isinstance(v, torch.Tensor):
                    out[f"opt.{name}.{pid}.{k}"] = v
    return out


def test_resume_is_exact_across_densification(capture, tmp_path):
    cfg = tiny_cfg(20)
    full = make_task(capture, cfg)
    fit(full, tmp_path / "full", cfg.trainer)

    part = make_task(capture, cfg)
    first = fit(part, tmp_path / "part", cfg.trainer, stop_after=10)  # "killed" after the step-10 checkpoint
    assert first.step == 10
    fresh = make_task(capture, cfg)  # a new process: fresh model, then --resume
    n_init = len(fresh.model.splats)
    second = fit(fresh, tmp_path / "part", cfg.trainer, resume=True)
    assert second.start_step == 10 and second.step == 20
    assert len(part.model.splats) != n_init  # densified before the kill ...
    assert len(fresh.model.splats) == len(full.model.splats)  # ... and the resumed run ends like the full one

    a, b = _state(full, tmp_path / "full"), _state(fresh, tmp_path / "part")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0, msg=k)


def test_resume_refuses_and_requires(capture, tmp_path):
    cfg = tiny_cfg(2)
    fit(make_task(capture, cfg), tmp_path / "r", cfg.trainer)
    with pytest.raises(InputError, match="already holds checkpoints"):
        fit(make_task(capture, cfg), tmp_path / "r", cfg.trainer)
    with pytest.raises(InputError, match="no checkpoint"):
        fit(make_task(capture, cfg), tmp_path / "empty", cfg.trainer, resume=True)


class _PoisonedFit(SplatFit):
    """Injects a NaN into the colour gradient at one step."""

    poison_step = 7

    def before_backward(self, step, optimizers, out):
        super().before_backward(step, optimizers, out)
        if step == self.poison_step:
            handles = []

            def poison(g):
                handles.pop().remove()  # fires once
                return g * float("nan")

            handles.append(self.model.splats["sh0"].register_hook(poison))


def test_nan_guard_restores_and_continues(capture, tmp_path):
    cfg = tiny_cfg(12, snapshot_every=5)
    torch.manual_seed(0)
    task = _PoisonedFit(capture, cfg)
    # the state at the last snapshot before the poisoned step (step 5), from a clean run stopped there
    clean = make_task(capture, cfg)
    fit(clean, tmp_path / "clean", cfg.trainer, stop_after=5)
    seen = {}
    orig_loss = task.training_loss

    def loss_spy(step, gen):
        if step == task.poison_step + 1:  # right after the restore
            seen.update({k: v.detach().clone() for k, v in task.model.state_dict().items()})
        return orig_loss(step, gen)

    task.training_loss = loss_spy  # type: ignore[method-assign]
    res = fit(task, tmp_path / "run", cfg.trainer)
    assert res.nan_restores == 1 and res.step == 12
    for k, v in clean.model.state_dict().items():
        torch.testing.assert_close(seen[k], v, atol=0, rtol=0, msg=k)  # restored to the step-5 snapshot
    assert all(bool(torch.isfinite(p).all()) for p in task.model.parameters())
    assert res.eval["psnr_heldout"] > psnr_of_grey(capture) + 1.0


def test_config_round_trip_and_presets():
    cfg = preset("splat", "default")
    again = from_dict(SplatFitConfig, json.loads(json.dumps(to_dict(cfg))))
    assert again == cfg
    assert replace_nested(cfg, **{"trainer.steps": 7, "model.sh_degree": 1}).model.sh_degree == 1
    assert cfg.trainer.max_minutes > 0  # the default fits a time budget
    with pytest.raises(InputError, match="unknown TrainerConfig"):
        from_dict(TrainerConfig, {"stepz": 1})
    with pytest.raises(InputError, match="unknown preset"):
        preset("splat", "nope")
    with pytest.raises(InputError, match="unknown model"):
        preset("mesh")
    assert dataclasses.is_dataclass(preset("splat", "fast"))


def test_fit_eval_export_verbs(capture, tmp_path, run_cli):
    """``nerfhead fit`` (as its function), then ``eval`` and ``export ply`` on the run folder."""
    from nerfhead.cli.eval import main as eval_main
    from nerfhead.cli.export import ply as export_ply
    from nerfhead.cli.fit import run_fit
    from nerfhead.data.nerfstudio import save_capture

    cap_dir = tmp_path / "cap"
    save_capture(capture, cap_dir)
    run = tmp_path / "run"
    tiny = {"model.parts": ("head_and_neck",), "model.triangle_stride": 3, "model.backend": "torch"}
    s = run_fit(cap_dir, run, preset="fast", steps=6, device="cpu", progress=False, overrides=tiny)
    assert s["steps"] == 6 and (run / "fit.json").is_file() and (run / "drive.npz").is_file()
    ev = json.loads((run / "eval.json").read_text())
    assert ev["split"] == "held-out cameras" and ev["mean"]["frames"] == capture.num_timesteps
    assert set(ev["per_timestep"]) == {str(t) for t in range(capture.num_timesteps)}
    assert abs(ev["mean"]["psnr"] - s["eval"]["psnr"]) < 1e-9 and ev["mean"]["psnr"] > 10
    assert (run / "eval_grid.png").is_file()
    eval_main(run, out=tmp_path / "ev", device="cpu")
    assert json.loads((tmp_path / "ev" / "eval.json").read_text())["mean"] == ev["mean"]
    export_ply(run, out=tmp_path / "one.ply", frame=1)
    assert (tmp_path / "one.ply").stat().st_size > 1000
    s2 = run_fit(
        cap_dir, run, preset="fast", resume=True, steps=8, device="cpu", progress=False, evaluate=False
    )
    assert s2["start_step"] == 6 and s2["steps"] == 8
