"""The fused pose-and-pack op (``nerfhead.ops.pose_splats``): the compiled CPU kernel against the torch twin, the
twin against a float64 per-Gaussian loop written from the formulas, and the checks on bad input (the packing
against viser's own: tests/viewer/test_server.py)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from nerfhead._backend import has_cpu_kernels
from nerfhead.ops.pose_splats import pose_splats

COMPILED = pytest.mark.skipif(not has_cpu_kernels(), reason="nerfhead._C (C++ CPU kernels) not built")


def _inputs(n: int = 300, v: int = 40, h: int = 16, deform: bool = True, seed: int = 0) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    q = torch.linalg.qr(torch.randn(n, 3, 3, generator=g)).Q
    x: dict[str, Any] = {
        "verts": torch.randn(v, 3, generator=g) * 0.1,
        "tri": torch.stack([torch.randperm(v, generator=g)[:3] for _ in range(n)]),
        "means": torch.randn(n, 3, generator=g) * 0.3,
        "local": (q * torch.exp(torch.randn(n, 1, 3, generator=g) - 3.0)).contiguous(),
        "rgb": torch.rand(n, 3, generator=g) * 1.4 - 0.2,  # some outside [0, 1]: clipped
        "opacities": torch.rand(n, generator=g),
    }
    if deform:
        x |= {
            "pos": torch.randn(n, h, generator=g),
            "code": torch.randn(h, generator=g),
            "weight": torch.randn(6, h, generator=g) * 0.3,
            "bias": torch.randn(6, generator=g) * 0.1,
            "gain": torch.rand(n, generator=g),
            "limit_pos": 1.0,
            "limit_rgb": 0.5,
        }
    return x


def _unpack(buf: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """centres [N, 3] float32, reserved word [N], covariance upper triangles [N, 6] float16, RGBA [N, 4] uint8."""
    b = buf.numpy()
    return (
        b[:, 0:3].view(np.float32),
        b[:, 3],
        np.ascontiguousarray(b[:, 4:7]).view(np.float16),
        np.ascontiguousarray(b[:, 7:8]).view(np.uint8),
    )


def assert_same_buffer(a: torch.Tensor, b: torch.Tensor) -> None:
    """Two packed buffers hold the same Gaussians to float rounding: centres within 1e-6 of the scene's size,
    covariances within one float16 step, colour and opacity bytes within one."""
    assert a.shape == b.shape and a.dtype == b.dtype == torch.int32
    ca, ra, va, ka = _unpack(a)
    cb, rb, vb, kb = _unpack(b)
    np.testing.assert_allclose(ca, cb, rtol=0, atol=1e-6 * max(1.0, float(np.abs(cb).max())))
    assert not ra.any() and not rb.any()
    step = np.abs(vb.astype(np.float32)) * 2.0**-10 + 2.0**-24  # one float16 ulp (and the subnormal step)
    assert (np.abs(va.astype(np.float32) - vb.astype(np.float32)) <= step).all()
    assert np.abs(ka.astype(int) - kb.astype(int)).max(initial=0) <= 1


def _naive(x: dict) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """float64 per-Gaussian loop from the op's formulas: (centre, covariance, clipped rgba) of each Gaussian."""
    f = {k: (v.double().numpy() if isinstance(v, torch.Tensor) else v) for k, v in x.items()}
    out = []
    for i in range(len(f["means"])):
        mean, rgb = f["means"][i].copy(), f["rgb"][i].copy()
        if "pos" in f:
            o = f["weight"] @ np.maximum(f["pos"][i] + f["code"], 0.0) + f["bias"]
            mean += f["limit_pos"] * np.tanh(o[:3] / f["limit_pos"])
            rgb += f["gain"][i] * f["limit_rgb"] * np.tanh(o[3:] / f["limit_rgb"])
        a, b, c = (f["verts"][j] for j in x["tri"][i].tolist())
        e1, e2 = b - a, c - a
        t = e1 / np.linalg.norm(e1)
        n = np.cross(e1, e2)
        area2 = np.linalg.norm(n)
        n = n / area2
        R = np.stack([t, np.cross(n, t), n], axis=1)
        k = 0.5 * (np.linalg.norm(e1) + area2 / np.linalg.norm(e1))
        m = k * R @ f["local"][i]
        rgba = np.clip(np.append(np.clip(rgb, 0, 1), f["opacities"][i]) * 255.0, 0, 255)
        out.append(((a + b + c) / 3 + R @ (k * mean), m @ m.T, np.floor(rgba)))
    return out


@pytest.mark.parametrize("deform", [True, False])
def test_twin_matches_a_float64_loop_of_the_formulas(deform):
    x = _inputs(n=60, deform=deform)
    centres, _, cov, rgba = _unpack(pose_splats(**x, backend="torch"))
    for i, (c, s, col) in enumerate(_naive(x)):
        np.testing.assert_allclose(centres[i], c, rtol=0, atol=2e-6)
        triu = s[np.triu_indices(3)]
        np.testing.assert_allclose(cov[i].astype(np.float64), triu, rtol=2e-3, atol=1e-7)
        assert np.abs(rgba[i].astype(float) - col).max() <= 1


@COMPILED
@pytest.mark.parametrize("deform", [True, False])
@pytest.mark.parametrize("limits", [(1.0, 0.5), (0.0, 0.0)])
def test_compiled_kernel_matches_the_twin(deform, limits):
    x = _inputs(n=5000, deform=deform)  # over the kernel's threading threshold
    if deform:
        x["limit_pos"], x["limit_rgb"] = limits
    assert_same_buffer(pose_splats(**x, backend="cpu"), pose_splats(**x, backend="torch"))


@COMPILED
def test_degenerate_triangles_stay_finite():
    x = _inputs(n=50, deform=False)
    x["verts"][x["tri"][:10, 1]] = x["verts"][x["tri"][:10, 0]]  # zero-length first edges
    for backend in ("cpu", "torch"):
        c, _, cov, _ = _unpack(pose_splats(**x, backend=backend))
        assert np.isfinite(c).all() and np.isfinite(cov.astype(np.float32)).all()


@COMPILED
def test_the_comparison_fails_on_a_moved_gaussian_and_a_changed_colour():
    """``assert_same_buffer`` can fail: one Gaussian moved by a micrometre, or one colour byte off by two."""
    x = _inputs(n=200)
    a = pose_splats(**x, backend="cpu")
    moved = dict(x, means=x["means"].clone())
    moved["means"][17, 0] += 1e-3  # local units: ~1e-4 m at these triangle sizes
    with pytest.raises(AssertionError):
        assert_same_buffer(a, pose_splats(**moved, backend="torch"))
    b = a.clone()
    b[3, 7] = b[3, 7] ^ 2  # red byte +-2
    with pytest.raises(AssertionError):
        assert_same_buffer(a, b)


@COMPILED
def test_bad_input_is_refused():
    x = _inputs(n=20)
    bad = dict(x, tri=x["tri"].clone())
    bad["tri"][3, 2] = len(x["verts"])  # out of range
    with pytest.raises(RuntimeError, match="tri out of range"):
        pose_splats(**bad, backend="cpu")
    with pytest.raises(RuntimeError, match="tri must be"):
        pose_splats(**dict(x, tri=x["tri"].int()), backend="cpu")
    with pytest.raises(RuntimeError, match="pos must be"):
        pose_splats(**dict(x, pos=x["pos"][:5]), backend="cpu")
    with pytest.raises(RuntimeError, match="limits must be"):
        pose_splats(**dict(x, limit_pos=-1.0), backend="cpu")
