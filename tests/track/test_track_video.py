"""Video decoding for tracking: frames, timestamps, stride/crop/scale, the soundtrack aligned by timestamp, and
one-line InputErrors for bad videos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from nerfhead.assets import asset_path
from nerfhead.errors import InputError
from nerfhead.media.audio import load_audio
from nerfhead.track.video import VideoConfig, extract_audio, read_video

GRID = asset_path("video_grid/grid_bbaf2n.mpg")


def test_grid_clip_frames_and_timestamps():
    v = read_video(GRID)
    assert v.frames.shape == (75, 288, 360, 3) and v.frames.dtype == np.uint8
    np.testing.assert_allclose(v.timestamps, np.arange(75) / 25.0, atol=1e-9)
    assert v.fps == 25.0 and v.has_audio and v.size == (360, 288)
    assert 40 < v.frames.mean() < 200  # a real picture, not black


def test_stride_range_crop_scale():
    full = read_video(GRID, VideoConfig(max_frames=12))
    v = read_video(GRID, VideoConfig(start=0.2, duration=0.4, stride=2))
    # frames shown at 0.2 .. 0.56 s, every other one, timestamps re-based to the start
    np.testing.assert_allclose(v.timestamps, [0.0, 0.08, 0.16, 0.24, 0.32], atol=1e-9)
    assert v.fps == 12.5
    np.testing.assert_array_equal(v.frames[0], full.frames[5])
    c = read_video(GRID, VideoConfig(max_frames=3, crop=(100, 40, 160, 200)))
    np.testing.assert_array_equal(c.frames, full.frames[:3, 40:240, 100:260])
    s = read_video(GRID, VideoConfig(max_frames=2, crop=(100, 40, 160, 200), scale=0.5))
    assert s.frames.shape == (2, 100, 80, 3)
    # box-filter downscale: the mean colour is kept
    assert abs(float(s.frames.mean()) - float(c.frames[:2].mean())) < 1.0
    m = read_video(GRID, VideoConfig(max_frames=1, max_size=180))
    assert m.frames.shape == (1, 144, 180, 3)


def test_audio_extracted_and_aligned(tmp_path):
    ref, sr = load_audio(GRID, sr=44100, warn=False)
    wav = extract_audio(GRID, tmp_path / "a.wav")
    assert wav is not None
    x, sr2 = soundfile.read(wav, dtype="float32")
    assert sr2 == 44100 and abs(len(x) - len(ref)) == 0
    np.testing.assert_allclose(x, ref, atol=1.0 / 32767 + 1e-6)  # 16-bit quantisation only
    # from 1 s on: sample 0 of the wav is source time 1 s (capture timestamp 0 of a clip started at 1 s)
    late = extract_audio(GRID, tmp_path / "b.wav", start=1.0, duration=0.5)
    assert late is not None
    y, _ = soundfile.read(late, dtype="float32")
    assert len(y) == 22050
    np.testing.assert_allclose(y, ref[44100 : 44100 + 22050], atol=1.0 / 32767 + 1e-6)


def _zero_frame_video(path: Path) -> None:
    """An AVI with a video stream header and no frames (mp4 drops streams without packets)."""
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        c.start_encoding()


def test_bad_videos_raise_one_line_input_errors(tmp_path):
    missing = tmp_path / "nope.mp4"
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    zero = tmp_path / "zero.avi"
    _zero_frame_video(zero)
    audio_only = asset_path("audio/en_ljspeech_LJ050-0131.wav")
    cases = [
        (missing, "not found"),
        (tmp_path, "not a file"),
        (empty, "empty file"),
        (junk, "not a readable video|no decodable frames|corrupt"),
        (zero, "zero frames"),
        (audio_only, "no video stream"),
    ]
    for path, what in cases:
        with pytest.raises(InputError, match=what) as e:
            read_video(path)
        assert "\n" not in e.value.one_line() and str(path) in e.value.one_line()
    with pytest.raises(InputError, match="does not fit"):
        read_video(GRID, VideoConfig(crop=(300, 0, 100, 100)))
    with pytest.raises(InputError, match="no frames between"):
        read_video(GRID, VideoConfig(start=10.0))
    with pytest.raises(InputError, match="exceed 0.001 GiB"):  # 360x288x3 bytes a frame: the 4th is too many
        read_video(GRID, VideoConfig(max_memory_gb=0.001))


@pytest.mark.parametrize(
    ("suffix", "codec"), [(".webm", "libvpx-vp9"), (".mov", "libx264"), (".mp4", "libx264")]
)
def test_other_containers_decode_with_timestamps(tmp_path, suffix, codec):
    """Frames written by FFmpeg into webm/mov/mp4 come back in order, 25 fps, timestamps t / 25."""
    import av

    path = tmp_path / f"clip{suffix}"
    levels = [30, 90, 150, 210, 250, 120]
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for v in levels:
            for p in s.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), v, np.uint8), format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    v = read_video(path)
    assert v.frames.shape == (6, 48, 64, 3) and not v.has_audio
    np.testing.assert_allclose(v.timestamps, np.arange(6) / 25.0, atol=1e-6)
    np.testing.assert_allclose(v.frames.reshape(6, -1).mean(1), levels, atol=3.0)
