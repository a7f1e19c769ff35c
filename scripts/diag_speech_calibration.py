"""Where a run's speech drive errs, and which calibration candidates a cross-validation on the training frames
alone would pick (JSON out). Diagnostic for issue 14; changes nothing.

For each run (a monocular GRID fit with audio): the calibrated speech drive's amplitude and correlation along the
tracked lips' first two principal modes, on the training and the held-out frames; its inner-lip gap; the error
per coefficient; and for each candidate mapping of the driver into the person: the leave-one-block-out error on
the voiced training frames (``leave_one_block_out``: what a policy may decide on) and the error on the held-out
frames (what ``eval-lipsync`` renders; reported, never used to choose). Errors are the mean distance of the ICT
lip vertices, each frame's set centred on its mean (as LMD centres), in mm, against the tracked drive.

Usage: python scripts/diag_speech_calibration.py RUN [RUN ...] --out diag.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from nerfhead.audio.evaluate import MouthMetric
from nerfhead.audio.speech import Calibration, Speech, leave_one_block_out
from nerfhead.audio.visemes import MOUTH_COLUMNS
from nerfhead.data.expressions import EXPRESSION_INDEX
from nerfhead.data.loaders import load_capture
from nerfhead.data.split import timestep_loudness, voiced_timesteps
from nerfhead.media.audio import load_audio

COLS = list(MOUTH_COLUMNS)
NAMES = {v: k for k, v in EXPRESSION_INDEX.items()}
Fit = Callable[[Tensor, Tensor], Callable[[Tensor], Tensor]]


def gain(g: float) -> Fit:
    """The policy's calibration with the mouth's deviation from the training mean scaled by g."""

    def fit(p: Tensor, y: Tensor) -> Callable[[Tensor], Tensor]:
        cal, mean = Calibration.fit(p, y), y.float().clamp(0, 1).mean(0)

        def pred(q: Tensor) -> Tensor:
            out = cal.apply(q)
            out[:, COLS] = mean[COLS] + g * (out[:, COLS] - mean[COLS])
            return out.clamp(0, 1)

        return pred

    return fit


def still(p: Tensor, y: Tensor) -> Callable[[Tensor], Tensor]:
    """The mean training mouth, whatever the audio."""
    mean = y.float().clamp(0, 1).mean(0)
    return lambda q: mean.expand(q.shape[0], -1)


def ridge(lam: float, k: int = 3) -> Fit:
    """Ridge map of the driver's standardised mouth coefficients onto the tracked lips' first k modes."""

    def fit(p: Tensor, y: Tensor) -> Callable[[Tensor], Tensor]:
        y, x = y.double().clamp(0, 1), p.double()[:, COLS]
        xm, xs = x.mean(0), x.std(0).clamp_min(1e-3)
        xn, ym = (x - xm) / xs, y.mean(0)
        g = (y - ym) @ METRIC.lip_basis
        vh = torch.linalg.svd(g, full_matrices=False)[2][:k]
        z = g @ vh.T
        back = torch.linalg.lstsq(z, y - ym).solution
        w = torch.linalg.solve(xn.T @ xn + lam * len(x) * torch.eye(x.shape[1], dtype=x.dtype), xn.T @ z)
        lo, hi = y.min(0).values, y.max(0).values
        return lambda q: torch.minimum(
            torch.maximum(ym + ((q.double()[:, COLS] - xm) / xs) @ w @ back, lo), hi
        )

    return fit


CANDIDATES: dict[str, Fit] = {
    "policy (gain 1)": gain(1.0),
    "gain 0.5": gain(0.5),
    "gain 1.5": gain(1.5),
    "gain 2": gain(2.0),
    "gain 3": gain(3.0),
    "still mouth": still,
    "ridge 1": ridge(1.0),
    "ridge 3": ridge(3.0),
}


def lip_error(a: Tensor, b: Tensor) -> Tensor:
    """[n] mean centred lip-vertex distance (mm) per frame."""
    d = ((a.double() - b.double()) @ METRIC.lip_basis).reshape(a.shape[0], -1, 3)
    return (d - d.mean(1, keepdim=True)).norm(dim=-1).mean(1) * 1000.0


def diagnose(run: Path) -> dict:
    speech = Speech.for_run(run)
    frames = speech.training_frames()
    person = speech.person
    if frames is None or person is None or person.audio is None:
        raise SystemExit(f"{run}: no capture audio or tracked drive to diagnose")
    spec = json.loads((run / "avatar.json").read_text())
    train, test = list(frames.timesteps), [int(t) for t in spec["test_timesteps"]]
    T, fps = len(person.drive), person.drive.fps
    wav, _ = load_audio(person.audio, 16000)
    raw = speech.raw(wav, fps, T, lag=frames.lag_s).expression.float()  # frame t at t / fps (GRID: no offset)
    y = person.drive.expression.float().clamp(0, 1)
    loud = timestep_loudness(load_capture(spec["capture"]))
    voiced = voiced_timesteps(loud) if loud is not None else np.ones(T, bool)
    cal = Calibration.fit(raw[train], y[train])
    out = cal.apply(raw)
    g = (y[train].double() - y[train].double().mean(0)) @ METRIC.lip_basis
    _, s, vh = torch.linalg.svd(g, full_matrices=False)
    mu = y[train].double().mean(0)

    def modes(e: Tensor) -> Tensor:
        return ((e.double() - mu) @ METRIC.lip_basis @ vh[:2].T) * 1000.0

    rep: dict = {
        "lag_s": frames.lag_s,
        "frames": {"train": len(train), "train_voiced": int(voiced[train].sum()), "test": len(test)},
        "mode_variance_share": [round(float(v), 3) for v in (s.square() / s.square().sum())[:3]],
    }
    for name, ts in (("train", train), ("test", test)):
        mt, mc = modes(y[ts]), modes(out[ts])
        rep[name] = {
            f"mode{k}": {
                "std_speech_over_tracked": round(float(mc[:, k].std() / mt[:, k].std()), 3),
                "corr": round(float(np.corrcoef(mt[:, k], mc[:, k])[0, 1]), 3),
                "mean_tracked_speech_mm": [
                    round(float(mt[:, k].mean()), 2),
                    round(float(mc[:, k].mean()), 2),
                ],
            }
            for k in range(2)
        } | {
            "gap_mm_tracked_speech": [
                round(float(METRIC.lip_gap_mm(y[ts]).mean()), 3),
                round(float(METRIC.lip_gap_mm(out[ts]).mean()), 3),
            ],
            "lip_mm_speech": round(float(lip_error(out[ts], y[ts]).mean()), 4),
        }
    d = (out[test] - y[test]).double()
    contrib = {}
    for j in range(d.shape[1]):
        e = torch.zeros_like(d)
        e[:, j] = d[:, j]
        contrib[NAMES[j]] = float(lip_error(e, torch.zeros_like(e)).mean())
    top = sorted(contrib.items(), key=lambda kv: -kv[1])[:6]
    rep["test_error_by_coefficient_mm"] = {k: round(v, 4) for k, v in top}
    rows = {}
    for name, fit in CANDIDATES.items():

        def fit_predict(a: list[int], b: list[int], fit: Fit = fit) -> Tensor:
            return fit(raw[a], y[a])(raw)[b]

        cv = leave_one_block_out(
            train, fit_predict, lambda p, b: lip_error(p, y[b]), keep=lambda t: bool(voiced[t])
        )
        held = float(lip_error(fit(raw[train], y[train])(raw)[test], y[test]).mean())
        rows[name] = {"cv_voiced_train_mm": round(cv, 4), "held_out_mm": round(held, 4)}
    rep["candidates"] = rows
    rep["cv_pick"] = min(rows, key=lambda k: rows[k]["cv_voiced_train_mm"])
    return rep


METRIC = MouthMetric()

if __name__ == "__main__":
    ap = argparse.ArgumentParser(
        description="Where a run's speech drive errs; calibration candidates under CV."
    )
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    report = {str(r): diagnose(r) for r in args.runs}
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
