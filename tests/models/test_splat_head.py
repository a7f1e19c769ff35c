"""Splat head: triangle frames and binding, rigid-motion equivariance, init, render pairing, and the densification
ops keeping bindings, optimiser state and statistics aligned."""

from __future__ import annotations

import math

import pytest
import torch

from nerfhead.data.drive import Drive
from nerfhead.geometry import axis_angle_to_matrix, quaternion_to_matrix
from nerfhead.models.avatar import pair_indices
from nerfhead.models.deform import DeformConfig
from nerfhead.models.splat_head import SplatHead
from nerfhead.parametric.ict import PART_ID
from nerfhead.splats.binding import bind_to_world, triangle_frames, world_to_local
from nerfhead.splats.gaussians import SplatParams, sh0_to_rgb
from nerfhead.splats.strategy import BoundStrategy, duplicate, remove, split
from tests.models.tiny_capture import one_thread, tiny_cameras, tiny_drive, tiny_head_config


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def head() -> SplatHead:
    torch.manual_seed(0)
    with one_thread():
        return SplatHead(tiny_head_config(deform=DeformConfig(enabled=False)))


def test_triangle_frame_of_a_known_triangle():
    v = torch.tensor([[1.0, 2.0, 3.0], [4.0, 2.0, 3.0], [2.0, 2.0, 1.0]])  # in the plane y = 2
    fr = triangle_frames(v, torch.tensor([[0, 1, 2]]))
    R = fr.rotation[0, 0]
    torch.testing.assert_close(R[:, 0], torch.tensor([1.0, 0.0, 0.0]))  # t along v0 -> v1
    torch.testing.assert_close(R[:, 2], torch.tensor([0.0, 1.0, 0.0]))  # n = e1 x e2 / |.|
    torch.testing.assert_close(R[:, 1], torch.tensor([0.0, 0.0, -1.0]))  # b = n x t
    assert math.isclose(float(fr.scale[0, 0]), (3.0 + 2.0) / 2)  # mean of |e1| = 3 and the height 2
    torch.testing.assert_close(fr.centroid[0, 0], torch.tensor([7 / 3, 2.0, 7 / 3]))
    degenerate = triangle_frames(torch.zeros(3, 3), torch.tensor([[0, 1, 2]]))
    assert all(
        bool(torch.isfinite(x).all()) for x in (degenerate.rotation, degenerate.scale, degenerate.centroid)
    )


def test_frames_are_rotations_and_binding_inverts():
    g = torch.Generator().manual_seed(0)
    v = torch.randn(2, 30, 3, generator=g)
    faces = torch.stack([torch.randperm(30, generator=g)[:3] for _ in range(12)])
    fr = triangle_frames(v, faces)
    R = fr.rotation
    torch.testing.assert_close(R.transpose(-1, -2) @ R, torch.eye(3).expand_as(R), atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(2, 12), atol=1e-5, rtol=0)
    b = torch.randint(0, 12, (40,), generator=g)
    m, q, s = (
        torch.randn(40, 3, generator=g),
        torch.randn(40, 4, generator=g),
        torch.randn(40, 3, generator=g),
    )
    w = bind_to_world(fr, b, m, q, s)
    first = type(fr)(fr.rotation[:1], fr.scale[:1], fr.centroid[:1])
    lm, lq, ls = world_to_local(first, b, w.means[0], w.quats[0], w.scales[0])
    torch.testing.assert_close(lm, m, atol=2e-5, rtol=0)
    torch.testing.assert_close(ls, s, atol=2e-5, rtol=0)
    torch.testing.assert_close(quaternion_to_matrix(lq), quaternion_to_matrix(q), atol=2e-5, rtol=0)


def test_gaussians_follow_rigid_head_motion(head):
    """Turning and moving the head moves every Gaussian rigidly: means, rotations and scales."""
    expr = torch.rand(1, 53, generator=torch.Generator().manual_seed(2)) * 0.5
    a = Drive(torch.zeros(1, 3), torch.zeros(1, 3), expr)
    aa, tr = torch.tensor([[0.3, -0.5, 0.2]]), torch.tensor([[0.05, -0.02, 0.3]])
    b = Drive(aa, tr, expr)
    with torch.no_grad():
        wa, _, _, _ = head.gaussians(a)
        wb, _, _, _ = head.gaussians(b)
    R = axis_angle_to_matrix(aa[0])
    torch.testing.assert_close(wb.means[0], wa.means[0] @ R.T + tr[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(
        quaternion_to_matrix(wb.quats[0]), R @ quaternion_to_matrix(wa.quats[0]), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(wb.scales, wa.scales, atol=1e-7, rtol=1e-5)


def test_init_is_grey_on_the_chosen_triangles(head):
    sp = head.splats
    ids = {PART_ID[p] for p in head.cfg.parts}
    assert set(head.ict.face_part[sp.binding].tolist()) <= ids
    assert len(sp) == math.ceil(int(torch.isin(head.ict.face_part, torch.tensor(list(ids))).sum()) / 3)
    torch.testing.assert_close(sh0_to_rgb(sp["sh0"]), torch.full_like(sp["sh0"], 0.5))
    assert float(sp["means"].detach().abs().max()) == 0.0  # at the centroids
    assert float(sp["shN"].detach().abs().max()) == 0.0


def test_several_gaussians_per_triangle_lie_inside_it():
    torch.manual_seed(0)
    m = SplatHead(tiny_head_config(gaussians_per_triangle=3, deform=DeformConfig(enabled=False)))
    pos, _ = m.canonical_positions()
    tri = m.neutral[m.faces[m.splats.binding]]  # [N, 3, 3]
    e1, e2, d = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], pos - tri[:, 0]
    n = torch.linalg.cross(e1, e2, dim=-1)
    assert float(((d * n).sum(-1) / n.norm(dim=-1)).abs().max()) < 1e-6  # in the plane
    gram = torch.stack([torch.stack([(e1 * e1).sum(-1), (e1 * e2).sum(-1)], -1),
                        torch.stack([(e1 * e2).sum(-1), (e2 * e2).sum(-1)], -1)], -2)  # fmt: skip
    uv = torch.linalg.solve(gram, torch.stack([(d * e1).sum(-1), (d * e2).sum(-1)], -1))
    assert float(uv.min()) > -1e-4 and float(uv.sum(-1).max()) < 1 + 1e-4  # inside


def test_render_pairs_cameras_and_timesteps(head):
    cams = tiny_cameras(24, 3)
    drive = tiny_drive(3)
    assert pair_indices(3, 1) == ([0, 1, 2], [0, 0, 0]) and pair_indices(1, 2) == ([0, 0], [0, 1])
    with pytest.raises(ValueError):
        pair_indices(2, 3)
    with torch.no_grad():
        both = head.render(cams, drive)
        video = head.render(cams[1], drive)
        for b in range(3):
            one = head.render(cams[b], drive[b])
            torch.testing.assert_close(both.rgb[b], one.rgb[0], atol=1e-6, rtol=0)
            torch.testing.assert_close(both.depth[b], one.depth[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(video.rgb[2], head.render(cams[1], drive[2]).rgb[0], atol=1e-6, rtol=0)
    assert 0.1 < float(both.alpha.mean()) < 0.9
    d = both.depth[both.alpha[..., 0] > 0.5]
    assert 0.5 < float(d.min()) and float(d.max()) < 0.9  # the head is ~0.7 m from the cameras


def test_fresh_deformation_network_changes_nothing():
    torch.manual_seed(0)
    m = SplatHead(tiny_head_config())
    drive = tiny_drive(2)
    with torch.no_grad():
        w1, _, sh1, off = m.gaussians(drive)
        net, m.deform = m.deform, None
        w0, _, sh0, _ = m.gaussians(drive)
        m.deform = net
    assert off is not None and float(off.abs().max()) == 0.0
    torch.testing.assert_close(w1.means, w0.means, atol=0, rtol=0)
    torch.testing.assert_close(sh1, sh0, atol=0, rtol=0)


# ------------------------------------------------------------------------------------ densification
def _splats_and_adam(n: int = 10):
    torch.manual_seed(0)
    sp = SplatParams.on_triangles(torch.arange(n) * 7, sh_degree=1)
    with torch.no_grad():
        for p in sp.params.values():
            p.add_(0.1 * torch.randn_like(p))
    opts = {k: torch.optim.Adam([p], lr=1e-2) for k, p in sp.params.items()}
    loss = sum((p**2).sum() for p in sp.params.values())
    loss.backward()  # type: ignore[union-attr]
    for o in opts.values():
        o.step()
        o.zero_grad()
    return sp, opts


def _check_aligned(sp: SplatParams, opts: dict) -> None:
    n = len(sp)
    assert sp.binding.shape == (n,)
    for k, p in sp.params.items():
        assert p.shape[0] == n
        (group,) = opts[k].param_groups
        assert group["params"][0] is p
        for v in opts[k].state[p].values():
            assert v.dim() == 0 or v.shape == p.shape
    loss = sum((p**2).sum() for p in sp.params.values())
    loss.backward()  # type: ignore[union-attr]
    for o in opts.values():  # the optimisers still work after the edit
        o.step()
        o.zero_grad()


def test_duplicate_split_remove_keep_bindings_and_state():
    sp, opts = _splats_and_adam(10)
    before = {k: p.detach().clone() for k, p in sp.params.items()}
    avg = opts["means"].state[sp["means"]]["exp_avg"].clone()
    state = {"grad2d": torch.arange(10.0), "count": torch.ones(10)}

    mask = torch.zeros(10, dtype=torch.bool)
    mask[[1, 4]] = True
    duplicate(sp, opts, state, mask)
    assert len(sp) == 12 and sp.binding.tolist() == [i * 7 for i in range(10)] + [7, 28]
    torch.testing.assert_close(sp["sh0"][10:], before["sh0"][[1, 4]])
    ea = opts["means"].state[sp["means"]]["exp_avg"]
    torch.testing.assert_close(ea[:10], avg)
    assert float(ea[10:].abs().max()) == 0.0 and state["grad2d"].tolist()[10:] == [0.0, 0.0]
    _check_aligned(sp, opts)

    mask = torch.zeros(12, dtype=torch.bool)
    mask[[0, 11]] = True
    parents = sp["means"].detach()[[0, 11]].clone()
    parent_scales = sp["scales"].detach()[[0, 11]].clone()
    split(sp, opts, state, mask, generator=torch.Generator().manual_seed(0))
    assert len(sp) == 14
    assert sp.binding.tolist()[-4:] == [0, 28, 0, 28]  # children keep their parent's triangle
    torch.testing.assert_close(sp["scales"][-4:], (parent_scales - math.log(1.6)).repeat(2, 1))
    spread = (sp["means"].detach()[-4:] - parents.repeat(2, 1)).norm(dim=-1)
    assert float(spread.max()) < 6 * float(torch.exp(parent_scales).max())  # within a few sigma
    _check_aligned(sp, opts)

    mask = torch.zeros(14, dtype=torch.bool)
    mask[[2, 3, 13]] = True
    kept = sp.binding[~mask].clone()
    remove(sp, opts, state, mask)
    assert len(sp) == 11 and torch.equal(sp.binding, kept) and state["count"].shape == (11,)
    _check_aligned(sp, opts)


def test_bound_strategy_grows_and_prunes():
    sp, opts = _splats_and_adam(6)
    with torch.no_grad():
        sp.params["opacities"][5] = -10.0  # below prune_opa
        sp.params["scales"][:3] = math.log(0.5)  # small: clone
        sp.params["scales"][3:] = math.log(5.0)  # large: split
    strat = BoundStrategy(
        grow_grad2d=0.1, grow_scale3d=1.0, prune_scale3d=100.0, refine_start=0, refine_every=1
    )
    state = strat.initialize_state()
    m2d = torch.zeros(1, 6, 2, requires_grad=True)
    info = {"means2d": m2d, "radii": torch.ones(1, 6, 2, dtype=torch.int32), "width": 10, "height": 10}
    strat.step_pre_backward(sp, opts, state, 1, info)
    (m2d * torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0])[None, :, None]).sum().backward()  # grads on 0 and 3
    strat.step_post_backward(sp, opts, state, 1, info)
    # 0 cloned (+1), 3 split (+2 children, -1 parent), 5 pruned (-1): 6 -> 7
    assert len(sp) == 7
    assert sorted(sp.binding.tolist()) == sorted([0, 7, 14, 28, 0, 21, 21])
    assert float(state["grad2d"].abs().max()) == 0.0 and state["count"].shape == (7,)
    _check_aligned(sp, opts)


# ------------------------------------------------------------------------------------------------ CUDA
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_render_matches_cpu(head):
    """gsplat on CUDA and the CPU path agree on the splat head's images."""
    import copy

    cams = tiny_cameras(32, 3)
    drive = tiny_drive(3)
    gpu = copy.deepcopy(head).to("cuda")
    with torch.no_grad():
        ref = head.render(cams, drive)
        out = gpu.render(cams.to("cuda"), drive.to("cuda"))
    torch.testing.assert_close(out.rgb.cpu(), ref.rgb, atol=2e-3, rtol=0)
    torch.testing.assert_close(out.alpha.cpu(), ref.alpha, atol=2e-3, rtol=0)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fit_densifies(tmp_path):
    """A few CUDA training steps with densification: the strategy sees gsplat's means2d gradients."""
    from nerfhead.engine.config import TrainerConfig
    from nerfhead.engine.trainer import fit
    from nerfhead.models.splat_train import SplatFit, SplatFitConfig
    from tests.models.tiny_capture import write_tiny_capture

    cap = write_tiny_capture(tmp_path / "cap")
    cfg = SplatFitConfig(
        model=tiny_head_config(),
        strategy=BoundStrategy(refine_start=4, refine_every=4, refine_stop=10, grow_grad2d=1e-6),
        trainer=TrainerConfig(steps=10, eval_every=0, checkpoint_every=0, tensorboard=False, progress=False),
    )
    torch.manual_seed(0)
    task = SplatFit(cap, cfg, device="cuda")
    n0 = len(task.model.splats)
    res = fit(task, tmp_path / "run", cfg.trainer)
    assert res.step == 10 and res.nan_restores == 0
    assert len(task.model.splats) > n0  # grew from gsplat's screen-space gradients
    assert task.model.splats["means"].is_cuda and task.model.splats.binding.is_cuda


# ------------------------------------------------------------------------------------ cached pose step
def _uncached_world_splats(m: SplatHead, drive: Drive) -> dict[str, torch.Tensor]:
    """The pose step computed from scratch (no cache): what ``world_splats`` computed before it cached."""
    from nerfhead.splats.gaussians import SH_C0

    sp = m.splats
    with torch.no_grad():
        verts = m.posed_vertices(drive)
        used, index = torch.unique(sp.binding, return_inverse=True)
        frames = triangle_frames(verts, m.faces[used])
        cfr = triangle_frames(m.neutral[None], m.faces).select(sp.binding)
        k = cfr.scale[0]
        pos = (cfr.rotation[0] @ (k[:, None] * sp["means"])[..., None])[..., 0] + cfr.centroid[0]
        d = drive.to(m.neutral.device, torch.float32)
        assert m.deform is not None
        offset, rgb = m.deform(m._unit_box(pos), torch.cat([d.expression, d.rotation], -1)).split(3, -1)
        sh0 = sp["sh0"][None] + (rgb / SH_C0)[:, :, None, :]
        world = bind_to_world(frames, index, sp["means"][None] + offset, sp["quats"], sp["scales"])
        sh = torch.cat([sh0, sp["shN"][None].expand(sh0.shape[0], -1, -1, -1)], dim=2)
    return {"means": world.means, "quats": world.quats, "log_scales": torch.log(world.scales), "sh": sh}


def _assert_same_splats(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    for k, w in want.items():
        g = got[k]
        if k == "sh":
            w = w[:, :, : g.shape[2]]
        torch.testing.assert_close(g, w, atol=1e-6, rtol=1e-6, msg=k)


def test_cached_pose_step_matches_uncached_and_follows_parameter_changes():
    torch.manual_seed(0)
    m = SplatHead(tiny_head_config())
    assert m.deform is not None
    with torch.no_grad():  # a deformation network and SH that do something
        for p in m.deform.parameters():
            p.add_(0.05 * torch.randn_like(p))
        m.splats.params["shN"].add_(0.1 * torch.randn_like(m.splats.params["shN"]))
    drive = tiny_drive(2)
    with torch.inference_mode():  # as the viewer calls it
        first = m.world_splats(drive)
        again = m.world_splats(drive[1])
        dc = m.world_splats(drive, sh_degree=0)
    want = _uncached_world_splats(m, drive)
    assert float((want["means"] - want["means"][:, :1]).abs().max()) > 0
    _assert_same_splats(first, want)
    _assert_same_splats(again, {k: v[1:] for k, v in want.items()})
    _assert_same_splats(dc, want)
    assert dc["sh"].shape[2] == 1 and first["sh"].shape[2] == 4

    # A training step after an inference-mode pose: the caches are usable by autograd, and an optimiser step
    # (in place) or a densification (new tensors, new binding) invalidates them.
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    world, opac, sh, _ = m.gaussians(drive)
    (world.means.square().sum() + sh.square().sum() + opac.sum()).backward()
    opt.step()
    assert m.splats.params["means"].grad is not None
    _assert_same_splats(m.world_splats(drive), _uncached_world_splats(m, drive))
    remove(m.splats, {}, {}, torch.arange(len(m.splats)) % 3 == 0)
    _assert_same_splats(m.world_splats(drive), _uncached_world_splats(m, drive))

    # The renders are the same with a cache built earlier and with none.
    cams = tiny_cameras(24, 2)
    with torch.inference_mode():
        cached = m.render(cams, drive)
        for name in ("_canonical_cache", "_binding_cache", "_deform_input_cache"):
            m.__dict__.pop(name, None)
        fresh = m.render(cams, drive)
    torch.testing.assert_close(cached.rgb, fresh.rgb, atol=0, rtol=0)
    torch.testing.assert_close(cached.alpha, fresh.alpha, atol=0, rtol=0)
