"""``nerfhead eval-drive``: runs on a small capture with speech and a Drive, writes the JSON report, answers bad
audio with one line and exit code 2; the lip-vertex metric behaves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nerfhead.data import Capture, Frame, save_image
from nerfhead.data.expressions import EXPRESSION_INDEX
from nerfhead.data.nerfstudio import save_capture
from tests.data.data_synth import tiny_cameras

REPO = Path(__file__).resolve().parents[2]
FIELDS = ("jaw_corr", "lip_gap_corr", "mouth_mm", "mouth_mm_rms", "mouth_mm_vs_mean")


def _speech_capture(root: Path, seconds: float = 2.4, fps: float = 25.0, garbage_audio: bool = False) -> Path:
    """One 16x12 camera, a speech clip's first seconds as audio, and as Drive the rule driver's output on it."""
    import soundfile

    from nerfhead.audio.driver import RuleDriverConfig, RuleVisemeDriver
    from nerfhead.media.audio import load_audio

    wav, _ = load_audio(REPO / "scenes/assets/audio/fleurs_en-001.ogg", 16000, warn=False)
    wav = wav[int(1.0 * 16000) : int((1.0 + seconds) * 16000)]
    T = int(seconds * fps)
    drive = RuleVisemeDriver(RuleDriverConfig(mode="energy")).drive(wav, fps=fps, n_frames=T, sr=16000)
    audio = root / "audio.wav"
    root.mkdir(parents=True)
    if garbage_audio:
        audio.write_bytes(b"RIFF\x00\x00 this is not audio at all" * 10)
    else:
        soundfile.write(str(audio), wav, 16000)
    img = root / "images" / "cam00" / "00000.png"
    save_image(img, np.full((12, 16, 3), 0.5, np.float32))
    frames = tuple(Frame(0, t, t / fps, img, None) for t in range(T))
    cap = Capture(cameras=tiny_cameras(1), frames=frames, fps=fps, drive=drive, audio_path=audio)
    save_capture(cap, root)
    return root


def test_eval_drive_writes_report(tmp_path, run_cli):
    cap = _speech_capture(tmp_path / "cap")
    out = tmp_path / "report.json"
    run = tmp_path / "run"
    code, stdout, err = run_cli("eval-drive", cap, "--steps", "20", "--out", out, "--save-run", run)
    assert code == 0, err
    rep = json.loads(out.read_text())
    assert json.loads(stdout)["predictors"] == rep["predictors"]
    assert rep["timesteps"] == {"total": 60, "train": 48, "test": 12}
    for name in ("network", "calibrated", "prior", "rules", "mean_drive"):
        for f in FIELDS:
            assert np.isfinite(rep["predictors"][name][f]), (name, f)
    mean = rep["predictors"]["mean_drive"]
    assert mean["mouth_mm"] > 0 and mean["mouth_mm_vs_mean"] == 0.0
    # the reference is the energy-rule drive of this very audio: the rule predictor must track it closely
    assert rep["predictors"]["rules"]["jaw_corr"] > 0.8
    assert rep["lip_vertices"] > 300
    # the oracles read the held-out reference: exact jawOpen; and the rule drive is nearly dominant mouth mode
    ceil = rep["ceilings"]
    assert ceil["jaw_oracle"]["jaw_corr"] == 1.0
    assert ceil["opening_oracle"]["mouth_mm_vs_mean"] > 0.3, ceil
    assert 0.6 < ceil["opening_variance_share"] <= 1.0
    # --save-run: the network fine-tuned on all timesteps, calibrated to this drive, where `drive RUN` looks
    from nerfhead.audio.network import load_network
    from nerfhead.audio.speech import speech_network

    assert speech_network(run) == Path(rep["saved_network"]) == run / "audio_to_drive.safetensors"
    net = load_network(run / "audio_to_drive.safetensors")
    assert not torch.equal(net.out_scale, torch.ones(53))
    # the stored network is the held-out winner of fine-tuned vs calibrated prior
    p = rep["predictors"]
    want = "calibrated" if p["calibrated"]["mouth_mm"] < p["network"]["mouth_mm"] else "finetuned"
    assert rep["saved_network_kind"] == want == net.network_info["chosen"]
    assert net.network_info["steps"] == (0 if want == "calibrated" else 20)


def test_eval_drive_bad_audio_is_one_line(tmp_path, run_cli):
    cap = _speech_capture(tmp_path / "cap", garbage_audio=True)
    code, _, err = run_cli("eval-drive", cap, "--steps", "5")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "audio.wav" in lines[0] and "Traceback" not in err


def test_eval_drive_capture_without_audio(tmp_path, run_cli):
    from tests.data.data_synth import write_tiny_capture

    cap = write_tiny_capture(tmp_path / "cap", n_cams=1, T=6)
    save_capture(cap, tmp_path / "cap")
    code, _, err = run_cli("eval-drive", tmp_path / "cap")
    assert code == 2 and "no audio" in err and len(err.strip().splitlines()) == 1


def test_mouth_metric_and_folds():
    from nerfhead.audio.evaluate import MouthMetric, fold_splits, split_timesteps

    m = MouthMetric()
    e = torch.zeros(4, 53)
    e[:, EXPRESSION_INDEX["jawOpen"]] = torch.tensor([0.0, 0.2, 0.4, 0.6])
    gap = m.lip_gap_mm(e)
    assert bool((gap[1:] > gap[:-1] + 3.0).all())  # the jaw opens the lips by millimetres per 0.2
    s = m.scores(e, e)
    assert s["mouth_mm"] == 0.0 and s["jaw_corr"] == pytest.approx(1.0)
    shifted = m.scores(e + 0.1 * torch.eye(53)[EXPRESSION_INDEX["jawOpen"]], e)
    assert 0.5 < shifted["mouth_mm"] < 10.0
    assert split_timesteps(10, 0.2) == (list(range(8)), [8, 9])
    folds = fold_splits(20, 4, gap=2)
    assert sorted(t for _, test in folds for t in test) == list(range(20))
    assert folds[1] == ([0, 1, 2, 12, 13, 14, 15, 16, 17, 18, 19], [5, 6, 7, 8, 9])


def test_opening_direction_recovers_a_single_mouth_mode():
    """Drive frames that move along one coefficient direction: the mode carries all the lip variance and the
    least-squares coefficient direction reproduces every frame from its lip-displacement amount."""
    from nerfhead.audio.evaluate import MouthMetric, opening_direction

    metric = MouthMetric()
    g = torch.Generator().manual_seed(0)
    d = torch.zeros(53)
    d[EXPRESSION_INDEX["jawOpen"]], d[EXPRESSION_INDEX["mouthFunnel"]] = 0.6, 0.2
    a = torch.rand(40, generator=g)
    e = 0.1 + a[:, None] * d
    mu, direction, coef, share = opening_direction(metric, e)
    assert share > 0.999 and abs(float(direction.norm()) - 1.0) < 1e-9
    amount = ((e.double() - mu) @ metric.lip_basis) @ direction
    torch.testing.assert_close(mu + amount[:, None] * coef, e.double(), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("cal_mm", "net_mm", "kind", "steps"), [(1.0, 2.0, "calibrated", 0), (2.0, 1.0, "finetuned", 5)]
)
def test_save_run_keeps_the_held_out_winner(tmp_path, cal_mm, net_mm, kind, steps):
    from nerfhead.audio.evaluate import EvalDriveConfig, save_run_network
    from nerfhead.audio.network import load_network
    from nerfhead.audio.train import FinetuneConfig
    from nerfhead.data.loaders import load_capture

    cap = load_capture(_speech_capture(tmp_path / "cap"))
    report = {"predictors": {"calibrated": {"mouth_mm": cal_mm}, "network": {"mouth_mm": net_mm}}}
    cfg = EvalDriveConfig(finetune=FinetuneConfig(steps=5))
    path, chosen = save_run_network(cap, tmp_path / "run", cfg, report)
    net = load_network(path)
    assert chosen == net.network_info["chosen"] == kind and net.network_info["steps"] == steps
