"""The audio prior trains on the engine's loop: the stateless one-cycle schedule equals PyTorch's OneCycleLR,
and a short run learns targets that depend on the audio features (an untrained network does not)."""

from __future__ import annotations

import json

import torch

from nerfhead.audio.network import AudioToDriveConfig
from nerfhead.audio.train import ClipData, PretrainConfig, one_cycle, pretrain


def test_one_cycle_matches_torch():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=2e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=97, pct_start=0.1)
    for step in range(97):
        lr, beta1 = one_cycle(step, 97, 2e-3)
        g = opt.param_groups[0]
        assert abs(lr - g["lr"]) <= 1e-12 * g["lr"] and abs(beta1 - g["betas"][0]) <= 1e-12
        opt.step()
        sched.step()


def _clips(cfg: AudioToDriveConfig) -> list[ClipData]:
    g = torch.Generator().manual_seed(0)
    out = []
    for k in range(2):
        feats = torch.randn(400, cfg.in_dim, generator=g) * 3 - 8  # log-mel-like levels
        smooth = torch.nn.functional.avg_pool1d(feats.T[None], 5, 1, 2)[0].T
        targets = torch.sigmoid(smooth[:, :53] + 8).clamp(0, 1)  # a function of the local features
        out.append(ClipData(f"clip{k}@x1", feats, targets, 320))
    return out


def test_prior_learns_on_the_engine(tmp_path):
    net_cfg = AudioToDriveConfig(width=32, layers=1, window=16)
    data = _clips(net_cfg)
    cfg = PretrainConfig(network=net_cfg, steps=120, batch=32, lr=3e-3)
    _, untrained = pretrain(data, PretrainConfig(network=net_cfg, steps=1, batch=32, lr=1e-9))
    _, trained = pretrain(data, cfg, run_dir=tmp_path / "run")
    assert trained["val_mse"] < 0.6 * untrained["val_mse"], (trained, untrained)
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 120 and (tmp_path / "run" / "checkpoints").is_dir()
