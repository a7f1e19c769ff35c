"""The live hold's adaptive margin (:class:`HoldMargin`) and the Gaussians the page never draws, left out of every
update (:data:`MIN_ALPHA_BYTE`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nerfhead.viewer.live_speech import HOLD_ALLOWANCE_S, HoldMargin
from nerfhead.viewer.renderable import BrowserSplats
from nerfhead.viewer.splats import MIN_ALPHA_BYTE, pack_splats


def _needs(n: int, seed: int, base: float = 0.012, jitter: float = 0.004) -> np.ndarray:
    """Pose times like the demo avatar's on a quiet machine: a floor plus an exponential tail."""
    return base + np.random.default_rng(seed).exponential(jitter, n)


def test_margin_follows_the_high_percentile_of_the_needs():
    m = HoldMargin(0.015, 0.07)
    assert m.adaptive and m.value == 0.07
    for x in _needs(9, 0):  # fewer than warmup: unchanged
        m.observe(float(x))
    assert m.value == 0.07
    for x in _needs(300, 1):
        m.observe(float(x))
    want = float(np.clip(np.percentile(_needs(300, 1)[-100:], 95) + HOLD_ALLOWANCE_S, 0.015, 0.07))
    assert abs(m.value - want) < 1e-3 and m.value < 0.04  # came down from 0.07
    # Frames held by it are late (posed after their due time) rarely; held by the smallest margin (the case
    # that must fail), often.
    fresh = _needs(2000, 2)
    assert float(np.mean(fresh > m.value)) < 0.06
    assert float(np.mean(fresh > 0.015)) > 0.3


def test_margin_is_clamped_rate_limited_and_fixed_when_lo_is_hi():
    m = HoldMargin(0.015, 0.07)
    for _ in range(100):
        m.observe(0.0)  # instant poses: the floor
    assert m.value == pytest.approx(0.015)
    m.observe(1.0)  # one slow pose in 100 is not the 95th percentile: no change
    assert m.value == pytest.approx(0.015)
    steps = []
    for _ in range(100):  # a loaded machine: up to the ceiling, at most step_up per pose
        before = m.value
        m.observe(0.2)
        steps.append(m.value - before)
    assert max(steps) <= m.step_up + 1e-12 and sum(s > 0 for s in steps) >= 20
    assert m.value == pytest.approx(0.07)
    m.observe(float("nan"))  # ignored
    assert m.value == pytest.approx(0.07)
    for _ in range(100):
        m._needs.append(0.0)  # measured, not yet followed ...
    assert m.value == pytest.approx(0.07) and m.restart() == pytest.approx(0.015)  # ... a new stream jumps
    fixed = HoldMargin(0.07, 0.07)
    for x in _needs(200, 3):
        fixed.observe(float(x))
    assert not fixed.adaptive and fixed.value == 0.07
    with pytest.raises(ValueError):
        HoldMargin(-0.01, 0.07)


def _splats(opacities: list[float]) -> BrowserSplats:
    n = len(opacities)
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(n, 3, 3, generator=gen) * 0.01
    return BrowserSplats(
        torch.randn(n, 3, generator=gen),
        A @ A.transpose(1, 2) + 1e-5 * torch.eye(3),
        torch.rand(n, 3, generator=gen),
        torch.tensor(opacities).reshape(n, 1),
    )


def test_gaussians_the_page_never_draws_are_left_out():
    # alpha bytes 0, 2, 3, 2, 255, 128: bytes below 3 are left out, the rest kept bit for bit and in order
    g = _splats([0.0, 2.9 / 255, 3.2 / 255, 2.2 / 255, 1.0, 0.5])
    full, cut = pack_splats(g), pack_splats(g, MIN_ALPHA_BYTE)
    assert full.shape == (6, 8) and cut.shape == (3, 8)
    np.testing.assert_array_equal(cut, full[[2, 4, 5]])
    assert ((cut[:, 7] >> 24) >= 3).all() and ((full[:, 7] >> 24) < 3).sum() == 3  # the alpha byte is last
    np.testing.assert_array_equal(
        pack_splats(_splats([0.5, 1.0]), MIN_ALPHA_BYTE), pack_splats(_splats([0.5, 1.0]))
    )


def test_viser_never_draws_an_alpha_byte_below_the_cut():
    """viser's fragment shader discards alpha x falloff < 0.01 (falloff <= 1): an alpha byte of 2 (2/255) is
    never drawn, 3 (3/255) can be. Read from viser's shipped source, so a viser that changes it fails here."""
    import viser

    src = Path(viser.__file__).parent / "client" / "src" / "Splatting" / "GaussianSplatsHelpers.ts"
    text = " ".join(src.read_text().split())
    assert "float B = exp(A) * vRgba.a; if (B < 0.01) discard;" in text
    assert "float(rgbaUint32 >> uint(24)) / 255.0" in text  # alpha: the top byte over 255
    assert (MIN_ALPHA_BYTE - 1) / 255 < 0.01 <= MIN_ALPHA_BYTE / 255
