"""Nerf head: identity deformation at init, blend weights, chunked rendering, checkpoint round trip, smoke fit."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from nerfhead.engine.config import to_dict
from nerfhead.fields.deformation import DeformationConfig
from nerfhead.fields.ensemble import EnsembleConfig, HashEnsemble, sh_encode
from nerfhead.models.nerf_head import KIND, NerfHead, from_checkpoint
from nerfhead.models.nerf_train import PRESETS, NerfFit
from tests.models.tiny_capture import psnr_of_grey, tiny_cameras, tiny_drive, write_tiny_capture


def tiny_model(**kw) -> NerfHead:
    torch.manual_seed(0)
    cfg = dataclasses.replace(PRESETS["fast"]().model, **kw)
    model = NerfHead(cfg)
    with torch.no_grad():  # something visible: a denser field and a non-identity deformation
        model.ensemble.density_net[-1].bias[0] = 4.0  # type: ignore[index]
        model.deformation.out.weight.normal_(0.0, 0.05)
    return model


def test_deformation_is_identity_at_init():
    torch.manual_seed(0)
    field = DeformationConfig(n_levels=4, log2_hashmap_size=10, hidden=16).build()
    x = torch.rand(100, 3)
    out = field(x, torch.rand(3, 53), torch.randint(3, (100,)))
    assert torch.equal(out, x)
    out.sum().backward()  # the zero output layer still learns
    assert float(field.out.weight.grad.abs().sum()) > 0  # type: ignore[union-attr]


def test_blend_weights_and_sh():
    torch.manual_seed(0)
    ens = HashEnsemble(EnsembleConfig(n_grids=3, n_levels=2, log2_hashmap_size=8, finest_resolution=32))
    w = ens.blend_weights(torch.rand(5, 53))
    torch.testing.assert_close(w, torch.full((5, 3), 1 / 3))  # uniform at init
    d = torch.nn.functional.normalize(
        torch.randn(20000, 3, generator=torch.Generator().manual_seed(0)), dim=-1
    )
    y = sh_encode(d, 3)
    gram = 4 * math.pi * (y.T @ y) / d.shape[0]  # orthonormal on the sphere (Monte Carlo)
    torch.testing.assert_close(gram, torch.eye(16), atol=0.06, rtol=0)


@torch.no_grad()
def test_chunked_render_equals_one_chunk():
    model = tiny_model(chunk=1 << 20)
    cams, drive = tiny_cameras(12, 2), tiny_drive(2)
    whole = model.render(cams, drive)
    model.cfg = dataclasses.replace(model.cfg, chunk=37)
    parts = model.render(cams, drive)
    assert float(whole.alpha.mean()) > 0.05
    for a, b in zip(
        (whole.rgb, whole.alpha, whole.depth), (parts.rgb, parts.alpha, parts.depth), strict=True
    ):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


@torch.no_grad()
def test_checkpoint_round_trip_renders_identically():
    model = tiny_model()
    spec = {"kind": KIND, "config": to_dict(model.cfg), "background": [0.2, 0.3, 0.4]}
    back = from_checkpoint(spec, model.state_dict())
    cams, drive = tiny_cameras(8, 1), tiny_drive(2)
    a, b = model.render(cams, drive), back.render(cams, drive)
    assert torch.equal(a.rgb, b.rgb) and torch.equal(a.alpha, b.alpha) and torch.equal(a.depth, b.depth)


def compiled_cpu_kernels() -> bool:
    """True when the C++ CPU kernels of the nerf head's ops are built (the torch twins are ~7x slower)."""
    from nerfhead._backend import get_ext

    ext = get_ext()
    return all(hasattr(ext, f"{op}_forward") for op in ("hash_grid", "ray_march", "composite"))


@pytest.fixture(scope="module")
def tiny_capture(tmp_path_factory):
    return write_tiny_capture(tmp_path_factory.mktemp("nerf_cap"), size=24, n_cams=4, T=2)


@pytest.mark.skipif(not compiled_cpu_kernels(), reason="needs the compiled CPU kernels (make setup)")
def test_smoke_fit(tiny_capture, tmp_path):
    import json

    from nerfhead.engine.trainer import fit
    from nerfhead.models.avatar import load_avatar

    torch.manual_seed(0)
    cfg = PRESETS["fast"]()
    task = NerfFit(tiny_capture, cfg)
    before = task.evaluate()["psnr_heldout"]
    result = fit(task, tmp_path / "run", cfg.trainer)

    logs = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    losses = [r["mse"] for r in logs if "mse" in r]
    assert losses[-1] < 0.5 * losses[0], losses
    # 60 steps of 256 rays: the held-out view gains > 1.5 dB (it is still below a masked grey, psnr_of_grey)
    assert result.eval["psnr_heldout"] > before + 1.5, (result.eval, before, psnr_of_grey(tiny_capture))
    avatar = load_avatar(tmp_path / "run")
    c = task.eval_views[0]
    with torch.no_grad():
        a = avatar.render(task.cameras[c[0]], task.drive[c[1]])
        b = task.model.render(task.cameras[c[0]], task.drive[c[1]])
    assert torch.equal(a.rgb, b.rgb)


@pytest.mark.skipif(not compiled_cpu_kernels(), reason="needs the compiled CPU kernels (make setup)")
def test_resume_is_exact(tiny_capture, tmp_path):
    """A fit stopped after a checkpoint and resumed ends with the same parameters as an uninterrupted one
    (transmittance culling, occupancy prior and grid updates included)."""
    from nerfhead.engine.trainer import fit
    from tests.models.tiny_capture import one_thread

    cfg = dataclasses.replace(PRESETS["fast"](), occupancy_prior=0.03)

    def run(path, stop_after=None, resume=False):
        torch.manual_seed(0)
        task = NerfFit(tiny_capture, cfg)
        fit(task, path, cfg.trainer, resume=resume, stop_after=stop_after)
        return task.model.state_dict()

    with one_thread():
        whole = run(tmp_path / "a")
        run(tmp_path / "b", stop_after=30)
        resumed = run(tmp_path / "b", resume=True)
    assert whole.keys() == resumed.keys()
    for k in whole:
        torch.testing.assert_close(resumed[k], whole[k], atol=0, rtol=0, msg=k)
    assert float((whole["grid.bitfield"] != 255).float().mean()) > 0  # the grid did update
