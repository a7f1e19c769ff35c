"""Training of :class:`~nerfhead.audio.network.AudioToDrive`: the generic prior (speech clips with rule targets)
and per-avatar fine-tuning (a capture's audio and Drive). Inference (:class:`NetworkDriver`) is in
:mod:`nerfhead.audio.speech`.

Prior: every clip (and speed / noise augmented copies) is turned into log-mel frames and, as targets, the
phoneme → viseme → ARKit rule curves of :class:`~nerfhead.audio.driver.RuleVisemeDriver` at the same 100 Hz
frames; the last ``val_fraction`` of each clip is held out for validation. Fine-tuning starts from the prior and
fits the training timesteps' audio windows to their Drive frames, with an L2 pull towards the prior's weights
(a short capture has few frames).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nerfhead.audio.features import normalise_loudness
from nerfhead.audio.network import AudioToDrive, AudioToDriveConfig, load_network, windows_at
from nerfhead.audio.speech import NetworkDriver, audio_features, prior_path
from nerfhead.audio.visemes import MOUTH_COLUMNS, PhonemeRecognizer
from nerfhead.data.expressions import EXPRESSION_INDEX, NUM_EXPRESSIONS

_JAW = EXPRESSION_INDEX["jawOpen"]


# ------------------------------------------------------------------------------------------------ prior


@dataclass(frozen=True)
class PretrainConfig:
    """Settings of the prior's training (``scripts/train_audio_prior.py``)."""

    network: AudioToDriveConfig = field(default_factory=AudioToDriveConfig)
    """Architecture."""
    steps: int = 600
    """Optimiser steps."""
    batch: int = 128
    """Windows per step."""
    lr: float = 2e-3
    """Peak learning rate (AdamW, cosine decay)."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    speeds: tuple[float, ...] = (0.9, 1.0, 1.12)
    """Speed perturbation factors (resampling: tempo and pitch change together)."""
    noise_snr_db: tuple[float, ...] = (25.0,)
    """Extra copies with white noise at these SNRs (of the speed-1 clip)."""
    val_fraction: float = 0.2
    """Last fraction of every clip kept out of training (validation)."""
    mouth_weight: float = 4.0
    """Loss weight of mouth columns (jaw*, mouth*, cheekPuff*) relative to the rest."""
    seed: int = 0
    """Seed of initialisation, augmentation noise and batch sampling."""


@dataclass
class ClipData:
    """Feature frames and rule targets of one (augmented) clip, with its train/validation split."""

    name: str
    features: Tensor  # [F, in_dim]
    targets: Tensor  # [F, 53]
    split: int  # frames [0, split) train, [split, F) validation


def rule_targets(waveform: np.ndarray) -> np.ndarray:
    """The prior's targets: phonetic rule curves (energy rules without pocketsphinx) at 100 Hz: [F, 53]."""
    from nerfhead.audio.driver import RuleDriverConfig, RuleVisemeDriver

    return RuleVisemeDriver(RuleDriverConfig(mode="auto", blinks=False)).feature_curves(waveform)


def prepare_clips(
    clips: Sequence[tuple[str, np.ndarray]], cfg: PretrainConfig, augment: bool = True
) -> list[ClipData]:
    """Features and rule targets of every clip and its augmented copies (deterministic for a seed)."""
    from nerfhead.media.audio import resample

    rng = np.random.default_rng(cfg.seed)
    rec = PhonemeRecognizer() if cfg.network.phonetic else None
    out: list[ClipData] = []
    for name, wav in clips:
        variants: list[tuple[str, np.ndarray]] = []
        for s in cfg.speeds if augment else (1.0,):
            w = wav if s == 1.0 else resample(wav, round(16000 * s), 16000)
            variants.append((f"{name}@x{s:g}", w.astype(np.float32)))
        if augment:
            p = float(np.mean(wav.astype(np.float64) ** 2))
            for snr in cfg.noise_snr_db:
                noise = rng.standard_normal(wav.size) * math.sqrt(p / 10 ** (snr / 10))
                variants.append((f"{name}+n{snr:g}", (wav + noise).astype(np.float32)))
        for vname, w in variants:
            feats = audio_features(w, cfg.network, rec)
            tgt = torch.from_numpy(rule_targets(w).astype(np.float32))
            n = min(feats.shape[0], tgt.shape[0])
            split = int(round(n * (1.0 - cfg.val_fraction)))
            out.append(ClipData(vname, feats[:n], tgt[:n], split))
    return out


def _loss_weights(mouth_weight: float) -> Tensor:
    w = torch.ones(NUM_EXPRESSIONS)
    w[list(MOUTH_COLUMNS)] = mouth_weight
    return w / w.mean()


def _train_windows(data: Sequence[ClipData], window: int) -> tuple[Tensor, Tensor]:
    """All training windows and targets of the clips: ([N, W, D], [N, 53])."""
    xs, ys = [], []
    for c in data:
        idx = torch.arange(c.split)
        xs.append(windows_at(c.features, idx, window))
        ys.append(c.targets[: c.split])
    return torch.cat(xs), torch.cat(ys)


def _val_windows(data: Sequence[ClipData], window: int) -> tuple[Tensor, Tensor]:
    xs, ys = [], []
    for c in data:
        idx = torch.arange(c.split, c.features.shape[0])
        xs.append(windows_at(c.features, idx, window))
        ys.append(c.targets[c.split :])
    return torch.cat(xs), torch.cat(ys)


def one_cycle(step: int, total: int, max_lr: float, pct_start: float = 0.1) -> tuple[float, float]:
    """(learning rate, Adam beta1) at ``step`` of PyTorch's ``OneCycleLR`` with its defaults (cosine, div 25,
    final div 1e4, momentum 0.95 -> 0.85 -> 0.95), as a function of the step (the engine's loop is stateless)."""
    initial = max_lr / 25.0
    phases = [
        (float(pct_start * total) - 1, initial, max_lr, 0.95, 0.85),
        (float(total - 1), max_lr, initial / 1e4, 0.85, 0.95),
    ]
    start = 0.0
    for i, (end, lr0, lr1, m0, m1) in enumerate(phases):
        if step <= end or i == len(phases) - 1:
            pct = (step - start) / max(end - start, 1e-12)
            cos = math.cos(math.pi * pct) + 1
            return lr1 + (lr0 - lr1) / 2.0 * cos, m1 + (m0 - m1) / 2.0 * cos
        start = end
    raise AssertionError("unreachable")


class PriorFit:
    """The prior's training task on the engine's loop (:func:`nerfhead.engine.trainer.fit`): checkpoints, exact
    resume, the NaN guard and data-parallel runs under torchrun (each rank its share of every batch)."""

    def __init__(self, data: Sequence[ClipData], cfg: PretrainConfig):
        torch.manual_seed(cfg.seed)
        self.cfg, self.data = cfg, data
        self.net = AudioToDrive(cfg.network)
        self.X, self.Y = _train_windows(data, cfg.network.window)
        self.w = _loss_weights(cfg.mouth_weight)
        self.net.train()

    def make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.cfg
        return {"net": torch.optim.AdamW(self.net.parameters(), lr=c.lr, weight_decay=c.weight_decay)}

    def set_learning_rates(self, step: int, optimizers: dict[str, torch.optim.Optimizer]) -> None:
        lr, beta1 = one_cycle(step, self.cfg.steps, self.cfg.lr)
        for g in optimizers["net"].param_groups:
            g["lr"], g["betas"] = lr, (beta1, g["betas"][1])

    def training_loss(self, step: int, generator: torch.Generator) -> Any:
        from nerfhead.engine.distributed import shard
        from nerfhead.engine.trainer import StepOutput

        idx = torch.randint(0, self.X.shape[0], (self.cfg.batch,), generator=generator)
        idx = torch.stack(shard(list(idx)))  # this rank's windows of the global batch
        expr, rot = self.net(self.X[idx])
        loss = ((expr - self.Y[idx]).square() * self.w).mean() + rot.square().mean()
        return StepOutput(loss=loss, scalars={"mse": float(loss.detach())})

    def before_backward(self, step: int, optimizers: Any, out: Any) -> None:
        return None

    def after_step(self, step: int, optimizers: Any, out: Any) -> None:
        return None

    def state_tensors(self) -> dict[str, Tensor]:
        return {"model." + k: v for k, v in self.net.state_dict().items()}

    def load_state_tensors(self, tensors: Mapping[str, Tensor]) -> None:
        self.net.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Validation on the held-out tail of the un-augmented clips (names ending ``@x1``): ``val_mse`` over all
        columns and ``val_jaw_corr``, the Pearson correlation of jawOpen with the rule targets."""
        was = self.net.training
        self.net.eval()
        plain = [c for c in self.data if c.name.endswith("@x1")] or list(self.data)
        Xv, Yv = _val_windows(plain, self.cfg.network.window)
        pv, _ = self.net.predict(Xv)
        self.net.train(was)
        return {
            "val_mse": float((pv - Yv).square().mean()),
            "val_jaw_corr": pearson(pv[:, _JAW], Yv[:, _JAW]),
            "val_windows": int(Xv.shape[0]),
        }

    def avatar_spec(self) -> dict[str, Any]:
        from nerfhead.engine.config import to_dict

        return {"kind": "audio_prior", "fit": to_dict(self.cfg)}


def pretrain(
    data: Sequence[ClipData],
    cfg: PretrainConfig,
    log_every: int = 0,
    run_dir: str | os.PathLike | None = None,
    resume: bool = False,
) -> tuple[AudioToDrive, dict[str, float]]:
    """Train the prior on prepared clips with the engine's loop; returns the network (eval mode) and validation
    numbers (:meth:`PriorFit.evaluate`, plus ``train_windows`` and ``train_seconds``).

    ``run_dir`` keeps the run (``log.jsonl``, checkpoints; ``resume`` continues it); default a temporary folder.
    Under torchrun every rank trains its share of each batch (see :mod:`nerfhead.engine.distributed`).
    """
    import tempfile

    from nerfhead.engine.config import TrainerConfig
    from nerfhead.engine.trainer import fit

    task = PriorFit(data, cfg)
    trainer = TrainerConfig(
        steps=cfg.steps,
        seed=cfg.seed,
        eval_every=0,
        checkpoint_every=max(cfg.steps // 4, 1) if run_dir is not None else 0,
        log_every=log_every or cfg.steps,
        tensorboard=False,
        progress=False,
    )
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = fit(task, run_dir if run_dir is not None else tmp, trainer, resume=resume)
    if log_every:
        print(f"step {result.step}/{cfg.steps} loss {result.scalars.get('loss', float('nan')):.5f}")
    task.net.eval()
    stats = result.eval or task.evaluate()
    return task.net, {
        "val_mse": stats["val_mse"],
        "val_jaw_corr": stats["val_jaw_corr"],
        "train_windows": int(task.X.shape[0]),
        "val_windows": int(stats["val_windows"]),
        "train_seconds": round(time.perf_counter() - t0, 1),
    }


def pearson(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> float:
    """Pearson correlation of two 1-D series (0.0 when either is constant)."""
    x = np.asarray(a, np.float64).reshape(-1)
    y = np.asarray(b, np.float64).reshape(-1)
    x, y = x - x.mean(), y - y.mean()
    d = math.sqrt(float((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / d) if d > 1e-12 else 0.0


# --------------------------------------------------------------------------------------------- fine-tuning


@dataclass(frozen=True)
class FinetuneConfig:
    """Per-avatar fine-tuning of a prior on a capture's audio and Drive."""

    steps: int = 150
    """Optimiser steps (about 5 s on 2 CPU cores; 0 = calibration only)."""
    batch: int = 64
    """Windows per step (sampled with replacement from the training timesteps)."""
    lr: float = 5e-4
    """Learning rate (AdamW, cosine decay)."""
    prior_weight: float = 1e-3
    """L2 pull of every weight towards the prior's value (sum over weights)."""
    mouth_weight: float = 4.0
    """Loss weight of mouth columns relative to the rest."""
    rotation: bool = True
    """Also fit the head-rotation residual (the Drive's rotation minus its training mean)."""
    jitter_frames: int = 1
    """Random shift of each training window by up to this many feature frames (10 ms each)."""
    params: str = "all"
    """Weights to adapt: "all", "head" (the read-out MLP and the output layers; the encoder stays the
    prior's) or "output" (the output layers only)."""
    calibrate: bool = True
    """Before the steps, fit the per-column read-out affine (``out_scale``, ``out_shift``) by shrunk least
    squares of the targets on the prior's predictions over the training frames: the person's resting mouth,
    smile, ... and the amplitude of their jaw from the first step on; columns the prior cannot predict get
    the training mean."""
    shrink: float = 1e-3
    """Ridge term added to each column's prediction variance in the calibration (a column whose prediction
    barely moves gets a scale near 0, i.e. the mean)."""
    seed: int = 0
    """Seed of batch sampling and dropout."""


@torch.no_grad()
def calibrate(net: AudioToDrive, features: Tensor, centres: Tensor, target: Tensor, shrink: float) -> None:
    """Set the read-out affine so that ``y ~ mean_y + a * (p - mean_p)`` per column, ``a = cov(p, y) /
    (var(p) + shrink)`` clipped to [0, 3] (the prior's sign is trusted), with p the network's raw (affine-free)
    output on the training windows."""
    net.out_scale.fill_(1.0)
    net.out_shift.zero_()
    pred, _ = net.predict(windows_at(features, centres, net.config.window))
    p, y = pred.double(), target.double()
    pc, yc = p - p.mean(0), y - y.mean(0)
    a = ((pc * yc).mean(0) / (pc.square().mean(0) + shrink)).clamp(0.0, 3.0)
    net.out_scale.copy_(a.float())
    net.out_shift.copy_((y.mean(0) - a * p.mean(0)).float())


def finetune(
    net: AudioToDrive,
    features: Tensor,
    centres: Tensor,
    expression: Tensor,
    rotation: Tensor | None,
    cfg: FinetuneConfig = FinetuneConfig(),
) -> AudioToDrive:
    """Fit ``net`` (in place, a copy is not made) to Drive frames.

    Args:
        net: starting network (the prior).
        features: [F, in_dim] feature frames of the audio (:func:`audio_features`).
        centres: [N] feature positions of the training frames (``audio time * 100``).
        expression: [N, 53] target expression coefficients.
        rotation: [N, 3] target rotation residuals (axis-angle, already centred) or None.

    Returns:
        ``net`` in eval mode.
    """
    if centres.shape[0] == 0:
        raise ValueError("fine-tuning needs at least one training frame")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    groups = {
        "all": list(net.parameters()),
        "head": [*net.head.parameters(), *net.expression.parameters(), *net.rotation.parameters()],
        "output": [*net.expression.parameters(), *net.rotation.parameters()],
    }
    if cfg.params not in groups:
        raise ValueError(f"params must be one of {sorted(groups)}, got {cfg.params!r}")
    params = groups[cfg.params]
    w = _loss_weights(cfg.mouth_weight)
    Y = expression.float().clamp(0.0, 1.0)
    R = None if rotation is None or not cfg.rotation else rotation.float()
    if cfg.calibrate:
        calibrate(net, features, centres, Y, cfg.shrink)
    anchor = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, cfg.steps))
    net.train()
    c = centres.double()
    for _ in range(cfg.steps):
        idx = torch.randint(0, c.shape[0], (cfg.batch,), generator=gen)
        shift = torch.randint(-cfg.jitter_frames, cfg.jitter_frames + 1, (cfg.batch,), generator=gen)
        x = windows_at(features, c[idx] + shift.double(), net.config.window)
        expr, rot = net(x)
        loss = ((expr - Y[idx]).square() * w).mean()
        if R is not None:
            loss = loss + (rot - R[idx]).square().mean()
        if cfg.prior_weight > 0:
            loss = loss + cfg.prior_weight * sum(
                (p - a).square().sum() for p, a in zip(params, anchor, strict=True)
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


def capture_training_data(
    capture, timesteps: Sequence[int] | Tensor, driver: NetworkDriver, features: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """(centres [N], expression [N, 53], rotation [N, 3]) of a capture's timesteps for :func:`finetune`.

    Audio time of timestep t is ``capture.timestamps[t] - capture.audio_offset``.
    """
    ts = torch.as_tensor(list(timesteps), dtype=torch.long)
    times = capture.timestamps.double()[ts] - float(capture.audio_offset)
    drive = capture.drive
    return times * 100.0, drive.expression[ts].float(), drive.rotation[ts].float()


def finetune_on_capture(
    capture,
    timesteps: Sequence[int] | Tensor | None = None,
    phonetic: bool = False,
    cfg: FinetuneConfig = FinetuneConfig(),
    start: AudioToDrive | None = None,
) -> tuple[NetworkDriver, Tensor, dict[str, float]]:
    """Fine-tune the bundled prior (or ``start``) on a capture's audio and Drive at ``timesteps`` (default all).

    Returns:
        (the fine-tuned driver, the capture's feature frames, info: frames, seconds, mean training rotation).
    """
    from nerfhead.errors import InputError
    from nerfhead.media.audio import load_audio

    if capture.audio_path is None:
        raise InputError(None, "the capture has no audio track")
    if capture.drive is None:
        raise InputError(None, "the capture has no Drive (track it first: nerfhead track)")
    t0 = time.perf_counter()
    wav = normalise_loudness(load_audio(capture.audio_path, 16000)[0])  # as the speech policy feeds it
    net = start if start is not None else load_network(prior_path(phonetic))
    driver = NetworkDriver(net)
    feats = driver.features(wav)
    ts = range(capture.num_timesteps) if timesteps is None else timesteps
    centres, expr, rot = capture_training_data(capture, ts, driver, feats)
    mean_rot = rot.mean(0)
    finetune(net, feats, centres, expr, (rot - mean_rot).clamp(-0.15, 0.15), cfg)
    return driver, feats, {"frames": int(centres.shape[0]), "seconds": round(time.perf_counter() - t0, 2)}
