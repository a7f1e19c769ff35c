"""Monocular splat fits: a one-camera capture is split by time (the last 20% of timesteps held out), the fixed
camera's backdrop is learned as an image (initialised from the training frames' median outside the masks), and
the fit / eval verbs measure full frames on the held-out timesteps."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from nerfhead.data.capture import Capture, Frame
from nerfhead.data.images import save_image, save_mask
from nerfhead.data.split import is_monocular
from nerfhead.engine.config import TrainerConfig
from nerfhead.models.splat_head import SplatHead
from nerfhead.models.splat_train import SplatFit, SplatFitConfig, head_for_capture
from nerfhead.parametric.ict import ICTHead
from nerfhead.splats.strategy import BoundStrategy
from tests.models.tiny_capture import make_teacher, one_thread, tiny_cameras, tiny_drive, tiny_head_config

SIZE = 40


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def backdrop_image(size: int = SIZE) -> torch.Tensor:
    """[H, W, 3] a smooth, non-uniform background (a blue wall with a darker band, like GRID's)."""
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    return torch.stack([0.1 + 0.2 * x, 0.5 + 0.3 * y, 0.8 - 0.3 * x * y], -1)


def write_mono_capture(root: Path, T: int = 5) -> Capture:
    """The tiny teacher head seen by one fixed camera over :func:`backdrop_image`, with its alpha as mask."""
    teacher = make_teacher()
    cam = tiny_cameras(SIZE, 4)[1]
    drive = tiny_drive(T)
    back = backdrop_image()
    frames = []
    for t in range(T):
        with torch.no_grad():
            out = teacher.render(cam, drive[t], torch.zeros(3))
        img = out.rgb[0] + (1 - out.alpha[0]) * back
        ip, mp = root / f"{t:03d}.png", root / f"{t:03d}_mask.png"
        save_image(ip, img)
        save_mask(mp, out.alpha[0, ..., 0])
        frames.append(Frame(camera=0, timestep=t, timestamp=t / 25.0, image_path=ip, mask_path=mp))
    return Capture(cameras=cam, frames=tuple(frames), fps=25.0, drive=drive, cache_size=-1)


@pytest.fixture(scope="module")
def mono(tmp_path_factory) -> Capture:
    with one_thread():
        return write_mono_capture(tmp_path_factory.mktemp("mono"))


def tiny_cfg(steps: int) -> SplatFitConfig:
    return SplatFitConfig(
        model=tiny_head_config(),
        strategy=BoundStrategy(refine_start=4, refine_every=4, refine_stop=14, grow_grad2d=5e-5),
        trainer=TrainerConfig(
            steps=steps, eval_every=0, checkpoint_every=0, log_every=5, tensorboard=False, progress=False
        ),
        sh_increase_every=6,
        eval_views=3,
    )


def test_time_split_holds_out_the_last_fifth(mono: Capture):
    assert mono.time_split(0.8) == ([0, 1, 2, 3], [4])
    ten = mono.subset(timesteps=[0, 1, 2, 3, 4])  # the same 5 timesteps, renumbered: a split is by index
    assert ten.time_split(0.8)[1] == [4]
    with pytest.raises(Exception, match="train_fraction"):
        mono.time_split(1.0)
    with pytest.raises(Exception, match="at least 2 timesteps"):
        mono.subset(timesteps=[0]).time_split(0.8)
    # GRID's 3 s clip: 75 frames, the last 15 held out (frames are decoded lazily: no files needed here)
    cam = mono.cameras
    frames = tuple(Frame(0, t, t / 25.0, Path(f"{t}.png")) for t in range(75))
    train, test = Capture(cameras=cam, frames=frames).time_split(0.8)
    assert train == list(range(60)) and test == list(range(60, 75))


def test_monocular_task_splits_by_time_and_learns_a_backdrop(mono: Capture):
    assert is_monocular(mono)
    torch.manual_seed(0)
    # the masks are the teacher's exact alpha (no wall to take out of them; its colours include the wall's)
    task = SplatFit(mono, dataclasses.replace(tiny_cfg(1), monocular_wall_band=0))
    assert task.train_timesteps == [0, 1, 2, 3] and task.test_timesteps == [4]
    assert task.train_cameras == [0] and task.test_cameras == [0] and task.full_frame
    assert {t for _, t in task.eval_views} == {4}
    spec = task.avatar_spec()
    assert spec["test_timesteps"] == [4] and spec["full_frame"] is True
    assert spec["config"]["backdrop_size"] == [SIZE, SIZE]
    # the backdrop starts as the training frames' median outside the masks: the wall where it is never covered
    back, model = backdrop_image(), task.model
    assert model.backdrop is not None
    seen = torch.stack([mono.mask(f) for f in range(4)]).amax(0) < 0.01  # type: ignore[misc]
    err = (model.backdrop.detach() - back).abs().amax(-1)
    assert seen.float().mean() > 0.5 and float(err[seen].max()) < 1.5 / 255
    never = torch.stack([mono.mask(f) for f in range(4)]).amin(0) > 0.5  # type: ignore[misc]
    assert never.sum() > 20  # behind the head in every frame: no image colour, the mean of the wall instead
    fill = model.backdrop.detach()[never]
    torch.testing.assert_close(fill, fill[:1].expand_as(fill))
    assert float((fill[0] - back.reshape(-1, 3).mean(0)).abs().max()) < 0.05
    # its camera renders over the backdrop, any other camera over the colour; training draws no held-out frame
    with torch.no_grad():
        out = model.render(mono.cameras, mono.drive[0])  # type: ignore[index]
        other = model.render(tiny_cameras(SIZE, 4)[2], mono.drive[0])  # type: ignore[index]
    empty = out.alpha[0, ..., 0] < 1e-3
    assert empty.float().mean() > 0.3
    torch.testing.assert_close(out.rgb[0][empty], model.backdrop.detach()[empty], atol=2e-3, rtol=0)
    empty2 = other.alpha[0, ..., 0] < 1e-3
    torch.testing.assert_close(other.rgb[0][empty2], torch.ones_like(other.rgb[0][empty2]))
    drawn: set[int] = set()
    target = task.target

    def spy(frame: int):
        drawn.add(int(mono.frames[frame].timestep))
        return target(frame)

    task.target = spy  # type: ignore[method-assign]
    g = torch.Generator()
    for s in range(12):
        g.manual_seed(s)
        task.training_loss(s, g)
    assert drawn == {0, 1, 2, 3}


def test_rig_captures_keep_the_camera_split_and_colour_background(tmp_path):
    from tests.models.tiny_capture import write_tiny_capture

    rig = write_tiny_capture(tmp_path)
    assert not is_monocular(rig)
    task = SplatFit(rig, tiny_cfg(1))
    assert task.test_timesteps is None and not task.full_frame and task.model.backdrop is None
    assert task.avatar_spec()["config"]["backdrop_size"] is None
    assert task.head_like is None  # a rig's masks are used as they are (no wall band)


def test_a_moving_monocular_camera_is_split_by_time_without_backdrop(mono: Capture):
    """One camera pose per frame (``nerfhead synth --rig mono``): split by time, cameras follow the timesteps."""
    cams = tiny_cameras(SIZE, 5)
    frames = tuple(dataclasses.replace(mono.frames[t], camera=t) for t in range(5))
    moving = Capture(cameras=cams, frames=frames, drive=mono.drive, metadata={"background": [1, 1, 1]})
    assert is_monocular(moving)
    task = SplatFit(moving, tiny_cfg(1))
    assert task.train_timesteps == [0, 1, 2, 3] and task.test_timesteps == [4]
    assert task.train_cameras == [0, 1, 2, 3] and task.test_cameras == [4]
    assert not task.full_frame and task.model.backdrop is None and task.eval_views == [(4, 4)]


def test_tracked_identity_is_baked_into_the_head(mono: Capture):
    ident = [0.5, -0.4, 0.3, 0, 0, 0, 0, 0, 0, 0.2]
    tracked = mono.subset()
    tracked.metadata["track"] = {"identity": ident}
    head = head_for_capture(tracked)
    plain = ICTHead()
    assert float((head.neutral - plain.neutral).abs().max()) > 1e-3
    plain.bake_(identity=torch.tensor(ident))
    torch.testing.assert_close(head.neutral, plain.neutral)


def test_tiny_monocular_fit_learns_and_evaluates_held_out_frames(mono: Capture, tmp_path):
    """fit (as ``nerfhead fit`` does), then ``nerfhead eval``: full-frame PSNR on the held-out timestep only."""
    from nerfhead.cli.export import ply as export_ply
    from nerfhead.cli.fit import run_fit
    from nerfhead.data.nerfstudio import save_capture
    from nerfhead.models.avatar import load_avatar
    from nerfhead.models.run_eval import evaluate_run

    cap_dir = tmp_path / "cap"
    save_capture(mono, cap_dir)
    torch.manual_seed(0)
    fresh = SplatFit(mono, tiny_cfg(1))
    start = fresh.evaluate()["psnr_heldout"]
    tiny = {
        "model.parts": ("head_and_neck",),
        "model.triangle_stride": 3,
        "trainer.tensorboard": False,
        "strategy.grow_grad2d": 5e-5,
        "monocular_wall_band": 0,  # exact teacher masks, whose colours include the wall's
    }
    run = tmp_path / "run"
    s = run_fit(cap_dir, run, preset="fast", steps=40, device="cpu", progress=False, overrides=tiny)
    ev = json.loads((run / "eval.json").read_text())
    assert ev["split"] == "held-out timesteps" and list(ev["per_timestep"]) == ["4"]
    assert ev["mean"]["frames"] == 1 and abs(ev["mean"]["psnr"] - s["eval"]["psnr"]) < 1e-9
    assert ev["mean"]["psnr"] > start + 2.0, (start, ev["mean"])
    assert 10 < ev["mean"]["psnr_mask"] < ev["mean"]["psnr"]  # the head is harder than the wall
    assert (run / "eval_grid.png").is_file()
    # the checkpoint holds the backdrop and its camera: a reloaded avatar renders the same full frame
    model = load_avatar(run)
    assert isinstance(model, SplatHead) and model.backdrop is not None
    again = evaluate_run(run, out_dir=tmp_path / "ev")
    assert math.isclose(again["mean"]["psnr"], ev["mean"]["psnr"], rel_tol=0, abs_tol=1e-6)
    # resume continues with the saved backdrop and its optimiser; the PLY export holds the Gaussians only
    s2 = run_fit(cap_dir, run, preset="fast", resume=True, steps=44, device="cpu", progress=False)
    assert s2["start_step"] == 40 and s2["steps"] == 44 and s2["eval"]["psnr"] > start + 2.0
    export_ply(run, out=tmp_path / "one.ply", frame=4)
    from plyfile import PlyData

    assert PlyData.read(str(tmp_path / "one.ply"))["vertex"].count == len(load_avatar(run).splats)
