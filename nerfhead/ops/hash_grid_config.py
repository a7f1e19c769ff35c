"""The hash-grid layout contract: :class:`HashGridConfig` (tiny-cuda-nn's ``HashGrid`` settings) and the
per-level table layout it derives (:class:`HashGridLevels`), which every implementation of the encoding (C++,
CUDA, torch twin) reads. The learnable module is :class:`nerfhead.components.hash_grid.HashGrid`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from nerfhead.errors import InputError

MAX_LEVELS = 32
"""Most levels the compiled kernels accept."""


@dataclass(frozen=True)
class HashGridLevels:
    """Per-level layout of a hash grid (derived from a :class:`HashGridConfig`; all tuples have one entry per level,
    ``offsets`` one more)."""

    scales: tuple[float, ...]
    """``base_resolution * per_level_scale**l - 1``: input ``x`` maps to grid position ``x * scale + 0.5``."""
    resolutions: tuple[int, ...]
    """Vertices per side, ``ceil(scale) + 1``."""
    offsets: tuple[int, ...]
    """First table entry of each level; ``offsets[-1]`` is the number of entries."""
    hashed: tuple[bool, ...]
    """True where ``resolution**D`` exceeds the level's entries and the CoherentPrime hash indexes the level."""

    @property
    def sizes(self) -> tuple[int, ...]:
        """Entries per level: ``min(2**log2_hashmap_size, resolution**D rounded up to a multiple of 8)``."""
        return tuple(b - a for a, b in zip(self.offsets[:-1], self.offsets[1:], strict=True))


@dataclass(frozen=True)
class HashGridConfig:
    """Hash-grid encoding settings (tiny-cuda-nn's ``{"otype": "HashGrid", ...}``)."""

    n_input_dims: int = 3
    """Input dimension D: 2 (an image), 3 (space) or 4 (space + time or a code). Inputs are expected in [0, 1]^D."""
    n_levels: int = 16
    """Number of resolution levels."""
    n_features_per_level: int = 2
    """Features stored per table entry: 1, 2, 4 or 8."""
    log2_hashmap_size: int = 19
    """Log2 of the most entries one level may hold."""
    base_resolution: int = 16
    """Grid vertices per side at the coarsest level."""
    per_level_scale: float = 1.3819
    """Resolution growth factor between levels (1.3819 takes 16 levels from 16 to about 2048)."""
    interpolation: Literal["linear", "smoothstep"] = "linear"
    """Weights between grid vertices: linear, or smoothstep (continuous first derivative w.r.t. the input)."""

    def __post_init__(self) -> None:
        def bad(field: str, what: str, hint: str | None = None) -> InputError:
            return InputError(f"HashGridConfig.{field}", what, hint)

        if self.n_input_dims not in (2, 3, 4):
            raise bad("n_input_dims", f"must be 2, 3 or 4, got {self.n_input_dims}")
        if not 1 <= self.n_levels <= MAX_LEVELS:
            raise bad("n_levels", f"must be in [1, {MAX_LEVELS}], got {self.n_levels}")
        if self.n_features_per_level not in (1, 2, 4, 8):
            raise bad("n_features_per_level", f"must be 1, 2, 4 or 8, got {self.n_features_per_level}")
        if not 4 <= self.log2_hashmap_size <= 30:
            raise bad("log2_hashmap_size", f"must be in [4, 30], got {self.log2_hashmap_size}")
        if self.base_resolution < 2:
            raise bad("base_resolution", f"must be at least 2, got {self.base_resolution}")
        if not self.per_level_scale >= 1.0:
            raise bad("per_level_scale", f"must be >= 1, got {self.per_level_scale}")
        if self.interpolation not in ("linear", "smoothstep"):
            raise bad("interpolation", f"must be 'linear' or 'smoothstep', got {self.interpolation!r}")
        if self.levels.resolutions[-1] > 2**24:
            # float32 grid positions stop resolving integer vertices beyond 2^24
            raise bad(
                "per_level_scale",
                "finest resolution exceeds 2^24",
                hint="use fewer levels or a smaller scale",
            )

    @classmethod
    def spanning(
        cls,
        base_resolution: int,
        finest_resolution: int,
        n_levels: int,
        n_features_per_level: int = 2,
        log2_hashmap_size: int = 19,
        n_input_dims: int = 3,
    ) -> HashGridConfig:
        """A grid whose levels grow from ``base_resolution`` to ``finest_resolution`` (how fields state it)."""
        return cls(
            n_input_dims=n_input_dims,
            n_levels=n_levels,
            n_features_per_level=n_features_per_level,
            log2_hashmap_size=log2_hashmap_size,
            base_resolution=base_resolution,
            per_level_scale=cls.scale_for(base_resolution, finest_resolution, n_levels),
        )

    @staticmethod
    def scale_for(base_resolution: int, finest_resolution: int, n_levels: int) -> float:
        """The ``per_level_scale`` that grows ``base_resolution`` to ``finest_resolution`` over ``n_levels``."""
        if n_levels < 2:
            return 1.0
        return math.exp(math.log(finest_resolution / base_resolution) / (n_levels - 1))

    @cached_property
    def levels(self) -> HashGridLevels:
        """The per-level layout (scales, resolutions, table offsets, dense or hashed)."""
        max_size = 2**self.log2_hashmap_size
        scales, resolutions, offsets, hashed = [], [], [0], []
        for level in range(self.n_levels):
            scale = self.base_resolution * self.per_level_scale**level - 1.0
            resolution = math.ceil(scale) + 1
            dense = resolution**self.n_input_dims
            size = min(max_size, (dense + 7) // 8 * 8)
            scales.append(scale)
            resolutions.append(resolution)
            offsets.append(offsets[-1] + size)
            hashed.append(dense > size)
        return HashGridLevels(tuple(scales), tuple(resolutions), tuple(offsets), tuple(hashed))

    @property
    def n_entries(self) -> int:
        """Table entries over all levels."""
        return self.levels.offsets[-1]

    @property
    def n_params(self) -> int:
        """Length of the flat table: entries times features per level."""
        return self.n_entries * self.n_features_per_level

    @property
    def output_dim(self) -> int:
        """Width of the encoding: ``n_levels * n_features_per_level``."""
        return self.n_levels * self.n_features_per_level


class SpannedGrid:
    """Mixin for the dataclass configs of fields that state their hash grid as levels growing from
    ``base_resolution`` to ``finest_resolution``: the dataclass declares the five fields (with its own defaults),
    :meth:`grid` turns them into the :class:`HashGridConfig`."""

    base_resolution: int
    finest_resolution: int
    n_levels: int
    n_features_per_level: int
    log2_hashmap_size: int

    def grid(self) -> HashGridConfig:
        """The hash-grid config (:meth:`HashGridConfig.spanning` of the five fields)."""
        return HashGridConfig.spanning(
            self.base_resolution,
            self.finest_resolution,
            self.n_levels,
            self.n_features_per_level,
            self.log2_hashmap_size,
        )
