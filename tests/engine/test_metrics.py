"""PSNR and SSIM against closed forms and scikit-image."""

from __future__ import annotations

import math

import numpy as np
import torch
from skimage.metrics import structural_similarity

from nerfhead.engine.metrics import psnr, ssim


def test_psnr_closed_form():
    a = torch.zeros(8, 8, 3)
    b = torch.full((8, 8, 3), 0.1)
    assert math.isclose(psnr(a, b), 20.0, rel_tol=1e-5)
    mask = torch.zeros(8, 8, 1)
    mask[:4] = 1
    b2 = b.clone()
    b2[4:] = 1.0  # outside the mask: ignored
    assert math.isclose(psnr(a, b2, mask), 20.0, rel_tol=1e-5)


def test_ssim_matches_skimage():
    rng = np.random.default_rng(0)
    a = rng.random((48, 40, 3)).astype(np.float32)
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1).astype(np.float32)
    ref: float = structural_similarity(  # pyright: ignore[reportAssignmentType]
        a, b, channel_axis=2, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    ours = ssim(torch.from_numpy(a), torch.from_numpy(b))
    assert abs(ours - ref) < 2e-3, (ours, ref)
    assert abs(ssim(torch.from_numpy(a), torch.from_numpy(a)) - 1.0) < 1e-6
