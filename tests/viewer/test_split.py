"""The static-node measurement (:mod:`nerfhead.viewer.split`): pixels at the default camera, the sample of the
drive range, and which Gaussians count as never visibly moving (a Gaussian the drive moves never does)."""

from __future__ import annotations

import math

import pytest
import torch

from nerfhead.data.drive import Drive
from nerfhead.data.expressions import NUM_EXPRESSIONS
from nerfhead.geometry import axis_angle_to_matrix
from nerfhead.models.deform import DeformConfig
from nerfhead.models.splat_head import SplatHead, SplatHeadConfig
from nerfhead.viewer.renderable import AvatarRenderable, BrowserSplats
from nerfhead.viewer.split import movement, pixels_per_metre, sample_drives, split_static

PPM = 2000.0  # pixels per metre


def _splats(n: int = 4) -> BrowserSplats:
    g = torch.Generator().manual_seed(0)
    a = 1e-3 * torch.randn(n, 3, 3, generator=g)  # millimetre Gaussians
    return BrowserSplats(
        torch.randn(n, 3, generator=g), a @ a.transpose(1, 2), torch.rand(n, 3, generator=g), torch.rand(n, 1)
    )


def _moved(g: BrowserSplats, i: int, dx: float = 0.0, dcov: float = 0.0, drgb: float = 0.0) -> BrowserSplats:
    c, cov, rgb = g.centers.clone(), g.covariances.clone(), g.rgbs.clone()
    c[i, 0] += dx
    cov[i, 1, 1] += dcov
    rgb[i, 2] += drgb
    return BrowserSplats(c, cov, rgb, g.opacities)


def test_pixels_per_metre_and_movement_in_pixels():
    assert pixels_per_metre(90.0, 1.0, 1000) == pytest.approx(500.0)
    assert pixels_per_metre(30.0, 2.0, 1080) == pytest.approx(540 / math.tan(math.radians(15)) / 2)
    g = _splats()
    px, col = movement(g, _moved(g, 1, dx=1e-3), PPM)  # 1 mm at 2000 px/m: 2 px
    assert px.tolist() == pytest.approx([0.0, 2.0, 0.0, 0.0], abs=1e-4) and float(col.abs().max()) == 0.0
    px, _ = movement(g, _moved(g, 2, dcov=1e-8), PPM)  # the 3-sigma ellipsoid: 3 sqrt(1e-8) m = 0.3 mm
    assert float(px[2]) == pytest.approx(3e-4 * PPM, rel=1e-2) and float(px[[0, 1, 3]].abs().max()) == 0.0
    _, col = movement(g, _moved(g, 3, drgb=2 / 255), PPM)
    assert float(col[3]) == pytest.approx(2.0, rel=1e-4)


def test_a_gaussian_that_moves_visibly_is_never_static():
    """The case that must fail: one Gaussian moved 0.3 px (or recoloured by 1.5 steps) in one sample of many is
    not static at 0.25 px; at 0.5 px (or a two-step colour bound) it is."""
    g = _splats(6)
    posed = [g, g, _moved(g, 4, dx=0.3 / PPM), g]
    assert split_static(posed, PPM, 0.25).static.tolist() == [True] * 4 + [False, True]
    assert bool(split_static(posed, PPM, 0.5).static.all())
    posed = [g, _moved(g, 0, drgb=1.5 / 255), g]
    assert split_static(posed, PPM, 0.25, colour_bytes=1.0).static.tolist() == [False] + [True] * 5
    assert bool(split_static(posed, PPM, 0.25, colour_bytes=2.0).static.all())


def test_sample_covers_the_sliders_and_the_timeline():
    timeline = Drive.neutral(25)
    timeline.expression[:, 0] = torch.arange(25) / 24.0  # frame i has expression 0 at i / 24
    fixed = 1 + NUM_EXPRESSIONS + 1 + 6 + 3
    drives = sample_drives(timeline, n_random=3, n_timeline=5)
    assert [round(24 * float(d.expression[0, 0])) for d in drives[fixed:]] == [
        0,
        6,
        12,
        18,
        24,
    ]  # evenly spaced
    every = sample_drives(timeline, n_random=3)  # a short timeline: every frame
    assert [round(24 * float(d.expression[0, 0])) for d in every[fixed:]] == list(range(25))
    assert float(drives[0].expression.abs().max()) == 0.0 and float(drives[0].rotation.abs().max()) == 0.0
    ones = torch.stack([d.expression[0] for d in drives[1 : NUM_EXPRESSIONS + 1]])
    assert torch.equal(ones, torch.eye(NUM_EXPRESSIONS))
    yaw = axis_angle_to_matrix(drives[NUM_EXPRESSIONS + 3].rotation[0])  # yaw at +60 degrees, about y
    assert float(yaw[0, 0]) == pytest.approx(math.cos(math.radians(60)), abs=1e-5)


def test_head_split_keeps_exactly_what_the_blend_shapes_do_not_move():
    """On a head whose deformation network is fresh (it outputs zeros), a Gaussian is static exactly when no
    expression moves it by more than the threshold: those on triangles the blend shapes leave in place are all
    static, and none that the sample moves is. A deformation network conditioned on the head rotation (random
    weights) moves the rest too."""
    cfg = SplatHeadConfig(
        parts=("head_and_neck", "teeth"),
        triangle_stride=8,
        interior_stride=8,
        deform=DeformConfig(n_levels=4, log2_hashmap_size=10),
        backend="torch",
    )
    m = SplatHead(cfg).eval()
    r = AvatarRenderable(m)
    drives = sample_drives(None, n_random=2)
    posed = [r.gaussians_at(d, head_frame=True) for d in drives]  # type: ignore[attr-defined]
    split = split_static(posed, PPM, 0.25)
    assert 0.05 < split.share < 0.95
    basis = m.ict.expr_basis.reshape(NUM_EXPRESSIONS, -1, 3)  # [E, V, 3]
    still = basis.abs().amax(dim=(0, 2)) == 0  # vertices no expression moves
    fixed = still[m.faces[m.splats.binding]].all(-1)  # Gaussians on triangles of such vertices only
    assert bool(fixed.any()) and bool(split.static[fixed].all())
    for g in posed:  # every static Gaussian stays within the bound in every sample
        px, col = movement(posed[0], g, PPM)
        assert float(px[split.static].max()) <= 0.25 and float(col[split.static].max()) < 1.0
    assert float(split.worst_px[~split.static].min()) > 0.25
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in m.deform.parameters():  # type: ignore[union-attr]
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    moved = split_static([r.gaussians_at(d, head_frame=True) for d in drives], PPM, 0.25)  # type: ignore[attr-defined]
    assert moved.share < split.share
