"""Mesh rasterizer: compiled CPU kernel against the torch twin on the ICT head and on a random triangle soup,
exact pixel coverage of a known triangle, watertight shared edges, depth of planes, perspective-correct
barycentrics against ray-plane intersection, gradients (finite differences), near-plane culling."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from nerfhead._backend import get_ext
from nerfhead.assets import asset_path
from nerfhead.geometry import axis_angle_to_matrix
from nerfhead.ops._torch.rasterize_mesh import _project
from nerfhead.ops.rasterize_mesh import rasterize_mesh, rasterize_visibility

HAS_CPU = hasattr(get_ext(), "rasterize_mesh_forward")
COMPILED_CPU = pytest.param(
    "cpu", marks=pytest.mark.skipif(not HAS_CPU, reason="rasterize_mesh kernel not built")
)
BACKENDS = ["torch", COMPILED_CPU]


def K_of(f: float, cx: float, cy: float, B: int = 1) -> torch.Tensor:
    return torch.tensor([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]]).expand(B, 3, 3)


def ict_head() -> tuple[torch.Tensor, torch.Tensor]:
    """ICT neutral head in metres (centred) and its triangles."""
    d = np.load(asset_path("ict_facekit/ict_facekit_light.npz"))
    v = torch.from_numpy(d["neutral"]).float() * 0.01
    q = torch.from_numpy(d["faces_quad"]).long()
    quads = q[q[:, 3] >= 0]
    return v - v.mean(0), torch.cat([q[:, :3], quads[:, [0, 2, 3]]])


def head_views(B: int) -> torch.Tensor:
    """The head seen from B directions at ~1 m, camera space [B, V, 3]."""
    v, _ = ict_head()
    flip = torch.tensor([1.0, -1.0, -1.0])  # head's +y up, +z towards the viewer -> OpenCV camera
    out = []
    for b in range(B):
        R = axis_angle_to_matrix(torch.tensor([0.1 * b, 0.5 * b - 0.6, 0.05 * b]))
        out.append((v @ R.T) * flip + torch.tensor([0.01 * b, -0.02, 0.9 + 0.05 * b]))
    return torch.stack(out)


def screen_tris(
    tris_px: list[list[tuple[float, float]]], z: float = 2.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Screen-space triangles (pixel coordinates) at depth z -> verts_screen [1, 3T, 3], faces [T, 3]."""
    pts = [(x, y, z) for tri in tris_px for (x, y) in tri]
    return torch.tensor([pts], dtype=torch.float32), torch.arange(len(pts)).reshape(-1, 3)


@pytest.mark.skipif(not HAS_CPU, reason="rasterize_mesh kernel not built")
def test_kernel_matches_twin_on_ict_head():
    _, faces = ict_head()
    verts = head_views(3)
    screen = _project(verts, K_of(300.0, 64.0, 60.0, 3))
    ids_c, d_c = rasterize_visibility(screen, faces, 128, 120, 0.01, backend="cpu")
    ids_t, d_t = rasterize_visibility(screen, faces, 128, 120, 0.01, backend="torch")
    assert ids_c.dtype == ids_t.dtype == torch.int32 and ids_c.shape == (3, 120, 128)
    cover = (ids_c >= 0).float().mean()
    assert 0.15 < cover < 0.6  # the head fills a good part of the image
    same = (ids_c == ids_t).float().mean()
    assert same >= 0.999
    diff = ids_c != ids_t
    torch.testing.assert_close(d_c[diff], d_t[diff], rtol=0, atol=0)
    torch.testing.assert_close(d_c, d_t, rtol=1e-6, atol=0)
    assert torch.all(d_c[ids_c < 0] == 0) and torch.all(d_c[ids_c >= 0] > 0.7)


@pytest.mark.skipif(not HAS_CPU, reason="rasterize_mesh kernel not built")
def test_kernel_matches_twin_on_triangle_soup():
    """Overlapping, interpenetrating, partly off-screen and near-plane-crossing triangles of all sizes."""
    g = torch.Generator().manual_seed(3)
    T = 400
    centre = torch.rand(T, 1, 3, generator=g) * torch.tensor([1.6, 1.6, 2.0]) + torch.tensor(
        [-0.8, -0.8, 0.3]
    )
    size = torch.rand(T, 1, 1, generator=g) ** 3 * 0.8
    verts = (centre + size * torch.randn(T, 3, 3, generator=g)).reshape(1, -1, 3)
    faces = torch.arange(3 * T).reshape(T, 3)
    screen = _project(verts, K_of(40.0, 32.0, 24.0))
    ids_c, d_c = rasterize_visibility(screen, faces, 64, 48, 0.1, backend="cpu")
    ids_t, d_t = rasterize_visibility(screen, faces, 64, 48, 0.1, backend="torch")
    assert (ids_c >= 0).float().mean() > 0.5
    assert (ids_c == ids_t).float().mean() >= 0.999
    diff = ids_c != ids_t
    assert torch.equal(d_c[diff], d_t[diff])


def expected_pixels(tri: list[tuple[float, float]], W: int, H: int) -> set[tuple[int, int]]:
    """Pixels whose centre is strictly inside the triangle (exact rational arithmetic)."""
    P = [(Fraction(x), Fraction(y)) for x, y in tri]

    def edge(a, b, p):
        return (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])

    out = set()
    for y in range(H):
        for x in range(W):
            p = (Fraction(2 * x + 1, 2), Fraction(2 * y + 1, 2))
            w = [edge(P[1], P[2], p), edge(P[2], P[0], p), edge(P[0], P[1], p)]
            assert all(wi != 0 for wi in w), "test triangle must not pass through pixel centres"
            if all(wi > 0 for wi in w) or all(wi < 0 for wi in w):
                out.add((x, y))
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("winding", [1, -1])
def test_known_triangle_covers_expected_pixels(backend, winding):
    tri = [(2.3, 1.2), (13.7, 4.6), (5.1, 10.9)][::winding]
    vs, faces = screen_tris([tri], z=3.0)
    ids, depth = rasterize_visibility(vs, faces, 16, 12, 0.01, backend=backend)
    got = {(x, y) for y, x in (ids[0] == 0).nonzero().tolist()}
    want = expected_pixels(tri, 16, 12)
    assert got == want and len(want) == 50  # area 50.5 px^2
    assert torch.all(ids[0][ids[0] != 0] == -1)
    torch.testing.assert_close(depth[0][ids[0] == 0], torch.full((len(want),), 3.0))


@pytest.mark.parametrize("backend", BACKENDS)
def test_shared_edges_leave_no_holes_and_no_overlap(backend):
    """A square split on its diagonal (which passes through pixel centres), and a fan around a pixel centre:
    every pixel is covered by exactly one triangle."""
    W = H = 12
    quad = [[(0.0, 0.0), (W, 0.0), (W, H)], [(0.0, 0.0), (W, H), (0.0, H)]]
    c = (6.5, 5.5)  # a pixel centre
    ring = [(0.0, 0.0), (6.5, 0.0), (W, 0.0), (W, 5.5), (W, H), (6.5, H), (0.0, H), (0.0, 5.5)]
    fan = [[c, ring[i], ring[(i + 1) % 8]] for i in range(8)]
    for tris in (quad, fan):
        count = torch.zeros(H, W, dtype=torch.int64)
        for tri in tris:  # one triangle at a time: coverage counts expose double cover
            vs, faces = screen_tris([tri])
            ids, _ = rasterize_visibility(vs, faces, W, H, 0.01, backend=backend)
            count += (ids[0] >= 0).long()
        assert torch.all(count == 1)
        vs, faces = screen_tris(tris)
        ids, _ = rasterize_visibility(vs, faces, W, H, 0.01, backend=backend)
        assert torch.all(ids >= 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fronto_parallel_plane_depth_and_nearest_wins(backend):
    # Two camera-space quads at z = 1.5 and z = 2.5 covering the image; the nearer one is drawn second.
    def quad(z, s):
        return [[-s, -s, z], [s, -s, z], [s, s, z], [-s, s, z]]

    verts = torch.tensor([quad(2.5, 3.0) + quad(1.5, 0.5)])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    fr = rasterize_mesh(verts, faces, K_of(20.0, 16.0, 16.0), 32, 32, backend=backend)
    assert torch.all(fr.mask)
    near_px = fr.tri_id >= 2
    # 0.5 m at 1.5 m with f = 20 px: the near quad spans [9.33, 22.67] px, i.e. pixel centres 9.5 .. 22.5.
    assert int(near_px[0, 16].sum()) == 14 and int(near_px.sum()) == 14 * 14
    assert bool(near_px[0, 9:23, 9:23].all())
    torch.testing.assert_close(fr.depth[near_px], torch.full((196,), 1.5))
    torch.testing.assert_close(fr.depth[~near_px], torch.full((32 * 32 - 196,), 2.5))
    torch.testing.assert_close(fr.bary.sum(-1), torch.ones(1, 32, 32))


@pytest.mark.parametrize("backend", BACKENDS)
def test_perspective_correct_barycentrics_on_slanted_plane(backend):
    dt = torch.float64
    P = torch.tensor([[-0.6, -0.5, 1.0], [0.9, -0.4, 3.0], [-0.2, 0.8, 2.0]], dtype=dt)
    K = K_of(50.0, 24.0, 20.0).to(dt)
    fr = rasterize_mesh(P[None], torch.tensor([[0, 1, 2]]), K, 48, 40, backend=backend)
    b, y, x = fr.mask.nonzero(as_tuple=True)
    assert len(b) > 300
    # Ray through each pixel centre, intersected with the triangle's plane.
    pix = torch.stack([x + 0.5, y + 0.5, torch.ones_like(x, dtype=dt)], -1).to(dt)
    rays = pix @ torch.linalg.inv(K[0]).T
    n = torch.linalg.cross(P[1] - P[0], P[2] - P[0], dim=-1)
    t = (P[0] @ n) / (rays @ n)
    X = rays * t[:, None]
    # Barycentrics of X by least squares on the 3D triangle.
    A = torch.stack([P[0] - P[2], P[1] - P[2]], -1)  # [3, 2]
    l01 = torch.linalg.lstsq(A.expand(len(X), 3, 2), (X - P[2])[..., None]).solution[..., 0]
    want = torch.cat([l01, 1 - l01.sum(-1, keepdim=True)], -1)
    torch.testing.assert_close(fr.bary[b, y, x], want, rtol=0, atol=1e-9)
    torch.testing.assert_close(fr.depth[b, y, x], X[:, 2], rtol=1e-12, atol=0)
    # Screen-linear (not perspective-correct) weights would differ clearly on this slanted plane.
    screen_linear = want * P[:, 2] / (want * P[:, 2]).sum(-1, keepdim=True)
    assert (screen_linear - want).abs().max() > 0.1


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_match_finite_differences(backend):
    """A smooth loss: interpolated per-vertex values of one big triangle covering the whole image."""
    dt = torch.float64
    verts = torch.tensor(
        [[[-2.0, -2.0, 2.0], [8.0, -1.5, 3.0], [-1.5, 8.0, 2.5]]], dtype=dt, requires_grad=True
    )
    faces = torch.tensor([[0, 1, 2]])
    vals = torch.tensor([[0.2, 1.0], [0.9, -0.3], [-0.5, 0.4]], dtype=dt)
    w = torch.rand(1, 16, 16, 2, generator=torch.Generator().manual_seed(0), dtype=dt)
    K = K_of(10.0, 8.0, 8.0).to(dt)

    def loss(v):
        fr = rasterize_mesh(v, faces, K, 16, 16, backend=backend)
        assert torch.all(fr.mask)
        img = (fr.bary[..., :, None] * vals).sum(-2)
        return (img * w).sum() + 0.1 * fr.depth.sum()

    L = loss(verts)
    (g,) = torch.autograd.grad(L, verts)
    assert torch.isfinite(g).all() and g.abs().min() > 1e-4
    eps = 1e-6
    fd = torch.zeros_like(g)
    with torch.no_grad():
        for i in range(3):
            for k in range(3):
                d = torch.zeros_like(verts)
                d[0, i, k] = eps
                fd[0, i, k] = (loss(verts + d) - loss(verts - d)) / (2 * eps)
    torch.testing.assert_close(g, fd, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_near_plane_drops_triangles_and_background_is_empty(backend):
    verts = torch.tensor([[[-1.0, -1.0, 0.05], [1.0, -1.0, 2.0], [0.0, 1.0, 2.0], [-1.0, -1.0, -1.0]]])
    faces = torch.tensor([[0, 1, 2]])
    K = K_of(10.0, 8.0, 8.0)
    assert rasterize_mesh(verts, faces, K, 16, 16, near=0.01, backend=backend).mask.any()
    fr = rasterize_mesh(verts, faces, K, 16, 16, near=0.1, backend=backend)
    assert not fr.mask.any() and torch.all(fr.tri_id == -1)
    assert torch.all(fr.depth == 0) and torch.all(fr.bary == 0)
    # A vertex behind the camera drops its triangle (no clipping) and produces no NaN anywhere.
    fr = rasterize_mesh(verts, torch.tensor([[3, 1, 2]]), K, 16, 16, backend=backend)
    assert not fr.mask.any() and torch.isfinite(fr.bary).all()


def test_compiled_kernel_rejects_bad_indices():
    if not HAS_CPU:
        pytest.skip("rasterize_mesh kernel not built")
    vs, faces = screen_tris([[(0.0, 0.0), (4.0, 0.0), (0.0, 4.0)]])
    with pytest.raises(RuntimeError, match="out of range"):
        rasterize_visibility(vs, faces + 5, 8, 8, backend="cpu")
    with pytest.raises(ValueError, match="backend"):
        rasterize_visibility(vs, faces, 8, 8, backend="nope")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_kernel_matches_twin():
    _, faces = ict_head()
    verts = head_views(2).cuda()
    screen = _project(verts, K_of(300.0, 64.0, 60.0, 2).cuda())
    ids_g, d_g = rasterize_visibility(screen, faces.cuda(), 128, 120, 0.01, backend="cuda")
    ids_t, d_t = rasterize_visibility(screen.cpu(), faces, 128, 120, 0.01, backend="torch")
    # The CUDA build uses fast-math division: ids may differ at near-ties and edges only.
    assert (ids_g.cpu() == ids_t).float().mean() >= 0.995
    same = ids_g.cpu() == ids_t
    torch.testing.assert_close(d_g.cpu()[same], d_t[same], rtol=1e-5, atol=0)


def test_fragments_are_consistent_with_mask():
    _, faces = ict_head()
    verts = head_views(1)
    fr = rasterize_mesh(verts, faces, K_of(200.0, 32.0, 32.0), 64, 64, backend="torch")
    assert torch.equal(fr.mask, fr.tri_id >= 0)
    m = fr.mask
    torch.testing.assert_close(fr.bary.sum(-1)[m], torch.ones(int(m.sum())))
    assert torch.all(fr.bary[m] >= 0) and math.isclose(float(fr.bary[~m].abs().sum()), 0.0)
