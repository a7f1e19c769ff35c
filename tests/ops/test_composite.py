"""Volume compositing of packed samples: compiled CPU and CUDA kernels against the torch twin and a naive per-ray
loop (forward and gradients), float64 gradchecks, and the edge cases (empty rays, single samples, opaque rays)."""

from __future__ import annotations

import math

import pytest
import torch

from nerfhead._backend import has_cpu_kernels
from nerfhead.ops.composite import composite

COMPILED_CPU = pytest.param(
    "cpu", marks=pytest.mark.skipif(not has_cpu_kernels(), reason="nerfhead._C (C++ CPU kernels) not built")
)
BACKENDS = ["torch", COMPILED_CPU]


def packed_batch(counts, channels=3, dtype=torch.float32, seed=0, sigma_scale=3.0):
    """Random samples for rays with the given sample counts (sorted intervals per ray)."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.tensor(counts, dtype=torch.int64)
    s = int(counts.sum())
    starts = torch.cumsum(counts, 0) - counts
    dt = torch.rand(s, generator=g, dtype=torch.float64) * 0.1 + 0.01
    ray_ids = torch.repeat_interleave(torch.arange(len(counts)), counts)
    ends = torch.zeros(s, dtype=torch.float64)
    for r, (a, n) in enumerate(zip(starts.tolist(), counts.tolist(), strict=True)):
        ends[a : a + n] = 1.0 + r * 0.01 + torch.cumsum(dt[a : a + n], 0)
    t_starts, t_ends = (ends - dt).to(dtype), ends.to(dtype)
    sigmas = (torch.rand(s, generator=g, dtype=torch.float64) * sigma_scale).to(dtype)
    rgbs = torch.rand(s, channels, generator=g, dtype=torch.float64).to(dtype)
    return sigmas, rgbs, t_starts, t_ends, torch.stack([starts, counts], -1), ray_ids


def naive(sigmas, rgbs, t_starts, t_ends, packed):
    """Per-ray python loop in float64."""
    n_rays, c = packed.shape[0], rgbs.shape[1]
    rgb, op, depth = (
        torch.zeros(n_rays, c, dtype=torch.float64),
        torch.zeros(n_rays, 1),
        torch.zeros(n_rays, 1),
    )
    op, depth = op.double(), depth.double()
    w = torch.zeros(sigmas.shape[0], dtype=torch.float64)
    for r, (a, n) in enumerate(packed.tolist()):
        trans = 1.0
        for i in range(a, a + n):
            dt = float(t_ends[i] - t_starts[i])
            alpha = 1.0 - math.exp(-float(sigmas[i]) * dt)
            w[i] = trans * alpha
            rgb[r] += w[i] * rgbs[i].double()
            op[r] += w[i]
            depth[r] += w[i] * float(t_starts[i] + t_ends[i]) / 2
            trans *= 1.0 - alpha
    return rgb, op, depth, w


COUNTS = [0, 1, 5, 0, 17, 2, 40, 0, 3]


@pytest.mark.parametrize("backend", BACKENDS)
def test_forward_matches_naive_loop(backend):
    sig, rgb, ts, te, packed, _ = packed_batch(COUNTS, channels=4)
    out = composite(sig, rgb, ts, te, packed_info=packed, backend=backend)
    ref = naive(sig, rgb, ts, te, packed)
    for a, b in zip(out, ref, strict=True):
        torch.testing.assert_close(a.double(), b, rtol=1e-5, atol=1e-6)
    assert out.opacity[[0, 3, 7]].abs().max() == 0 and out.rgb[[0, 3, 7]].abs().max() == 0


@pytest.mark.parametrize("backend", [COMPILED_CPU])
def test_compiled_matches_twin_forward_and_gradients(backend):
    counts = torch.randint(0, 60, (300,), generator=torch.Generator().manual_seed(3)).tolist()
    sig, rgb, ts, te, packed, ray_ids = packed_batch(counts, seed=4)
    g = torch.Generator().manual_seed(5)
    n_rays, s = len(counts), sig.shape[0]
    w_rgb, w_op, w_dp, w_w = (
        torch.randn(n_rays, 3, generator=g),
        torch.randn(n_rays, 1, generator=g),
        torch.randn(n_rays, 1, generator=g),
        torch.randn(s, generator=g),
    )
    results = []
    for be in ("torch", backend):
        s_ = sig.clone().requires_grad_()
        c_ = rgb.clone().requires_grad_()
        out = composite(s_, c_, ts, te, ray_indices=ray_ids, n_rays=n_rays, backend=be)
        loss = (out.rgb * w_rgb).sum() + (out.opacity * w_op).sum() + (out.depth * w_dp).sum()
        loss = loss + (out.weights * w_w).sum()
        gs, gc = torch.autograd.grad(loss, [s_, c_])
        results.append((*out, gs, gc))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_float64(backend):
    sig, rgb, ts, te, packed, _ = packed_batch([0, 1, 3, 4], channels=2, dtype=torch.float64, seed=7)
    sig.requires_grad_()
    rgb.requires_grad_()

    def fn(s, c):
        return tuple(composite(s, c, ts, te, packed_info=packed, backend=backend))

    assert torch.autograd.gradcheck(fn, (sig, rgb), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_sample_and_empty_batches(backend):
    ts, te = torch.tensor([2.0]), torch.tensor([2.5])
    out = composite(torch.tensor([0.8]), torch.tensor([[0.2, 0.4, 0.6]]), ts, te, ray_indices=torch.tensor([1]),
                    n_rays=2, backend=backend)  # fmt: skip
    w = 1 - math.exp(-0.8 * 0.5)
    torch.testing.assert_close(out.opacity, torch.tensor([[0.0], [w]]))
    torch.testing.assert_close(out.depth, torch.tensor([[0.0], [w * 2.25]]))
    torch.testing.assert_close(out.rgb[1], torch.tensor([0.2, 0.4, 0.6]) * w)
    # No samples at all.
    e = torch.zeros(0)
    sig = e.clone().requires_grad_()
    out = composite(
        sig, torch.zeros(0, 3), e, e, packed_info=torch.zeros(3, 2, dtype=torch.int64), backend=backend
    )
    assert (
        out.rgb.shape == (3, 3)
        and float(out.rgb.detach().abs().sum() + out.opacity.detach().abs().sum()) == 0
    )
    (out.opacity.sum() + out.rgb.sum()).backward()
    assert sig.grad is not None and sig.grad.shape == (0,)


@pytest.mark.parametrize("backend", BACKENDS)
def test_opaque_rays(backend):
    sig, rgb, ts, te, packed, _ = packed_batch([30, 50], seed=9, sigma_scale=400.0)
    s_ = sig.clone().requires_grad_()
    out = composite(s_, rgb, ts, te, packed_info=packed, backend=backend)
    assert float((1 - out.opacity.detach()).abs().max()) < 1e-6
    ref = naive(sig, rgb, ts, te, packed)
    torch.testing.assert_close(out.rgb.double(), ref[0], rtol=1e-5, atol=1e-5)
    out.rgb.sum().backward()
    assert s_.grad is not None and bool(torch.isfinite(s_.grad).all())
    # Samples far behind the opaque front get (almost) no gradient.
    assert float(s_.grad[20:30].abs().max()) < 1e-6


def test_ray_indices_and_packed_info_agree():
    sig, rgb, ts, te, packed, ray_ids = packed_batch(COUNTS)
    a = composite(sig, rgb, ts, te, packed_info=packed, backend="torch")
    b = composite(sig, rgb, ts, te, ray_indices=ray_ids, n_rays=len(COUNTS), backend="torch")
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    with pytest.raises(ValueError, match="packed_info"):
        composite(sig, rgb, ts, te, ray_indices=ray_ids, backend="torch")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_twin(dtype):
    counts = torch.randint(0, 60, (500,), generator=torch.Generator().manual_seed(3)).tolist()
    sig, rgb, ts, te, packed, _ = packed_batch(counts, dtype=dtype, seed=4)
    g = torch.Generator().manual_seed(5)
    w_rgb = torch.randn(len(counts), 3, generator=g, dtype=dtype)
    w_w = torch.randn(sig.shape[0], generator=g, dtype=dtype)
    results = []
    for be, dev in (("torch", "cpu"), ("cuda", "cuda")):
        s_ = sig.to(dev).requires_grad_()
        c_ = rgb.to(dev).requires_grad_()
        out = composite(s_, c_, ts.to(dev), te.to(dev), packed_info=packed.to(dev), backend=be)
        loss = (
            (out.rgb * w_rgb.to(dev)).sum()
            + out.opacity.sum()
            + out.depth.sum()
            + (out.weights * w_w.to(dev)).sum()
        )
        gs, gc = torch.autograd.grad(loss, [s_, c_])
        results.append([t.cpu() for t in (*out, gs, gc)])
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
