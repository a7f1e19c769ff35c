"""Cameras: projection and ray generation invert each other (with distortion), scaling, indexing, checks."""

from __future__ import annotations

import pytest
import torch

from nerfhead.data import Cameras, pixel_centers
from nerfhead.data.cameras import distort, undistort
from nerfhead.geometry import axis_angle_to_matrix
from tests.data.data_synth import tiny_cameras


@pytest.mark.parametrize("dist", [False, True])
def test_rays_then_project_returns_the_pixels(dist):
    cams = tiny_cameras(3, 40, 30, dist=dist)
    pix = pixel_centers(30, 40).reshape(-1, 2).double()
    for c in range(3):
        o, d = cams.generate_rays(c, pix)
        torch.testing.assert_close(
            d.norm(dim=-1), torch.ones(len(pix), dtype=torch.float64), rtol=0, atol=1e-12
        )
        torch.testing.assert_close(o, cams.centers[c].expand_as(o), rtol=0, atol=0)
        pts = o + 0.7 * d
        uv, depth = cams[c].project(pts)
        torch.testing.assert_close(uv[0], pix, rtol=0, atol=1e-9)
        assert bool((depth > 0).all())


def test_generate_rays_accepts_per_ray_cameras():
    cams = tiny_cameras(3, 16, 12)
    pix = torch.tensor([[8.0, 6.0], [8.0, 6.0], [0.5, 0.5]], dtype=torch.float64)
    o, d = cams.generate_rays(torch.tensor([0, 2, 1]), pix)
    torch.testing.assert_close(o, cams.centers[[0, 2, 1]])
    # the principal point looks straight at the origin (from_look_at target)
    torch.testing.assert_close(d[:2], -o[:2] / o[:2].norm(dim=-1, keepdim=True), rtol=0, atol=1e-12)


def test_distort_undistort_inverse():
    g = torch.Generator().manual_seed(0)
    xy = (torch.rand(1000, 2, generator=g, dtype=torch.float64) - 0.5) * 1.2
    k = torch.tensor([-0.2, 0.05, 0.001, -0.001, 0.01], dtype=torch.float64)
    torch.testing.assert_close(undistort(distort(xy, k), k), xy, rtol=0, atol=1e-10)
    # 4 coefficients mean k3 = 0
    torch.testing.assert_close(distort(xy, k[:4]), distort(xy, torch.cat([k[:4], k.new_zeros(1)])))


def test_project_known_numbers():
    # camera at the origin looking down +z, fx=100, fy=200, cx=50, cy=40: (0.1, -0.2, 2) -> (55, 20)
    K = torch.tensor([[[100.0, 0, 50], [0, 200.0, 40], [0, 0, 1]]])
    cams = Cameras(K, torch.eye(4)[None], torch.tensor([100]), torch.tensor([80]))
    uv, z = cams.project(torch.tensor([[0.1, -0.2, 2.0]]))
    assert uv.tolist() == [[[55.0, 20.0]]] and z.tolist() == [[2.0]]
    # [N, P, 3] input: a different point per camera
    uv2, _ = cams.project(torch.tensor([[[0.0, 0.0, 1.0]]]))
    assert uv2.tolist() == [[[50.0, 40.0]]]


def test_scale_maps_pixel_edges_exactly():
    cams = tiny_cameras(2, 40, 30, dist=True)
    half = cams.scale(0.5)
    assert half.width.tolist() == [20, 20] and half.height.tolist() == [15, 15]
    pts = torch.tensor([[0.05, -0.02, 0.1], [0.0, 0.0, 0.0]], dtype=torch.float64)
    uv, _ = cams.project(pts)
    uv_half, _ = half.project(pts)
    torch.testing.assert_close(uv_half, uv * 0.5, rtol=0, atol=1e-12)
    # odd size: exact per-axis ratio new/old
    odd = tiny_cameras(1, 41, 31).scale(0.5)
    assert (odd.width.item(), odd.height.item()) == (20, 16)
    torch.testing.assert_close(odd.K[0, 0, 2], torch.tensor(41 / 2 * 20 / 41, dtype=torch.float64))
    torch.testing.assert_close(odd.K[0, 1, 2], torch.tensor(31 / 2 * 16 / 31, dtype=torch.float64))


def test_indexing_to_and_centers():
    cams = tiny_cameras(4, 16, 12)
    sub = cams[torch.tensor([3, 1])]
    assert sub.names == ("cam03", "cam01") and torch.equal(sub.K, cams.K[[3, 1]])
    assert cams[2].names == ("cam02",) and len(cams[1:3]) == 2
    assert cams[torch.tensor([True, False, True, False])].names == ("cam00", "cam02")
    f32 = cams.to(dtype=torch.float32)
    assert f32.K.dtype == torch.float32 and f32.width.dtype == torch.int64
    torch.testing.assert_close(cams.camtoworld[:, :3, 3], cams.centers, rtol=0, atol=1e-15)
    torch.testing.assert_close(
        cams.centers.norm(dim=-1),
        torch.full((4,), 1.0, dtype=torch.float64).hypot(torch.tensor(0.1, dtype=torch.float64)),
    )


def _with(cams: Cameras, **kw) -> Cameras:
    d = {"K": cams.K, "viewmat": cams.viewmat, "width": cams.width, "height": cams.height, "dist": cams.dist}
    d.update(kw)
    return Cameras(**d)


@pytest.mark.parametrize(
    "edit,match",
    [
        (
            lambda c: _with(c, K=c.K * torch.tensor([-1.0, 1, 1]).view(1, 3, 1).double()),
            "focal length must be positive",
        ),
        (
            lambda c: _with(
                c,
                K=c.K.clone().index_put_(
                    (torch.tensor([0]), torch.tensor([2]), torch.tensor([0])), torch.tensor(1.0).double()
                ),
            ),
            "upper triangular",
        ),
        (lambda c: _with(c, viewmat=c.viewmat * torch.tensor(2.0).double()), "last row|not rigid"),
        (
            lambda c: _with(c, viewmat=c.viewmat @ torch.diag(torch.tensor([1.0, 1, -1, 1])).double()),
            "reflection",
        ),
        (lambda c: _with(c, viewmat=c.viewmat.clone().fill_(float("nan"))), "not finite"),
        (lambda c: _with(c, width=torch.zeros(2, dtype=torch.int64)), "not positive"),
    ],
)
def test_check_names_the_problem(edit, match):
    bad = edit(tiny_cameras(2))
    with pytest.raises(ValueError, match=match):
        bad.check()


def test_constructor_shape_errors():
    c = tiny_cameras(2)
    with pytest.raises(ValueError, match="viewmat"):
        _with(c, viewmat=c.viewmat[:1])
    with pytest.raises(ValueError, match="int64"):
        _with(c, width=c.width.double())
    with pytest.raises(ValueError, match="dist"):
        _with(c, dist=torch.zeros(2, 8))


def test_rotation_tolerance_accepts_rounded_calibration():
    c = tiny_cameras(1)
    R = axis_angle_to_matrix(torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64))
    V = c.viewmat.clone()
    V[0, :3, :3] = torch.round(R * 1e6) / 1e6  # six printed decimals, as in many calibration files
    _with(c, viewmat=V).check()
