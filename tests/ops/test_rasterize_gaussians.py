"""nerfhead.ops.rasterize_gaussians: analytic renders, the compiled CPU kernel against the torch twin (forward and
gradients), float64 gradcheck, gsplat's conventions (pure-torch parts here, full parity on CUDA), and a small fit."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from nerfhead.ops import rasterize_gaussians as rg_mod
from nerfhead.ops._torch.rasterize_gaussians import _project_gaussians, _rasterize_to_pixels
from nerfhead.ops._torch.sh import SH_C0, _spherical_harmonics
from nerfhead.ops.rasterize_gaussians import rasterize_gaussians

HAS_KERNEL = rg_mod._has_kernel()
needs_kernel = pytest.mark.skipif(
    not HAS_KERNEL, reason="nerfhead._C without rasterize_gaussians (not built)"
)
CPU_BACKENDS = ["torch", pytest.param("cpu", marks=needs_kernel)]
PARAMS = ("means", "quats", "scales", "opacities", "colors")


def random_scene(n: int, n_cams: int = 2, width: int = 40, height: int = 32, sh_degree: int | None = None,
                 dtype: torch.dtype = torch.float32, seed: int = 0) -> dict:  # fmt: skip
    """Gaussians in front of C cameras looking down +z from slightly different places."""
    g = torch.Generator().manual_seed(seed)
    means = 0.5 * torch.randn(n, 3, generator=g)
    quats = torch.randn(n, 4, generator=g)
    scales = 0.01 + 0.08 * torch.rand(n, 3, generator=g)
    opacities = 0.05 + 0.9 * torch.rand(n, generator=g)
    if sh_degree is None:
        colors = torch.rand(n, 3, generator=g)
    else:
        colors = 0.3 * torch.randn(n, (sh_degree + 1) ** 2, 3, generator=g)
    viewmats = torch.eye(4).repeat(n_cams, 1, 1)
    viewmats[:, 2, 3] = 3.0
    viewmats[:, 0, 3] = torch.linspace(-0.3, 0.3, n_cams)
    Ks = torch.tensor([[60.0, 0.0, width / 2], [0.0, 60.0, height / 2], [0.0, 0.0, 1.0]]).repeat(n_cams, 1, 1)
    scene = {"means": means, "quats": quats, "scales": scales, "opacities": opacities, "colors": colors}
    scene |= {"viewmats": viewmats, "Ks": Ks, "width": width, "height": height, "sh_degree": sh_degree}
    return {k: v.to(dtype) if isinstance(v, torch.Tensor) else v for k, v in scene.items()}


def render_with_grads(scene: dict, backend: str, **kw) -> tuple[torch.Tensor, torch.Tensor, dict, dict]:
    """Render, backpropagate fixed random weights, return (render, alphas, meta, grads)."""
    leaves = {k: scene[k].clone().requires_grad_(True) for k in PARAMS}
    rest = {k: v for k, v in scene.items() if k not in PARAMS}
    render, alphas, meta = rasterize_gaussians(**leaves, **rest, backend=backend, **kw)
    g = torch.Generator().manual_seed(1)
    w_render = torch.randn(render.shape, generator=g, dtype=render.dtype)
    w_alpha = torch.randn(alphas.shape, generator=g, dtype=alphas.dtype)
    ((render * w_render).sum() + (alphas * w_alpha).sum()).backward()
    return render.detach(), alphas.detach(), meta, {k: v.grad for k, v in leaves.items()}


def close(actual: torch.Tensor, expected: torch.Tensor, rtol: float, atol_frac: float) -> None:
    """assert_close with an absolute tolerance relative to the largest expected magnitude."""
    atol = atol_frac * float(expected.abs().max().clamp_min(1e-12))
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_single_isotropic_gaussian_renders_the_analytic_image(backend: str) -> None:
    f, z, s, o = 50.0, 2.0, 0.04, 0.8
    color = torch.tensor([0.2, 0.5, 1.0])
    K = torch.tensor([[[f, 0.0, 16.5], [0.0, f, 16.5], [0.0, 0.0, 1.0]]])  # centre on pixel (16, 16)
    render, alphas, meta = rasterize_gaussians(
        torch.tensor([[0.0, 0.0, z]]), torch.tensor([[1.0, 0.0, 0.0, 0.0]]), torch.full((1, 3), s),
        torch.tensor([o]), color[None], torch.eye(4)[None], K, 32, 32, backend=backend,
    )  # fmt: skip
    var = (f * s / z) ** 2 + 0.3  # EWA: (J S)^2 + eps2d, J = f / z at the optical axis
    radius = math.ceil(min(3.33, math.sqrt(2 * math.log(255 * o))) * math.sqrt(var))
    assert meta["radii"].tolist() == [[[radius, radius]]]
    torch.testing.assert_close(meta["means2d"], torch.tensor([[[16.5, 16.5]]]))
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    d2 = (xs + 0.5 - 16.5) ** 2 + (ys + 0.5 - 16.5) ** 2
    alpha = o * torch.exp(-0.5 * d2 / var)
    alpha = torch.where(alpha >= 1 / 255, alpha, torch.zeros_like(alpha))
    torch.testing.assert_close(alphas[0, ..., 0], alpha, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(render[0], alpha[..., None] * color, rtol=1e-5, atol=1e-6)
    assert alphas[0, 16, 16, 0].item() == pytest.approx(o, abs=1e-6)
    assert int(alphas[0, ..., 0].argmax()) == 16 * 32 + 16


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_background_is_composited_behind(backend: str) -> None:
    scene = random_scene(200, n_cams=2)
    bg = torch.tensor([[0.1, 0.7, 0.3], [1.0, 0.0, 0.5]])
    plain, alphas, _ = rasterize_gaussians(**scene, backend=backend)
    with_bg, alphas_bg, _ = rasterize_gaussians(**scene, backgrounds=bg, backend=backend)
    assert 0.05 < float(alphas.mean()) < 0.95
    torch.testing.assert_close(alphas_bg, alphas)
    torch.testing.assert_close(with_bg, plain + (1 - alphas) * bg[:, None, None, :])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_empty_or_culled_scene_renders_the_background(backend: str) -> None:
    bg = torch.tensor([[0.25, 0.5, 0.75]])
    scene = random_scene(0, n_cams=1)
    render, alphas, meta = rasterize_gaussians(**scene, backgrounds=bg, backend=backend)
    assert torch.equal(alphas, torch.zeros(1, 32, 40, 1))
    assert torch.equal(render, bg.expand(32, 40, 3)[None])
    behind = random_scene(50, n_cams=1)
    behind["means"][:, 2] = -5.0  # all behind the camera
    render, alphas, meta = rasterize_gaussians(**behind, backgrounds=bg, backend=backend)
    assert int(meta["radii"].abs().sum()) == 0
    assert torch.equal(alphas, torch.zeros(1, 32, 40, 1))
    assert torch.equal(render, bg.expand(32, 40, 3)[None])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_depth_modes_on_two_stacked_gaussians(backend: str) -> None:
    z1, z2, o1, o2 = 2.0, 3.0, 0.6, 0.5
    means = torch.tensor([[0.0, 0.0, z1], [0.0, 0.0, z2]])
    args = (means, torch.tensor([[1.0, 0, 0, 0]] * 2), torch.full((2, 3), 0.05), torch.tensor([o1, o2]),
            torch.ones(2, 3), torch.eye(4)[None], torch.tensor([[[40.0, 0, 8.5], [0, 40.0, 8.5], [0, 0, 1]]]), 17, 17)  # fmt: skip
    bg = torch.tensor([[0.3, 0.3, 0.3]])
    ed, alpha_ed, _ = rasterize_gaussians(*args, backgrounds=bg, render_mode="RGB+ED", backend=backend)
    d, _, _ = rasterize_gaussians(*args, backgrounds=bg, render_mode="RGB+D", backend=backend)
    w1, w2 = o1, o2 * (1 - o1)  # at the centre pixel both Gaussians have alpha = opacity
    assert ed.shape == (1, 17, 17, 4)
    assert ed[0, 8, 8, 3].item() == pytest.approx((w1 * z1 + w2 * z2) / (w1 + w2), rel=1e-5)
    assert d[0, 8, 8, 3].item() == pytest.approx(w1 * z1 + w2 * z2, rel=1e-5)
    assert alpha_ed[0, 8, 8, 0].item() == pytest.approx(w1 + w2, rel=1e-6)
    torch.testing.assert_close(ed[..., :3], d[..., :3])  # the colour channels keep the background
    only_depth, _, _ = rasterize_gaussians(*args, render_mode="ED", backend=backend)
    torch.testing.assert_close(only_depth[..., 0], ed[..., 3])


@needs_kernel
@pytest.mark.parametrize("sh_degree", [None, 3])
@pytest.mark.parametrize("render_mode", ["RGB", "RGB+ED"])
def test_cpu_kernel_matches_the_torch_twin(sh_degree: int | None, render_mode: str) -> None:
    scene = random_scene(400, n_cams=2, sh_degree=sh_degree, seed=3)
    bg = torch.tensor([[0.2, 0.4, 0.6], [0.9, 0.1, 0.0]])
    ref = render_with_grads(scene, "torch", backgrounds=bg, render_mode=render_mode)
    out = render_with_grads(scene, "cpu", backgrounds=bg, render_mode=render_mode)
    assert out[2]["backend"] == "cpu" and ref[2]["backend"] == "torch"
    assert 0.1 < float(ref[1].mean()) < 0.9
    close(out[0], ref[0], rtol=1e-4, atol_frac=1e-5)
    close(out[1], ref[1], rtol=1e-4, atol_frac=1e-5)
    for name in PARAMS:
        close(out[3][name], ref[3][name], rtol=1e-3, atol_frac=1e-4)
    radii_ref, radii = ref[2]["radii"], out[2]["radii"]
    assert (radii - radii_ref).abs().max() <= 1  # ceil of equal numbers computed in a different order
    assert (radii == radii_ref).float().mean() > 0.995


@needs_kernel
def test_cpu_kernel_composites_wide_features_in_chunks() -> None:
    scene = random_scene(300, n_cams=1, seed=5)
    proj = _project_gaussians(scene["means"], scene["quats"], scene["scales"], scene["opacities"],
                              scene["viewmats"], scene["Ks"], 40, 32)  # fmt: skip
    feats = torch.rand(1, 300, 6)
    opac = scene["opacities"][None]
    ref = _rasterize_to_pixels(proj.means2d, proj.conics, feats, opac, proj.depths, proj.radii, 40, 32)
    out = rg_mod._rasterize_to_pixels_cpu(
        proj.means2d, proj.conics, feats, opac, proj.depths, proj.radii, 40, 32
    )
    close(out[0], ref[0], rtol=1e-4, atol_frac=1e-5)
    close(out[1], ref[1], rtol=1e-4, atol_frac=1e-5)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_gradcheck_float64(backend: str) -> None:
    dt = torch.float64
    means = torch.tensor([[0.0, 0.0, 2.0], [0.1, 0.05, 2.3], [-0.1, 0.0, 2.6], [0.05, -0.08, 1.8]], dtype=dt)
    g = torch.Generator().manual_seed(3)
    quats = torch.randn(4, 4, generator=g, dtype=dt)
    scales = 0.05 + 0.05 * torch.rand(4, 3, generator=g, dtype=dt)
    opacities = 0.3 + 0.5 * torch.rand(4, generator=g, dtype=dt)
    sh = 0.3 * torch.randn(4, 4, 3, generator=g, dtype=dt)
    K = torch.tensor([[[30.0, 0, 6], [0, 30.0, 5], [0, 0, 1]]], dtype=dt)
    bg = torch.tensor([[0.2, 0.5, 0.9]], dtype=dt)

    def fn(m, q, s, o, c):
        out = rasterize_gaussians(m, q, s, o, c, torch.eye(4, dtype=dt)[None], K, 12, 10, backgrounds=bg,
                                  render_mode="RGB+ED", sh_degree=1, backend=backend)  # fmt: skip
        return out[0], out[1]

    inputs = [t.clone().requires_grad_(True) for t in (means, quats, scales, opacities, sh)]
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)


def test_projection_and_sh_follow_gsplat_conventions() -> None:
    impl = pytest.importorskip("gsplat.cuda._torch_impl")  # pure-torch reference code, runs on CPU
    s = random_scene(300, n_cams=2, width=64, height=48)
    proj = _project_gaussians(
        s["means"], s["quats"], s["scales"], s["opacities"], s["viewmats"], s["Ks"], 64, 48
    )
    covars, _ = impl._quat_scale_to_covar_preci(s["quats"], s["scales"], compute_preci=False)
    radii, means2d, depths, conics, _ = impl._fully_fused_projection(
        s["means"], covars, s["viewmats"], s["Ks"], 64, 48
    )
    drawn = (proj.radii > 0).all(-1)
    assert drawn.sum() > 100
    assert not (drawn & ~(radii > 0).all(-1)).any()  # gsplat's box without the opacity bound is larger
    torch.testing.assert_close(proj.means2d, means2d, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(proj.depths, depths)
    torch.testing.assert_close(proj.conics[drawn], conics[drawn], rtol=1e-4, atol=1e-6)
    dirs, coeffs = torch.randn(50, 3), torch.randn(50, 16, 3)
    for degree in range(4):
        ref = impl._spherical_harmonics(degree, dirs, coeffs)
        torch.testing.assert_close(_spherical_harmonics(degree, dirs, coeffs), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(_spherical_harmonics(0, dirs, coeffs), SH_C0 * coeffs[:, 0])


def test_backend_choice_and_input_errors() -> None:
    s = random_scene(10, n_cams=1)
    with pytest.raises(ValueError, match="backend"):
        rasterize_gaussians(**s, backend="metal")
    with pytest.raises(ValueError, match="CUDA tensors"):
        rasterize_gaussians(**s, backend="cuda")
    with pytest.raises(ValueError, match="quats"):
        rasterize_gaussians(**(s | {"quats": s["quats"][:, :3]}), backend="torch")
    with pytest.raises(ValueError, match="render_mode"):
        rasterize_gaussians(**s, render_mode="normals", backend="torch")
    _, _, meta = rasterize_gaussians(**s)
    assert meta["backend"] == ("cpu" if HAS_KERNEL else "torch")
    assert meta["means2d"].shape == (1, 10, 2) and meta["radii"].dtype == torch.int32


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(-10 * torch.log10(((a - b) ** 2).mean()))


@needs_kernel  # the twin is covered by the parity tests above; a few hundred twin steps take minutes
def test_fitting_gaussians_to_an_image_raises_psnr() -> None:
    size, n = 64, 1500
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    disk = ((xs - 0.3) ** 2 + (ys + 0.2) ** 2 < 0.15).float()
    target = torch.stack([0.5 + 0.4 * torch.sin(3 * xs), 0.5 + 0.4 * torch.cos(2 * ys), 0.2 + 0.6 * disk], -1)
    g = torch.Generator().manual_seed(0)
    means = torch.cat([2 * torch.rand(n, 2, generator=g) - 1, 2 + 0.1 * torch.rand(n, 1, generator=g)], -1)
    params = {
        "means": means,
        "log_scales": torch.full((n, 3), math.log(0.03)),
        "quats": torch.tensor([1.0, 0, 0, 0]).repeat(n, 1),
        "logit_opacities": torch.zeros(n),
        "colors": torch.logit(torch.rand(n, 3, generator=g).clamp(0.05, 0.95)),
    }
    params = {k: v.requires_grad_(True) for k, v in params.items()}
    opt = torch.optim.Adam(params.values(), lr=0.01)
    K = torch.tensor([[[size / 2 * 2, 0, size / 2], [0, size / 2 * 2, size / 2], [0, 0, 1]]])

    def render() -> torch.Tensor:
        img, _, _ = rasterize_gaussians(
            params["means"], params["quats"], params["log_scales"].exp(), params["logit_opacities"].sigmoid(),
            params["colors"].sigmoid(), torch.eye(4)[None], K, size, size, backend="cpu",
        )  # fmt: skip
        return img[0]

    with torch.no_grad():
        start = psnr(render(), target)
    for _ in range(200):
        loss = (render() - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        end = psnr(render(), target)
    assert start < 15.0
    assert end > 26.0, (start, end)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_renders_through_gsplat_like_the_cpu_twin() -> None:
    pytest.importorskip("gsplat")
    scene = random_scene(500, n_cams=2, sh_degree=2, seed=7)
    bg = torch.tensor([[0.2, 0.4, 0.6], [0.9, 0.1, 0.0]])
    ref = render_with_grads(scene, "torch", backgrounds=bg, render_mode="RGB+ED")
    cuda: dict[str, Any] = {k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in scene.items()}
    out = render_with_grads(cuda, "auto", backgrounds=bg.cuda(), render_mode="RGB+ED")
    assert out[2]["backend"] == "cuda" and out[2]["means2d"].shape == (2, 500, 2)
    close(out[0].cpu(), ref[0], rtol=1e-3, atol_frac=2e-3)
    close(out[1].cpu(), ref[1], rtol=1e-3, atol_frac=2e-3)
    for name in PARAMS:
        close(out[3][name].cpu(), ref[3][name], rtol=1e-2, atol_frac=5e-3)
    with pytest.raises(ValueError, match="CUDA tensors"):
        mixed: dict[str, Any] = scene | {"means": cuda["means"]}
        rasterize_gaussians(**mixed, backend="cuda")


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("render_mode", ["RGB", "RGB+ED"])
def test_sh_degree_0_with_several_cameras_equals_its_colour(backend: str, render_mode: str) -> None:
    """Degree-0 SH is view-independent: with C cameras it renders exactly like the colours SH_C0 c + 0.5."""
    scene = random_scene(300, n_cams=3, sh_degree=0, seed=5)
    dirs = torch.randn(3, 300, 3)
    colors = _spherical_harmonics(0, dirs, scene["colors"])
    assert colors.shape == (3, 300, 3)  # one colour per (camera, Gaussian), like degrees 1..3
    torch.testing.assert_close(colors[1], SH_C0 * scene["colors"][:, 0])
    bg = torch.tensor([[0.2, 0.4, 0.6], [0.9, 0.1, 0.0], [0.0, 0.0, 0.0]])
    sh = render_with_grads(scene, backend, backgrounds=bg, render_mode=render_mode)
    flat = dict(scene, colors=(SH_C0 * scene["colors"][:, 0] + 0.5).clamp_min(0.0), sh_degree=None)
    ref = render_with_grads(flat, backend, backgrounds=bg, render_mode=render_mode)
    assert sh[0].shape == (3, scene["height"], scene["width"], 3 if render_mode == "RGB" else 4)
    assert float(ref[1].mean()) > 0.05
    close(sh[0], ref[0], rtol=1e-5, atol_frac=1e-6)
    close(sh[1], ref[1], rtol=1e-5, atol_frac=1e-6)
    for name in ("means", "quats", "scales", "opacities"):
        close(sh[3][name], ref[3][name], rtol=1e-4, atol_frac=1e-5)
