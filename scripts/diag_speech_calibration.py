"""Where a run's speech drive errs, and which calibration candidates a cross-validation on the training frames
alone would pick (JSON out). Diagnostic for issue 14; changes nothing.

For each run (a monocular GRID fit with audio): the calibrated speech drive's amplitude and correlation along the
tracked lips' first two principal modes, on the training and the held-out frames; its inner-lip gap; the error
per coefficient; and for each candidate mapping of the driver into the person: the leave-one-block-out error on
the voiced training frames (``leave_one_block_out``: what a policy may decide on) and the error on the held-out
frames (what ``eval-lipsync`` renders; reported, never used to choose). Errors are the mean distance of the ICT
lip vertices, each frame's set centred on its mean (as LMD centres), in mm, against the tracked drive.

With ``--ceilings`` it also writes how low a speech drive can go on each clip (session 9), scored the same way on
the held-out frames: (a) the tracked jawOpen with every other coefficient at the training mean; (b) the tracked
lips' first 1 / 2 / 3 principal modes (oracles: they read the held-out tracking); (c) visemes from the phones of
the KNOWN transcript (GRID file names spell it) force-aligned by pocketsphinx; (d) visemes from pocketsphinx word
recognition with its bundled en-us model, the recognised words then force-aligned; (e) today's allphone visemes
(``driver="rules"``); (f) the policy (bundled log-mel prior) -- (c)-(f) through the same calibration and lag
search; (g) person-specific retrieval: each frame takes the mean tracked expression of the k training frames
with the nearest audio features (log-mel or MFCC windows, the prior's hidden features or its outputs),
Gaussian-smoothed over time, the feature / k / smoothing picked by ``leave_one_block_out`` on the voiced training
frames (held-out column reported, never used to choose).

Usage: python scripts/diag_speech_calibration.py RUN [RUN ...] --out diag.json [--ceilings]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from nerfhead.audio.driver import RuleDriverConfig, RuleVisemeDriver
from nerfhead.audio.evaluate import MouthMetric
from nerfhead.audio.features import log_mel, normalise_loudness
from nerfhead.audio.network import windows_at
from nerfhead.audio.speech import (
    Calibration,
    NetworkDriver,
    Speech,
    SpeechConfig,
    leave_one_block_out,
    shifted_waveform,
)
from nerfhead.audio.visemes import MOUTH_COLUMNS, PhonemeRecognizer, PhonemeSegment
from nerfhead.data.drive import Drive
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


def median_centre(p: Tensor, y: Tensor) -> Callable[[Tensor], Tensor]:
    """The policy with its affine centred on the training medians of the driver and the tracked expression
    instead of their means (robust to a few wide-open frames; session 9, for bbaf2n's gap)."""
    cal = Calibration.fit(p, y)
    shift = y.float().clamp(0, 1).median(0).values - cal.scale * p.float().median(0).values
    return Calibration(cal.scale, shift, cal.mouth_mean, cal.mouth_basis, cal.low, cal.high).apply


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
    "median centre": median_centre,
    "still mouth": still,
    "ridge 1": ridge(1.0),
    "ridge 3": ridge(3.0),
}


def lip_error(a: Tensor, b: Tensor) -> Tensor:
    """[n] mean centred lip-vertex distance (mm) per frame."""
    d = ((a.double() - b.double()) @ METRIC.lip_basis).reshape(a.shape[0], -1, 3)
    return (d - d.mean(1, keepdim=True)).norm(dim=-1).mean(1) * 1000.0


@dataclass
class Clip:
    """A fitted run's speech policy with what the diagnosis reads: the training and held-out timesteps, the
    capture's 16 kHz audio, the tracked expression [T, 53] and which timesteps are voiced."""

    speech: Speech
    lag_s: float
    train: list[int]
    test: list[int]
    fps: float
    wav: np.ndarray
    y: Tensor
    voiced: np.ndarray

    @staticmethod
    def of(run: Path) -> Clip:
        speech = Speech.for_run(run)
        frames, person = speech.training_frames(), speech.person
        if frames is None or person is None or person.audio is None:
            raise SystemExit(f"{run}: no capture audio or tracked drive to diagnose")
        spec = json.loads((run / "avatar.json").read_text())
        T = len(person.drive)
        loud = timestep_loudness(load_capture(spec["capture"]))
        return Clip(
            speech,
            frames.lag_s,
            list(frames.timesteps),
            [int(t) for t in spec["test_timesteps"]],
            person.drive.fps,
            load_audio(person.audio, 16000)[0],
            person.drive.expression.float().clamp(0, 1),
            voiced_timesteps(loud) if loud is not None else np.ones(T, bool),
        )


def diagnose(run: Path) -> dict:
    c = Clip.of(run)
    frames_lag, train, test, fps, wav, y, voiced = c.lag_s, c.train, c.test, c.fps, c.wav, c.y, c.voiced
    T = len(y)
    raw = c.speech.raw(wav, fps, T, lag=frames_lag).expression.float()  # frame t at t / fps (GRID: no offset)
    cal = Calibration.fit(raw[train], y[train])
    out = cal.apply(raw)
    g = (y[train].double() - y[train].double().mean(0)) @ METRIC.lip_basis
    _, s, vh = torch.linalg.svd(g, full_matrices=False)
    mu = y[train].double().mean(0)

    def modes(e: Tensor) -> Tensor:
        return ((e.double() - mu) @ METRIC.lip_basis @ vh[:2].T) * 1000.0

    rep: dict = {
        "lag_s": c.lag_s,
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
        out_test = fit(raw[train], y[train])(raw)[test]
        held = float(lip_error(out_test, y[test]).mean())
        rows[name] = {
            "cv_voiced_train_mm": round(cv, 4),
            "held_out_mm": round(held, 4),
            "held_out_gap_mm": round(float(METRIC.lip_gap_mm(out_test.float()).mean()), 3),
        }
    rep["candidates"] = rows
    rep["cv_pick"] = min(rows, key=lambda k: rows[k]["cv_voiced_train_mm"])
    return rep


# ------------------------------------------------------------------------------------------------ ceilings

TRANSCRIPTS = {
    "bbaf2n": "bin blue at f two now",
    "swiz3n": "set white in z three now",
    "lrwp9a": "lay red with p nine again",
}
"""GRID sentences, spelled by the clips' file names."""


class AlignedPhones:
    """Phones of a waveform by pocketsphinx forced alignment of ``text``; None: of the words its bundled en-us
    language model recognises (the recognised text is kept in ``hypotheses``)."""

    def __init__(self, text: str | None):
        self.text = text
        self.hypotheses: list[str] = []
        self._cache: dict[bytes, list[PhonemeSegment]] = {}

    def __call__(self, waveform: np.ndarray) -> list[PhonemeSegment]:
        from pocketsphinx import Decoder

        pcm = (np.clip(np.asarray(waveform, np.float32), -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
        if pcm in self._cache:
            return self._cache[pcm]
        d = Decoder(loglevel="FATAL")

        def decode() -> None:
            d.start_utt()
            d.process_raw(pcm, full_utt=True)
            d.end_utt()

        text = self.text
        if text is None:
            decode()
            text = d.hyp().hypstr if d.hyp() is not None else ""
            self.hypotheses.append(text)
        segs: list[PhonemeSegment] = []
        if text.strip():
            d.set_align_text(text)
            decode()
            d.set_alignment()
            decode()
            for word in d.get_alignment():
                segs += [PhonemeSegment(p.name, p.start / 100, (p.start + p.duration) / 100) for p in word]
        self._cache[pcm] = segs
        return segs


class PhoneSpeech(Speech):
    """The policy (calibration, lag search) with the viseme rules fed by a given phone front end."""

    def __init__(self, base: Speech, phones: Callable[[np.ndarray], list[PhonemeSegment]]):
        super().__init__(None, base.person, SpeechConfig(driver="rules", rules_mode="phonetic"))
        self.phones = phones

    def raw(self, wave: np.ndarray, fps: float, n_frames: int | None = None, lag: float = 0.0) -> Drive:
        wave = shifted_waveform(normalise_loudness(wave) if self.cfg.normalise else wave, lag)
        driver = RuleVisemeDriver(RuleDriverConfig(mode="phonetic"))
        driver._recognizer = self.phones  # type: ignore[assignment]
        return driver.drive(wave, fps=fps, n_frames=n_frames)


def audio_features_at(wav: np.ndarray, times: np.ndarray, kind: str, network) -> Tensor:
    """[T, D] audio features at the given times (s): "logmel:W" / "mfcc:W" (a W-frame window, mean-pooled in
    4-frame steps), "prior_hidden" (the prior's last hidden layer) or "prior_out" (its mouth outputs)."""
    w = normalise_loudness(wav)
    if kind.startswith(("logmel", "mfcc")):
        x, width = log_mel(w), int(kind.split(":")[1])
        if kind.startswith("mfcc"):
            n = x.shape[1]
            dct = np.cos(np.pi / n * (np.arange(n)[:, None] + 0.5) * np.arange(13)[None])
            x = x @ torch.from_numpy(dct).float()
        win = windows_at(x, times * 100.0, width)
        return win.reshape(len(times), width // 4, 4, -1).mean(2).reshape(len(times), -1).double()
    nd = NetworkDriver(network)
    wins = windows_at(nd.features(w), times * 100.0, nd.network.config.window)
    if kind == "prior_out":
        return nd.network.predict(wins)[0].double()[:, COLS]
    hidden: list[Tensor] = []
    hook = nd.network.head.register_forward_hook(lambda m, i, o: hidden.append(o.detach()))
    nd.network.predict(wins)
    hook.remove()
    return torch.cat(hidden).double()


def smooth(p: Tensor, sigma: float) -> Tensor:
    """Gaussian smoothing of [T, C] over time (edges repeated)."""
    if sigma <= 0:
        return p
    r = int(3 * sigma)
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float64) / sigma) ** 2)
    k = k / k.sum()
    pp = torch.cat([p[:1].expand(r, -1), p, p[-1:].expand(r, -1)])
    return sum(k[i] * pp[i : i + len(p)] for i in range(2 * r + 1))  # type: ignore[return-value]


def retrieval(x: Tensor, y: Tensor, k: int, sigma: float) -> Callable[[list[int], list[int]], Tensor]:
    """fit_predict of k-nearest-neighbour retrieval of tracked expressions by (standardised) audio features."""

    def fit_predict(fit: list[int], pred: list[int]) -> Tensor:
        mu, sd = x[fit].mean(0), x[fit].std(0).clamp_min(1e-6)
        z = (x - mu) / sd
        idx = torch.cdist(z, z[fit]).topk(min(k, len(fit)), largest=False).indices
        return smooth(y[fit][idx].mean(1), sigma)[pred]

    return fit_predict


def ceilings(run: Path) -> dict:
    """The held-out lip error (mm) of oracles and of each front end (module docstring, (a)-(g))."""
    c = Clip.of(run)
    base, train, test, fps, wav, voiced = c.speech, c.train, c.test, c.fps, c.wav, c.voiced
    y = c.y.double()
    T = len(y)
    mean = y[train].mean(0)
    rows: dict[str, dict] = {}

    def held(name: str, pred: Tensor, **extra) -> None:
        out = pred.double()
        rows[name] = {
            "held_out_mm": round(float(lip_error(out[test], y[test]).mean()), 4),
            "gap_mm": round(float(METRIC.lip_gap_mm(out[test].float()).mean()), 3),
        } | extra

    held("tracked", y)
    held("still mean mouth", mean.expand(T, -1))
    jaw = mean.expand(T, -1).clone()
    jaw[:, EXPRESSION_INDEX["jawOpen"]] = y[:, EXPRESSION_INDEX["jawOpen"]]
    held("a: tracked jawOpen, the rest at the mean", jaw)
    g = (y[train] - mean) @ METRIC.lip_basis
    vh = torch.linalg.svd(g, full_matrices=False)[2]
    for k in (1, 2, 3):
        back = torch.linalg.lstsq(g @ vh[:k].T, y[train] - mean).solution
        held(f"b: tracked lip modes 1-{k}", mean + ((y - mean) @ METRIC.lip_basis @ vh[:k].T) @ back)
    fronts: dict[str, Speech] = {
        "c: transcript force-aligned": PhoneSpeech(base, AlignedPhones(TRANSCRIPTS.get(run.name[-6:], ""))),
        "d: recognised words force-aligned": PhoneSpeech(base, AlignedPhones(None)),
        "e: allphone (driver rules)": PhoneSpeech(base, PhonemeRecognizer()),
        "f: policy (log-mel prior)": base,
    }
    for name, sp in fronts.items():
        cal = sp.calibration()
        assert cal is not None
        extra: dict = {"lag_s": cal.lag_s}
        if isinstance(sp, PhoneSpeech) and isinstance(sp.phones, AlignedPhones) and sp.phones.hypotheses:
            extra["recognised"] = sp.phones.hypotheses[0]
        held(name, cal.apply(sp.raw(wav, fps, T, lag=cal.lag_s).expression), **extra)
    times = np.arange(T) / fps + c.lag_s
    cands = {}
    for kind in ("logmel:8", "logmel:16", "logmel:32", "mfcc:16", "mfcc:32", "prior_hidden", "prior_out"):
        x = audio_features_at(wav, times, kind, base.network)
        for k in (1, 3, 5, 8):
            for sigma in (0.0, 1.0):
                fp = retrieval(x, y, k, sigma)
                cv = leave_one_block_out(
                    train, fp, lambda p, b: lip_error(p, y[b]), keep=lambda t: bool(voiced[t])
                )
                cands[f"{kind} k={k} sigma={sigma}"] = (cv, fp(train, list(range(T))))
    pick = min(cands, key=lambda c: cands[c][0])
    held("g: retrieval, CV pick", cands[pick][1], pick=pick, cv_mm=round(cands[pick][0], 4))
    best = min(cands, key=lambda c: float(lip_error(cands[c][1][test], y[test]).mean()))
    held("g: retrieval, best on held-out (hindsight)", cands[best][1], pick=best)
    return rows


METRIC = MouthMetric()

if __name__ == "__main__":
    ap = argparse.ArgumentParser(
        description="Where a run's speech drive errs; calibration candidates under CV."
    )
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--ceilings", action="store_true", help="also the ceilings (a)-(g) of the docstring")
    args = ap.parse_args()
    report = {str(r): diagnose(r) | ({"ceilings": ceilings(r)} if args.ceilings else {}) for r in args.runs}
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
