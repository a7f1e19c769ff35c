"""mp4 export: H.264 video + AAC audio muxed, frame count and duration as asked, audio in sync."""

from __future__ import annotations

import av
import numpy as np
import pytest
import soundfile as sf

from nerfhead.media.video import write_video


def test_video_with_audio_in_sync(tmp_path):
    sr, fps, n = 16000, 25.0, 50
    t = np.arange(int(sr * n / fps)) / sr
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    tone[: int(0.4 * sr)] = 0.0  # silence, then a tone starting at 0.4 s
    sf.write(tmp_path / "a.wav", tone.astype(np.float32), sr)

    def frames():
        for i in range(n):
            f = np.zeros((64, 48, 3), np.float32)
            f[..., 0] = 1.0 if i >= 10 else 0.0  # red from frame 10 = 0.4 s, with the tone
            yield f

    out = write_video(frames(), tmp_path / "v.mp4", fps, audio_path=tmp_path / "a.wav")
    with av.open(str(out)) as c:
        vs = c.streams.video[0]
        aus = c.streams.audio
        assert vs.codec_context.name == "h264" and len(aus) == 1 and aus[0].codec_context.name == "aac"
        reds = [float(fr.to_ndarray(format="rgb24")[..., 0].mean()) for fr in c.decode(video=0)]
    assert len(reds) == n
    first_red = next(i for i, r in enumerate(reds) if r > 128)
    assert first_red == 10
    with av.open(str(out)) as c:
        a = np.concatenate([fr.to_ndarray().mean(0) for fr in c.decode(audio=0)])
        rate = c.streams.audio[0].rate
    env = np.abs(a)
    onset = np.argmax(env > 0.1) / rate
    assert abs(onset - 0.4) < 0.05, onset  # audio onset within ~1 frame of the video onset
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "v.mp4"]  # no temporary file left


def test_odd_size_is_padded_and_a_failed_write_keeps_the_old_file(tmp_path):
    """Odd frame sizes are padded to even (yuv420p); an exception mid-stream leaves the previous file as it was."""
    import av

    path = write_video((np.full((33, 45, 3), 200, np.uint8) for _ in range(3)), tmp_path / "v.mp4", 25.0)
    with av.open(str(path)) as c:
        fr = next(c.decode(video=0))
        assert (fr.width, fr.height) == (46, 34)
    before = path.read_bytes()

    def broken():
        yield np.zeros((32, 32, 3), np.uint8)
        raise RuntimeError("renderer died")

    with pytest.raises(RuntimeError, match="renderer died"):
        write_video(broken(), path, 25.0)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]
