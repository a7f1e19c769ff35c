"""Image metrics on float images in [0, 1], HWC or BHWC."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def mse(a: Tensor, b: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean squared error, optionally over ``mask`` (broadcastable, 1 = counted)."""
    d = (a - b) ** 2
    if mask is None:
        return d.mean()
    m = mask.expand_as(d).to(d.dtype)
    return (d * m).sum() / m.sum().clamp_min(1)


def psnr(a: Tensor, b: Tensor, mask: Tensor | None = None) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, 1]."""
    e = float(mse(a.float(), b.float(), mask))
    return float("inf") if e <= 0 else -10.0 * math.log10(e)


def _gaussian_window(size: int, sigma: float, channels: int, device, dtype) -> Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    w = g[:, None] * g[None, :]
    return w.expand(channels, 1, size, size).contiguous()


def ssim(a: Tensor, b: Tensor, window: int = 11, sigma: float = 1.5) -> float:
    """Structural similarity (Wang et al. 2004, Gaussian window 11, sigma 1.5), mean over the image(s).

    Args:
        a, b: [H, W, C] or [B, H, W, C] in [0, 1].
    """
    if a.dim() == 3:
        a, b = a[None], b[None]
    x = a.permute(0, 3, 1, 2).float()
    y = b.permute(0, 3, 1, 2).float()
    c = x.shape[1]
    w = _gaussian_window(window, sigma, c, x.device, x.dtype)
    mu_x = F.conv2d(x, w, groups=c)
    mu_y = F.conv2d(y, w, groups=c)
    sxx = F.conv2d(x * x, w, groups=c) - mu_x**2
    syy = F.conv2d(y * y, w, groups=c) - mu_y**2
    sxy = F.conv2d(x * y, w, groups=c) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return float(s.mean())
