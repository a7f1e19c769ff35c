"""Streaming tracking: frames are written as they are tracked (JPEG), and a killed run resumes from its last
landmark window without tracking those frames again."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from nerfhead.assets import asset_path
from nerfhead.track import sources
from nerfhead.track.fit import TrackFitConfig
from nerfhead.track.landmarks import FaceMeshDetector, LandmarkConfig
from nerfhead.track.pipeline import TrackConfig, track
from nerfhead.track.sources import PARTIAL
from nerfhead.track.video import VideoConfig

GRID = asset_path("video_grid/grid_bbaf2n.mpg")
CONFIG = TrackConfig(
    video=VideoConfig(max_frames=30),
    fit=TrackFitConfig(rigid_iters=40, full_iters=40, offset_iters=0),
    make_masks=False,
    overlay=False,
)


class Killed(Exception):
    pass


class KillAfter:
    """A reporter that dies after ``n`` frames of the landmark stage, as a killed process would."""

    def __init__(self, n: int):
        self.n, self.stage_name = n, ""

    def stage(self, name: str, total: int) -> None:
        self.stage_name = name

    def advance(self, n: int = 1) -> None:
        if self.stage_name == "decode+landmarks":
            self.n -= n
            if self.n < 0:
                raise Killed


def test_killed_tracking_resumes_from_its_last_window(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "WINDOW", 10)
    calls = [0]
    detect = FaceMeshDetector.__call__

    def counting(self, rgb):
        calls[0] += 1
        return detect(self, rgb)

    monkeypatch.setattr(FaceMeshDetector, "__call__", counting)
    out = tmp_path / "run"
    with pytest.raises(Killed):
        track(GRID, out, CONFIG, KillAfter(25))
    with np.load(out / PARTIAL) as z:
        saved = z["points"]
        assert saved.shape[0] == 20 and z["times"].shape == (20,)  # two whole windows
    written = sorted(p.name for p in (out / "images").glob("*.jpg"))
    assert written[:20] == [f"{t:05d}.jpg" for t in range(20)]
    assert not (out / "track.json").exists()

    calls[0] = 0
    result = track(GRID, out, CONFIG)
    assert calls[0] == 10  # only the frames after the last window
    assert result.metrics["timesteps"] == 30 and not (out / PARTIAL).exists()
    lm = np.load(out / "landmarks.npz")
    np.testing.assert_array_equal(lm["points"][:20], saved)
    m = json.loads((out / "track.json").read_text())
    assert m["stages"]["decode+landmarks"]["items"] == 30 and m["frames_per_second"] > 0
    # the frames on disk are the video's frames (JPEG q95: within a few levels)
    from PIL import Image

    from nerfhead.track.video import read_video

    ref = read_video(GRID, VideoConfig(max_frames=30)).frames
    img = np.asarray(Image.open(out / "images" / "00025.jpg"))
    assert img.shape == ref[25].shape and float(np.abs(img.astype(float) - ref[25]).mean()) < 2.0


def test_partial_of_another_video_or_config_is_not_reused(tmp_path):
    a = sources._source_key(GRID, CONFIG)
    assert a == sources._source_key(GRID, CONFIG)
    assert a != sources._source_key(GRID, replace(CONFIG, video=VideoConfig(max_frames=31)))
    assert a != sources._source_key(GRID, replace(CONFIG, landmarks=LandmarkConfig(refine=False)))
