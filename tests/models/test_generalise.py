"""What keeps a monocular splat head plausible off its training data: the deformation network holds still
outside the training expressions (clamped input, bounded output), Gaussians on the mouth interior, and a low SH
degree on monocular captures."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nerfhead.data.expressions import EXPRESSION_INDEX
from nerfhead.fields.deformation import ExpressionDeformation
from nerfhead.models.deform import DeformConfig
from nerfhead.models.splat_head import INTERIOR_COLOURS, PART_ID, SplatHead, SplatHeadConfig
from nerfhead.models.splat_train import SplatFit
from nerfhead.splats.gaussians import rgb_to_sh0
from tests.models.test_splat_monocular import tiny_cfg
from tests.models.tiny_capture import one_thread

JAW = EXPRESSION_INDEX["jawOpen"]


CFG = DeformConfig(n_levels=4, log2_hashmap_size=10, hidden=16)


def _net() -> ExpressionDeformation:
    torch.manual_seed(0)
    net = CFG.build(backend="torch")
    with torch.no_grad():
        net.out.weight.normal_(0.0, 0.5)
        net.code.weight.mul_(4.0)
    return net


def _offsets_colours(net: ExpressionDeformation, pos, expression, rotation):
    return net(pos, torch.cat([expression, rotation], -1)).split(3, -1)


@torch.no_grad()
def test_deformation_holds_still_outside_the_training_expressions():
    net = _net()
    pos = torch.rand(50, 3, generator=torch.Generator().manual_seed(1))
    rot = torch.zeros(3, 3)
    train = torch.zeros(20, 53)
    train[:, JAW] = torch.linspace(0.0, 0.3, 20)
    far = torch.zeros(3, 53)
    far[:, JAW] = torch.tensor([0.33, 0.7, 1.0])  # the edge of the range (0.3 + 10%) and far beyond it
    before = _offsets_colours(net, pos, far, rot)[0]
    assert float((before[2] - before[0]).abs().max()) > 0.05  # unbounded input: the far jaw moves Gaussians
    net.set_expression_range(train)
    off, rgb = _offsets_colours(net, pos, far, rot)
    torch.testing.assert_close(off[1], off[0])
    torch.testing.assert_close(off[2], off[0])
    torch.testing.assert_close(rgb[2], rgb[0])
    assert float(off.abs().max()) < CFG.max_offset and float(rgb.abs().max()) < CFG.max_rgb
    # the range is saved with the model and old checkpoints (without it) still load
    state = net.state_dict()
    fresh = _net()
    fresh.load_state_dict(state)
    assert torch.equal(fresh.expr_high, net.expr_high)
    old = {k: v for k, v in state.items() if not k.startswith("expr_")}
    _net().load_state_dict(old)


def test_default_head_has_a_mouth_interior():
    head = SplatHead(SplatHeadConfig(deform=DeformConfig(enabled=False)))
    part = head.ict.face_part[head.splats.binding]
    for name, rgb in INTERIOR_COLOURS.items():
        rows = part == PART_ID[name]
        assert int(rows.sum()) > 500
        torch.testing.assert_close(head.splats.params["sh0"][rows][0, 0], rgb_to_sh0(torch.tensor(rgb)))
    skin = SplatHead(SplatHeadConfig(parts=("face",), deform=DeformConfig(enabled=False)))
    assert not torch.isin(skin.ict.face_part[skin.splats.binding], torch.tensor([PART_ID["teeth"]])).any()


def test_monocular_fits_use_low_sh_and_the_training_expression_range(tmp_path):
    from tests.models.test_splat_monocular import write_mono_capture

    with one_thread():
        cap = write_mono_capture(tmp_path, T=5)
        cfg = tiny_cfg(1)
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, sh_degree=3))
        task = SplatFit(cap, cfg)
    assert task.model.cfg.sh_degree == 0 and task.avatar_spec()["config"]["sh_degree"] == 0
    assert task.model.deform is not None
    e = cap.drive.expression[task.train_timesteps]  # type: ignore[union-attr]
    assert torch.allclose(
        task.model.deform.expr_high[JAW], (e[:, JAW].max() * 1.1 - e[:, JAW].min() * 0.1).clamp(0, 1)
    )


def test_colour_outlier_measure():
    """The 99.9% chroma region of skin-like pixels holds about 99.9% of such pixels; the wall's blue lies
    outside it (the case that must fail)."""
    from nerfhead.engine.chroma import ChromaModel

    g = torch.Generator().manual_seed(0)
    skin = torch.tensor([0.80, 0.60, 0.50]) * (0.6 + 0.4 * torch.rand(20000, 1, generator=g))
    skin = (skin + 0.03 * torch.randn(20000, 3, generator=g)).clamp(0, 1)
    ref = ChromaModel(skin)
    assert ref.outside(skin) <= 0.0011
    more = (torch.tensor([0.80, 0.60, 0.50]) * 0.8 + 0.03 * torch.randn(5000, 3, generator=g)).clamp(0, 1)
    assert ref.outside(more) < 0.005
    wall = torch.tensor([[0.35, 0.55, 0.85]]).expand(100, 3)
    assert ref.outside(wall) == 1.0
    assert ref.outside(torch.cat([more, wall])) == pytest.approx(100 / 5100, abs=0.005)


def _wall_and_head(n: int = 96, seed: int = 0):
    """A tracked frame in miniature: a blue-to-cyan wall, a skin disk of radius 24 whose outer 4 px are a
    darker, redder shade (ears, jaw shadow: the head's own edge colours), and a tracked mask 4 px too wide
    (the wall's ring inside it, which the avatar covers too)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    r = ((xx - n / 2 + 0.5) ** 2 + (yy - n / 2 + 0.5) ** 2).sqrt()
    wall = torch.stack([0.20 + 0.3 * xx / n, 0.45 + 0.3 * yy / n, 0.80 + 0.0 * xx], -1)
    shade = 0.6 + 0.4 * torch.rand(n, n, 1, generator=g)
    skin = torch.tensor([0.80, 0.60, 0.50]) * shade
    edge = torch.tensor([0.62, 0.38, 0.30]) * shade
    img = torch.where((r < 20)[..., None], skin, torch.where((r < 24)[..., None], edge, wall))
    img = (img + 0.02 * torch.randn(n, n, 3, generator=g)).clamp(0, 1)
    mask = r < 28
    return img, mask, r


def test_colour_outlier_reference_leaves_out_the_wall():
    """The reference of the orbit's colour-outlier measure keeps the head's own edge colours and leaves out
    the wall a tracked mask's edge takes in: a clean render of the head scores below the 0.5% bound, the same
    render with the wall's colour pasted on a 1-pixel ring of its silhouette above it (the case that must
    fail), which the reference of every mask pixel does not see."""
    from nerfhead.engine.chroma import ChromaModel
    from nerfhead.models.run_eval import head_reference

    views = [_wall_and_head(seed=s)[:2] for s in range(3)]
    ref, left_out = head_reference([(img, m, m) for img, m in views])
    assert 0.1 < left_out < 0.3  # the wall's ring: 4 px of 28
    img, _, r = _wall_and_head(seed=7)
    head = r < 24
    clean = img[head]
    assert ref.outside(clean) < 0.005
    pasted = img.clone()
    ring = (r >= 23) & (r < 24)
    pasted[ring] = views[0][0][(r >= 25) & (r < 28)][: int(ring.sum())]
    bad = ref.outside(pasted[head])
    assert bad > 0.005 and bad == pytest.approx(float(ring.sum()) / float(head.sum()), rel=0.2)
    every = ChromaModel(torch.cat([img[m] for img, m in views]))  # the old reference: every head pixel
    assert every.outside(pasted[head]) < 0.005


def test_monocular_fit_takes_the_wall_out_of_a_tracked_masks_edge(tmp_path):
    """A fixed-camera fit keeps the wall a tracked mask takes in at its edge out of the mask (alpha target,
    colour prior) and gives those pixels to the backdrop's first guess; with ``monocular_wall_band`` 0 the
    mask stays as tracked (the case that must fail)."""
    from nerfhead.data.capture import Capture, Frame
    from nerfhead.data.images import save_image, save_mask
    from tests.models.tiny_capture import tiny_cameras, tiny_drive

    frames = []
    for t in range(5):
        img, mask, r = _wall_and_head(seed=t)
        ip, mp = tmp_path / f"{t:03d}.png", tmp_path / f"{t:03d}_mask.png"
        save_image(ip, img)
        save_mask(mp, mask.float())
        frames.append(Frame(camera=0, timestep=t, timestamp=t / 25.0, image_path=ip, mask_path=mp))
    cap = Capture(cameras=tiny_cameras(96, 4)[1], frames=tuple(frames), fps=25.0, drive=tiny_drive(5))
    _, _, r = _wall_and_head()
    ring, head = (r >= 24) & (r < 28), r < 24
    wall = _wall_and_head()[0][ring]
    with one_thread():
        for band in (6, 0):
            task = SplatFit(cap, dataclasses.replace(tiny_cfg(1), monocular_wall_band=band))
            m = task.target(0)[1][..., 0] > 0.5  # type: ignore[index]
            back = task.model.backdrop
            assert back is not None
            err = float((back.detach()[ring] - wall).abs().mean())
            if band:
                assert float(m[ring].float().mean()) < 0.05 and float(m[head].float().mean()) > 0.99
                assert err < 0.02  # the backdrop starts at the wall there
            else:
                assert bool(m[ring].all()) and err > 0.03
