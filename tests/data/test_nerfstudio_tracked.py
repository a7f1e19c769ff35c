"""A tracked video capture (one fixed camera, the head moving in drive.npz) as nerfstudio's default dataparser loads it.

``ns_normalise`` reproduces nerfstudio 1.1.5's ``Nerfstudio`` dataparser defaults on the frames'
``transform_matrix`` (``camera_utils.auto_orient_and_center_poses`` with method "up" and center_method "poses",
then ``auto_scale_poses``: scale = 1 / max |centred camera translation|), without installing nerfstudio.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from nerfhead.data.cameras import Cameras
from nerfhead.data.capture import Capture, Frame
from nerfhead.data.drive import Drive
from nerfhead.data.nerfstudio import (
    head_poses,
    opengl_c2w_to_viewmat,
    read_transforms,
    save_capture,
)


def _rotation_between(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """nerfstudio's camera_utils.rotation_matrix_between (Rodrigues from a to b)."""
    a, b = a / a.norm(), b / b.norm()
    v = torch.linalg.cross(a, b)
    if v.abs().sum() < 1e-6:
        x = (
            torch.tensor([1.0, 0, 0], dtype=a.dtype)
            if abs(a[0]) < 1e-6
            else torch.tensor([0, 1.0, 0], dtype=a.dtype)
        )
        v = torch.linalg.cross(a, x)
    v = v / v.norm()
    S = torch.tensor([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]], dtype=a.dtype)
    th = torch.acos(torch.clip(torch.dot(a, b), -1, 1))
    return torch.eye(3, dtype=a.dtype) + torch.sin(th) * S + (1 - torch.cos(th)) * (S @ S)


def ns_normalise(poses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(normalised c2w [N, 3, 4], transform [3, 4], scale) as nerfstudio's default dataparser computes them."""
    origins = poses[:, :3, 3]
    mean = origins.mean(0)
    up = poses[:, :3, 1].mean(0)
    R = _rotation_between(up / up.norm(), torch.tensor([0.0, 0.0, 1.0], dtype=poses.dtype))
    transform = torch.cat([R, R @ -mean[:, None]], -1)
    out = transform @ poses
    biggest = float(out[:, :3, 3].abs().max())
    scale = 1.0 / biggest if biggest > 0 else math.inf
    out = out.clone()
    out[:, :3, 3] *= scale
    return out, transform, scale


def _tracked_capture(tmp_path, yaw_deg: float = 12.0, T: int = 24) -> Capture:
    K = torch.tensor([[[60.0, 0, 32], [0, 60.0, 32], [0, 0, 1]]], dtype=torch.float64)
    eye = torch.tensor([[0.0, 0.0, 0.6]])
    cam = Cameras.from_look_at(eye, torch.zeros(3), torch.tensor([0.0, 1.0, 0.0]), 60.0, 64, 64)
    cams = Cameras(K, cam.viewmat.double(), torch.tensor([64]), torch.tensor([64]))
    t = torch.linspace(0, 2 * math.pi, T)
    rot = torch.stack([0.1 * torch.sin(2 * t), math.radians(yaw_deg) * torch.sin(t), 0.05 * torch.cos(t)], -1)
    trans = torch.stack([0.01 * torch.sin(t), 0.005 * torch.cos(3 * t), 0.02 * torch.sin(t) ** 2], -1)
    drive = Drive(rot.float(), trans.float(), torch.zeros(T, 53), None, 25.0)
    frames = tuple(Frame(0, i, i / 25.0, tmp_path / f"{i:04d}.png") for i in range(T))
    return Capture(cams, frames, drive=drive, fps=25.0)


def _frame_poses(path) -> torch.Tensor:
    meta = json.loads(path.read_text())
    return torch.tensor([fr["transform_matrix"] for fr in meta["frames"]], dtype=torch.float64)


def test_nerfstudio_defaults_see_a_static_head_at_a_finite_scale(tmp_path):
    cap = _tracked_capture(tmp_path)
    path = save_capture(cap, tmp_path / "cap")
    meta = json.loads(path.read_text())
    assert meta["nerfhead"]["frame_poses"] == "head" and meta["camera_model"] == "PINHOLE"
    poses = _frame_poses(path)
    normalised, transform, scale = ns_normalise(poses)
    assert math.isfinite(scale) and 0.5 < scale < 50.0, scale
    assert float(normalised[:, :3, 3].abs().max()) == pytest.approx(1.0)  # cameras fill nerfstudio's box
    # what nerfstudio reconstructs is consistent with the pictures: head points, fixed in nerfstudio's frame,
    # project where the tracked head put them in every frame
    g = torch.Generator().manual_seed(0)
    X_head = (torch.rand(200, 3, generator=g, dtype=torch.float64) - 0.5) * 0.2
    H = head_poses(cap.drive)  # type: ignore[arg-type]
    V_world = cap.cameras.viewmat[0]
    X_ns = scale * (X_head @ transform[:, :3].T + transform[:, 3])
    K = cap.cameras.K[0]
    for t in (0, 7, 19):
        Xw = X_head @ H[t, :3, :3].T + H[t, :3, 3]
        pc = Xw @ V_world[:3, :3].T + V_world[:3, 3]
        c2w = torch.eye(4, dtype=torch.float64)
        c2w[:3] = normalised[t]
        V_ns = opengl_c2w_to_viewmat(c2w[None])[0]
        pn = X_ns @ V_ns[:3, :3].T + V_ns[:3, 3]
        uv = (pc[:, :2] / pc[:, 2:]) @ K[:2, :2].T + K[:2, 2]
        uv_ns = (pn[:, :2] / pn[:, 2:]) @ K[:2, :2].T + K[:2, 2]
        assert float((uv - uv_ns).abs().max()) < 1e-6
    # nerfhead reads its own capture back unchanged: one fixed camera plus the drive
    back = read_transforms(path)
    assert back.num_cameras == 1 and len(back) == len(cap)
    torch.testing.assert_close(back.cameras.viewmat, cap.cameras.viewmat, atol=1e-9, rtol=0)
    assert back.drive is not None and torch.equal(back.drive.rotation, cap.drive.rotation)  # type: ignore[union-attr]


def test_world_frame_poses_would_blow_up_the_scale(tmp_path):
    """The case the test catches: every frame with the fixed camera's world pose (the previous writer)."""
    cap = _tracked_capture(tmp_path)
    path = save_capture(cap, tmp_path / "cap")
    H = head_poses(cap.drive)  # type: ignore[arg-type]
    poses = H @ _frame_poses(path)  # = the camera's world pose on every frame
    assert float((poses - poses[0]).abs().max()) < 1e-9
    _, _, scale = ns_normalise(poses)
    assert not (scale < 1e6)


def test_multi_camera_captures_keep_world_poses(tmp_path):
    cap = _tracked_capture(tmp_path, T=3)
    cams = Cameras.from_look_at(
        torch.tensor([[0.0, 0.0, 0.6], [0.3, 0.0, 0.5]]),
        torch.zeros(3),
        torch.tensor([0.0, 1.0, 0.0]),
        60.0,
        64,
        64,
    )
    frames = tuple(Frame(c, t, t / 25.0, tmp_path / f"{c}_{t}.png") for c in range(2) for t in range(3))
    multi = Capture(cams, frames, drive=cap.drive, fps=25.0)
    path = save_capture(multi, tmp_path / "multi")
    assert "frame_poses" not in json.loads(path.read_text())["nerfhead"]
    np.testing.assert_allclose(read_transforms(path).cameras.viewmat.numpy(), cams.viewmat.numpy(), atol=1e-6)
