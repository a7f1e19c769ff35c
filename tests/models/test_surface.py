"""Monocular fits keep the Gaussians as thin discs on their triangles (``SplatFitConfig.surface``): the projection
bounds, the smaller Gaussians on large triangles, the visibility-scaled colour steps, and what they buy from views
the fit never saw."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from nerfhead.data.capture import Capture
from nerfhead.geometry import quaternion_to_matrix
from nerfhead.models.deform import DeformConfig
from nerfhead.models.splat_head import SplatHead
from nerfhead.models.splat_train import SplatFit, SurfaceConfig
from nerfhead.splats.binding import triangle_frames
from tests.models.test_splat_monocular import tiny_cfg, write_mono_capture
from tests.models.tiny_capture import make_teacher, one_thread, tiny_cameras, tiny_head_config


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def mono(tmp_path_factory) -> Capture:
    with one_thread():
        return write_mono_capture(tmp_path_factory.mktemp("mono"))


def normal_extent(m: SplatHead) -> torch.Tensor:
    """[N] each Gaussian's standard deviation along its triangle's normal (triangle units)."""
    R = quaternion_to_matrix(torch.nn.functional.normalize(m.splats["quats"].detach(), dim=-1))
    return (R[:, 2, :] * torch.exp(m.splats["scales"].detach())).norm(dim=-1)


def test_flatten_bounds_offset_thickness_and_size():
    m = SplatHead(tiny_head_config(deform=DeformConfig(enabled=False)))
    g = torch.Generator().manual_seed(0)
    p = m.splats.params
    with torch.no_grad():  # what an unconstrained fit drifts to: off the plane, tilted, thick, large
        p["means"].copy_(torch.randn(p["means"].shape, generator=g))
        p["quats"].copy_(torch.randn(p["quats"].shape, generator=g))
        p["scales"].copy_(torch.randn(p["scales"].shape, generator=g) * 0.5 - 1.0)
    # the case that must fail: the drifted Gaussians break every bound
    assert float(p["means"][:, 2].abs().max()) > 0.5 and float(normal_extent(m).max()) > 0.2
    m.flatten_onto_surface(max_offset=0.1, max_normal_scale=0.05, max_scale=0.8)
    assert float(p["means"][:, 2].abs().max()) <= 0.1 + 1e-6
    assert float(normal_extent(m).max()) <= 0.05 + 1e-5  # the rotation turns about the normal only
    share = torch.bincount(m.splats.binding)[m.splats.binding].float()
    assert bool((torch.exp(p["scales"][:, :2]).amax(-1) <= 0.8 / share.sqrt() + 1e-5).all())
    torch.testing.assert_close(p["quats"].norm(dim=-1), torch.ones(len(m.splats)))
    before = {k: v.detach().clone() for k, v in p.items()}  # idempotent
    m.flatten_onto_surface(max_offset=0.1, max_normal_scale=0.05, max_scale=0.8)
    for k, v in p.items():
        torch.testing.assert_close(v.detach(), before[k])


def test_large_triangles_carry_several_smaller_gaussians_inside_them():
    plain = SplatHead(tiny_head_config(deform=DeformConfig(enabled=False)))
    dense = SplatHead(tiny_head_config(deform=DeformConfig(enabled=False), large_triangle_ratio=1.2))
    k = triangle_frames(dense.neutral[None], dense.faces).scale[0]
    counts = torch.bincount(dense.splats.binding, minlength=len(k))
    used = counts > 0
    assert int(counts.max()) > 1 and len(dense.splats) > len(plain.splats)
    big, small = k[used].argmax(), k[used].argmin()
    assert counts[used][big] > counts[used][small]

    # the world size of the largest Gaussian shrinks; the case that must fail is the plain head's
    def world_size(m: SplatHead) -> float:
        _, kk = m.canonical_positions()
        return float((torch.exp(m.splats["scales"][:, 0].detach()) * kk).max())

    assert world_size(dense) < 0.8 * world_size(plain)
    # every Gaussian lies inside its triangle (non-negative barycentric coordinates, on its plane)
    pos, _ = dense.canonical_positions()
    v = dense.neutral[dense.faces[dense.splats.binding]]  # [N, 3, 3]
    e1, e2, d = v[:, 1] - v[:, 0], v[:, 2] - v[:, 0], pos - v[:, 0]
    d11, d12, d22 = (e1 * e1).sum(-1), (e1 * e2).sum(-1), (e2 * e2).sum(-1)
    d1, d2 = (d * e1).sum(-1), (d * e2).sum(-1)
    den = d11 * d22 - d12 * d12
    b1, b2 = (d22 * d1 - d12 * d2) / den, (d11 * d2 - d12 * d1) / den
    assert bool(((b1 >= -1e-4) & (b2 >= -1e-4) & (b1 + b2 <= 1 + 1e-4)).all())


def novel_psnr(mono: Capture, cfg, steps: int = 30) -> float:
    """Fit the one view for ``steps`` steps (the engine's order: loss, backward, step, after_step); PSNR of the
    teacher's ring cameras 0 and 3, which the fit never saw."""
    torch.manual_seed(0)
    task = SplatFit(mono, cfg)
    g = torch.Generator()
    opts = task.make_optimizers()
    for s in range(steps):
        g.manual_seed(s)
        out = task.training_loss(s, g)
        for o in opts.values():
            o.zero_grad()
        task.before_backward(s, opts, out)
        out.loss.backward()
        for o in opts.values():
            o.step()
        task.after_step(s, opts, out)
    teacher, cams = make_teacher(), tiny_cameras(40, 4)
    vals = []
    with torch.no_grad():
        for c in (0, 3):
            for t in (0, 2):
                want = teacher.render(cams[c], mono.drive[t], torch.ones(3)).rgb  # type: ignore[index]
                got = task.model.render(cams[c], mono.drive[t], torch.ones(3)).rgb  # type: ignore[index]
                vals.append(float(-10 * torch.log10((got.clamp(0, 1) - want).square().mean())))
    return sum(vals) / len(vals)


def test_surface_keeps_unseen_views_closer_to_the_truth(mono: Capture):
    cfg = tiny_cfg(30)
    on = novel_psnr(mono, cfg)
    off = novel_psnr(mono, dataclasses.replace(cfg, surface=SurfaceConfig(enabled=False)))
    assert on > off + 0.3, (on, off)
    assert math.isfinite(on)


def test_rig_captures_are_not_flattened(tmp_path):
    from tests.models.tiny_capture import write_tiny_capture

    rig = write_tiny_capture(tmp_path)
    task = SplatFit(rig, tiny_cfg(1))
    assert not task.monocular and task.surface is None
    assert task.model.cfg.eps2d == tiny_cfg(1).model.eps2d and task.model.cfg.large_triangle_ratio == 0
    plain = SplatHead(tiny_cfg(1).model)
    assert torch.equal(task.model.splats.binding, plain.splats.binding)
