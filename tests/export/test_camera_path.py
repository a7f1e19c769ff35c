"""nerfstudio camera_path.json read the way ``ns-render camera-path`` reads it: timing from seconds / fps,
slerp + lerp between entries, fov interpolation, camera_type checked, dataparser transform undone."""

from __future__ import annotations

import json
import math

import pytest
import torch

from nerfhead.errors import InputError
from nerfhead.export.camera_path import (
    camera_path_cameras,
    read_camera_path,
    to_dataparser_frame,
)
from nerfhead.geometry import axis_angle_to_matrix


def _c2w(yaw_deg: float, pos: tuple[float, float, float]) -> torch.Tensor:
    m = torch.eye(4, dtype=torch.float64)
    m[:3, :3] = axis_angle_to_matrix(torch.tensor([0.0, math.radians(yaw_deg), 0.0], dtype=torch.float64))
    m[:3, 3] = torch.tensor(pos, dtype=torch.float64)
    return m


def _write(path, poses, fovs, **extra):
    keys = [{"camera_to_world": p.flatten().tolist(), "fov": f} for p, f in zip(poses, fovs, strict=True)]
    path.write_text(json.dumps({"render_width": 64, "render_height": 48, "camera_path": keys, **extra}))
    return path


def _angle(Ra: torch.Tensor, Rb: torch.Tensor) -> float:
    c = ((Ra.T @ Rb).trace() - 1) / 2
    return math.degrees(math.acos(max(-1.0, min(1.0, float(c)))))


def test_seconds_timing_slerp_lerp_and_fov(tmp_path):
    poses = [_c2w(0, (0, 0, 1)), _c2w(60, (1, 0, 0)), _c2w(90, (1, 1, 0))]
    p = _write(tmp_path / "camera_path.json", poses, [30.0, 50.0, 70.0], seconds=2.0, fps=99.0)
    cp = read_camera_path(p, default_fps=25.0)
    assert cp.fps == pytest.approx(1.5) and cp.seconds == pytest.approx(2.0)  # seconds wins over fps
    # entry i is shown at i / 1.5 s: halfway between entries 0 and 1 is t = 1/3 s
    c2w, fov = cp.at_time(1 / 3)
    assert fov == pytest.approx(40.0, abs=1e-9)
    assert torch.allclose(c2w[:3, 3], torch.tensor([0.5, 0.0, 0.5], dtype=torch.float64), atol=1e-9)
    assert _angle(c2w[:3, :3], poses[0][:3, :3]) == pytest.approx(30.0, abs=1e-6)
    assert _angle(c2w[:3, :3], poses[1][:3, :3]) == pytest.approx(30.0, abs=1e-6)
    # past the end the last camera holds; at the entries the poses are exact
    for t, k in ((0.0, 0), (2 / 3, 1), (4 / 3, 2), (9.0, 2)):
        c2w, fov = cp.at_time(t)
        assert torch.allclose(c2w, poses[k], atol=1e-9) and fov == pytest.approx([30, 50, 70][k])
    # drive frames at 25 fps: frame 25 (t = 1 s) sits at u = 1.5 → between entries 1 and 2
    at, h = camera_path_cameras(p, fps=25.0)
    cam = at(25)
    f = 0.5 * 48 / math.tan(math.radians(60.0) / 2)  # nerfstudio's three_js focal from the lerped fov
    assert h == 48 and float(cam.K[0, 0, 0]) == pytest.approx(f, rel=1e-6)
    assert float(cam.K[0, 0, 2]) == 32 and float(cam.K[0, 1, 2]) == 24


def test_fps_key_and_default_timing(tmp_path):
    poses = [_c2w(0, (0, 0, 1)), _c2w(0, (2, 0, 1))]
    cp = read_camera_path(_write(tmp_path / "a.json", poses, [40, 40], fps=4.0), default_fps=25.0)
    assert cp.fps == 4.0 and torch.allclose(cp.at_time(0.125)[0][:3, 3], torch.tensor([1.0, 0, 1]).double())
    cp = read_camera_path(_write(tmp_path / "b.json", poses, [40, 40]), default_fps=25.0)
    assert cp.fps == 25.0  # no seconds/fps: one entry per drive frame


def test_dataparser_transform_is_undone(tmp_path):
    poses = [_c2w(10, (0.1, -0.2, 0.9)), _c2w(40, (0.5, 0.1, 0.7))]
    T = _c2w(25, (0.3, 0.2, -0.1))
    T[:3, :3] = axis_angle_to_matrix(torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64))
    scale = 2.7
    normalised = [to_dataparser_frame(p.clone(), T, scale) for p in poses]
    dp = tmp_path / "dataparser_transforms.json"
    dp.write_text(json.dumps({"transform": T[:3].tolist(), "scale": scale}))
    p = _write(tmp_path / "camera_path.json", normalised, [40, 40], seconds=1.0)
    cp = read_camera_path(p, 25.0, dataparser_transforms=dp)
    assert torch.allclose(cp.c2w, torch.stack(poses), atol=1e-9)
    raw = read_camera_path(p, 25.0)  # without the file the path stays in nerfstudio's frame
    assert not torch.allclose(raw.c2w, torch.stack(poses), atol=1e-3)


@pytest.mark.parametrize(
    "extra,msg",
    [
        ({"camera_type": "fisheye"}, "camera_type"),
        ({"camera_type": "equirectangular"}, "camera_type"),
        ({"seconds": -1.0}, "seconds"),
        ({"fps": 0}, "fps"),
    ],
)
def test_refused_in_one_line(tmp_path, extra, msg):
    p = _write(tmp_path / "c.json", [_c2w(0, (0, 0, 1))], [40], **extra)
    with pytest.raises(InputError, match=msg):
        read_camera_path(p, 25.0)


def test_bad_dataparser_file(tmp_path):
    p = _write(tmp_path / "c.json", [_c2w(0, (0, 0, 1))], [40])
    (tmp_path / "dp.json").write_text(json.dumps({"transform": [[1, 0, 0, 0]], "scale": 0}))
    with pytest.raises(InputError, match="dataparser"):
        read_camera_path(p, 25.0, dataparser_transforms=tmp_path / "dp.json")
