"""``nerfhead drive RUN --audio CLIP``, end to end on a small fitted avatar with every bundled speech clip: an
H.264 + AAC mp4 whose audio is the clip, in sync and as long as the video; the mouth moves with the speech;
curves.csv and drive.npz next to it; orbit and nerfstudio camera paths; bad inputs answer in one line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import av
import numpy as np
import pytest

from nerfhead.audio.train import pearson
from nerfhead.data.drive import Drive
from nerfhead.data.expressions import EXPRESSION_INDEX
from nerfhead.media.audio import load_audio
from tests.models.tiny_capture import fit_tiny_run_cli

REPO = Path(__file__).resolve().parents[2]
CLIPS = sorted(p.name for p in (REPO / "scenes/assets/audio").iterdir() if p.suffix in (".wav", ".ogg"))
FPS = 25.0


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    run, proc = fit_tiny_run_cli(tmp_path_factory.mktemp("drive"), 2)
    assert proc.returncode == 0, proc.stderr
    return run


def _envelope(wave: np.ndarray, sr: int, rate: float) -> np.ndarray:
    """RMS of ``wave`` in windows of 1 / rate seconds."""
    n = int(round(sr / rate))
    m = wave.size // n
    return np.sqrt((wave[: m * n].reshape(m, n) ** 2).mean(1))


def _decode(path: Path) -> tuple[list[np.ndarray], np.ndarray, int, str, str]:
    with av.open(str(path)) as c:
        vcodec, acodec = c.streams.video[0].codec_context.name, c.streams.audio[0].codec_context.name
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        rate = c.streams.audio[0].rate
        audio = np.concatenate(
            [f.to_ndarray().reshape(f.to_ndarray().shape[0], -1).mean(0) for f in c.decode(audio=0)]
        )
    return frames, audio, rate, vcodec, acodec


@pytest.mark.parametrize("clip", CLIPS)
def test_drive_talks_in_sync(run, clip, tmp_path, run_cli):
    out = tmp_path / "talk.mp4"
    code, stdout, err = run_cli(
        "drive", run, "--audio", REPO / "scenes/assets/audio" / clip, "--out", out, "--res", "48"
    )
    assert code == 0, err
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["driver"].endswith("prior.safetensors")  # no run network: the bundled prior
    wave, sr = load_audio(REPO / "scenes/assets/audio" / clip, 16000)
    T = math.ceil(wave.size / sr * FPS - 1e-9)
    frames, audio, rate, vcodec, acodec = _decode(out)
    assert (vcodec, acodec) == ("h264", "aac")
    assert len(frames) == T == summary["frames"]
    # the soundtrack is the clip: as long as the video (to a frame), and in sync (envelopes aligned at lag 0)
    assert abs(audio.size / rate - wave.size / sr) < 1 / FPS + 0.03
    a, b = _envelope(audio, rate, 100.0), _envelope(wave, sr, 100.0)
    n = min(a.size, b.size)
    lags = range(-10, 11)
    score = [pearson(a[max(0, k) : n + min(0, k)], b[max(0, -k) : n - max(0, k)]) for k in lags]
    assert score[10] > 0.9 and abs(lags[int(np.argmax(score))]) <= 2, score  # within 20 ms
    # the mouth moves with the speech: jawOpen follows the loudness, and the pictures change with it
    drive = Drive.load_npz(out.with_name("drive.npz"))
    jaw = drive.expression[:, EXPRESSION_INDEX["jawOpen"]].numpy()
    assert len(drive) == T and jaw.std() > 0.05
    loud = _envelope(wave, sr, FPS)[: T - 1]
    assert pearson(jaw[: loud.size], loud) > 0.4
    blink = drive.expression[:, EXPRESSION_INDEX["eyeBlink_L"]].numpy()
    open_eyes = np.flatnonzero(blink < 0.05)  # compare frames without a blink: only the mouth differs
    lo, hi = open_eyes[np.argmin(jaw[open_eyes])], open_eyes[np.argmax(jaw[open_eyes])]
    changed = (np.abs(frames[hi].astype(float) - frames[lo].astype(float)).max(-1) > 12).sum()
    print(clip, "pixels changed between the most closed and most open mouth:", changed)
    assert changed >= 4
    header = out.with_name("curves.csv").read_text().splitlines()
    # rows at 30 fps (the rate Unreal's Live Link Face importer recognises), covering the whole clip
    assert "JawOpen" in header[0] and len(header) == math.ceil((T - 1) / FPS * 30 - 1e-9) + 2


def test_drive_orbit_and_camera_path(run, tmp_path, run_cli):
    from nerfhead.data.nerfstudio import viewmat_to_opengl_c2w
    from nerfhead.export.talk import fixed_camera, head_centre

    clip = REPO / "scenes/assets/audio" / CLIPS[0]
    code, _, err = run_cli(
        "drive", run, "--audio", clip, "--out", tmp_path / "o.mp4", "--res", "40", "--camera", "orbit"
    )
    assert code == 0, err
    frames, *_ = _decode(tmp_path / "o.mp4")
    assert (
        frames[0].shape == (40, 40, 3)
        and np.abs(frames[0].astype(float) - frames[len(frames) // 4]).mean() > 0.5
    )
    # a nerfstudio camera path: two keyframes, its own image size
    base = Drive.load_npz(run / "drive.npz") if (run / "drive.npz").is_file() else Drive.neutral(1)
    cam = fixed_camera(head_centre(base), 32)
    c2w = viewmat_to_opengl_c2w(cam.viewmat.double())[0].tolist()
    path = tmp_path / "camera_path.json"
    keys = [{"camera_to_world": sum(c2w, []), "fov": 30.0}] * 2
    path.write_text(json.dumps({"render_width": 36, "render_height": 28, "camera_path": keys}))
    code, _, err = run_cli("drive", run, "--audio", clip, "--out", tmp_path / "p.mp4", "--camera", path)
    assert code == 0, err
    frames, *_ = _decode(tmp_path / "p.mp4")
    assert frames[0].shape == (28, 36, 3)


@pytest.mark.parametrize("what", ["garbage", "missing", "camera", "pose"])
def test_drive_bad_inputs_are_one_line(run, tmp_path, run_cli, what):
    clip = REPO / "scenes/assets/audio" / CLIPS[0]
    args = ["drive", run, "--audio", clip, "--out", tmp_path / "t.mp4"]
    if what == "garbage":
        bad = tmp_path / "speech.wav"
        bad.write_bytes(b"RIFF not really a wave file" * 20)
        args[3] = bad
    elif what == "missing":
        args[3] = tmp_path / "nowhere.ogg"
    elif what == "pose":
        args += ["--pose", "free"]
    else:
        (tmp_path / "cam.json").write_text("{not json")
        args += ["--camera", tmp_path / "cam.json"]
    code, _, err = run_cli(*args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert {"garbage": "speech.wav", "missing": "nowhere.ogg", "camera": "cam.json", "pose": "--pose"}[
        what
    ] in lines[0]
    assert not (tmp_path / "t.mp4").exists()


def test_drive_and_viewer_speak_a_clip_with_the_same_drive(run, tmp_path, run_cli):
    """One speech policy: the drive `nerfhead drive RUN` writes is the timeline the viewer plays for the same
    clip uploaded (expression, head rotation and position)."""
    import torch

    from nerfhead.viewer.mock import MockHead
    from nerfhead.viewer.server import ViewerConfig, ViewerServer
    from nerfhead.viewer.speech import SAMPLE_RATE, decode_upload, make_clip

    clip = REPO / "scenes/assets/audio" / CLIPS[0]
    out = tmp_path / "talk.mp4"
    code, _, err = run_cli("drive", run, "--audio", clip, "--out", out, "--res", "32")
    assert code == 0, err
    cli = Drive.load_npz(out.with_name("drive.npz"))
    viewer = ViewerServer(MockHead(frames=20), run, ViewerConfig(port=0, speech_driver="auto"))
    wave, _ = decode_upload(clip.name, clip.read_bytes())
    viewer.state.set_speech(viewer.speech.drive(wave, SAMPLE_RATE, FPS), make_clip(clip.name, wave))
    shown = viewer.state.drive
    assert len(shown) == len(cli)
    torch.testing.assert_close(shown.expression, cli.expression, atol=1e-5, rtol=0)
    torch.testing.assert_close(shown.rotation, cli.rotation, atol=1e-6, rtol=0)
    torch.testing.assert_close(shown.translation, cli.translation, atol=1e-6, rtol=0)
    base = Drive.load_npz(run / "drive.npz")
    torch.testing.assert_close(shown.translation[0], base.translation.float().mean(0))  # the capture's mean


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["eval-lipsync"], "avatar.json"),  # a rig run: no held-out timesteps to lip-sync
        (["eval-orbit", "--angles", "500"], "--angles"),
    ],
)
def test_eval_verbs_bad_inputs_are_one_line(run, run_cli, args, names):
    code, _, err = run_cli(args[0], run, *args[1:])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert names in lines[0]
