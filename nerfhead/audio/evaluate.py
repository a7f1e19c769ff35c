"""Held-out evaluation of speech drivers against a capture's tracked (or true) Drive (``nerfhead eval-drive``).

The last ``holdout`` fraction of the timesteps is held out; the network is fine-tuned from the prior on the rest
and predicts the held-out frames from their audio alone. Every predictor (``network``: fine-tuned;
``calibrated``: the prior with only its closed-form read-out calibration, the first stage of fine-tuning;
``prior``; ``rules``; ``mean_drive``: the mean training Drive) is scored on the held-out frames by:

* ``jaw_corr``: Pearson correlation of jawOpen with the reference;
* ``lip_gap_corr``: correlation of the mouth opening as a geometric group measure, the distance (mm) between the
  inner upper- and lower-lip midpoints (68-landmarks 62 and 66) of the ICT head driven by all 53 coefficients;
* ``mouth_mm``: mean Euclidean distance (mm) of the ICT lip vertices (face-part vertices within 5 mm of the 20
  mouth landmarks, :func:`lip_vertices`) between the heads driven by the predicted and the
  reference expression (unposed canonical frame: head pose is not part of the score), and ``mouth_mm_rms``.

Two oracles bound what any speech driver can reach on the capture (``ceilings``; they read the held-out
reference, so they are not predictors): ``jaw_oracle`` is the mean training Drive with the reference's exact
jawOpen, ``opening_oracle`` the mean training Drive moved along the training frames' dominant lip-geometry
direction (first principal component of the lip-vertex displacements, mapped back to coefficients by least
squares) by the reference's exact amount. When the opening oracle's error is not far below the mean baseline,
most of the capture's lip motion is not mouth opening (smiles, presses, drift of the tracked face) and a
predictor of opening from audio cannot score well on ``mouth_mm`` however good it is.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from nerfhead.audio.features import normalise_loudness
from nerfhead.audio.speech import RUN_NETWORK, NetworkDriver, prior_path
from nerfhead.audio.train import FinetuneConfig, calibrate, finetune, pearson
from nerfhead.data.expressions import EXPRESSION_INDEX

LIP_RADIUS_M = 0.005
"""Face-part vertices closer than this to a mouth landmark (68-set, 48..67) count as lip vertices."""
MOUTH_LANDMARKS = tuple(range(48, 68))
UPPER_LIP, LOWER_LIP = 62, 66


@dataclass(frozen=True)
class EvalDriveConfig:
    """Settings of ``nerfhead eval-drive``."""

    holdout: float = 0.2
    """Fraction of timesteps held out at the end of the capture."""
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    """Fine-tuning of the prior on the remaining timesteps."""
    phonetic: bool = False
    """Use the prior with pocketsphinx viseme channels (needs the ``audio`` extra)."""
    folds: int = 1
    """1: hold out the last ``holdout`` of the timesteps; K > 1: K-fold over contiguous blocks."""


def lip_vertices(head) -> Tensor:
    """Indices of the ICT lip vertices: face-part vertices within ``LIP_RADIUS_M`` of the mouth landmarks."""
    n = head.neutral
    lm = n[head.landmark_idx[list(MOUTH_LANDMARKS)]]
    d = torch.cdist(n, lm).min(1).values
    return torch.nonzero((d < LIP_RADIUS_M) & head.face_mask).reshape(-1)


class MouthMetric:
    """Mouth scores of predicted vs reference expression on the ICT head (canonical frame, metres → mm)."""

    def __init__(self) -> None:
        from nerfhead.parametric import ICTHead

        self.head = ICTHead()
        self.lips = lip_vertices(self.head)
        keep = torch.cat([self.lips, self.head.landmark_idx[[UPPER_LIP, LOWER_LIP]]])
        V = self.head.num_vertices
        self._neutral = self.head.neutral[keep].double()  # [K, 3]
        self._basis = self.head.expr_basis.reshape(-1, V, 3)[:, keep].double()  # [53, K, 3]
        self.lip_basis = self._basis[:, :-2].reshape(self._basis.shape[0], -1)
        """[53, 3L] lip-vertex displacement (metres) per unit of each coefficient (the lips alone, flattened)."""

    def vertices(self, expression: Tensor) -> Tensor:
        """Lip vertices then the two lip-midpoint landmarks: [T, K + 2, 3] metres."""
        e = expression.double().cpu()
        return self._neutral[None] + torch.einsum("te,ekc->tkc", e, self._basis)

    def lip_gap_mm(self, expression: Tensor) -> Tensor:
        """Inner-lip midpoint distance per frame: [T] mm."""
        v = self.vertices(expression)
        return (v[:, -1] - v[:, -2]).norm(dim=-1) * 1000.0

    def scores(self, pred: Tensor, ref: Tensor) -> dict[str, float]:
        """jaw_corr, lip_gap_corr, mouth_mm (mean Euclidean), mouth_mm_rms of [T, 53] vs [T, 53]."""
        jaw = EXPRESSION_INDEX["jawOpen"]
        vp, vr = self.vertices(pred)[:, :-2], self.vertices(ref)[:, :-2]
        d = (vp - vr).norm(dim=-1) * 1000.0  # [T, K] mm
        return {
            "jaw_corr": round(pearson(pred[:, jaw], ref[:, jaw]), 4),
            "lip_gap_corr": round(pearson(self.lip_gap_mm(pred), self.lip_gap_mm(ref)), 4),
            "mouth_mm": round(float(d.mean()), 4),
            "mouth_mm_rms": round(float(d.square().mean().sqrt()), 4),
        }


def opening_direction(metric: MouthMetric, expression: Tensor) -> tuple[Tensor, Tensor, Tensor, float]:
    """Dominant lip-geometry mode of a set of Drive frames.

    Returns:
        (mean expression [53], unit lip-displacement direction [3K], coefficient direction [53] per unit of
        displacement along it, the fraction of the lip-displacement variance it carries).
    """
    e = expression.double().cpu()
    mu = e.mean(0)
    g = (e - mu) @ metric.lip_basis
    _, s, vh = torch.linalg.svd(g, full_matrices=False)
    score = g @ vh[0]
    coef = torch.linalg.lstsq(score[:, None], e - mu).solution[0]
    share = float(s[0].square() / s.square().sum()) if float(s.square().sum()) > 0 else 0.0
    return mu, vh[0], coef, share


def split_timesteps(T: int, holdout: float) -> tuple[list[int], list[int]]:
    """(train, test) timesteps: the last ``ceil(holdout * T)`` are the test set (at least one of each)."""
    if T < 2:
        raise ValueError("a held-out evaluation needs at least 2 timesteps")
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout must lie in (0, 1), got {holdout}")
    n_test = min(T - 1, max(1, math.ceil(holdout * T)))
    return list(range(T - n_test)), list(range(T - n_test, T))


def fold_splits(T: int, folds: int, gap: int) -> list[tuple[list[int], list[int]]]:
    """``folds`` contiguous test blocks covering all timesteps; each block's training set is every other
    timestep farther than ``gap`` from the block (so no training window overlaps a test frame's audio)."""
    if folds < 2 or T < 2 * folds:
        raise ValueError(f"{folds} folds need at least {2 * folds} timesteps, the capture has {T}")
    edges = np.linspace(0, T, folds + 1).round().astype(int)
    out = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        train = [t for t in range(T) if t < a - gap or t >= b + gap]
        if not train:
            raise ValueError(f"no training timesteps left with a gap of {gap} frames")
        out.append((train, list(range(a, b))))
    return out


def evaluate_drive(capture, cfg: EvalDriveConfig = EvalDriveConfig()) -> dict:
    """Fine-tune on the capture's training timesteps, predict the held-out ones, score every predictor.

    With ``cfg.folds == 1`` the last ``cfg.holdout`` of the timesteps is the test set; with K > 1 folds every
    timestep is predicted once, by a network fine-tuned without its block (and a gap of half a window on either
    side), and the scores pool all predictions.

    Raises:
        InputError: the capture has no audio or no Drive; the audio does not decode; too few timesteps.
    """
    from nerfhead.audio.driver import RuleDriverConfig, RuleVisemeDriver
    from nerfhead.audio.network import load_network
    from nerfhead.errors import InputError
    from nerfhead.media.audio import load_audio

    if capture.audio_path is None:
        raise InputError(None, "the capture has no audio track (nerfhead synth --audio, or track a video)")
    if capture.drive is None:
        raise InputError(None, "the capture has no Drive (track it first: nerfhead track)")
    wav = normalise_loudness(load_audio(capture.audio_path, 16000)[0])  # as the speech policy feeds drivers
    T = capture.num_timesteps
    prior = load_network(prior_path(cfg.phonetic))
    gap = math.ceil(prior.config.look_ahead_s * capture.fps)
    try:
        splits = [split_timesteps(T, cfg.holdout)] if cfg.folds <= 1 else fold_splits(T, cfg.folds, gap)
    except ValueError as e:
        raise InputError(capture.audio_path, str(e)) from None
    times = capture.timestamps.double() - float(capture.audio_offset)  # audio time of every timestep
    drive = capture.drive
    metric = MouthMetric()

    t0 = time.perf_counter()
    feats = NetworkDriver(prior).features(wav)
    test_all: list[int] = []
    net_parts, cal_parts, prior_parts, mean_parts, jaw_parts, open_parts, shares = [], [], [], [], [], [], []
    jaw = EXPRESSION_INDEX["jawOpen"]
    for train, test in splits:
        mu, direction, coef, share = opening_direction(metric, drive.expression[train])
        amount = ((drive.expression[test].double() - mu) @ metric.lip_basis) @ direction
        open_parts.append((mu + amount[:, None] * coef).clamp(0.0, 1.0).float())
        j = mu.float().expand(len(test), -1).clone()
        j[:, jaw] = drive.expression[test, jaw].float()
        jaw_parts.append(j)
        shares.append(share)
        net = load_network(prior_path(cfg.phonetic))
        driver = NetworkDriver(net)
        prior_parts.append(driver.predict_at(feats, times[test])[0])
        calibrate(
            net, feats, times[train] * 100.0, drive.expression[train].float().clamp(0, 1), cfg.finetune.shrink
        )
        cal_parts.append(driver.predict_at(feats, times[test])[0])
        rot = drive.rotation[train].float()
        finetune(
            net,
            feats,
            times[train] * 100.0,
            drive.expression[train].float(),
            (rot - rot.mean(0)).clamp(-0.15, 0.15),
            cfg.finetune,
        )
        net_parts.append(driver.predict_at(feats, times[test])[0])
        mean_parts.append(drive.expression[train].float().mean(0, keepdim=True).expand(len(test), -1))
        test_all += test
    seconds = time.perf_counter() - t0

    rules = RuleVisemeDriver(RuleDriverConfig(mode="auto", blinks=False))
    curves = rules.feature_curves(wav)
    pos = times[test_all].numpy() * 100.0  # feature position of each test timestep's audio time
    grid = np.arange(curves.shape[0])
    rule_expr = torch.from_numpy(np.stack([np.interp(pos, grid, c) for c in curves.T], 1)).float()
    ref = drive.expression[test_all].float()
    out: dict = {
        "timesteps": {"total": T, "train": len(splits[0][0]), "test": len(test_all)},
        "holdout": cfg.holdout if cfg.folds <= 1 else None,
        "folds": max(1, cfg.folds),
        "fold_gap_frames": gap if cfg.folds > 1 else None,
        "audio_seconds": round(wav.size / 16000, 3),
        "phonetic": cfg.phonetic,
        "rule_mode": rules.mode,
        "finetune_steps": cfg.finetune.steps,
        "finetune_seconds": round(seconds, 2),
        "predictors": {
            "network": metric.scores(torch.cat(net_parts), ref),
            "calibrated": metric.scores(torch.cat(cal_parts), ref),
            "prior": metric.scores(torch.cat(prior_parts), ref),
            "rules": metric.scores(rule_expr, ref),
            "mean_drive": metric.scores(torch.cat(mean_parts), ref),
        },
    }
    out["ceilings"] = {
        "jaw_oracle": metric.scores(torch.cat(jaw_parts), ref),
        "opening_oracle": metric.scores(torch.cat(open_parts), ref),
        "opening_variance_share": round(float(np.mean(shares)), 4),
    }
    base = out["predictors"]["mean_drive"]["mouth_mm"]
    for v in (*out["predictors"].values(), out["ceilings"]["jaw_oracle"], out["ceilings"]["opening_oracle"]):
        v["mouth_mm_vs_mean"] = round(1.0 - v["mouth_mm"] / base, 4) if base > 0 else 0.0
    out["reference_lip_gap_std_mm"] = round(float(metric.lip_gap_mm(ref).std()), 4)
    out["lip_vertices"] = int(metric.lips.numel())
    return out


def save_run_network(
    capture, run: str | Path, cfg: EvalDriveConfig = EvalDriveConfig(), report: dict | None = None
) -> tuple[Path, str]:
    """Fine-tune the prior on ALL timesteps of the capture and store it as ``RUN/audio_to_drive.safetensors``
    (``nerfhead drive RUN`` then uses it).

    With the held-out ``report`` of :func:`evaluate_drive`, the gradient steps are kept only when they lowered the
    held-out lip-vertex error below the calibrated prior's; otherwise the calibrated prior is stored (a few
    seconds of video can be too little to fine-tune on). The choice is recorded in the file's info.

    Returns:
        (the file, "finetuned" or "calibrated").
    """
    import dataclasses

    from nerfhead.audio.train import finetune_on_capture

    ft = cfg.finetune
    chosen = "finetuned"
    if report is not None and ft.steps > 0:
        p = report["predictors"]
        if p["calibrated"]["mouth_mm"] < p["network"]["mouth_mm"]:
            ft, chosen = dataclasses.replace(ft, steps=0), "calibrated"
    driver, _, info = finetune_on_capture(capture, None, cfg.phonetic, ft)
    meta = {"finetuned_on": str(capture.audio_path), "chosen": chosen, "steps": ft.steps, **info}
    return driver.network.save(Path(run) / RUN_NETWORK, meta), chosen
