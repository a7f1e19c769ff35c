"""What a monocular fit does with the surface its video never saw: the deformation network's colour residual
scaled per triangle by how well the views saw it (``SplatHead.colour_residual_gain``,
``SurfaceConfig.seen_colour_residual``), unseen triangles coloured by diffusion from their seen neighbours
(``SurfaceConfig.unseen_colour_diffusion``), and the optional in-plane scale floor (``SurfaceConfig.min_scale``);
the viewer's fast pose and the reference pose agree on the gain, and a checkpoint keeps it."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nerfhead.data.capture import Capture
from nerfhead.data.drive import Drive
from nerfhead.models.splat_head import SplatHead, from_checkpoint
from nerfhead.models.splat_train import SplatFit, SurfaceConfig
from nerfhead.viewer.renderable import AvatarRenderable, reference_gaussians
from tests.models.test_colour_prior import _one_thread, mono  # noqa: F401  (the same fixtures)
from tests.models.test_splat_monocular import tiny_cfg
from tests.viewer.test_fast_pose import _assert_same, _drives, _head


def residual_sh0(model: SplatHead, drive: Drive) -> torch.Tensor:
    """[N] how far the deformation network moves each Gaussian's base colour (degree-0 SH) at ``drive``."""
    with torch.no_grad():
        _, _, sh, _ = model.gaussians(drive, sh_degree=0)
        return (sh[0, :, 0] - model.splats["sh0"][:, 0]).abs().amax(-1)


@pytest.mark.parametrize("muted", [True, False])
def test_monocular_fit_gives_unseen_triangles_no_colour_residual(mono: Capture, muted: bool):  # noqa: F811
    torch.manual_seed(0)
    cfg = dataclasses.replace(tiny_cfg(1), surface=SurfaceConfig(seen_colour_residual=muted))
    task = SplatFit(mono, cfg)
    assert task.colour_prior is not None and task.model.deform is not None
    conf = task.colour_prior[1]
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a trained network: the fresh one outputs zeros
        for p in task.model.deform.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    b = task.model.splats.binding
    unseen, head_on = conf[b] == 0, conf[b] > 0.5
    assert int(unseen.sum()) > 10 and int(head_on.sum()) > 10  # the back of the head and the face
    moved = residual_sh0(task.model, task.drive[task.train_timesteps[0]])
    assert float(moved[head_on].median()) > 1e-3  # the face keeps its residual either way
    if muted:
        torch.testing.assert_close(task.model.colour_residual_gain, conf)
        assert float(moved[unseen].max()) == 0.0
    else:  # the case that must fail: the hash grid paints the unseen triangles too
        assert bool((task.model.colour_residual_gain == 1).all())
        assert float(moved[unseen].median()) > 1e-3


def test_fast_pose_follows_the_gain_and_a_checkpoint_keeps_it():
    m = _head()
    r = AvatarRenderable(m)
    d = _drives(1)[0]
    before = r.gaussians_at(d)  # type: ignore[attr-defined]
    gain = torch.rand(len(m.colour_residual_gain), generator=torch.Generator().manual_seed(3))
    m.set_colour_residual_gain(gain)
    after = r.gaussians_at(d)  # type: ignore[attr-defined]
    assert float((after.rgbs - before.rgbs).abs().max()) > 1e-3  # the cached fast path saw the change
    _assert_same(after, reference_gaussians(m, d))
    spec = {"config": dataclasses.asdict(m.cfg)}
    state = m.state_dict()
    torch.testing.assert_close(from_checkpoint(spec, dict(state)).colour_residual_gain, gain)
    del state["colour_residual_gain"]  # a checkpoint written before the gain existed: the full residual
    assert bool((from_checkpoint(spec, dict(state)).colour_residual_gain == 1).all())


def test_scale_floor_keeps_skin_discs_from_shrinking_to_dots():
    from nerfhead.models.deform import DeformConfig
    from tests.models.tiny_capture import tiny_head_config

    m = SplatHead(tiny_head_config(deform=DeformConfig(enabled=False), parts=("face", "teeth")))
    p = m.splats.params
    with torch.no_grad():
        p["scales"][:, :2] = -8.0  # what the fit drives a disc outside the mask to: a dot
    skin = m.skin()
    assert bool(skin.any()) and bool((~skin).any())
    m.flatten_onto_surface(0.1, 0.05, 1.0)  # the case that must fail: no floor, the dots stay
    assert float(torch.exp(p["scales"][:, :2].detach()).max()) < 1e-3
    m.flatten_onto_surface(0.1, 0.05, 1.0, min_scale=0.3)
    share = torch.bincount(m.splats.binding)[m.splats.binding].float()
    floor = 0.3 * (m.cfg.triangle_stride / share).sqrt()
    torch.testing.assert_close(torch.exp(p["scales"][skin, :2].detach()), floor[skin, None].expand(-1, 2))
    assert float(torch.exp(p["scales"][~skin, :2].detach()).max()) < 1e-3  # the mouth interior keeps its own


def test_diffusion_fills_unseen_triangles_from_their_seen_neighbours():
    from nerfhead.models.splat_mono import diffuse_colours

    # a strip of 10 triangles (each shares an edge with the next); the ends known: black and white
    faces = torch.tensor([[i, i + 1, i + 2] for i in range(10)])
    start = torch.full((10, 3), 0.9)  # the mirror rule's guess: wrong
    start[0], start[9] = 0.0, 1.0
    known = torch.zeros(10, dtype=torch.bool)
    known[[0, 9]] = True
    assert torch.equal(diffuse_colours(faces, start, known, 0), start)  # the case that must fail: no steps
    out = diffuse_colours(faces, start, known, 2000)
    torch.testing.assert_close(out[known], start[known])  # the seen triangles keep their colours
    g = out[:, 0]
    assert bool((g[1:] >= g[:-1]).all())  # harmonic between the ends: monotone, no 0.9 plateau left
    assert 0.3 < float(g[4]) < 0.6 and float(g[1]) < 0.3 and float(g[8]) > 0.7


def test_unseen_colours_are_smooth_and_seen_ones_unchanged(mono: Capture):  # noqa: F811
    def prior(steps: int) -> tuple[SplatFit, torch.Tensor, torch.Tensor]:
        torch.manual_seed(0)
        surface = SurfaceConfig(unseen_colour_diffusion=steps)
        task = SplatFit(mono, dataclasses.replace(tiny_cfg(1), surface=surface))
        assert task.colour_prior is not None
        return task, *task.colour_prior

    task, mirror, conf = prior(0)
    _, diffused, conf2 = prior(500)
    torch.testing.assert_close(conf, conf2)
    used = torch.unique(task.model.splats.binding)
    seen, unseen = used[conf[used] > 0], used[conf[used] == 0]
    torch.testing.assert_close(diffused[seen], mirror[seen])

    def roughness(colour: torch.Tensor) -> float:
        """Mean distance of an unseen triangle's colour from the mean colour of the triangles sharing a vertex."""
        faces = task.model.faces[used]
        vert_sum = torch.zeros(int(task.model.faces.max()) + 1, 3).index_add_(
            0, faces.reshape(-1), colour[used].repeat_interleave(3, 0)
        )
        vert_n = torch.bincount(faces.reshape(-1), minlength=len(vert_sum)).clamp_min(1)[:, None]
        around = (vert_sum / vert_n)[faces].mean(1)
        sel = torch.isin(used, unseen)
        return float((colour[used][sel] - around[sel]).abs().mean())

    assert roughness(diffused) < 0.5 * roughness(mirror), (roughness(diffused), roughness(mirror))
