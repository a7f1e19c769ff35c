"""Tiny synthetic captures for the data tests (imported by the test files; pytest puts this folder on sys.path)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from nerfhead.data import Cameras, Capture, Drive, Frame, save_image, save_mask


def tiny_cameras(n: int = 3, width: int = 16, height: int = 12, dist: bool = False) -> Cameras:
    """``n`` cameras on a 1 m circle around the origin (world +y up), looking at the origin, float64."""
    ang = torch.linspace(-0.6, 0.6, n, dtype=torch.float64)
    eye = torch.stack([torch.sin(ang), 0.1 * torch.ones_like(ang), torch.cos(ang)], -1)
    cams = Cameras.from_look_at(
        eye,
        torch.zeros(3, dtype=torch.float64),
        torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64),
        focal=20.0,
        width=width,
        height=height,
        names=[f"cam{i:02d}" for i in range(n)],
    )
    if dist:
        d = torch.tensor([[-0.05, 0.01, 0.001, -0.002, 0.0005]], dtype=torch.float64).repeat(n, 1)
        cams = Cameras(cams.K, cams.viewmat, cams.width, cams.height, d, cams.names)
    return cams


def write_tiny_capture(
    root: Path,
    n_cams: int = 3,
    T: int = 4,
    width: int = 16,
    height: int = 12,
    masks: bool = True,
    drive: bool = True,
    audio: bool = False,
    dist: bool = False,
    fps: float = 25.0,
) -> Capture:
    """Write images (+ masks, drive, audio) under ``root`` and return the Capture (not yet saved as JSON)."""
    rng = np.random.default_rng(0)
    cams = tiny_cameras(n_cams, width, height, dist)
    frames = []
    yy, xx = np.mgrid[0:height, 0:width]
    for t in range(T):
        for c in range(n_cams):
            img = root / "images" / f"cam{c:02d}" / f"{t:05d}.png"
            save_image(img, rng.random((height, width, 3)))
            mp = None
            if masks:
                mp = root / "masks" / f"cam{c:02d}" / f"{t:05d}.png"
                circle = ((xx - width / 2) ** 2 + (yy - height / 2) ** 2 < (height / 3) ** 2).astype(
                    np.float32
                )
                save_mask(mp, circle)
            frames.append(Frame(c, t, t / fps, img, mp))
    d = None
    if drive:
        g = torch.Generator().manual_seed(0)
        d = Drive(
            rotation=0.1 * torch.randn(T, 3, generator=g),
            translation=0.01 * torch.randn(T, 3, generator=g),
            expression=torch.rand(T, 53, generator=g),
            latent=torch.randn(T, 4, generator=g),
            fps=fps,
        )
    audio_path = None
    if audio:
        import soundfile

        audio_path = root / "audio.wav"
        sr = 16000
        s = np.sin(2 * math.pi * 220 * np.arange(int(sr * T / fps)) / sr).astype(np.float32)
        soundfile.write(str(audio_path), s, sr)
    test = (n_cams - 1,) if n_cams > 1 else None
    train = tuple(range(n_cams - 1)) if n_cams > 1 else None
    return Capture(
        cams,
        tuple(frames),
        fps,
        d,
        audio_path,
        0.0,
        train_cameras=train,
        test_cameras=test,
        metadata={"subject": "synthetic"},
    )
