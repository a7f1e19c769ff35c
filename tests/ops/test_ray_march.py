"""Ray-box intersection and occupancy-grid marching: compiled CPU and CUDA kernels against the torch twin
(bit-identical samples), plus the stepping rule's invariants."""

from __future__ import annotations

import math

import pytest
import torch

from nerfhead._backend import has_cpu_kernels
from nerfhead.ops.composite import composite
from nerfhead.ops.ray_march import (
    MarchConfig,
    OccupancyBits,
    march_rays,
    pack_occupancy,
    ray_aabb_intersect,
    render_rays_early_stop,
)

COMPILED_CPU = pytest.param(
    "cpu", marks=pytest.mark.skipif(not has_cpu_kernels(), reason="nerfhead._C (C++ CPU kernels) not built")
)
BACKENDS = ["torch", COMPILED_CPU]


def make_bits(binary: torch.Tensor, aabb=(-1.0, -1.0, -1.0, 1.0, 1.0, 1.0)) -> OccupancyBits:
    """Occupancy bits of a boolean grid [C, R, R, R]."""
    box = torch.tensor(aabb, dtype=torch.float32, device=binary.device)
    return OccupancyBits(pack_occupancy(binary), box, binary.shape[1], binary.shape[0])


def random_bits(res=16, cascades=2, p=0.3, seed=0) -> OccupancyBits:
    g = torch.Generator().manual_seed(seed)
    return make_bits(torch.rand(cascades, res, res, res, generator=g) < p)


def random_rays(n=300, seed=1, radius=3.0):
    """Rays from a sphere of the given radius towards random points near the origin."""
    g = torch.Generator().manual_seed(seed)
    o = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1) * radius
    target = (torch.rand(n, 3, generator=g) * 2 - 1) * 0.8
    d = torch.nn.functional.normalize(target - o, dim=-1)
    # A few axis-parallel rays exercise zero direction components.
    d[:4] = torch.tensor([[0.0, 0.0, 1.0], [0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.6, 0.8]])
    o[:4] = torch.tensor([[0.1, 0.2, -3.0], [0.3, 3.0, -0.2], [-3.0, 0.05, 0.4], [0.2, -1.9, -2.6]])
    return o, d


def march(o, d, bits, cfg, backend, box_scale=None):
    scale = float(2 ** (bits.n_cascades - 1)) if box_scale is None else box_scale
    t0, t1, _ = ray_aabb_intersect(o, d, bits.aabb * scale, backend="torch")
    return march_rays(o, d, t0.clamp_min(0), t1, bits, cfg, backend=backend)


def assert_same_samples(a, b):
    assert torch.equal(a.packed_info.cpu(), b.packed_info.cpu())
    assert torch.equal(a.ray_indices.cpu(), b.ray_indices.cpu())
    torch.testing.assert_close(a.t_starts.cpu(), b.t_starts.cpu(), rtol=0, atol=0)
    torch.testing.assert_close(a.t_ends.cpu(), b.t_ends.cpu(), rtol=0, atol=0)
    torch.testing.assert_close(a.t_resume.cpu(), b.t_resume.cpu(), rtol=0, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ray_aabb_intersect_known_values(backend):
    o = torch.tensor([[0.0, 0.0, -3.0], [0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.5, -0.5, -2.0]])
    d = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.6, 0.8]])
    t0, t1, hit = ray_aabb_intersect(o, d, [-1, -1, -1, 1, 1, 1], backend=backend)
    assert t0[:2].tolist() == [2.0, -1.0] and t1[:2].tolist() == [4.0, 1.0]
    assert hit.tolist() == [True, True, False, True]  # the third is parallel to x, outside the x slab
    # Fourth ray: enters through z = -1 at t = 1.25, leaves through y = 1 at t = 1.5 / 0.6.
    torch.testing.assert_close(t0[3], torch.tensor(1.25))
    torch.testing.assert_close(t1[3], torch.tensor(1.5 / 0.6))
    assert t1[2] < t0[2]


@pytest.mark.parametrize("backend", [COMPILED_CPU])
def test_ray_aabb_intersect_compiled_matches_twin(backend):
    o, d = random_rays(500)
    box = torch.tensor([-0.7, -1.0, -0.4, 0.9, 1.2, 0.5])
    ref = ray_aabb_intersect(o, d, box, backend="torch")
    out = ray_aabb_intersect(o, d, box, backend=backend)
    for a, b in zip(out, ref, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "cascades,cone,dt_max", [(1, 0.0, 1e10), (2, 0.0, 1e10), (2, 1 / 64, 0.05), (3, 1 / 32, 1e10)]
)
@pytest.mark.parametrize("backend", [COMPILED_CPU])
def test_march_compiled_matches_twin(backend, cascades, cone, dt_max):
    bits = random_bits(res=16, cascades=cascades, p=0.25, seed=cascades)
    o, d = random_rays(400, seed=7, radius=2.5 * 2 ** (cascades - 1))
    cfg = MarchConfig(step_size=0.011, cone_angle=cone, dt_max=dt_max)
    ref = march(o, d, bits, cfg, "torch")
    out = march(o, d, bits, cfg, backend)
    assert ref.t_starts.numel() > 1000
    assert_same_samples(out, ref)


@pytest.mark.parametrize("backend", BACKENDS)
def test_march_full_grid_steps_regularly(backend):
    bits = make_bits(torch.ones(1, 8, 8, 8, dtype=torch.bool))
    o, d = random_rays(50, seed=3)
    step = 0.02
    t0, t1, hit = ray_aabb_intersect(o, d, bits.aabb, backend="torch")
    s = march_rays(o, d, t0, t1, bits, MarchConfig(step_size=step), backend=backend)
    start, count = s.packed_info[:, 0], s.packed_info[:, 1]
    expected = torch.where(hit, torch.ceil((t1 - t0) / step), torch.zeros_like(t0)).long()
    assert (count - expected).abs().max() <= 1  # the last step depends on float accumulation of t
    for r in torch.nonzero(count).squeeze(-1).tolist():
        a, n = int(start[r]), int(count[r])
        ts, te = s.t_starts[a : a + n], s.t_ends[a : a + n]
        # The last interval ends within half a step of t_max (a midpoint past the grid is no sample).
        assert ts[0] == t0[r] and ts[-1] < t1[r] and te[-1] >= t1[r] - step / 2 - 1e-5
        assert torch.equal(ts[1:], te[:-1])  # contiguous
        torch.testing.assert_close(te - ts, torch.full_like(ts, step), rtol=0, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_march_empty_grid_gives_no_samples(backend):
    bits = make_bits(torch.zeros(2, 8, 8, 8, dtype=torch.bool))
    o, d = random_rays(100)
    s = march(o, d, bits, MarchConfig(step_size=0.01), backend)
    assert s.t_starts.numel() == 0 and s.ray_indices.numel() == 0
    assert s.packed_info.shape == (100, 2) and int(s.packed_info[:, 1].sum()) == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_march_samples_only_in_the_occupied_cell(backend):
    binary = torch.zeros(1, 8, 8, 8, dtype=torch.bool)
    binary[0, 3, 4, 2] = True  # x in [-0.25, 0], y in [0, 0.25], z in [-0.5, -0.25]
    bits = make_bits(binary)
    n = 200
    g = torch.Generator().manual_seed(5)
    target = torch.tensor([-0.125, 0.125, -0.375]) + (torch.rand(n, 3, generator=g) - 0.5) * 0.2
    o = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1) * 3
    d = torch.nn.functional.normalize(target - o, dim=-1)
    step = 0.005
    s = march(o, d, bits, MarchConfig(step_size=step), backend)
    mid = o[s.ray_indices] + ((s.t_starts + s.t_ends) / 2)[:, None] * d[s.ray_indices]
    lo, hi = torch.tensor([-0.25, 0.0, -0.5]), torch.tensor([0.0, 0.25, -0.25])
    assert bool(((mid >= lo - 1e-5) & (mid <= hi + 1e-5)).all())
    # Every ray goes through the cell: it covers the chord through the cell up to one step at either end.
    t_in = ((torch.where(d > 0, lo, hi) - o) / d).amax(-1)
    t_out = ((torch.where(d > 0, hi, lo) - o) / d).amin(-1)
    covered = s.packed_info[:, 1].float() * step
    assert bool((covered >= t_out - t_in - 2 * step).all() and (covered <= t_out - t_in + step).all())


@pytest.mark.parametrize("backend", BACKENDS)
def test_cone_stepping_grows_with_distance(backend):
    bits = make_bits(torch.ones(2, 8, 8, 8, dtype=torch.bool))
    o, d = random_rays(60, seed=11, radius=1.9)
    cfg = MarchConfig(step_size=0.004, cone_angle=1 / 50, dt_max=0.05)
    s = march(o, d, bits, cfg, backend)
    dt = (s.t_starts * cfg.cone_angle).clamp(cfg.step_size, cfg.dt_max)
    torch.testing.assert_close(s.t_ends - s.t_starts, dt, rtol=1e-5, atol=1e-6)
    assert float(dt.max()) == pytest.approx(0.05) and float(dt.min()) == pytest.approx(0.004)


@pytest.mark.parametrize("backend", BACKENDS)
def test_marching_in_rounds_reproduces_one_march(backend):
    bits = random_bits(res=8, cascades=2, p=0.4, seed=4)
    o, d = random_rays(120, seed=9, radius=4.0)
    cfg = MarchConfig(step_size=0.03, cone_angle=1 / 100)
    full = march(o, d, bits, cfg, backend)
    t0, t1, _ = ray_aabb_intersect(o, d, bits.aabb * 2, backend="torch")
    t_cur, t_end = t0.clamp_min(0), t1
    parts: list[list[tuple[float, float]]] = [[] for _ in range(len(o))]
    for _ in range(1000):
        s = march_rays(
            o, d, t_cur, t_end, bits, MarchConfig(0.03, 1 / 100, 1e10, max_samples=5), backend=backend
        )
        assert int(s.packed_info[:, 1].max()) <= 5
        for i, r in enumerate(s.ray_indices.tolist()):
            parts[r].append((float(s.t_starts[i]), float(s.t_ends[i])))
        t_cur = s.t_resume
        if s.t_starts.numel() == 0:
            break
    assert bool((t_cur >= t_end).all())
    joined = [p for ray in parts for p in ray]
    assert joined == list(zip(full.t_starts.tolist(), full.t_ends.tolist(), strict=True))


def test_march_rejects_bad_backend_and_shapes():
    bits = random_bits(res=8, cascades=1)
    o, d = random_rays(4)
    with pytest.raises(ValueError, match="backend"):
        march_rays(o, d, torch.zeros(4), torch.ones(4), bits, backend="cuda")
    with pytest.raises(ValueError, match=r"\[R, 3\]"):
        march_rays(o[:, :2], d[:, :2], torch.zeros(4), torch.ones(4), bits, backend="torch")


def sphere_scene(res=16):
    """An opaque-ish sphere (radius 0.5, density 20) and its occupancy bits."""
    lin = (torch.arange(res) + 0.5) / res * 2 - 1
    x, y, z = torch.meshgrid(lin, lin, lin, indexing="ij")
    binary = ((x**2 + y**2 + z**2).sqrt() < 0.5 + math.sqrt(3) / res)[None]
    return make_bits(binary)


@pytest.mark.parametrize("backend", BACKENDS)
def test_early_stop_matches_full_render_and_saves_samples(backend):
    bits = sphere_scene()
    o, d = random_rays(150, seed=2)
    t0, t1, _ = ray_aabb_intersect(o, d, bits.aabb, backend="torch")
    t0 = t0.clamp_min(0)
    cfg = MarchConfig(step_size=0.01)

    def rgb_sigma(ts, te, ri):
        x = o[ri] + ((ts + te) / 2)[:, None] * d[ri]
        sigma = 20.0 * (x.norm(dim=-1) < 0.5).float()
        return torch.sigmoid(x * 3), sigma

    s = march_rays(o, d, t0, t1, bits, cfg, backend=backend)
    rgbs, sig = rgb_sigma(s.t_starts, s.t_ends, s.ray_indices)
    ref = composite(sig, rgbs, s.t_starts, s.t_ends, packed_info=s.packed_info, backend=backend)
    rgb, opacity, depth, n_eval = render_rays_early_stop(
        o, d, t0, t1, bits, rgb_sigma, cfg, samples_per_round=7, min_transmittance=0.0, backend=backend
    )
    assert n_eval == s.t_starts.numel()
    torch.testing.assert_close(rgb, ref.rgb, rtol=0, atol=2e-5)
    torch.testing.assert_close(opacity, ref.opacity, rtol=0, atol=2e-5)
    torch.testing.assert_close(depth, ref.depth, rtol=0, atol=2e-5)
    rgb2, opacity2, _, n_eval2 = render_rays_early_stop(
        o, d, t0, t1, bits, rgb_sigma, cfg, samples_per_round=4, min_transmittance=1e-2, backend=backend
    )
    assert n_eval2 < 0.6 * n_eval  # opaque sphere: rays stop soon after entering it
    assert (
        float((rgb2 - ref.rgb).abs().max()) < 1.1e-2 and float((opacity2 - ref.opacity).abs().max()) < 1.1e-2
    )


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("cascades,cone", [(1, 0.0), (3, 1 / 32)])
def test_march_cuda_matches_twin(cascades, cone):
    bits = random_bits(res=16, cascades=cascades, p=0.25, seed=cascades)
    o, d = random_rays(400, seed=7, radius=2.5 * 2 ** (cascades - 1))
    cfg = MarchConfig(step_size=0.011, cone_angle=cone, dt_max=0.2)
    ref = march(o, d, bits, cfg, "torch")
    cb = OccupancyBits(bits.bitfield.cuda(), bits.aabb.cuda(), bits.resolution, bits.n_cascades)
    out = march(o.cuda(), d.cuda(), cb, cfg, "cuda")
    assert_same_samples(out, ref)
    t_ref = ray_aabb_intersect(o, d, bits.aabb, backend="torch")
    t_out = ray_aabb_intersect(o.cuda(), d.cuda(), bits.aabb.cuda(), backend="cuda")
    for a, b in zip(t_out, t_ref, strict=True):
        assert torch.equal(a.cpu(), b)
