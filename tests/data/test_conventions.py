"""Each convention in docs/conventions.md pinned by a number."""

from __future__ import annotations

import json
import math

import numpy as np
import torch

from nerfhead.data import (
    EXPRESSION_NAMES,
    Cameras,
    Drive,
    load_image,
    pixel_centers,
    read_transforms,
    save_image,
)
from nerfhead.data.cameras import intrinsics_matrix
from nerfhead.data.nerfstudio import opengl_c2w_to_viewmat, viewmat_to_opengl_c2w
from nerfhead.geometry import axis_angle_to_matrix, matrix_to_quaternion, quaternion_to_matrix

f64 = torch.float64


def _cam(fx=100.0, fy=100.0, cx=32.0, cy=24.0, viewmat=None, w=64, h=48) -> Cameras:
    K = intrinsics_matrix(*(torch.tensor([v], dtype=f64) for v in (fx, fy, cx, cy)))
    V = torch.eye(4, dtype=f64)[None] if viewmat is None else viewmat[None]
    return Cameras(K, V, torch.tensor([w]), torch.tensor([h]))


def test_opencv_axes_point_ahead_projects_to_principal_point():
    cam = _cam(cx=30.25, cy=20.5)
    uv, depth = cam.project(torch.tensor([[0.0, 0.0, 3.0], [0.3, 0.0, 3.0], [0.0, 0.3, 3.0]], dtype=f64))
    assert uv[0].tolist() == [[30.25, 20.5], [40.25, 20.5], [30.25, 30.5]]  # +x right, +y down
    assert depth[0].tolist() == [3.0, 3.0, 3.0]  # +z forward


def test_pixel_centres_at_half():
    # pixel (i, j) covers [i, i+1) x [j, j+1): its centre is (i + 0.5, j + 0.5)
    c = pixel_centers(2, 3)
    assert c[1, 2].tolist() == [2.5, 1.5]
    # a centred camera has cx = W / 2: the principal point is the corner shared by the four middle pixels
    cam = _cam(cx=32.0, cy=24.0)
    _, d = cam.generate_rays(0, torch.tensor([[31.5, 23.5], [32.5, 24.5]], dtype=f64))
    torch.testing.assert_close(d[0, :2], -d[1, :2], rtol=0, atol=1e-15)  # symmetric about the axis
    uv, _ = cam.project(torch.tensor([[0.0, 0.0, 1.0]], dtype=f64))
    assert torch.floor(uv[0, 0]).tolist() == [32.0, 24.0]  # lands on pixel (32, 24)'s top-left corner
    # resizing scales continuous coordinates exactly: new pixel 0's centre is old coordinate 1.0
    half = cam.scale(0.5)
    assert half.K[0, 0, 2].item() == 16.0 and half.K[0, 0, 0].item() == 50.0


def test_opengl_c2w_to_opencv_viewmat():
    # nerfstudio camera at (0, 0, 2) with identity rotation: looks down world -z, world +y is image up
    c2w_gl = torch.eye(4, dtype=f64)
    c2w_gl[2, 3] = 2.0
    V = opengl_c2w_to_viewmat(c2w_gl)
    expected = torch.tensor([[1, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, 2], [0, 0, 0, 1]], dtype=f64)
    assert torch.equal(V, expected)
    assert torch.equal(viewmat_to_opengl_c2w(V), c2w_gl)
    uv, depth = _cam(viewmat=V).project(torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.1, 0.0]], dtype=f64))
    assert depth[0, 0].item() == 2.0 and uv[0, 0].tolist() == [32.0, 24.0]
    assert uv[0, 1, 1].item() < 24.0  # world up is image up


def test_look_at_sees_target_at_image_centre_with_up_up():
    eye = torch.tensor([[0.3, 0.2, 1.5], [-1.0, 0.5, 0.2]], dtype=f64)
    target = torch.tensor([0.05, -0.02, 0.1], dtype=f64)
    up = torch.tensor([0.0, 1.0, 0.0], dtype=f64)
    cams = Cameras.from_look_at(eye, target, up, focal=50.0, width=40, height=30)
    uv, depth = cams.project(torch.stack([target, target + 0.05 * up]))
    torch.testing.assert_close(uv[:, 0], torch.tensor([[20.0, 15.0]] * 2, dtype=f64), rtol=0, atol=1e-12)
    assert bool((uv[:, 1, 1] < 15.0).all()) and bool((depth > 0).all())


def test_quaternion_wxyz_and_axis_angle():
    R = axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2], dtype=f64))
    q = matrix_to_quaternion(R)
    torch.testing.assert_close(q, torch.tensor([math.sqrt(0.5), 0.0, 0.0, math.sqrt(0.5)], dtype=f64))
    torch.testing.assert_close(quaternion_to_matrix(q), R)
    # active rotation of column vectors: x axis -> y axis
    torch.testing.assert_close(
        R @ torch.tensor([1.0, 0.0, 0.0], dtype=f64), torch.tensor([0.0, 1.0, 0.0], dtype=f64)
    )


def test_drive_pose_is_head_to_world():
    d = Drive.neutral(1, dtype=f64).replace(
        rotation=torch.tensor([[0.0, 0.0, math.pi / 2]], dtype=f64),
        translation=torch.tensor([[0.0, 0.0, 1.0]], dtype=f64),
    )
    head_point = torch.tensor([0.1, 0.0, 0.0], dtype=f64)  # 10 cm along the head's x axis
    world = axis_angle_to_matrix(d.rotation[0]) @ head_point + d.translation[0]
    torch.testing.assert_close(world, torch.tensor([0.0, 0.1, 1.0], dtype=f64))


def test_time_is_index_plus_seconds():
    d = Drive.neutral(5, fps=25.0)
    assert d.timestamps.tolist() == [0.0, 0.04, 0.08, 0.12, 0.16]
    # audio is aligned by timestamp: sample of timestep t = (timestamp - audio_offset) * sample_rate
    offset, sr = 0.02, 16000
    assert [round((float(t) - offset) * sr) for t in d.timestamps[1:3]] == [320, 960]


def test_image_format_float_rgb_hwc(tmp_path):
    a = np.zeros((3, 5, 3))
    a[1, 4] = [1.0, 0.5, 0.0]
    save_image(tmp_path / "x.png", a)
    img = load_image(tmp_path / "x.png")
    assert img.dtype == torch.float32 and tuple(img.shape) == (3, 5, 3)
    assert img[1, 4].tolist() == [1.0, np.float32(128) / np.float32(255), 0.0]


def test_expression_order():
    assert EXPRESSION_NAMES[:2] == ("browDown_L", "browDown_R") and EXPRESSION_NAMES[26] == "jawOpen"
    assert len(EXPRESSION_NAMES) == 53


def test_metres_are_not_renormalised(tmp_path):
    # unlike nerfstudio's dataparser, reading keeps world units: a camera 2.5 m away stays 2.5 m away
    save_image(tmp_path / "a.png", np.zeros((4, 4, 3)))
    c2w = np.eye(4)
    c2w[:3, 3] = [0.0, 0.0, 2.5]
    meta = {
        "fl_x": 4.0,
        "fl_y": 4.0,
        "cx": 2.0,
        "cy": 2.0,
        "w": 4,
        "h": 4,
        "frames": [{"file_path": "a.png", "transform_matrix": c2w.tolist()}],
    }
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    cap = read_transforms(tmp_path)
    assert cap.cameras.centers[0].tolist() == [0.0, 0.0, 2.5]
