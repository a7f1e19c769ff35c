"""Lip-sync metrics of renders (LMD of MediaPipe lip landmarks, each set centred; inner-lip gap ratio) on real
GRID frames: the frames themselves score 0 / 1, a shifted copy too (centring), a frozen mouth scores worse."""

from __future__ import annotations

import av
import numpy as np
import pytest

from nerfhead.assets import asset_path
from nerfhead.engine.evaluate import LIPS, face_points, inner_lip_gap, lip_distance, lip_sync_scores


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """GRID bbaf2n frames 0 (mouth closed, before speech) and 24..35 (speaking)."""
    out = []
    with av.open(str(asset_path("video_grid/grid_bbaf2n.mpg"))) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i == 0 or 24 <= i < 36:
                out.append(f.to_ndarray(format="rgb24"))
            if i >= 36:
                break
    return out


def test_lip_metrics_on_real_frames(frames):
    pts = face_points(frames)
    assert np.isfinite(pts).all()  # a face in every frame
    real, closed = pts[1:], pts[:1]
    same = lip_sync_scores(real, real)
    assert same["lmd"] == 0.0 and same["gap_ratio"] == 1.0 and same["frames"] == len(real)
    # LMD centres each lip set: the same mouth 3 px to the right scores 0 too
    shifted = real + np.array([3.0, 0.0], np.float32)
    assert lip_sync_scores(real, shifted)["lmd"] == pytest.approx(0.0, abs=1e-4)
    # the case that must fail: a frozen (closed) mouth repeated over speaking frames
    frozen = lip_sync_scores(real, np.repeat(closed, len(real), 0))
    assert frozen["lmd"] > 0.5 and frozen["gap_ratio"] < 0.6
    # the outer and inner contours (20 points each) split the LMD; the per-frame list averages to it
    assert (frozen["lmd_outer"] + frozen["lmd_inner"]) / 2 == pytest.approx(frozen["lmd"], rel=1e-5)
    assert np.mean(frozen["lmd_per_frame"]) == pytest.approx(frozen["lmd"], rel=1e-5)
    assert float(inner_lip_gap(real).max()) > 2.0  # the speaking frames open the mouth
    # a missing face (NaN) is left out, not scored as 0
    holes = real.copy()
    holes[0] = np.nan
    scored = lip_sync_scores(real, holes)
    assert scored["frames"] == len(real) - 1 and np.isnan(scored["lmd_per_frame"][0])
    assert np.isnan(lip_distance(real, holes)[0]) and len(LIPS) == 40
