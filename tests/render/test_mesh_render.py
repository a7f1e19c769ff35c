"""Mesh renderer: perspective-correct UV texturing of a checkerboard, Lambertian shading values, interpolation of
vertex attributes, alpha/mask consistency with and without supersampling, gradients (finite differences)."""

from __future__ import annotations

import pytest
import torch

from nerfhead.render import (
    MeshRenderConfig,
    MeshRenderer,
    ShadingConfig,
    TexturedMesh,
    interpolate,
    sample_texture,
)

UNLIT = ShadingConfig(enabled=False)
EYE = torch.eye(4, dtype=torch.float64)[None]


def K_of(f: float, cx: float, cy: float) -> torch.Tensor:
    return torch.tensor([[[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]]], dtype=torch.float64)


def checker(n: int = 8, px: int = 8) -> torch.Tensor:
    """[n*px, n*px, 3] black/white checkerboard with n x n squares of px texels."""
    i = torch.arange(n * px) // px
    c = ((i[:, None] + i[None, :]) % 2).double()
    return c[..., None].expand(-1, -1, 3).contiguous()


def quad_mesh(texture: torch.Tensor | None = None) -> TexturedMesh:
    uv = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    return TexturedMesh(faces, uv=uv, texture=texture) if texture is not None else TexturedMesh(faces)


def test_checkerboard_on_slanted_quad_is_perspective_correct():
    # A quad receding in depth (z from 1.2 to 3.0), texture coordinates (u, v) at its corners.
    P = torch.tensor(
        [[-0.5, -0.4, 1.2], [0.8, -0.4, 3.0], [0.8, 0.5, 3.0], [-0.5, 0.5, 1.2]], dtype=torch.float64
    )
    tex = checker()
    r = MeshRenderer(
        quad_mesh(tex), MeshRenderConfig(background=(0.5, 0.5, 0.5), shading=UNLIT, flip_v=False)
    )
    K = K_of(60.0, 32.0, 32.0)
    out = r.render(P, EYE, K, 64, 64)
    m = out.alpha[0, ..., 0] > 0
    y, x = m.nonzero(as_tuple=True)
    assert len(y) > 1200
    # Analytic (u, v): intersect each pixel's ray with the quad's plane.
    rays = torch.stack([x + 0.5, y + 0.5, torch.ones_like(x)], -1).double() @ torch.linalg.inv(K[0]).T
    n = torch.linalg.cross(P[1] - P[0], P[3] - P[0], dim=-1)
    X = rays * ((P[0] @ n) / (rays @ n))[:, None]
    u = (X - P[0]) @ (P[1] - P[0]) / (P[1] - P[0]).norm() ** 2
    v = (X - P[0]) @ (P[3] - P[0]) / (P[3] - P[0]).norm() ** 2
    want = ((torch.floor(u * 8) + torch.floor(v * 8)) % 2).double()
    # Away from square borders (bilinear blend there), the colour is exactly the analytic square's.
    inner = ((u * 64 - 0.5) % 8 > 0.6) & ((u * 64 - 0.5) % 8 < 6.4) & ((v * 64 - 0.5) % 8 > 0.6)
    inner &= (v * 64 - 0.5) % 8 < 6.4
    assert int(inner.sum()) > 600
    got = out.rgb[0, y, x, 0]
    torch.testing.assert_close(got[inner], want[inner], rtol=0, atol=1e-9)
    # Screen-affine texture mapping would get many of these pixels wrong: the test can tell the difference.
    assert torch.all(out.rgb[0][~m] == 0.5)


def test_sample_texture_orientation_and_bilinear():
    tex = torch.zeros(4, 2, 3, dtype=torch.float64)
    tex[0, :, 0] = 1.0  # top row red
    tex[-1, :, 2] = 1.0  # bottom row blue
    uv = torch.tensor([[0.5, 0.95], [0.5, 0.05]], dtype=torch.float64)
    up = sample_texture(tex, uv, flip_v=True)  # v up: v = 0.95 is near the top of the image
    torch.testing.assert_close(up, torch.tensor([[1.0, 0, 0], [0, 0, 1.0]], dtype=torch.float64))
    torch.testing.assert_close(sample_texture(tex, uv, flip_v=False), up.flip(0))
    # Halfway between texel centres (rows 0 and 1 at v = 1/8 and 3/8): an even blend.
    mid = sample_texture(tex, torch.tensor([[0.5, 0.25]], dtype=torch.float64), flip_v=False)
    torch.testing.assert_close(mid, torch.tensor([[0.5, 0.0, 0.0]], dtype=torch.float64))


@pytest.mark.parametrize(
    "light, factor", [((0.0, 0.0, -1.0), 1.0), ((0.6, 0.0, -0.8), 0.8), ((1.0, 0, 0), 0.0)]
)
def test_lambert_plus_ambient(light, factor):
    """A plane facing the camera (normal -z towards it); both windings light the same (two-sided)."""
    P = torch.tensor(
        [[-3.0, -3.0, 2.0], [3.0, -3.0, 2.0], [3.0, 3.0, 2.0], [-3.0, 3.0, 2.0]], dtype=torch.float64
    )
    colors = torch.tensor([0.8, 0.5, 0.2], dtype=torch.float64).expand(4, 3)
    sh = ShadingConfig(ambient=0.3, diffuse=0.6, light_dir=light)
    for faces in (torch.tensor([[0, 1, 2], [0, 2, 3]]), torch.tensor([[0, 2, 1], [0, 3, 2]])):
        r = MeshRenderer(TexturedMesh(faces, vertex_colors=colors), MeshRenderConfig(shading=sh))
        out = r.render(P, EYE, K_of(8.0, 8.0, 8.0), 16, 16)
        assert bool((out.alpha == 1).all())
        want = colors[0] * (0.3 + 0.6 * factor)
        torch.testing.assert_close(out.rgb, want.expand(1, 16, 16, 3))


def test_interpolate_world_position_and_alpha_equals_mask():
    """Interpolating vertex positions gives the surface point seen at each pixel (z equals depth); the alpha
    mask is exactly tri_id >= 0; supersampled alpha is the box filter of the fine coverage."""
    g = torch.Generator().manual_seed(1)
    V = torch.randn(12, 3, generator=g, dtype=torch.float64) * 0.3 + torch.tensor(
        [0, 0, 2.0], dtype=torch.float64
    )
    faces = torch.randint(0, 12, (20, 3), generator=g)
    faces = faces[(faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])]
    r = MeshRenderer(TexturedMesh(faces), MeshRenderConfig(shading=UNLIT, background=(0.0, 0.0, 0.0)))
    out = r.render(V, EYE, K_of(80.0, 16.0, 16.0), 32, 32)
    fr = out.fragments
    assert 0.1 < float(out.alpha.mean()) < 0.9
    assert torch.equal(out.alpha[..., 0] > 0, fr.tri_id >= 0)
    assert torch.equal(out.alpha[..., 0], (fr.tri_id >= 0).double())
    pos = interpolate(V, faces, fr)
    torch.testing.assert_close(pos[..., 2], fr.depth)
    torch.testing.assert_close(out.depth[..., 0], fr.depth)
    # The interpolated point projects back onto its pixel centre.
    m = fr.mask[0]
    y, x = m.nonzero(as_tuple=True)
    uvw = pos[0][m] @ K_of(80.0, 16.0, 16.0)[0].T
    torch.testing.assert_close(uvw[:, :2] / uvw[:, 2:], torch.stack([x + 0.5, y + 0.5], -1).double())
    torch.testing.assert_close(out.rgb[0][m], torch.full((int(m.sum()), 3), 0.7, dtype=torch.float64))

    r2 = MeshRenderer(TexturedMesh(faces), MeshRenderConfig(shading=UNLIT, supersample=2))
    out2 = r2.render(V, EYE, K_of(80.0, 16.0, 16.0), 32, 32)
    fine = out2.fragments.mask.double()
    assert fine.shape == (1, 64, 64)
    torch.testing.assert_close(out2.alpha[0, ..., 0], fine[0].reshape(32, 2, 32, 2).mean((1, 3)))
    assert bool(((out2.alpha > 0) & (out2.alpha < 1)).any())  # anti-aliased edges


def test_gradients_wrt_vertices_match_finite_differences():
    """Lit, vertex-coloured triangle covering the image: a smooth function of the vertex positions."""
    verts = torch.tensor([[-2.0, -2.0, 2.0], [8.0, -1.5, 3.0], [-1.5, 8.0, 2.5]], dtype=torch.float64)
    colors = torch.tensor([[0.9, 0.2, 0.1], [0.1, 0.8, 0.3], [0.3, 0.2, 0.9]], dtype=torch.float64)
    sh = ShadingConfig(ambient=0.2, diffuse=0.8, light_dir=(0.3, -0.2, -1.0))
    r = MeshRenderer(
        TexturedMesh(torch.tensor([[0, 1, 2]]), vertex_colors=colors), MeshRenderConfig(shading=sh)
    )
    target = torch.rand(1, 16, 16, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def loss(v):
        out = r.render(v, EYE, K_of(10.0, 8.0, 8.0), 16, 16)
        assert bool((out.alpha == 1).all())
        return ((out.rgb - target) ** 2).sum()

    v = verts.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(loss(v), v)
    assert torch.isfinite(g).all() and float(g.abs().max()) > 1e-2
    fd = torch.zeros_like(verts)
    eps = 1e-6
    with torch.no_grad():
        for i in range(3):
            for k in range(3):
                d = torch.zeros_like(verts)
                d[i, k] = eps
                fd[i, k] = (loss(verts + d) - loss(verts - d)) / (2 * eps)
    torch.testing.assert_close(g, fd, rtol=1e-4, atol=1e-6)


def test_texture_and_colour_gradients_flow():
    tex = checker(4, 4).clone().requires_grad_(True)
    r = MeshRenderer(quad_mesh(tex), MeshRenderConfig(shading=UNLIT))
    P = torch.tensor(
        [[-3.0, -3.0, 2.0], [3.0, -3.0, 2.0], [3.0, 3.0, 2.0], [-3.0, 3.0, 2.0]], dtype=torch.float64
    )
    out = r.render(P.requires_grad_(True), EYE, K_of(8.0, 8.0, 8.0), 16, 16)
    out.rgb.sum().backward()
    assert tex.grad is not None and float(tex.grad.sum()) == pytest.approx(16 * 16 * 3)
