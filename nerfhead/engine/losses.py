"""Differentiable image losses shared by the avatar models (3DGS's L1 + D-SSIM).

>>> import torch
>>> x = torch.rand(1, 16, 16, 3)
>>> float(dssim(x, x)) < 1e-6, float(l1(x, x))
(True, 0.0)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def l1(a: Tensor, b: Tensor) -> Tensor:
    """Mean absolute error."""
    return (a - b).abs().mean()


def _window(size: int, sigma: float, channels: int, like: Tensor) -> Tensor:
    x = torch.arange(size, device=like.device, dtype=like.dtype) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim_map(a: Tensor, b: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Per-pixel SSIM (Gaussian window, zero padding as 3DGS), differentiable.

    Args:
        a, b: [B, H, W, C] images in [0, 1].

    Returns:
        [B, C, H, W] SSIM values.
    """
    x = a.permute(0, 3, 1, 2)
    y = b.permute(0, 3, 1, 2)
    c = x.shape[1]
    w = _window(window, sigma, c, x)
    pad = window // 2
    mu_x = F.conv2d(x, w, padding=pad, groups=c)
    mu_y = F.conv2d(y, w, padding=pad, groups=c)
    sxx = F.conv2d(x * x, w, padding=pad, groups=c) - mu_x**2
    syy = F.conv2d(y * y, w, padding=pad, groups=c) - mu_y**2
    sxy = F.conv2d(x * y, w, padding=pad, groups=c) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))


def dssim(a: Tensor, b: Tensor) -> Tensor:
    """Structural dissimilarity ``1 - SSIM`` (mean), as in 3DGS's loss. a, b: [B, H, W, C]."""
    return 1.0 - ssim_map(a, b).mean()


def photometric_loss(render: Tensor, target: Tensor, ssim_weight: float = 0.2) -> Tensor:
    """3DGS's ``(1 - w) L1 + w D-SSIM``. render, target: [B, H, W, C] in [0, 1]."""
    loss = l1(render, target)
    if ssim_weight > 0:
        loss = (1.0 - ssim_weight) * loss + ssim_weight * dssim(render, target)
    return loss
