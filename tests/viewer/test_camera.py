"""Viser camera ↔ nerfhead Cameras: exact numbers for axes, field of view, pixel centres and round trips."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nerfhead.data import Cameras
from nerfhead.geometry import matrix_to_quaternion, quaternion_to_matrix
from nerfhead.viewer.camera import ViewCamera, cameras_to_view, look_at_view, render_size, view_to_cameras


def random_view(seed: int, width: int = 640, height: int = 360) -> ViewCamera:
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(4, generator=g, dtype=torch.float64)
    q = q / q.norm()
    pos = torch.randn(3, generator=g, dtype=torch.float64)
    fov = 0.3 + 1.5 * float(torch.rand(1, generator=g))
    return ViewCamera(tuple(q.tolist()), tuple(pos.tolist()), fov, width, height)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(5))
def test_viser_axes_are_opencv(seed: int):
    """viser: p_world = R(wxyz) p_camera + position, camera looking along its +z, image y along camera +y."""
    view = random_view(seed)
    cams = view_to_cameras(view).to(dtype=torch.float64)
    R = quaternion_to_matrix(torch.tensor(view.wxyz, dtype=torch.float64))
    c = torch.tensor(view.position, dtype=torch.float64)
    fy = view.height / (2 * math.tan(view.fov / 2))
    d, a, b = 2.0, 0.3, -0.2
    # A point d ahead, a along the camera's x (right) and b along its y (down).
    p = c + d * R[:, 2] + a * R[:, 0] + b * R[:, 1]
    uv, z = cams.project(p[None])
    torch.testing.assert_close(z[0, 0], torch.tensor(d, dtype=torch.float64), rtol=0, atol=1e-5)
    want = torch.tensor([view.width / 2 + fy * a / d, view.height / 2 + fy * b / d], dtype=torch.float64)
    torch.testing.assert_close(uv[0, 0], want, rtol=0, atol=1e-3)
    torch.testing.assert_close(cams.centers[0], c, rtol=0, atol=1e-5)


def test_vertical_fov_spans_the_image_height():
    view = ViewCamera((1.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0), math.radians(60), 200, 100)
    cams = view_to_cameras(view)
    # Rays through the top and bottom image edges are fov/2 from the optical axis.
    top = torch.tensor([[0.0, -math.tan(math.radians(30)), 1.0]])
    bottom = torch.tensor([[0.0, math.tan(math.radians(30)), 1.0]])
    torch.testing.assert_close(cams.project(top)[0][0, 0], torch.tensor([100.0, 0.0]), rtol=0, atol=1e-4)
    torch.testing.assert_close(cams.project(bottom)[0][0, 0], torch.tensor([100.0, 100.0]), rtol=0, atol=1e-4)
    assert float(cams.K[0, 0, 0]) == pytest.approx(float(cams.K[0, 1, 1]))  # square pixels
    assert cams.width.tolist() == [200] and cams.height.tolist() == [100]


def test_render_size_keeps_field_of_view_and_scales_intrinsics():
    view = random_view(3, 1600, 900)
    full = view_to_cameras(view)
    small = view_to_cameras(view, render_size(view.width, view.height, 400))
    assert (int(small.width[0]), int(small.height[0])) == (400, 225)
    p = torch.tensor(view.position) + 3 * quaternion_to_matrix(torch.tensor(view.wxyz))[:, 2] + 0.1
    uv_full, _ = full.project(p[None].float())
    uv_small, _ = small.project(p[None].float())
    torch.testing.assert_close(uv_small * 4, uv_full, rtol=0, atol=1e-3)  # same view, 4x fewer pixels


def test_render_size_numbers():
    assert render_size(1600, 900, 800) == (800, 450)
    assert render_size(300, 200, 800) == (300, 200)  # never enlarged
    assert render_size(957, 657, 320) == (320, 220)
    assert render_size(1, 5000, 10) == (1, 10)


@pytest.mark.parametrize("seed", range(5))
def test_round_trip_view_cameras_view(seed: int):
    view = random_view(seed)
    back = cameras_to_view(view_to_cameras(view).to(dtype=torch.float64))
    q0, q1 = np.array(view.wxyz), np.array(back.wxyz)
    assert min(np.abs(q0 - q1).max(), np.abs(q0 + q1).max()) < 1e-5  # q and -q are one rotation
    np.testing.assert_allclose(back.position, view.position, atol=1e-5)
    assert back.fov == pytest.approx(view.fov, abs=1e-6)
    assert (back.width, back.height) == (view.width, view.height)


def test_round_trip_cameras_view_cameras():
    eye = torch.tensor([[0.3, -0.2, 0.7]], dtype=torch.float64)
    cams = Cameras.from_look_at(
        eye, torch.zeros(3).double(), torch.tensor([0.0, 1.0, 0.0]).double(), 500.0, 320, 240
    )
    again = view_to_cameras(cameras_to_view(cams)).to(dtype=torch.float64)
    torch.testing.assert_close(again.viewmat, cams.viewmat, rtol=0, atol=1e-6)
    torch.testing.assert_close(again.K, cams.K, rtol=0, atol=1e-3)


def test_look_at_view_centres_target_with_up_up():
    view = look_at_view((0.0, 0.1, 0.6), (0.0, 0.0, 0.0), (0.0, 1.0, 0.0), math.radians(30), 400, 300)
    cams = view_to_cameras(view)
    uv, z = cams.project(torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.05, 0.0]]))
    torch.testing.assert_close(uv[0, 0], torch.tensor([200.0, 150.0]), rtol=0, atol=1e-3)
    assert float(uv[0, 1, 1]) < 150.0  # world +y appears up (smaller row)
    assert float(z[0, 0]) == pytest.approx(math.hypot(0.1, 0.6), abs=1e-5)
    # viser keeps the orientation as a camera-to-world quaternion: its 3rd column is the view direction.
    R = quaternion_to_matrix(torch.tensor(view.wxyz))
    look = -torch.tensor(view.position) / torch.tensor(view.position).norm()
    torch.testing.assert_close(R[:, 2], look.float(), rtol=0, atol=1e-5)
    assert matrix_to_quaternion(R).shape == (4,)


def test_from_handle_reads_viser_camera_fields():
    class Handle:
        wxyz = np.array([1.0, 0.0, 0.0, 0.0])
        position = np.array([0.0, 0.0, -2.0])
        fov = 0.8
        image_width = 320
        image_height = 200

    v = ViewCamera.from_handle(Handle())
    assert v == ViewCamera((1.0, 0.0, 0.0, 0.0), (0.0, 0.0, -2.0), 0.8, 320, 200)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fov": 0.0},
        {"fov": math.pi},
        {"width": 0},
        {"position": (0.0, float("nan"), 0.0)},
        {"wxyz": (1.0, 0.0, 0.0)},
    ],
)
def test_bad_views_are_rejected(kwargs: dict):
    base = {"wxyz": (1.0, 0.0, 0.0, 0.0), "position": (0.0, 0.0, 0.0), "fov": 1.0, "width": 10, "height": 10}
    with pytest.raises(ValueError):
        ViewCamera(**{**base, **kwargs})
