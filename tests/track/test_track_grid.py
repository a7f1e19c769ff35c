"""``nerfhead track`` on a real GRID clip (75 frames, 360x288, 25 fps, with audio), end to end on CPU: landmark
reprojection error in pixels, and the output capture reloads with its drive, masks and audio."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("mediapipe", reason="needs the track extra (mediapipe)")

from nerfhead.assets import asset_path
from nerfhead.cli.track import main
from nerfhead.data import load_capture
from nerfhead.media.audio import load_audio

GRID = asset_path("video_grid/grid_bbaf2n.mpg")


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    out = tmp_path_factory.mktemp("grid_track")
    main(GRID, out, quiet=True)
    return out


def test_grid_reprojection_error(tracked):
    m = json.loads((tracked / "track.json").read_text())
    assert m["timesteps"] == 75 and m["observations_without_face"] == 0
    # weighted mean distance between MediaPipe's landmarks and the fitted mesh's points (measured: 0.85 px mean)
    assert m["reprojection_px"]["mean"] < 1.5
    assert m["reprojection_px"]["p95"] < 2.5
    assert 200.0 < m["focal_px"][0] < 2000.0


def test_grid_capture_reloads_with_drive_masks_and_audio(tracked):
    cap = load_capture(tracked)
    assert cap.num_timesteps == 75 and cap.num_cameras == 1 and cap.fps == 25.0
    np.testing.assert_allclose(cap.timestamps.numpy(), np.arange(75) / 25.0, atol=1e-9)
    d = cap.drive
    assert d is not None and len(d) == 75
    d.check()  # finite, expression in [0, 1]
    # the speaker talks: jawOpen moves, and the head barely turns (a GRID recording)
    assert float(d.expression[:, 26].max() - d.expression[:, 26].min()) > 0.1
    R = d.rotation - d.rotation.mean(0)
    assert float(R.norm(dim=-1).max()) < 0.2
    # masks: the face is foreground, the corners are background
    m = cap.mask(30)
    assert m is not None and m.shape == (288, 360)
    assert float(m[120:180, 140:190].mean()) == 1.0 and float(m[:20, :20].max()) == 0.0
    assert 0.1 < float(m.mean()) < 0.6
    # audio: the clip's soundtrack, starting at timestamp 0
    assert cap.audio_path is not None and cap.audio_offset == 0.0
    wav, sr = load_audio(cap.audio_path, sr=16000, warn=False)
    ref, _ = load_audio(GRID, sr=16000, warn=False)
    assert abs(len(wav) - len(ref)) <= 2
    assert float(np.corrcoef(wav[: len(ref)], ref[: len(wav)])[0, 1]) > 0.999


def test_grid_overlay_video(tracked):
    import imageio.v3 as iio

    frames = iio.imread(tracked / "overlay.mp4", plugin="pyav")
    assert frames.shape == (75, 288, 360, 3)
    src = iio.imread(tracked / "images" / "00030.jpg")
    diff = np.abs(frames[30].astype(float) - src.astype(float)).mean(-1)
    assert float(diff[150:220, 120:240].mean()) > 10.0  # drawn over the face
    assert float(diff[:40, :60].mean()) < 6.0  # background untouched (codec noise only)
    lm = np.load(tracked / "landmarks.npz")
    assert lm["points"].shape == (75, 478, 2) and bool(lm["detected"].all())
