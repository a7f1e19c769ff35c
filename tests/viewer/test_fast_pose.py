"""The viewer's fast pose step (``SplatHead.posed_splats``) against the reference pose (``world_splats`` then
quaternions and log-scales to covariances), and its caches following parameter changes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nerfhead.data.drive import Drive
from nerfhead.models.deform import DeformConfig
from nerfhead.models.splat_head import SplatHead, SplatHeadConfig
from nerfhead.models.splat_pose import packed_splats
from nerfhead.viewer.renderable import AvatarRenderable, BrowserSplats, reference_gaussians
from nerfhead.viewer.splats import pack_splats
from tests.ops.test_pose_splats import COMPILED, assert_same_buffer


def _head() -> SplatHead:
    """A small head with two Gaussians per triangle (more Gaussians than bound triangles), a deformation
    network with random weights (a fresh one outputs zeros) and random local parameters."""
    cfg = SplatHeadConfig(
        parts=("eyeball_left", "teeth"),
        gaussians_per_triangle=2,
        deform=DeformConfig(n_levels=4, log2_hashmap_size=10),
        backend="torch",
    )
    m = SplatHead(cfg).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in [*m.deform.parameters(), *m.splats.params.values()]:  # type: ignore[union-attr]
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    return m


def _drives(n: int, seed: int = 1) -> list[Drive]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        d = Drive.neutral(1)
        d.expression.uniform_(0.0, 0.8, generator=g)
        d.rotation.normal_(0.0, 0.3, generator=g)
        d.translation.normal_(0.0, 0.05, generator=g)
        out.append(d)
    return out


def _assert_same(fast: BrowserSplats, ref: BrowserSplats) -> None:
    torch.testing.assert_close(fast.centers, ref.centers, atol=1e-6, rtol=0)  # metres
    scale = float(ref.covariances.abs().max())
    torch.testing.assert_close(fast.covariances, ref.covariances, atol=1e-5 * scale, rtol=0)
    torch.testing.assert_close(fast.rgbs, ref.rgbs, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast.opacities, ref.opacities, atol=1e-6, rtol=0)


def test_fast_pose_matches_the_reference_and_follows_parameter_changes():
    m = _head()
    r = AvatarRenderable(m)
    assert len(m.splats) > int(torch.unique(m.splats.binding).numel())  # several Gaussians per triangle
    drives = _drives(4)
    for d in drives:
        fast, ref = r.gaussians_at(d), reference_gaussians(m, d)  # type: ignore[attr-defined]
        _assert_same(fast, ref)
        a, b = pack_splats(fast), pack_splats(ref)  # viser's buffers: centres exact to float32 rounding
        np.testing.assert_allclose(a[:, :3].view(np.float32), b[:, :3].view(np.float32), atol=1e-6)
    before = r.gaussians_at(drives[0])  # type: ignore[attr-defined]

    # in-place updates (an optimiser step: local means, scales, the deformation grid) reach the fast path
    with torch.no_grad():
        m.splats.params["means"].add_(1.0)
        m.splats.params["scales"].sub_(0.2)
        next(m.deform.grid.parameters()).mul_(1.5)  # type: ignore[union-attr]
    after = r.gaussians_at(drives[0])  # type: ignore[attr-defined]
    assert float((after.centers - before.centers).abs().max()) > 100 * 1e-6  # 100 x the tolerance
    _assert_same(after, reference_gaussians(m, drives[0]))

    # a replaced binding (densification / pruning) too: keep every other Gaussian
    keep = torch.arange(0, len(m.splats), 2)
    with torch.no_grad():
        for k, p in m.splats.params.items():
            m.splats.params[k] = torch.nn.Parameter(p[keep].clone())
        m.splats.binding = m.splats.binding[keep].clone()
    pruned = r.gaussians_at(drives[1])  # type: ignore[attr-defined]
    assert pruned.centers.shape[0] == keep.numel()
    _assert_same(pruned, reference_gaussians(m, drives[1]))


def test_fast_pose_differs_from_a_wrong_pose():
    """The comparison can fail: another drive's reference is far from this drive's fast pose."""
    m = _head()
    r = AvatarRenderable(m)
    d0, d1 = _drives(2, seed=5)
    fast, other = r.gaussians_at(d0), reference_gaussians(m, d1)  # type: ignore[attr-defined]
    try:
        _assert_same(fast, other)
    except AssertionError:
        return
    raise AssertionError("a different drive's pose passed as the same")


def test_head_frame_pose_is_the_world_pose_before_the_head_transform():
    """``head_frame=True``: the same Gaussians in head coordinates with the drive's rigid transform; moved by it
    they are the world pose (the case that must fail: taken as world Gaussians without it, they are not)."""
    m = _head()
    r = AvatarRenderable(m)
    for d in _drives(3, seed=2):
        head = r.gaussians_at(d, head_frame=True)  # type: ignore[attr-defined]
        assert head.rotation is not None and head.translation is not None
        world = r.gaussians_at(d)  # type: ignore[attr-defined]
        assert world.rotation is None and world.to_world() is world
        _assert_same(head.to_world(), reference_gaussians(m, d))
        assert float((head.centers - world.centers).abs().max()) > 1e-3


@pytest.mark.parametrize("backend", ["torch", pytest.param("cpu", marks=COMPILED)])
def test_fused_packed_pose_is_the_packed_fast_pose(backend):
    """``SplatHead.packed_splats`` (the fused pose-and-pack kernel the viewer uses) is the packed fast pose, the
    faint Gaussians left out, also after parameter changes; another drive's buffer fails the comparison."""
    m = _head()
    r = AvatarRenderable(m)
    with torch.no_grad():
        m.splats.params["opacities"][::7] = -8.0  # alpha byte 0: left out with min_alpha 3
    drives = _drives(3, seed=3)
    for min_alpha in (0, 3):
        for d in drives:
            ref = torch.from_numpy(pack_splats(r.gaussians_at(d), min_alpha).view(np.int32))  # type: ignore[attr-defined]
            got = packed_splats(m, d, min_alpha, backend=backend)
            assert_same_buffer(got, ref)
        assert min_alpha == 0 or got.shape[0] < len(m.splats)
    with torch.no_grad():
        m.splats.params["means"].add_(0.5)
        next(m.deform.grid.parameters()).mul_(1.5)  # type: ignore[union-attr]
    ref = torch.from_numpy(pack_splats(r.gaussians_at(drives[0]), 3).view(np.int32))  # type: ignore[attr-defined]
    assert_same_buffer(packed_splats(m, drives[0], 3, backend=backend), ref)
    with pytest.raises(AssertionError):
        assert_same_buffer(packed_splats(m, drives[1], 3, backend=backend), ref)
    viewer_buffer = r.packed_at(drives[0], 3)  # type: ignore[attr-defined]
    assert viewer_buffer.dtype == np.uint32 and viewer_buffer.shape == tuple(ref.shape)
