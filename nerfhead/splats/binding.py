"""Gaussians bound to mesh triangles (GaussianAvatars-style binding).

Every Gaussian belongs to one triangle and stores its mean, rotation and scale in that triangle's local frame.
The frame of triangle ``(v0, v1, v2)`` is

* origin: the centroid ``(v0 + v1 + v2) / 3``;
* rotation ``R = [t | b | n]`` (columns): ``t`` the direction of the edge ``v0 -> v1``, ``n`` the unit normal
  ``(v1 - v0) x (v2 - v0)``, ``b = n x t`` (a right-handed frame, so ``det R = 1``);
* scale ``k``: the mean of the length of the edge ``v0 -> v1`` and the triangle's height over that edge, so a
  Gaussian grows and shrinks with its triangle.

A Gaussian with local mean ``m``, local rotation ``q`` (w, x, y, z) and local log-scale ``s`` sits in world space at
``mu = R (k m) + centroid`` with rotation ``R q`` and scales ``k exp(s)``. Local ``z`` is the surface normal.

>>> import torch
>>> v = torch.tensor([[[0.0, 0, 0], [2.0, 0, 0], [0.0, 2.0, 0]]])
>>> fr = triangle_frames(v, torch.tensor([[0, 1, 2]]))
>>> fr.rotation[0, 0].tolist(), float(fr.scale[0, 0])
([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], 2.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from nerfhead.geometry import matrix_to_quaternion, quaternion_to_matrix

_EPS = 1e-12


@dataclass(frozen=True)
class TriangleFrames:
    """Per-triangle local frames of a batch of posed meshes.

    Attributes:
        rotation: [B, F, 3, 3] columns ``(t, b, n)``, local to world.
        scale: [B, F] isotropic scale ``k`` (metres).
        centroid: [B, F, 3] metres.
    """

    rotation: Tensor
    scale: Tensor
    centroid: Tensor

    def select(self, triangles: Tensor) -> TriangleFrames:
        """Frames of the listed triangles: ``[B, N, ...]`` for ``triangles`` [N] int64."""
        return TriangleFrames(
            self.rotation[:, triangles], self.scale[:, triangles], self.centroid[:, triangles]
        )


def triangle_frames(vertices: Tensor, faces: Tensor) -> TriangleFrames:
    """Local frame of every triangle of a batch of meshes (see the module docstring).

    Args:
        vertices: [B, V, 3] (or [V, 3], treated as B = 1) vertex positions.
        faces: [F, 3] int64 vertex indices.

    Returns:
        TriangleFrames with rotation [B, F, 3, 3], scale [B, F] and centroid [B, F, 3]. Degenerate triangles get a
        finite (arbitrary) frame and a tiny scale instead of NaN.
    """
    if vertices.dim() == 2:
        vertices = vertices[None]
    v0, v1, v2 = (vertices[:, faces[:, i]] for i in range(3))  # [B, F, 3] each
    e1, e2 = v1 - v0, v2 - v0
    len1 = e1.norm(dim=-1)
    t = e1 / len1.clamp_min(_EPS)[..., None]
    cross = torch.linalg.cross(e1, e2, dim=-1)
    area2 = cross.norm(dim=-1)
    n = cross / area2.clamp_min(_EPS)[..., None]
    b = torch.linalg.cross(n, t, dim=-1)
    rotation = torch.stack([t, b, n], dim=-1)  # columns
    height = area2 / len1.clamp_min(_EPS)
    scale = 0.5 * (len1 + height)
    centroid = (v0 + v1 + v2) / 3.0
    return TriangleFrames(rotation=rotation, scale=scale.clamp_min(1e-8), centroid=centroid)


def quaternion_multiply(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product ``a * b`` of quaternions [..., 4] (w, x, y, z); the rotation of ``b`` then ``a``."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        dim=-1,
    )


@dataclass(frozen=True)
class WorldGaussians:
    """Gaussians placed in world space for a batch of B timesteps (activated scales, unit quaternions).

    Attributes:
        means: [B, N, 3] metres.
        quats: [B, N, 4] unit quaternions (w, x, y, z), local to world.
        scales: [B, N, 3] metres (standard deviations along the Gaussian's axes).
    """

    means: Tensor
    quats: Tensor
    scales: Tensor


def bind_to_world(
    frames: TriangleFrames,
    binding: Tensor,
    local_means: Tensor,
    local_quats: Tensor,
    local_log_scales: Tensor,
) -> WorldGaussians:
    """Place triangle-bound Gaussians in world space.

    Args:
        frames: per-triangle frames ([B, F, ...]) of the posed meshes.
        binding: [N] int64 triangle of each Gaussian.
        local_means: [N, 3] or [B, N, 3] (per-timestep offsets already added) in units of the triangle scale.
        local_quats: [N, 4] rotation in the triangle frame (w, x, y, z; normalised here).
        local_log_scales: [N, 3] log of the scales in units of the triangle scale.

    Returns:
        WorldGaussians with [B, N, ...] tensors.
    """
    fr = frames.select(binding)
    k = fr.scale[..., None]  # [B, N, 1]
    means = (fr.rotation @ (k * local_means.expand_as(fr.centroid))[..., None])[..., 0] + fr.centroid
    q_tri = matrix_to_quaternion(fr.rotation)  # [B, N, 4]
    quats = quaternion_multiply(q_tri, F.normalize(local_quats, dim=-1).expand_as(q_tri))
    scales = k * torch.exp(local_log_scales)
    return WorldGaussians(means=means, quats=quats, scales=scales)


def world_to_local(
    frames: TriangleFrames, binding: Tensor, means: Tensor, quats: Tensor, scales: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Inverse of :func:`bind_to_world` for one timestep: world Gaussians to local parameters.

    Args:
        frames: frames of one mesh (B = 1).
        binding: [N] triangle ids.
        means: [N, 3]; quats: [N, 4] (w, x, y, z); scales: [N, 3] activated.

    Returns:
        (local_means [N, 3], local_quats [N, 4], local_log_scales [N, 3]).
    """
    fr = frames.select(binding)
    R, k, c = fr.rotation[0], fr.scale[0][:, None], fr.centroid[0]
    local_means = (R.transpose(-1, -2) @ (means - c)[..., None])[..., 0] / k
    local_R = R.transpose(-1, -2) @ quaternion_to_matrix(quats)
    return local_means, matrix_to_quaternion(local_R), torch.log(scales / k)
