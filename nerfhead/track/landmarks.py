"""Dense 2D face landmarks from MediaPipe Face Mesh (468 points, 478 with the iris refinement).

MediaPipe 0.10.21 ships its face detector and face-mesh models inside the wheel (``pip install
'nerfhead[track]'``), so nothing is downloaded at run time. Landmarks come back as continuous pixel coordinates
(x right, y down; MediaPipe's normalised coordinates times the image size, pixel centres at +0.5 as in
docs/conventions.md). A frame without a detected face has NaN landmarks; :func:`fill_missing` interpolates
them in time (with a warning) and turns "no face anywhere" into an ``InputError``.

>>> lm = detect_landmarks(video.frames)  # doctest: +SKIP
>>> lm = fill_missing(lm, source=video.source)  # doctest: +SKIP
>>> lm.points.shape  # doctest: +SKIP
(75, 478, 2)
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nerfhead.errors import InputError

NUM_MESH_LANDMARKS = 468
"""Face-mesh points without the iris refinement."""
NUM_LANDMARKS = 478
"""Face-mesh points with ``refine_landmarks=True`` (468 + 5 per iris)."""


class LandmarkWarning(UserWarning):
    """Frames without a face (their landmarks are interpolated)."""


@dataclass(frozen=True)
class LandmarkConfig:
    """MediaPipe Face Mesh options."""

    refine: bool = True
    """Iris refinement (478 points; also sharpens the eye and lip points)."""
    static: bool = False
    """Treat frames as unrelated images (detect in every frame) instead of tracking through the video."""
    min_detection_confidence: float = 0.5
    """Face detector threshold in (0, 1)."""
    min_tracking_confidence: float = 0.5
    """Below this the tracker falls back to detection (video mode)."""


@dataclass(frozen=True)
class Landmarks:
    """Per-frame landmarks of one camera.

    Attributes:
        points: [T, P, 2] float32 continuous pixel coordinates; NaN rows where ``detected`` is False.
        detected: [T] bool, a face was found in that frame (False also for interpolated frames).
        width: image width in pixels.
        height: image height in pixels.
    """

    points: np.ndarray
    detected: np.ndarray
    width: int
    height: int

    def __len__(self) -> int:
        return int(self.points.shape[0])

    @property
    def valid(self) -> np.ndarray:
        """[T] bool: the frame has finite landmarks (detected or filled in)."""
        return np.isfinite(self.points).all(axis=(1, 2))

    def subset(self, index: np.ndarray | Sequence[int] | slice) -> Landmarks:
        """Frames selected by ``index``."""
        return Landmarks(self.points[index], self.detected[index], self.width, self.height)


def import_mediapipe() -> Any:
    """The ``mediapipe`` module, quietening its C++ logging; InputError naming the install step if missing."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import mediapipe as mp

        _ = mp.solutions.face_mesh
    except (ImportError, AttributeError) as e:
        raise InputError(
            None,
            f"face tracking needs MediaPipe Face Mesh ({type(e).__name__}: {e})",
            hint="pip install 'nerfhead[track]' (mediapipe==0.10.21)",
        ) from None
    return mp


class FaceMeshDetector:
    """A MediaPipe Face Mesh session over the frames of one camera (use as a context manager).

    Args:
        config: detector options.
    """

    def __init__(self, config: LandmarkConfig | None = None):
        self.config = config or LandmarkConfig()
        mp = import_mediapipe()
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=self.config.static,
            max_num_faces=1,
            refine_landmarks=self.config.refine,
            min_detection_confidence=self.config.min_detection_confidence,
            min_tracking_confidence=self.config.min_tracking_confidence,
        )
        self.num_points = NUM_LANDMARKS if self.config.refine else NUM_MESH_LANDMARKS

    def __enter__(self) -> FaceMeshDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._mesh.close()

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        """Landmarks of the largest face in one image.

        Args:
            rgb: [H, W, 3] uint8 RGB (float images in [0, 1] are converted).

        Returns:
            [P, 2] float32 continuous pixel coordinates, or None when no face is found.
        """
        if rgb.dtype != np.uint8:
            rgb = (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        h, w = rgb.shape[:2]
        res = self._mesh.process(np.ascontiguousarray(rgb[..., :3]))
        if not res.multi_face_landmarks:
            return None
        lm = res.multi_face_landmarks[0].landmark
        xy = np.array([(p.x, p.y) for p in lm], dtype=np.float32)
        return xy * np.array([w, h], dtype=np.float32)


def detect_landmarks(
    frames: np.ndarray | Iterable[np.ndarray],
    config: LandmarkConfig | None = None,
    progress: Callable[[int], None] | None = None,
) -> Landmarks:
    """Run Face Mesh over the frames of one camera, in order.

    Args:
        frames: [T, H, W, 3] uint8 array or an iterable of [H, W, 3] images of one size.
        config: detector options.
        progress: called with 1 after each frame (e.g. a rich progress advance).

    Returns:
        :class:`Landmarks` with NaN where no face was found (nothing is filled in here).
    """
    pts: list[np.ndarray | None] = []
    size: tuple[int, int] | None = None
    with FaceMeshDetector(config) as det:
        P = det.num_points
        for rgb in frames:
            size = size or (int(rgb.shape[1]), int(rgb.shape[0]))
            pts.append(det(rgb))
            if progress is not None:
                progress(1)
    if size is None:
        raise ValueError("detect_landmarks got no frames")
    out = np.full((len(pts), P, 2), np.nan, np.float32)
    for i, p in enumerate(pts):
        if p is not None:
            out[i] = p
    return Landmarks(out, np.array([p is not None for p in pts]), size[0], size[1])


def fill_missing(lm: Landmarks, source: str | os.PathLike | None = None) -> Landmarks:
    """Interpolate frames without a face linearly in time (held constant before the first and after the last
    detection), warning how many were filled.

    Args:
        lm: landmarks with NaN rows for missing frames.
        source: the video or camera named in the warning and the error.

    Raises:
        InputError: no frame has a face.
    """
    ok = lm.valid
    if not ok.any():
        raise InputError(
            source, f"no face found in any of its {len(lm)} frames", hint="is a face visible and lit?"
        )
    if ok.all():
        return lm
    T = len(lm)
    t = np.arange(T)
    good = t[ok]
    flat = lm.points.reshape(T, -1)
    filled = np.empty_like(flat)
    for j in range(flat.shape[1]):
        filled[:, j] = np.interp(t, good, flat[good, j])
    bad = t[~ok]
    shown = ", ".join(str(int(i)) for i in bad[:8]) + (", ..." if len(bad) > 8 else "")
    warnings.warn(
        f"{source or 'video'}: no face in {len(bad)} of {T} frames ({shown}); landmarks interpolated",
        LandmarkWarning,
        stacklevel=2,
    )
    return Landmarks(filled.reshape(lm.points.shape), lm.detected, lm.width, lm.height)
