"""Monocular fits keep the Gaussians as thin discs on their triangles (``SplatFitConfig.surface``): the projection
bounds, the smaller Gaussians on large triangles, the visibility-scaled colour steps, and what they buy from views
the fit never saw."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nerfhead.data.capture import Capture
from nerfhead.geometry import quaternion_to_matrix
from nerfhead.models.deform import DeformConfig
from nerfhead.models.splat_head import SplatHead
from nerfhead.models.splat_train import SplatFit, SurfaceConfig
from nerfhead.splats.binding import triangle_frames
from tests.models.test_colour_prior import _one_thread, mono  # noqa: F401  (the same fixtures)
from tests.models.test_splat_monocular import tiny_cfg
from tests.models.tiny_capture import tiny_head_config


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
    assert float(p["means"][:, 2].detach().abs().max()) > 0.5 and float(normal_extent(m).max()) > 0.2
    m.flatten_onto_surface(max_offset=0.1, max_normal_scale=0.05, max_scale=0.8)
    assert float(p["means"][:, 2].detach().abs().max()) <= 0.1 + 1e-6
    assert float(normal_extent(m).max()) <= 0.05 + 1e-5  # the rotation turns about the normal only
    share = torch.bincount(m.splats.binding)[m.splats.binding].float()
    cap = 0.8 * (m.cfg.triangle_stride / share).sqrt()  # as the init: n Gaussians of a stride share the area
    assert bool((torch.exp(p["scales"][:, :2].detach()).amax(-1) <= cap + 1e-5).all())
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


def one_step(task: SplatFit) -> None:
    """One training step in the engine's order (loss, before_backward, backward, step, after_step)."""
    opts = task.make_optimizers()
    g = torch.Generator().manual_seed(0)
    out = task.training_loss(0, g)
    task.before_backward(0, opts, out)
    out.loss.backward()
    for o in opts.values():
        o.step()
    task.after_step(0, opts, out)


@pytest.mark.parametrize("scaled", [True, False])
def test_colour_steps_scale_with_how_well_the_video_saw_the_triangle(mono: Capture, scaled: bool):  # noqa: F811
    torch.manual_seed(0)
    cfg = dataclasses.replace(tiny_cfg(2), surface=SurfaceConfig(seen_colour_steps=scaled))
    task = SplatFit(mono, cfg)
    assert task.colour_prior is not None and task.surface is not None
    colour, conf = task.colour_prior
    conf = conf.clone()
    b = task.model.splats.binding
    unseen = torch.zeros(len(conf), dtype=torch.bool)
    unseen[b[::2]] = True  # pretend half the triangles were never seen, the others head-on
    conf[unseen], conf[~unseen] = 0.0, 1.0
    task.colour_prior = (colour, conf)
    before = task.model.splats["sh0"].detach().clone()
    one_step(task)
    moved = (task.model.splats["sh0"].detach() - before).abs().amax(dim=(1, 2))
    hidden = unseen[b]
    assert float(moved[~hidden].median()) > 1e-3  # seen head-on: a full Adam step
    if scaled:
        assert float(moved[hidden].max()) == 0.0  # never seen: keeps its projected colour
    else:  # the case that must fail: without the scaling the unseen colours move like the others
        assert float(moved[hidden].median()) > 1e-3


def test_rig_captures_are_not_flattened(tmp_path):
    from tests.models.tiny_capture import write_tiny_capture

    rig = write_tiny_capture(tmp_path)
    task = SplatFit(rig, tiny_cfg(1))
    assert not task.monocular and task.surface is None
    assert task.model.cfg.eps2d == tiny_cfg(1).model.eps2d and task.model.cfg.large_triangle_ratio == 0
    plain = SplatHead(tiny_cfg(1).model)
    assert torch.equal(task.model.splats.binding, plain.splats.binding)
