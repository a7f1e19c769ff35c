"""``AudioToDrive``: a small windowed temporal encoder from log-mel (optionally + phonetic viseme features) to the
Drive's 53 expression coefficients and a small head-rotation residual.

One sample is a window of ``window`` feature frames (100 per second) centred on a video frame's timestamp
(:func:`windows_at`). The window is level-normalised by its own loudest frame (gain-invariant, with a floor so
that quiet noise is not blown up into speech), projected per frame, passed through a strided conv stack and
self-attention layers, and read out at the centre tokens:

    [B, W, n_mels (+15)] -> Linear -> Conv1d x2 (stride 2) -> + pos -> TransformerEncoder x L -> centre pool
    -> MLP -> sigmoid -> per-column affine, clamped [B, 53] (expression in [0, 1]),
           tanh * max_rotation [B, 3] (axis-angle residual)

The per-column affine is the identity in the prior; per-avatar calibration sets it (:mod:`nerfhead.audio.train`).

Weights are stored as safetensors with the config as JSON metadata (:meth:`AudioToDrive.save` /
:func:`load_network`); never pickled.

>>> net = AudioToDrive(AudioToDriveConfig())
>>> expr, rot = net(torch.zeros(2, net.config.window, net.config.in_dim))
>>> tuple(expr.shape), tuple(rot.shape)
((2, 53), (2, 3))
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from nerfhead.data.expressions import NUM_EXPRESSIONS

NETWORK_VERSION = 1
"""Bumped when the architecture or the input normalisation changes (stored in the file)."""

N_VISEMES = 15
"""Phonetic front end width: one channel per viseme of :data:`nerfhead.audio.visemes.VISEME_SHAPES`."""


@dataclass(frozen=True)
class AudioToDriveConfig:
    """Architecture and input settings of :class:`AudioToDrive`."""

    n_mels: int = 80
    """Log-mel bands of the input (:class:`~nerfhead.audio.features.LogMelConfig`)."""
    phonetic: bool = False
    """Also take 15 viseme channels from the pocketsphinx phone recogniser (needs the ``audio`` extra)."""
    window: int = 48
    """Window length in feature frames (10 ms each), centred on the predicted frame: 48 = 0.48 s, so the
    network looks 0.24 s ahead."""
    width: int = 64
    """Channels of the conv and attention layers."""
    layers: int = 2
    """Self-attention (transformer encoder) layers."""
    heads: int = 4
    """Attention heads."""
    dropout: float = 0.1
    """Dropout in the attention layers (training only)."""
    level_floor: float = -16.0
    """Lowest window reference level (natural-log mel power, frame mean): quieter windows are not amplified
    past it. Speech peaks of the bundled clips sit near -11."""
    level_range: float = 12.0
    """Levels more than this many nats below the reference are clamped (silence and noise look alike)."""
    max_rotation: float = 0.15
    """Bound of the head-rotation residual per axis (radians)."""

    @property
    def in_dim(self) -> int:
        """Channels per input frame."""
        return self.n_mels + (N_VISEMES if self.phonetic else 0)

    @property
    def look_ahead_s(self) -> float:
        """Seconds of audio after a frame's timestamp the network reads."""
        return (self.window // 2) / 100.0


def normalise_window(x: Tensor, cfg: AudioToDriveConfig) -> Tensor:
    """Level-normalise windows of raw log-mel (+ viseme channels): [B, W, in_dim] -> same shape.

    The mel part becomes ``clamp(logmel - ref, -range) / 4 + 1`` with ``ref = max(max_t mean_b logmel,
    level_floor)``; viseme channels pass through.
    """
    mel = x[..., : cfg.n_mels]
    ref = mel.mean(-1).amax(-1).clamp(min=cfg.level_floor)[:, None, None]
    out = (mel - ref).clamp(min=-cfg.level_range) / 4.0 + 1.0
    if cfg.phonetic:
        out = torch.cat([out, x[..., cfg.n_mels :]], dim=-1)
    return out


class _AttentionBlock(nn.Module):
    """Pre-norm transformer block (self-attention + GELU MLP), batch first: [B, N, C] -> [B, N, C]."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} must be a multiple of heads {heads}")
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        a = torch.nn.functional.scaled_dot_product_attention(q, k, v)  # [B, H, N, C / H]
        x = x + self.drop(self.out(a.transpose(1, 2).reshape(B, N, C)))
        return x + self.drop(self.mlp(self.norm2(x)))


class AudioToDrive(nn.Module):
    """Windowed conv + self-attention encoder: audio feature windows -> expression [B, 53] and rotation [B, 3].

    Args:
        config: architecture (window length, width, layers, phonetic input).
    """

    out_scale: Tensor
    out_shift: Tensor
    network_info: dict
    """The ``info`` stored with the weights (:meth:`save`; empty for a network not read from a file)."""

    def __init__(self, config: AudioToDriveConfig = AudioToDriveConfig()):
        super().__init__()
        if config.window < 8 or config.window % 4:
            raise ValueError(f"window must be a multiple of 4 and >= 8, got {config.window}")
        self.config = config
        self.network_info = {}
        C = config.width
        self.proj = nn.Sequential(nn.Linear(config.in_dim, C), nn.LayerNorm(C))
        self.conv = nn.Sequential(
            nn.Conv1d(C, C, 5, stride=2, padding=2),
            nn.GELU(),
            nn.Conv1d(C, C, 5, stride=2, padding=2),
            nn.GELU(),
        )
        self.tokens = config.window // 4
        self.pos = nn.Parameter(torch.randn(self.tokens, C) * 0.02)
        self.encoder = nn.Sequential(
            *(_AttentionBlock(C, config.heads, config.dropout) for _ in range(config.layers))
        )
        self.norm = nn.LayerNorm(C)
        self.head = nn.Sequential(nn.Linear(2 * C, C), nn.GELU())
        self.expression = nn.Linear(C, NUM_EXPRESSIONS)
        self.rotation = nn.Linear(C, 3)
        nn.init.zeros_(self.rotation.weight)
        nn.init.zeros_(self.rotation.bias)
        nn.init.constant_(self.expression.bias, -3.0)  # start near the rest face
        # per-column affine read-out after the sigmoid (identity for the prior; set by per-avatar calibration)
        self.register_buffer("out_scale", torch.ones(NUM_EXPRESSIONS))
        self.register_buffer("out_shift", torch.zeros(NUM_EXPRESSIONS))

    def forward(self, windows: Tensor) -> tuple[Tensor, Tensor]:
        """Predict one Drive frame per window.

        Args:
            windows: [B, window, in_dim] raw log-mel frames (+ viseme channels), centre frame at ``window // 2``.

        Returns:
            (expression [B, 53] in [0, 1], rotation residual [B, 3] axis-angle in (-max_rotation, max_rotation)).
        """
        cfg = self.config
        if windows.ndim != 3 or windows.shape[1:] != (cfg.window, cfg.in_dim):
            raise ValueError(f"windows must be [B, {cfg.window}, {cfg.in_dim}], got {tuple(windows.shape)}")
        h = self.proj(normalise_window(windows.float(), cfg))  # [B, W, C]
        h = self.conv(h.transpose(1, 2)).transpose(1, 2) + self.pos  # [B, W/4, C]
        h = self.norm(self.encoder(h))
        c = self.tokens // 2
        z = self.head(torch.cat([h[:, c - 1 : c + 1].mean(1), h.mean(1)], dim=-1))
        expr = (torch.sigmoid(self.expression(z)) * self.out_scale + self.out_shift).clamp(0.0, 1.0)
        return expr, torch.tanh(self.rotation(z)) * cfg.max_rotation

    @torch.no_grad()
    def predict(self, windows: Tensor, batch: int = 512) -> tuple[Tensor, Tensor]:
        """:meth:`forward` in eval mode over any number of windows, ``batch`` at a time (no grad)."""
        was = self.training
        self.eval()
        outs = [self(windows[i : i + batch]) for i in range(0, windows.shape[0], batch)]
        self.train(was)
        if not outs:
            return torch.zeros(0, NUM_EXPRESSIONS), torch.zeros(0, 3)
        return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])

    def save(self, path: str | os.PathLike, info: dict | None = None) -> Path:
        """Write weights (float32 safetensors) with the config and ``info`` as JSON metadata."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": "nerfhead.AudioToDrive",
            "version": str(NETWORK_VERSION),
            "config": json.dumps(dataclasses.asdict(self.config)),
            "info": json.dumps(info or {}),
        }
        tensors = {k: v.detach().float().cpu().contiguous() for k, v in self.state_dict().items()}
        tmp = path.with_name(path.name + ".tmp")
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)
        return path


def load_network(path: str | os.PathLike, device: str | torch.device = "cpu") -> AudioToDrive:
    """Read a network written by :meth:`AudioToDrive.save` (eval mode).

    Raises:
        InputError: the file is missing, not a safetensors file or not an AudioToDrive of this version.
    """
    from safetensors import safe_open

    from nerfhead.errors import InputError

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "network file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise InputError(path, f"not a readable safetensors file ({type(e).__name__})") from None
    if meta.get("format") != "nerfhead.AudioToDrive":
        raise InputError(path, "not an AudioToDrive network file")
    if meta.get("version") != str(NETWORK_VERSION):
        raise InputError(path, f"AudioToDrive version {meta.get('version')}, expected {NETWORK_VERSION}")
    net = AudioToDrive(AudioToDriveConfig(**json.loads(meta["config"])))
    net.load_state_dict(tensors)
    net.network_info = json.loads(meta.get("info", "{}"))
    return net.to(device).eval()


def windows_at(features: Tensor, centres: Tensor | np.ndarray, window: int) -> Tensor:
    """Windows of feature frames centred on fractional feature positions (edges repeat the end frames).

    Args:
        features: [F, D] frames at 100 per second.
        centres: [N] feature positions (``time * 100``); rounded to the nearest frame.
        window: W; the centre frame sits at index ``W // 2``.

    Returns:
        [N, W, D].
    """
    F = features.shape[0]
    if F == 0:
        raise ValueError("windows_at needs at least one feature frame")
    c = torch.floor(torch.as_tensor(centres, dtype=torch.float64) + 0.5).long()
    idx = (c[:, None] + torch.arange(window)[None] - window // 2).clamp_(0, F - 1)
    return features[idx.reshape(-1)].reshape(c.shape[0], window, features.shape[1])
