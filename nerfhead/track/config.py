"""What ``nerfhead track`` can be told (:class:`TrackConfig`) and where it reports progress (:class:`Reporter`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from nerfhead.track.fit import TrackFitConfig
from nerfhead.track.landmarks import LandmarkConfig
from nerfhead.track.masks import MaskConfig
from nerfhead.track.photometric import PhotometricConfig
from nerfhead.track.video import VideoConfig


@dataclass(frozen=True)
class TrackConfig:
    """Everything ``nerfhead track`` can be told."""

    video: VideoConfig = field(default_factory=VideoConfig)
    """Frame range, stride, crop and scale of a video input."""
    landmarks: LandmarkConfig = field(default_factory=LandmarkConfig)
    """MediaPipe Face Mesh options."""
    fit: TrackFitConfig = field(default_factory=TrackFitConfig)
    """Optimisation schedule and weights."""
    photometric: PhotometricConfig = field(default_factory=PhotometricConfig)
    """Optional photometric refinement after the landmark fit (off unless ``photometric.iters`` > 0)."""
    masks: MaskConfig = field(default_factory=MaskConfig)
    """Foreground masks."""
    make_masks: bool = True
    """Write masks (a capture that has masks keeps its own)."""
    overlay: bool = True
    """Write overlay.mp4."""
    focal: float | None = None
    """Video input: focal length guess in pixels (default 1.4 x the longer side, a ~39 degree field of view);
    refined by the fit unless ``fit.fit_focal`` is False."""
    cameras: tuple[str, ...] | None = None
    """Capture input: cameras to track (names or indices); default all."""
    overlay_camera: str | None = None
    """Capture input: camera of the overlay video (name or index); default the one seeing the largest face."""
    backend: str = "auto"
    """Rasterizer backend for masks and overlay: ``auto|cuda|cpu|torch``."""


class Reporter(Protocol):
    """Progress sink: a stage with a known number of steps, then advances."""

    def stage(self, name: str, total: int) -> None: ...

    def advance(self, n: int = 1) -> None: ...


class _Silent:
    def stage(self, name: str, total: int) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass
