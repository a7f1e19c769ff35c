"""A tiny rig capture for fast tests: a *teacher* splat head (coarse head-and-neck triangles, colours from a
smooth function of position) rendered by a few cameras at a few drive timesteps, written as PNG images + masks.

The student (a fresh ``SplatHead`` on the same plain ICT head) starts grey and has to learn the colours.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from nerfhead.data.cameras import Cameras
from nerfhead.data.capture import Capture, Frame
from nerfhead.data.drive import Drive
from nerfhead.data.images import save_image, save_mask
from nerfhead.models.deform import DeformConfig
from nerfhead.models.splat_head import SplatHead, SplatHeadConfig
from nerfhead.splats.gaussians import rgb_to_sh0

TINY_PARTS = ("head_and_neck",)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread: bitwise-reproducible kernels (the compiled hash-grid backward uses atomics with
    several threads) and no OpenMP oversubscription when the machine is busy."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def tiny_head_config(**kw: Any) -> SplatHeadConfig:
    """A small splat head: coarse head triangles only, SH degree 1, a small deformation net."""
    base = SplatHeadConfig(
        parts=TINY_PARTS,
        triangle_stride=3,
        sh_degree=1,
        deform=DeformConfig(n_levels=4, log2_hashmap_size=10, hidden=16, expression_code=8),
    )
    return dataclasses.replace(base, **kw)


def tiny_cameras(size: int = 40, n: int = 4) -> Cameras:
    """n cameras on a ring 0.7 m around the head (y up), looking at its centre."""
    ang = torch.linspace(-0.9, 0.9, n) + 0.05
    eye = torch.stack([0.7 * torch.sin(ang), 0.05 * torch.ones(n), 0.7 * torch.cos(ang)], -1)
    return Cameras.from_look_at(
        eye, torch.tensor([0.0, -0.03, 0.0]), torch.tensor([0.0, 1.0, 0.0]), 1.6 * size, size, size
    )


def tiny_drive(T: int = 3) -> Drive:
    """T timesteps of small head turns and some expression."""
    g = torch.Generator().manual_seed(1)
    d = Drive.neutral(T)
    rot = torch.zeros(T, 3)
    rot[:, 1] = torch.linspace(-0.15, 0.15, T)
    expr = torch.rand(T, 53, generator=g) * 0.5
    return d.replace(rotation=rot, expression=expr)


@torch.no_grad()
def make_teacher() -> SplatHead:
    """The teacher: opaque, coloured Gaussians (no deformation network)."""
    torch.manual_seed(0)
    cfg = tiny_head_config(sh_degree=0, deform=DeformConfig(enabled=False), init_opacity=0.95, init_scale=0.7)
    teacher = SplatHead(cfg)
    pos, _ = teacher.canonical_positions()
    rgb = 0.5 + 0.35 * torch.stack(
        [torch.sin(40 * pos[:, 0]), torch.cos(30 * pos[:, 1]), torch.sin(25 * pos[:, 2] + 1)], -1
    )
    teacher.splats.params["sh0"][:] = rgb_to_sh0(rgb)[:, None, :]
    return teacher


def write_tiny_capture(root: Path, size: int = 40, n_cams: int = 4, T: int = 3) -> Capture:
    """Render the teacher into ``root`` and return the Capture (cameras 0..n-2 train, the last is held out)."""
    teacher = make_teacher()
    cams = tiny_cameras(size, n_cams)
    drive = tiny_drive(T)
    frames = []
    for t in range(T):
        with torch.no_grad():
            out = teacher.render(cams, drive[t], torch.ones(3))
        for c in range(n_cams):
            img, msk = root / f"c{c}_t{t}.png", root / f"c{c}_t{t}_mask.png"
            save_image(img, out.rgb[c])
            save_mask(msk, out.alpha[c, ..., 0])
            frames.append(Frame(camera=c, timestep=t, timestamp=t / 25.0, image_path=img, mask_path=msk))
    return Capture(
        cameras=cams,
        frames=tuple(frames),
        fps=25.0,
        drive=drive,
        train_cameras=tuple(range(n_cams - 1)),
        test_cameras=(n_cams - 1,),
        metadata={"background": [1.0, 1.0, 1.0]},
        cache_size=-1,
    )


def psnr_of_grey(capture: Capture) -> float:
    """PSNR of a uniform grey render against the held-out images (the bar a fit must clear)."""
    vals = []
    for c in capture.test_cameras or ():
        for t in range(capture.num_timesteps):
            img = capture.image(capture.frame_index(c, t))  # type: ignore[arg-type]
            m = capture.mask(capture.frame_index(c, t))  # type: ignore[arg-type]
            grey = 0.5 * m[..., None] + (1 - m[..., None])  # type: ignore[index]
            vals.append(-10 * math.log10(float(((img - grey) ** 2).mean())))
    return sum(vals) / len(vals)


def fit_tiny_run_cli(tmp: Path, steps: int, *extra: str) -> tuple[Path, Any]:
    """``nerfhead fit`` (a subprocess, ``--preset fast``, no evaluation) on the tiny capture written into
    ``tmp/cap``; returns (run folder ``tmp/run``, the CompletedProcess)."""
    import subprocess
    import sys

    from nerfhead.data import save_capture

    save_capture(write_tiny_capture(tmp / "cap"), tmp / "cap")
    run = tmp / "run"
    cmd = [sys.executable, "-m", "nerfhead", "fit", str(tmp / "cap"), "--out", str(run), "--preset", "fast"]
    cmd += ["--steps", str(steps), "--no-evaluate", "--threads", "1", *extra]
    return run, subprocess.run(cmd, capture_output=True, text=True, timeout=300)
