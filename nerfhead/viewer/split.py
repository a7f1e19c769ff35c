"""Would a static splat node pay? The share of the browser-drawn head that never visibly moves.

A head split into a static splat node (sent once, then moved only by the head's rigid transform as a node
transform) and a dynamic one (re-sent per pose) would send less per frame. :func:`split_static` measures how much a
static node could hold: it poses the head in head coordinates over a sample of the drive range
(:func:`sample_drives`: each expression slider at 1, the head-pose sliders' limits, random mixes, the timeline) and
counts the Gaussians whose head-frame Gaussian never *visibly* moves from its neutral pose:

- its centre and its 3-sigma ellipsoid move at most ``threshold_px`` pixels at the viewer's default camera
  (:func:`pixels_per_metre`, in a :data:`REFERENCE_HEIGHT_PX`-pixel-tall window), with the ellipsoid's move
  bounded by ``3 sqrt(||dSigma||_F)`` (for PSD matrices ``||A^1/2 - B^1/2||_2 <= ||A - B||_2^1/2``);
- its colour moves by less than ``colour_bytes`` 8-bit steps (the page draws 8-bit colour).

``scripts/bench_viewer.py`` reports it (``static_share``). On the demo avatar it is 0.3% at 0.25 px and one step
(the deformation network, conditioned on all expression coefficients and the head rotation, moves or recolours
nearly every Gaussian), and viser's page merges all splat nodes into one buffer that it re-uploads and re-sorts
whenever any node changes, so the viewer does not split the head (BENCHMARKS.md, issue 19, session 8).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from nerfhead.data.drive import Drive
from nerfhead.data.expressions import NUM_EXPRESSIONS
from nerfhead.viewer.renderable import BrowserSplats

REFERENCE_HEIGHT_PX = 1080
"""Window height the pixel threshold refers to (a full-HD browser window; smaller windows move less)."""


def pixels_per_metre(fov_deg: float, distance: float, height_px: int = REFERENCE_HEIGHT_PX) -> float:
    """Pixels per metre, at ``distance`` metres from a pinhole camera of vertical field of view ``fov_deg``
    shown ``height_px`` pixels tall."""
    return 0.5 * height_px / math.tan(math.radians(fov_deg) / 2) / distance


def movement(ref: BrowserSplats, g: BrowserSplats, px_per_metre: float) -> tuple[Tensor, Tensor]:
    """Per Gaussian: (how far any point of its 3-sigma ellipsoid can have moved from ``ref``, in pixels: the
    centre's move plus ``3 sqrt(||dSigma||_F)``; the largest change of a colour channel, in 8-bit steps). Both
    in the same (head) frame."""
    dc = (g.centers - ref.centers).norm(dim=-1)
    dcov = (g.covariances - ref.covariances).flatten(1).norm(dim=-1)
    px = (dc + 3.0 * dcov.sqrt()) * px_per_metre
    return px, (g.rgbs - ref.rgbs).abs().amax(-1) * 255.0


def sample_drives(
    timeline: Drive | None, n_random: int = 16, n_timeline: int = 48, seed: int = 0
) -> list[Drive]:
    """The drives a split is measured over: neutral; each expression at 1 alone; all at 1; each head-pose
    slider at its limits (yaw 60, pitch 45, roll 30 degrees); random expression mixes under random head poses;
    and up to ``n_timeline`` evenly spaced timeline frames (with ``timeline``)."""
    from nerfhead.geometry import matrix_to_axis_angle
    from nerfhead.viewer.state import pose_offset_matrix

    drives = [Drive.neutral(1)]
    for j in range(NUM_EXPRESSIONS):
        d = Drive.neutral(1)
        d.expression[0, j] = 1.0
        drives.append(d)
    d = Drive.neutral(1)
    d.expression[:] = 1.0
    drives.append(d)
    limits = ((60.0, 0.0, 0.0), (0.0, 45.0, 0.0), (0.0, 0.0, 30.0))
    for lim in limits:
        for s in (-1.0, 1.0):
            d = Drive.neutral(1)
            d.rotation[0] = matrix_to_axis_angle(pose_offset_matrix(*(s * v for v in lim)))
            drives.append(d)
    g = torch.Generator().manual_seed(seed)
    for _ in range(n_random):
        d = Drive.neutral(1)
        d.expression.uniform_(0.0, 1.0, generator=g)
        ypr = [(2 * float(torch.rand(1, generator=g)) - 1) * v for v in (60.0, 45.0, 30.0)]
        d.rotation[0] = matrix_to_axis_angle(pose_offset_matrix(*ypr))
        drives.append(d)
    if timeline is not None and len(timeline) > 0:
        n = len(timeline)
        m = min(n, n_timeline)
        for i in sorted({round(k * (n - 1) / max(m - 1, 1)) for k in range(m)}):
            drives.append(timeline[i])
    return drives


@dataclass(frozen=True)
class StaticSplit:
    """Which Gaussians a static node could hold (:func:`split_static`)."""

    static: Tensor
    """[N] bool: Gaussians that never moved visibly over the sample."""
    worst_px: Tensor
    """[N] each Gaussian's largest move over the sample (centre or 3-sigma ellipsoid, pixels)."""
    worst_colour: Tensor
    """[N] each Gaussian's largest colour change over the sample (8-bit steps)."""

    @property
    def share(self) -> float:
        """Share of the Gaussians that are static."""
        return float(self.static.float().mean()) if len(self.static) else 0.0


def split_static(
    posed: Iterable[BrowserSplats], px_per_metre: float, threshold_px: float = 0.25, colour_bytes: float = 1.0
) -> StaticSplit:
    """The Gaussians of a head posed over a sample of drives (``posed``: its head-frame Gaussians per drive; the
    first is the reference, normally the neutral drive) that never move visibly: no more than ``threshold_px``
    pixels (centre or 3-sigma ellipsoid) and a colour change below ``colour_bytes`` 8-bit steps."""
    it = iter(posed)
    ref = next(it)
    worst_px, worst_col = torch.zeros(len(ref.centers)), torch.zeros(len(ref.centers))
    for g in it:
        px, col = movement(ref, g, px_per_metre)
        worst_px, worst_col = torch.maximum(worst_px, px), torch.maximum(worst_col, col)
    return StaticSplit((worst_px <= threshold_px) & (worst_col < colour_bytes), worst_px, worst_col)
