"""Gaussian splats bound to mesh triangles: parameters, binding (per-triangle frames), densification strategy."""

from nerfhead.splats.binding import (
    TriangleFrames,
    WorldGaussians,
    bind_to_world,
    triangle_frames,
    world_to_local,
)
from nerfhead.splats.gaussians import SH_C0, SplatParams, rgb_to_sh0, sh0_to_rgb
from nerfhead.splats.strategy import BoundStrategy, Strategy, duplicate, remove, reset_opacity, split

__all__ = [
    "SH_C0",
    "BoundStrategy",
    "SplatParams",
    "Strategy",
    "TriangleFrames",
    "WorldGaussians",
    "bind_to_world",
    "duplicate",
    "remove",
    "reset_opacity",
    "rgb_to_sh0",
    "sh0_to_rgb",
    "split",
    "triangle_frames",
    "world_to_local",
]
