"""Camera geometry of the tracker: posing and projecting landmark points, linear triangulation, rigid
alignment, and the camera of a monocular video.

Conventions as everywhere (docs/conventions.md): OpenCV camera axes, world-to-camera ``viewmat``, continuous
pixel coordinates with pixel centres at +0.5, head-to-world pose ``x_world = R(rotation) x_head + translation``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nerfhead.data.cameras import Cameras, distort, intrinsics_matrix, undistort
from nerfhead.geometry import axis_angle_to_matrix


def _rotate(R: Tensor, p: Tensor) -> Tensor:
    """``R @ p`` for R [N, 3, 3] and points [N, M, 3]."""
    return p @ R.transpose(-1, -2)


def pose_points(points: Tensor, rotation: Tensor, translation: Tensor) -> Tensor:
    """Head-to-world: ``R(rotation) p + translation`` for points [T, M, 3], rotation/translation [T, 3]."""
    return _rotate(axis_angle_to_matrix(rotation), points) + translation[:, None]


def to_pixels(K: Tensor, dist: Tensor | None, pc: Tensor) -> tuple[Tensor, Tensor]:
    """Camera-space points [N, M, 3] -> (pixels [N, M, 2], depth [N, M]) with K [N, 3, 3], dist [N, k]."""
    z = pc[..., 2]
    xy = pc[..., :2] / z.clamp_min(1e-6)[..., None]
    if dist is not None:
        xy = distort(xy, dist[:, None, :])
    Kn = K[:, None]
    u = Kn[..., 0, 0] * xy[..., 0] + Kn[..., 0, 1] * xy[..., 1] + Kn[..., 0, 2]
    v = Kn[..., 1, 1] * xy[..., 1] + Kn[..., 1, 2]
    return torch.stack([u, v], -1), z


def project(K: Tensor, viewmat: Tensor, dist: Tensor | None, world: Tensor) -> tuple[Tensor, Tensor]:
    """Project per-observation world points into their cameras.

    Args:
        K: [N, 3, 3]; viewmat: [N, 4, 4]; dist: [N, k] or None; world: [N, M, 3].

    Returns:
        pixels [N, M, 2] and camera-space depth [N, M].
    """
    return to_pixels(K, dist, _rotate(viewmat[:, :3, :3], world) + viewmat[:, None, :3, 3])


def head_to_camera(
    points: Tensor, rotation: Tensor, translation: Tensor, viewmat: Tensor, timestep: Tensor
) -> Tensor:
    """Canonical points [T, M, 3] posed by rotation/translation [T, 3] and seen by per-observation cameras
    viewmat [N, 4, 4] at ``timestep`` [N]: camera-space points [N, M, 3] (the two rigid maps folded in one)."""
    Rh = axis_angle_to_matrix(rotation)[timestep]
    Rv, tv = viewmat[:, :3, :3], viewmat[:, :3, 3]
    R = Rv @ Rh
    t = (Rv @ translation[timestep][..., None])[..., 0] + tv
    return _rotate(R, points[timestep]) + t[:, None]


def normalized_coords(cameras: Cameras, camera: Tensor, points: Tensor) -> Tensor:
    """Undistorted normalised camera coordinates [N, M, 2] of pixels [N, M, 2] seen by ``camera`` [N]."""
    K = cameras.K.double()[camera][:, None]
    p = points.double()
    yn = (p[..., 1] - K[..., 1, 2]) / K[..., 1, 1]
    xn = (p[..., 0] - K[..., 0, 2] - K[..., 0, 1] * yn) / K[..., 0, 0]
    xy = torch.stack([xn, yn], -1)
    if cameras.dist is not None:
        xy = undistort(xy, cameras.dist.double()[camera][:, None])
    return xy


def triangulate(
    cameras: Cameras, points: Tensor, camera: Tensor, timestep: Tensor, num_timesteps: int
) -> tuple[Tensor, Tensor]:
    """Linear (DLT) triangulation of every landmark at every timestep seen by two or more observations.

    Args:
        cameras: the cameras.
        points: [N, M, 2] pixels of N observations.
        camera: [N] camera index of each observation; timestep: [N] its timestep.
        num_timesteps: T.

    Returns:
        world points [T, M, 3] (float64; garbage where not ok) and ok [T] bool.
    """
    T, M = num_timesteps, points.shape[1]
    xy = normalized_coords(cameras, camera, points)
    P = cameras.viewmat.double()[camera][:, None, :3, :]  # [N, 1, 3, 4]
    rows = torch.stack(
        [xy[..., 0:1] * P[..., 2, :] - P[..., 0, :], xy[..., 1:2] * P[..., 2, :] - P[..., 1, :]], -2
    )
    AtA = rows.transpose(-1, -2) @ rows  # [N, M, 4, 4]
    acc = torch.zeros(T, M, 4, 4, dtype=torch.float64).index_add_(0, timestep, AtA)
    count = torch.bincount(timestep, minlength=T)
    ok = count >= 2
    acc[~ok] = torch.eye(4, dtype=torch.float64)
    _, vecs = torch.linalg.eigh(acc)
    X = vecs[..., 0]
    w = X[..., 3:]
    X = X[..., :3] / torch.where(w.abs() > 1e-12, w, torch.full_like(w, 1e-12))
    return X, ok


def kabsch(src: Tensor, dst: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """Rigid transforms with ``R src + t ~ dst`` (weighted least squares).

    Args:
        src: [M, 3]; dst: [T, M, 3]; weight: [M].

    Returns:
        R [T, 3, 3], t [T, 3].
    """
    w = (weight / weight.sum())[None, :, None]
    ms = (src[None] * w).sum(1)  # [1, 3]
    md = (dst * w).sum(1)  # [T, 3]
    H = ((src[None] - ms[:, None]) * w).transpose(1, 2) @ (dst - md[:, None])  # [T, 3, 3]
    U, _, Vh = torch.linalg.svd(H)
    d = torch.sign(torch.linalg.det(Vh.transpose(1, 2) @ U.transpose(1, 2)))
    D = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
    R = Vh.transpose(1, 2) @ D @ U.transpose(1, 2)
    t = md - (R @ ms[0][None, :, None])[..., 0]
    return R, t


def face_size(points: Tensor) -> Tensor:
    """[...] landmark spread of [..., M, 2] pixels: RMS distance to their centroid (at least 1 pixel)."""
    c = points.mean(-2, keepdim=True)
    return ((points - c) ** 2).sum(-1).mean(-1).sqrt().clamp_min(1.0)


def frontal_spread(canon: Tensor) -> Tensor:
    """RMS distance (metres) of canonical landmarks [M, 3] to their centroid in a frontal view (x and y only):
    the 3D counterpart of :func:`face_size`, so ``depth = focal * frontal_spread / face_size``."""
    c = canon[:, :2] - canon[:, :2].mean(0)
    return (c**2).sum(-1).mean().sqrt()


def mono_camera(width: int, height: int, focal: float, distance: float) -> Cameras:
    """A centred camera at ``(0, 0, distance)`` looking down -z with +y up (see the module docstring)."""
    viewmat = torch.eye(4, dtype=torch.float64)
    viewmat[1, 1] = viewmat[2, 2] = -1.0
    viewmat[2, 3] = distance
    f = torch.tensor([float(focal)], dtype=torch.float64)
    K = intrinsics_matrix(f, f, f.new_tensor([width / 2]), f.new_tensor([height / 2]))
    return Cameras(K, viewmat[None], torch.tensor([width]), torch.tensor([height]))
