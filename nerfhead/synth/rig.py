"""Camera rigs of the synthetic capture: ``nersemble16`` (16 cameras on a frontal arc) and ``mono`` (one hand-held
camera that moves gently from frame to frame).

World frame = the head's canonical frame at rest: metres, +y up, the face looks toward +z, origin at the head
centre (:mod:`nerfhead.parametric.ict`). Cameras are OpenCV (x right, y down, z forward) and look at
``target``. Focal lengths come from a vertical field of view: ``f = (height / 2) / tan(fov / 2)``, principal
point at the image centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from nerfhead.data.cameras import Cameras
from nerfhead.errors import InputError
from nerfhead.geometry import axis_angle_to_matrix, look_at

RIGS: tuple[str, ...] = ("nersemble16", "mono")
"""Rig preset names."""

# (elevation deg, azimuth deg) of the 16 cameras, top row left to right, then middle, then bottom. Azimuth 0 is
# frontal, positive toward the subject's left (+x). Spread like NeRSemble's frontal rig (16 cameras within
# about +-90 degrees horizontally, three heights), at about 1 m.
NERSEMBLE16_LAYOUT: tuple[tuple[float, float], ...] = (
    (22.0, -60.0),
    (22.0, -30.0),
    (22.0, 0.0),
    (22.0, 30.0),
    (22.0, 60.0),
    (0.0, -85.0),
    (0.0, -50.0),
    (0.0, -17.0),
    (0.0, 17.0),
    (0.0, 50.0),
    (0.0, 85.0),
    (-18.0, -60.0),
    (-18.0, -30.0),
    (-18.0, 0.0),
    (-18.0, 30.0),
    (-18.0, 60.0),
)
NERSEMBLE16_TEST: tuple[int, ...] = (2, 6, 10, 14)
"""Held-out cameras (top frontal, middle -50 deg, middle +85 deg, bottom +30 deg): spread over the arc and the
three heights; the other 12 train."""


@dataclass(frozen=True)
class RigConfig:
    """Where the cameras are and how they see."""

    name: str = "nersemble16"
    """Preset: ``nersemble16`` or ``mono``."""
    width: int = 256
    """Image width in pixels."""
    height: int = 256
    """Image height in pixels."""
    fov_deg: float | None = None
    """Vertical field of view in degrees (default: 20 for nersemble16, 26 for mono)."""
    distance: float | None = None
    """Camera distance to the target in metres (default: 1.0 for nersemble16, 0.75 for mono)."""
    target: tuple[float, float, float] = (0.0, -0.02, 0.0)
    """Point every camera looks at (world metres): a little below the head centre, at the face's middle."""
    shake: float = 1.0
    """Scale of the mono camera's hand-held motion (0 = still)."""

    def check(self) -> None:
        """Raises InputError for values a user can get wrong."""
        if self.name not in RIGS:
            raise InputError(None, f"unknown rig {self.name!r}", hint=f"choose one of {', '.join(RIGS)}")
        for what, v in (("width", self.width), ("height", self.height)):
            if not 8 <= int(v) <= 8192:
                raise InputError(None, f"image {what} {v} out of range", hint="use 8 .. 8192 pixels")
        if self.fov_deg is not None and not 1.0 <= self.fov_deg <= 150.0:
            raise InputError(None, f"field of view {self.fov_deg} deg out of range", hint="use 1 .. 150")
        if self.distance is not None and not 0.2 <= self.distance <= 20.0:
            raise InputError(None, f"camera distance {self.distance} m out of range", hint="use 0.2 .. 20")
        if not (math.isfinite(self.shake) and 0.0 <= self.shake <= 10.0):
            raise InputError(None, f"shake {self.shake} out of range", hint="use 0 .. 10")


@dataclass(frozen=True)
class Rig:
    """Cameras of a capture and which camera films each timestep.

    Attributes:
        cameras: N cameras (float32).
        frame_cameras: [T] lists of the camera indices filming timestep t (all N for a fixed rig; camera t for
            the mono rig, whose pose changes every frame).
        train_cameras: indices for training, or None.
        test_cameras: held-out indices, or None.
    """

    cameras: Cameras
    frame_cameras: tuple[tuple[int, ...], ...]
    train_cameras: tuple[int, ...] | None
    test_cameras: tuple[int, ...] | None


def focal_from_fov(fov_deg: float, height: int) -> float:
    """Focal length in pixels for a vertical field of view."""
    return (height / 2.0) / math.tan(math.radians(fov_deg) / 2.0)


def intrinsics_from_fov(n: int, width: int, height: int, fov_deg: float) -> Tensor:
    """[n, 3, 3] identical intrinsics: vertical field of view ``fov_deg``, principal point at the centre."""
    f = focal_from_fov(fov_deg, height)
    K = torch.tensor([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])
    return K.expand(n, 3, 3).clone()


def eyes_on_sphere(layout: tuple[tuple[float, float], ...], distance: float, target: Tensor) -> Tensor:
    """[n, 3] camera centres at ``distance`` from ``target`` for (elevation, azimuth) pairs in degrees (azimuth 0
    on +z, positive toward +x; elevation positive toward +y)."""
    el = torch.tensor([math.radians(e) for e, _ in layout])
    az = torch.tensor([math.radians(a) for _, a in layout])
    d = torch.stack([torch.sin(az) * torch.cos(el), torch.sin(el), torch.cos(az) * torch.cos(el)], -1)
    return target + distance * d


def nersemble16(cfg: RigConfig) -> Rig:
    """16 fixed cameras on a frontal arc (see ``NERSEMBLE16_LAYOUT``), 12 train + 4 held out."""
    target = torch.tensor(cfg.target)
    dist = 1.0 if cfg.distance is None else cfg.distance
    eyes = eyes_on_sphere(NERSEMBLE16_LAYOUT, dist, target)
    viewmat = look_at(eyes, target, torch.tensor([0.0, 1.0, 0.0]))
    n = len(NERSEMBLE16_LAYOUT)
    cams = Cameras(
        K=intrinsics_from_fov(n, cfg.width, cfg.height, 20.0 if cfg.fov_deg is None else cfg.fov_deg),
        viewmat=viewmat,
        width=torch.full((n,), cfg.width, dtype=torch.int64),
        height=torch.full((n,), cfg.height, dtype=torch.int64),
        names=tuple(f"cam{i:02d}" for i in range(n)),
    )
    test = NERSEMBLE16_TEST
    train = tuple(i for i in range(n) if i not in test)
    return Rig(cams, (), train, test)


def _smooth_noise(T: int, dims: int, gen: torch.Generator, fps: float, hz: tuple[float, ...]) -> Tensor:
    """[T, dims] smooth zero-mean noise in about [-1, 1]: random-phase sines at a few low frequencies."""
    t = torch.arange(T, dtype=torch.float64)[:, None] / fps
    out = torch.zeros(T, dims, dtype=torch.float64)
    for f in hz:
        phase = torch.rand(dims, generator=gen, dtype=torch.float64) * 2 * math.pi
        jitter = 1.0 + 0.3 * (torch.rand(dims, generator=gen, dtype=torch.float64) - 0.5)
        out += torch.sin(2 * math.pi * f * jitter * t + phase)
    return (out / len(hz)).float()


def mono(cfg: RigConfig, num_frames: int, seed: int = 0, fps: float = 25.0) -> Rig:
    """One hand-held camera in front of the face: a new pose per frame (camera t films timestep t).

    The motion is smooth: rotations of up to about 1.5 degrees and translations of about 1 cm (times
    ``cfg.shake``), from sines at 0.15 to 0.9 Hz with random phases (deterministic given ``seed``).
    """
    gen = torch.Generator().manual_seed(10_000 + seed)
    target = torch.tensor(cfg.target)
    dist = 0.75 if cfg.distance is None else cfg.distance
    eye = target + torch.tensor([0.0, 0.0, dist])
    base = look_at(eye, target, torch.tensor([0.0, 1.0, 0.0]))  # [4, 4]
    T = int(num_frames)
    rot = _smooth_noise(T, 3, gen, fps, (0.15, 0.4, 0.9)) * math.radians(1.5) * cfg.shake
    trans = _smooth_noise(T, 3, gen, fps, (0.2, 0.5)) * 0.01 * cfg.shake
    # Perturb the camera in its own frame: cam' = D @ cam, D = [R_d | t_d].
    D = torch.eye(4).repeat(T, 1, 1)
    D[:, :3, :3] = axis_angle_to_matrix(rot)
    D[:, :3, 3] = trans
    viewmat = D @ base
    cams = Cameras(
        K=intrinsics_from_fov(T, cfg.width, cfg.height, 26.0 if cfg.fov_deg is None else cfg.fov_deg),
        viewmat=viewmat,
        width=torch.full((T,), cfg.width, dtype=torch.int64),
        height=torch.full((T,), cfg.height, dtype=torch.int64),
        names=tuple(f"mono_{t:05d}" for t in range(T)),
    )
    return Rig(cams, tuple((t,) for t in range(T)), None, None)


def make_rig(cfg: RigConfig, num_frames: int, seed: int = 0, fps: float = 25.0) -> Rig:
    """The rig named by ``cfg.name`` for ``num_frames`` timesteps (fills ``frame_cameras``).

    Raises:
        InputError: an unknown rig name or out-of-range options.
    """
    cfg.check()
    if cfg.name == "mono":
        return mono(cfg, num_frames, seed, fps)
    rig = nersemble16(cfg)
    every = tuple(range(len(rig.cameras)))
    return Rig(rig.cameras, tuple(every for _ in range(int(num_frames))), rig.train_cameras, rig.test_cameras)
