"""The sequence fit on exact synthetic landmarks (no MediaPipe): geometry helpers are exact, and the fit recovers
pose, expression and identity of a known drive from calibrated multi-view and from a monocular video camera."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nerfhead.data import EXPRESSION_INDEX, Cameras
from nerfhead.geometry import axis_angle_to_matrix
from nerfhead.parametric import ICTHead
from nerfhead.track.correspondence import load_correspondence
from nerfhead.track.evaluate import rotation_angle_deg
from nerfhead.track.fit import (
    LandmarkModel,
    Observations,
    TrackFitConfig,
    _rigid_modes,
    fit_sequence,
    initial_pose,
    monocular_observations,
)
from nerfhead.track.projection import kabsch, mono_camera, pose_points, project, triangulate


@pytest.fixture(scope="module")
def head() -> ICTHead:
    return ICTHead()


@pytest.fixture(scope="module")
def corr(head):
    return load_correspondence(num_faces=int(head.faces.shape[0]))


def _truth(T: int = 24):
    t = torch.arange(T, dtype=torch.float32)
    rot = torch.stack([0.08 * torch.sin(t / 5), 0.35 * torch.sin(t / 7), 0.04 * torch.cos(t / 4)], -1)
    trans = torch.stack([0.01 * torch.sin(t / 6), 0.004 * t / T, 0.015 * torch.cos(t / 9)], -1)
    expr = torch.zeros(T, 53)
    expr[:, EXPRESSION_INDEX["jawOpen"]] = 0.6 * (0.5 + 0.5 * torch.sin(t / 2))
    expr[:, EXPRESSION_INDEX["mouthSmile_L"]] = 0.4 * (torch.sin(t / 3) > 0).float()
    beta = torch.tensor([0.8, -0.3, 0.5, 0.2, -0.6, 0.4, 0.1, -0.2, 0.3, 0.0])
    return rot, trans, expr, beta


def _rig_cameras() -> Cameras:
    eyes = torch.tensor([[0.0, 0.0, 1.0], [0.5, 0.1, 0.85], [-0.5, -0.1, 0.85], [0.0, 0.4, 0.9]])
    return Cameras.from_look_at(eyes, torch.zeros(3), torch.tensor([0.0, 1.0, 0.0]), 700.0, 256, 256)


def test_project_matches_cameras_project(head, corr):
    cams = _rig_cameras().to(dtype=torch.float64)
    pts = torch.randn(1, 50, 3, dtype=torch.float64) * 0.1
    uv, z = project(cams.K, cams.viewmat, None, pts.expand(len(cams), -1, -1))
    ref, zr = cams.project(pts[0])
    torch.testing.assert_close(uv, ref, rtol=0, atol=1e-9)
    torch.testing.assert_close(z, zr, rtol=0, atol=1e-12)


def test_triangulate_and_kabsch_exact(head, corr):
    cams = _rig_cameras().to(dtype=torch.float64)
    rot, trans, _, _ = _truth(5)
    canon = LandmarkModel(head, corr).double()(torch.zeros(1, 53, dtype=torch.float64))[0]
    world = pose_points(canon.expand(5, -1, -1), rot.double(), trans.double())
    ci = torch.arange(4).repeat(5)
    ti = torch.arange(5).repeat_interleave(4)
    uv, _ = project(cams.K[ci], cams.viewmat[ci], None, world[ti])
    X, ok = triangulate(cams, uv, ci, ti, 5)
    assert bool(ok.all())
    assert float((X - world).abs().max()) < 1e-8
    R, t = kabsch(canon, X, torch.ones(len(canon), dtype=torch.float64))
    assert float((R - axis_angle_to_matrix(rot.double())).abs().max()) < 1e-7
    assert float((t - trans.double()).abs().max()) < 1e-8


def test_single_view_initial_pose_faces_the_camera(head, corr):
    cams = mono_camera(320, 240, 400.0, 0.8)
    canon = LandmarkModel(head, corr)(torch.zeros(1, 53))[0]
    uv, _ = project(cams.K.float(), cams.viewmat.float(), None, canon[None])
    obs = Observations(
        uv.double(), torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long), cams, 1, 25.0
    )
    rot, trans = initial_pose(obs, canon, torch.ones(len(canon)))
    assert float(rot.norm()) < 1e-9  # frontal: identity rotation in mono_camera's world
    assert float(trans.norm()) < 0.01  # at the origin within 1 cm (depth from the landmark spread)


def test_rigid_modes_are_orthonormal_and_span_rotations(head, corr):
    canon = LandmarkModel(head, corr)(torch.zeros(1, 53))[0].double()
    Q = _rigid_modes(canon)
    torch.testing.assert_close(Q.T @ Q, torch.eye(7, dtype=torch.float64), atol=1e-10, rtol=0)
    small = axis_angle_to_matrix(torch.tensor([0.0, 1e-4, 0.0], dtype=torch.float64))
    c = canon - canon.mean(0)
    d = (c @ small.T - c).reshape(-1)
    assert float((d - Q @ (Q.T @ d)).norm() / d.norm()) < 1e-3


def _observe(head, corr, cams: Cameras, per_frame: bool, noise: float, T: int, seed: int = 0):
    rot, trans, expr, beta = _truth(T)
    world = pose_points(LandmarkModel(head, corr)(expr, beta), rot, trans)
    g = torch.Generator().manual_seed(seed)
    if per_frame:
        ci, ti = torch.zeros(T, dtype=torch.long), torch.arange(T)
    else:
        ci, ti = torch.arange(len(cams)).repeat(T), torch.arange(T).repeat_interleave(len(cams))
    uv, _ = project(cams.K.float()[ci], cams.viewmat.float()[ci], None, world[ti])
    return uv + noise * torch.randn(uv.shape, generator=g), ci, ti, (rot, trans, expr, beta)


def test_fit_multiview_recovers_the_truth(head, corr):
    torch.manual_seed(0)
    cams = _rig_cameras()
    uv, ci, ti, (rot, _, expr, beta) = _observe(head, corr, cams, False, 0.3, 24)
    obs = Observations(uv, ci, ti, cams.to(dtype=torch.float64), 24, 25.0)
    res = fit_sequence(obs, head, corr, TrackFitConfig(rigid_iters=80, full_iters=220))
    err = rotation_angle_deg(
        axis_angle_to_matrix(rot.double()), axis_angle_to_matrix(res.drive.rotation.double())
    )
    assert float(err.mean()) < 0.3 and float(err.max()) < 0.8, err
    j = EXPRESSION_INDEX["jawOpen"]
    assert np.corrcoef(expr[:, j], res.drive.expression[:, j])[0, 1] > 0.99
    assert float((res.drive.expression[:, j] - expr[:, j]).abs().mean()) < 0.05
    assert float(res.reprojection_px.mean()) < 0.5  # noise is 0.3 px per axis
    assert float((res.identity - beta).abs().max()) < 0.5
    assert res.drive.expression.min() >= 0 and res.drive.expression.max() <= 1


def test_fit_monocular_video_camera_with_unknown_focal(head, corr):
    truth_cam = mono_camera(512, 512, 1100.0, 0.7)
    T = 24
    rot, trans, expr, beta = _truth(T)
    world = pose_points(LandmarkModel(head, corr)(expr, beta), rot, trans)
    K, V = truth_cam.K.float().expand(T, 3, 3), truth_cam.viewmat.float().expand(T, 4, 4)
    uv, _ = project(K, V, None, world)
    uv = uv + 0.3 * torch.randn(uv.shape, generator=torch.Generator().manual_seed(1))
    obs = monocular_observations(uv, 512, 512, 25.0, head, corr, focal=900.0)
    res = fit_sequence(obs, head, corr, TrackFitConfig(rigid_iters=80, full_iters=220), fit_focal=True)
    # compare head-to-camera rotations (the fit has its own world frame)
    Rt = truth_cam.viewmat[0, :3, :3].double() @ axis_angle_to_matrix(rot.double())
    Rf = res.cameras.viewmat[0, :3, :3].double() @ axis_angle_to_matrix(res.drive.rotation.double())
    err = rotation_angle_deg(Rt, Rf)
    # the focal length is only weakly observable (below), and a wrong focal tilts the head a little: ~1 deg
    assert float(err.mean()) < 1.5, err
    j = EXPRESSION_INDEX["jawOpen"]
    assert np.corrcoef(expr[:, j], res.drive.expression[:, j])[0, 1] > 0.98
    # focal and depth are nearly interchangeable for a face: the fit stays near the guess, within 20 % of truth
    f = float(res.cameras.K[0, 0, 0])
    assert 0.8 * 1100.0 < f < 1.2 * 1100.0
    assert float(res.reprojection_px.mean()) < 0.6
    assert math.isfinite(res.loss)
