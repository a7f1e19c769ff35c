"""Chroma statistics of real frames: which colours are the head's and which the backdrop's.

A tracked video's masks come from the fitted mesh and a segmenter; at the silhouette (ears, cheek, neck) they
take in a few pixels of wall. The head's colours are measured inside the mask eroded by a few pixels (no wall
there), the backdrop's farther than a few pixels outside the mask; a chroma (Cb, Cr) bin is **head-like** when
its share of the head's pixels is at least its share of the backdrop's (both smoothed over the 3x3 neighbouring
bins). The fit keeps the wall-coloured pixels at a mask's edge out of the head (:func:`refine_mask`) and the
novel-view evaluation keeps them out of its colour reference (:func:`nerfhead.models.run_eval.head_reference`).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

BINS = 48
"""Histogram bins per chroma axis over [-0.5, 0.5] (about 0.02 each)."""


def chroma(rgb: Tensor) -> Tensor:
    """[..., 3] RGB in [0, 1] → [..., 2] (Cb, Cr) chroma (BT.601)."""
    m = torch.tensor(
        [[-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], dtype=rgb.dtype, device=rgb.device
    )
    return rgb @ m.T


def chroma_bin(rgb: Tensor, bins: int = BINS) -> Tensor:
    """[N] bin of each pixel of ``rgb`` [..., 3] in a ``bins`` x ``bins`` histogram of (Cb, Cr) over
    [-0.5, 0.5]^2."""
    c = chroma(rgb.double().reshape(-1, 3))
    i = ((c + 0.5) * bins).long().clamp(0, bins - 1)
    return i[:, 0] * bins + i[:, 1]


def chroma_histogram(rgb: Tensor, bins: int = BINS) -> Tensor:
    """[bins * bins] float64 pixel counts of ``rgb`` [..., 3] per chroma bin (:func:`chroma_bin`)."""
    return torch.bincount(chroma_bin(rgb, bins).cpu(), minlength=bins * bins).double()


class ChromaModel:
    """The chroma distribution of a set of pixels as a 2D histogram of (Cb, Cr) over [-0.5, 0.5]^2 and its
    99.9% highest-density region: the fewest bins that hold 99.9% of the pixels. A pixel whose chroma falls
    outside that region is a colour outlier (0.1% of the pixels themselves, by construction)."""

    def __init__(self, rgb: Tensor, share: float = 0.999, bins: int = BINS):
        self.bins = bins
        h = chroma_histogram(rgb, bins)
        order = h.argsort(descending=True)
        k = int((h[order].cumsum(0) / h.sum().clamp_min(1) < share).sum()) + 1
        self.inside = torch.zeros(bins * bins, dtype=torch.bool)
        self.inside[order[:k]] = True

    def bin(self, rgb: Tensor) -> Tensor:
        """Histogram bin of each pixel of ``rgb`` [..., 3]."""
        return chroma_bin(rgb, self.bins).cpu()

    def is_outlier(self, rgb: Tensor) -> Tensor:
        """[N] bool: the pixel's chroma lies outside the 99.9% region."""
        return ~self.inside[self.bin(rgb)]

    def outside(self, rgb: Tensor) -> float:
        """Share of ``rgb`` [N, 3] pixels whose chroma lies outside the 99.9% region."""
        return float(self.is_outlier(rgb).double().mean()) if rgb.numel() else float("nan")


def grow(mask: Tensor, px: int) -> Tensor:
    """[H, W] bool ``mask`` dilated by ``px`` pixels (a square of side 2 px + 1); negative ``px`` erodes."""
    if px == 0:
        return mask
    x = mask.float() if px > 0 else (~mask).float()
    k = abs(px)
    x = torch.nn.functional.max_pool2d(x[None, None], 2 * k + 1, stride=1, padding=k)[0, 0] > 0.5
    return x if px > 0 else ~x


def head_like_bins(
    views: Iterable[tuple[Tensor, Tensor]], core_px: int = 6, wall_px: int = 4, bins: int = BINS
) -> Tensor:
    """[bins * bins] bool: the chroma bins whose share of the head's pixels (inside each mask eroded by
    ``core_px``) is at least their share of the backdrop's (farther than ``wall_px`` from the mask), both
    smoothed over the 3x3 neighbouring bins. Bins neither shows are head-like.

    Args:
        views: (image [H, W, 3] in [0, 1], mask [H, W] bool) of a few frames.
    """
    head = torch.zeros(bins * bins, dtype=torch.float64)
    wall = torch.zeros(bins * bins, dtype=torch.float64)
    for img, mask in views:
        head += chroma_histogram(img[grow(mask, -core_px)], bins)
        wall += chroma_histogram(img[~grow(mask, wall_px)], bins)

    def density(h: Tensor) -> Tensor:
        d = (h / h.sum().clamp_min(1)).reshape(1, 1, bins, bins)
        return torch.nn.functional.avg_pool2d(d, 3, stride=1, padding=1).reshape(-1)

    return density(head) >= density(wall)


def refine_mask(img: Tensor, mask: Tensor, head_like: Tensor, band_px: int = 6) -> Tensor:
    """[H, W] bool ``mask`` without the pixels within ``band_px`` of its edge whose chroma is not head-like
    (``head_like``: :func:`head_like_bins`), i.e. without the wall a tracked mask's edge takes in."""
    edge = mask & ~grow(mask, -band_px)
    wall = ~head_like.to(img.device)[chroma_bin(img, int(round(len(head_like) ** 0.5)))].reshape(mask.shape)
    return mask & ~(edge & wall)
