"""Face tracking: a monocular video or a calibrated capture -> a Drive per timestep (ICT-FaceKit head pose and 53
expression coefficients), with foreground masks and an overlay video.

Pipeline (:func:`track`): decode the video and its soundtrack (:mod:`~nerfhead.track.video`), MediaPipe Face
Mesh landmarks (:mod:`~nerfhead.track.landmarks`, the ``track`` extra), landmark -> ICT surface points
(:mod:`~nerfhead.track.correspondence`, a table built by ``scripts/make_mediapipe_correspondence.py``), a
per-sequence fit in torch (:mod:`~nerfhead.track.fit`), masks (:mod:`~nerfhead.track.masks`) and the overlay
(:mod:`~nerfhead.track.overlay`). Heavy modules (MediaPipe, the rasterizer) load lazily.

>>> from nerfhead.track import TrackConfig, track
>>> result = track("clip.mp4", "out/clip")  # doctest: +SKIP
"""

from nerfhead.track.correspondence import Correspondence, load_correspondence
from nerfhead.track.fit import (
    Observations,
    TrackFitConfig,
    TrackFitResult,
    fit_sequence,
    monocular_observations,
)
from nerfhead.track.landmarks import LandmarkConfig, Landmarks, detect_landmarks, fill_missing
from nerfhead.track.masks import MaskConfig
from nerfhead.track.pipeline import TrackConfig, TrackResult, track, track_capture, track_video
from nerfhead.track.video import Video, VideoConfig, extract_audio, read_video

__all__ = [
    "Correspondence",
    "TrackFitConfig",
    "TrackFitResult",
    "LandmarkConfig",
    "Landmarks",
    "MaskConfig",
    "Observations",
    "TrackConfig",
    "TrackResult",
    "Video",
    "VideoConfig",
    "detect_landmarks",
    "extract_audio",
    "fill_missing",
    "fit_sequence",
    "load_correspondence",
    "monocular_observations",
    "read_video",
    "track",
    "track_capture",
    "track_video",
]
