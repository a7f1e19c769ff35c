"""MediaPipe Face Mesh wrapper: landmarks on a real GRID clip, frames without a face interpolated with a warning,
no face anywhere -> InputError."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mediapipe", reason="needs the track extra (mediapipe)")

from nerfhead.assets import asset_path
from nerfhead.errors import InputError
from nerfhead.track.landmarks import (
    LandmarkConfig,
    Landmarks,
    LandmarkWarning,
    detect_landmarks,
    fill_missing,
)
from nerfhead.track.video import VideoConfig, read_video


@pytest.fixture(scope="module")
def clip():
    return read_video(asset_path("video_grid/grid_bbaf2n.mpg"), VideoConfig(max_frames=12))


def test_grid_landmarks_are_on_the_face_and_stable(clip):
    lm = detect_landmarks(clip.frames)
    assert lm.points.shape == (12, 478, 2) and bool(lm.detected.all())
    assert (lm.width, lm.height) == (360, 288)
    p = lm.points
    # the face of the GRID speaker sits in the middle of the frame
    assert 80 < p[..., 0].min() and p[..., 0].max() < 280 and 60 < p[..., 1].min() and p[..., 1].max() < 285
    # eye corners: 33 (image left = subject's right) is left of 263; nose tip 1 between them
    assert np.all(p[:, 33, 0] < p[:, 1, 0]) and np.all(p[:, 1, 0] < p[:, 263, 0])
    # a talking head barely moves in 0.5 s: frame-to-frame motion of the eye corners is sub-pixel on average
    step = np.linalg.norm(np.diff(p[:, [33, 133, 263, 362]], axis=0), axis=-1)
    assert float(step.mean()) < 1.0


def test_static_mode_agrees_with_video_mode(clip):
    a = detect_landmarks(clip.frames[:3], LandmarkConfig(static=True))
    b = detect_landmarks(clip.frames[:1])
    assert float(np.abs(a.points[0] - b.points[0]).mean()) < 1.0


def test_frames_without_a_face_are_interpolated(clip):
    frames = clip.frames.copy()
    rng = np.random.default_rng(0)
    frames[4:7] = rng.integers(0, 256, frames[4:7].shape, dtype=np.uint8)  # noise: no face
    lm = detect_landmarks(frames)
    assert list(np.nonzero(~lm.detected)[0]) == [4, 5, 6]
    with pytest.warns(LandmarkWarning, match="no face in 3 of 12 frames"):
        filled = fill_missing(lm, source="clip.mp4")
    assert bool(filled.valid.all())
    # linear in time between frames 3 and 7
    for k, t in enumerate((4, 5, 6), start=1):
        want = lm.points[3] + (lm.points[7] - lm.points[3]) * k / 4
        np.testing.assert_allclose(filled.points[t], want, atol=1e-4)


def test_no_face_anywhere_is_an_input_error():
    noise = np.random.default_rng(1).integers(0, 256, (4, 96, 128, 3), dtype=np.uint8)
    lm = detect_landmarks(noise)
    assert not lm.detected.any()
    with pytest.raises(InputError, match="no face found in any of its 4 frames") as e:
        fill_missing(lm, source="noise.mp4")
    assert e.value.one_line().startswith("error: noise.mp4: no face")


def test_fill_missing_holds_values_at_the_ends():
    pts = np.full((4, 2, 2), np.nan, np.float32)
    pts[1] = [[1, 2], [3, 4]]
    pts[2] = [[5, 6], [7, 8]]
    lm = Landmarks(pts, np.isfinite(pts).all(axis=(1, 2)), 10, 10)
    with pytest.warns(LandmarkWarning):
        f = fill_missing(lm)
    np.testing.assert_array_equal(f.points[0], pts[1])
    np.testing.assert_array_equal(f.points[3], pts[2])
