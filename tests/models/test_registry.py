"""The model registry: a third model plugs in with one module (tests/models/toy_model.py) and one registry line,
and trains, evaluates, loads and is refused by the exporters it lacks the capability for, all through the
public verbs (``nerfhead fit / eval / export`` parsed by the CLI, in this process)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from nerfhead.cli.main import run
from nerfhead.models import registry
from nerfhead.models.avatar import Avatar, load_avatar
from tests.models.tiny_capture import write_tiny_capture
from tests.models.toy_model import TOY, ToyHead


@pytest.fixture()
def toy():
    registry.register(TOY)  # the one registry line
    yield TOY
    registry.unregister(TOY.name)


def frame(cap, camera: int, t: int) -> int:
    f = cap.frame_index(camera, t)
    assert f is not None
    return f


@pytest.fixture(scope="module")
def capture_dir(tmp_path_factory):
    from nerfhead.data import save_capture

    root = tmp_path_factory.mktemp("toy_cap")
    save_capture(write_tiny_capture(root), root)
    return root


def test_builtin_models_declare_what_the_exporters_check():
    kinds = registry.model_kinds()
    assert {"splat", "nerf"} <= set(kinds)
    assert (
        registry.GAUSSIANS in kinds["splat"].capabilities
        and registry.PARAMETRIC_MESH in kinds["splat"].capabilities
    )
    assert kinds["nerf"].capabilities == {registry.DENSITY_FIELD}
    assert {"default", "fast", "quality"} <= set(kinds["splat"].presets) & set(kinds["nerf"].presets)
    with pytest.raises(ValueError, match="unknown capabilities"):
        registry.register(registry.ModelKind(**{**TOY.__dict__, "capabilities": frozenset({"hologram"})}))
    with pytest.raises(ValueError, match="already"):
        registry.register(registry.ModelKind(**{**TOY.__dict__, "name": "other", "kind": "splat_head"}))
    assert "other" not in registry.model_kinds()
    # a declared capability is a promise of methods (models/interface.py): the toy has no Gaussians to pose
    with pytest.raises(
        ValueError, match=r"declares gaussians but ToyHead lacks \['world_splats', 'posed_splats'\]"
    ):
        registry.register(
            registry.ModelKind(**{**TOY.__dict__, "capabilities": frozenset({registry.GAUSSIANS})})
        )
    assert TOY.name not in registry.model_kinds()


def test_toy_model_fits_evaluates_and_is_refused_by_exporters(toy, capture_dir, tmp_path, capsys):
    from nerfhead.data.loaders import load_capture
    from nerfhead.engine.targets import target_image

    out = tmp_path / "run"
    argv = ["fit", str(capture_dir), "--out", str(out), "--model", "toy", "--preset", "fast"]
    assert run([*argv, "--device", "cpu", "--threads", "1", "--no-evaluate"]) == 0
    fit = json.loads((out / "fit.json").read_text())
    assert fit["model"] == "toy" and fit["steps"] == 60

    avatar = load_avatar(out)
    colour = avatar.colour.detach()  # type: ignore[attr-defined]
    assert isinstance(avatar, ToyHead) and isinstance(avatar, Avatar)
    assert registry.kind_of(avatar) is toy and not registry.has(avatar, registry.GAUSSIANS)
    # the fit's optimum is the mean colour of the training targets (the capture's own split)
    cap = load_capture(capture_dir)
    split = cap.split()
    bg = torch.ones(3)
    train = [
        target_image(cap, frame(cap, c, t), bg)[0] for c in split.train_cameras for t in split.train_timesteps
    ]
    mean = torch.stack(train).mean(dim=(0, 1, 2))
    assert float((colour - mean).abs().max()) < 0.02
    assert float((torch.full((3,), 0.5) - mean).abs().max()) > 0.1  # the untrained grey would fail the bar

    capsys.readouterr()
    assert run(["eval", str(out), "--device", "cpu"]) == 0
    ev = json.loads((out / "eval.json").read_text())
    held = [
        target_image(cap, frame(cap, c, t), bg)[0]
        for c in split.test_cameras
        for t in range(cap.num_timesteps)
    ]
    grey = sum(-10 * math.log10(float(((0.5 - h) ** 2).mean())) for h in held) / len(held)
    expected = sum(-10 * math.log10(float(((colour - h) ** 2).mean())) for h in held) / len(held)
    assert ev["split"] == "held-out cameras" and ev["mean"]["frames"] == len(held)
    assert ev["mean"]["psnr"] == pytest.approx(expected, abs=0.05) and ev["mean"]["psnr"] > grey + 3.0

    for verb, needs in (
        (["export", "ply", str(out)], "no Gaussians to export"),
        (["export", "mesh", str(out)], "no mesh export"),
        (["export", "gltf", str(out), "--drive", str(out / "drive.npz")], "no parametric head mesh"),
    ):
        capsys.readouterr()
        assert run(verb) == 2, verb
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needs in err and "toy" in err, (verb, err)
    assert not (out / "export").exists() or not any((out / "export").iterdir())


def test_unknown_model_is_refused_before_the_capture_loads(tmp_path, capsys):
    missing = tmp_path / "no_capture"
    assert run(["fit", str(missing), "--out", str(tmp_path / "run"), "--model", "toy"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--model" in err and "unknown model 'toy'" in err
