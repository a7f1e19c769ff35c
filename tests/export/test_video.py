"""mp4 export: H.264 video + AAC audio muxed, frame count and duration as asked, audio in sync."""

from __future__ import annotations

import av
import numpy as np
import soundfile as sf

from nerfhead.export.video import write_video


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
    assert not (tmp_path / ".v.partial.mp4").exists()
