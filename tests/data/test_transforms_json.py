"""transforms.json: exact write -> read -> write, shared and per-frame intrinsics, foreign nerfstudio files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from nerfhead.data import (
    Cameras,
    Capture,
    Frame,
    load_capture,
    read_transforms,
    save_capture,
    write_transforms,
)
from nerfhead.data.nerfstudio import opengl_c2w_to_viewmat, viewmat_to_opengl_c2w
from nerfhead.geometry import axis_angle_to_matrix
from tests.data.data_synth import write_tiny_capture


@pytest.mark.parametrize("dist", [False, True])
def test_write_read_write_is_byte_identical(tmp_path, dist):
    cap = write_tiny_capture(tmp_path / "cap", audio=True, dist=dist)
    p1 = save_capture(cap, tmp_path / "cap")
    text1 = p1.read_bytes()
    back = load_capture(tmp_path / "cap")
    p2 = write_transforms(back, tmp_path / "cap" / "again.json", drive_file="drive.npz")
    assert p2.read_bytes() == text1
    # values: intrinsics and sizes exact, poses to 1e-12 (written rounded to 12 decimals), frames identical
    torch.testing.assert_close(back.cameras.K, cap.cameras.K, rtol=0, atol=0)
    torch.testing.assert_close(back.cameras.viewmat, cap.cameras.viewmat, rtol=0, atol=1e-12)
    assert torch.equal(back.cameras.width, cap.cameras.width) and back.cameras.names == cap.cameras.names
    assert (back.cameras.dist is None) == (not dist)
    if back.cameras.dist is not None and cap.cameras.dist is not None:
        assert torch.equal(back.cameras.dist, cap.cameras.dist)
    assert [(f.camera, f.timestep, f.timestamp, f.image_path, f.mask_path) for f in back.frames] == [
        (f.camera, f.timestep, f.timestamp, f.image_path, f.mask_path) for f in cap.frames
    ]
    assert back.drive is not None and cap.drive is not None
    assert torch.equal(back.drive.expression, cap.drive.expression)
    assert back.audio_path == cap.audio_path and back.fps == cap.fps
    assert (back.train_cameras, back.test_cameras, back.metadata) == (
        cap.train_cameras,
        cap.test_cameras,
        cap.metadata,
    )


def test_written_file_is_plain_nerfstudio(tmp_path):
    cap = write_tiny_capture(tmp_path, n_cams=2, T=3, drive=False)
    meta = json.loads(save_capture(cap, tmp_path).read_text())
    assert meta["camera_model"] == "PINHOLE" and meta["w"] == 16 and meta["fl_x"] == 20.0
    fr = meta["frames"][5]
    assert (fr["camera_index"], fr["timestep_index"], fr["time"], fr["timestamp"]) == (1, 2, 1.0, 2 / 25.0)
    assert fr["file_path"] == "images/cam01/00002.png" and fr["mask_path"] == "masks/cam01/00002.png"
    assert meta["train_filenames"] == [f["file_path"] for f in meta["frames"] if f["camera_index"] == 0]
    assert (
        meta["test_filenames"]
        == meta["val_filenames"]
        == [f["file_path"] for f in meta["frames"] if f["camera_index"] == 1]
    )
    # the nerfstudio pose: OpenGL c2w, i.e. camera centre in the last column, camera -z towards the target
    c2w = np.array(fr["transform_matrix"])
    np.testing.assert_allclose(c2w[:3, 3], cap.cameras.centers[1].numpy(), atol=1e-12)
    np.testing.assert_allclose(-c2w[:3, 2], -c2w[:3, 3] / np.linalg.norm(c2w[:3, 3]), atol=1e-12)
    assert "drive" not in meta["nerfhead"]


def test_per_camera_intrinsics_go_on_frames(tmp_path):
    cap = write_tiny_capture(tmp_path, n_cams=2, T=1, masks=False, drive=False, dist=True)
    K = cap.cameras.K.clone()
    K[1, 0, 0] = 25.5
    assert cap.cameras.dist is not None
    dist = cap.cameras.dist.clone()
    dist[1, 0] = -0.1
    cams = Cameras(K, cap.cameras.viewmat, cap.cameras.width, cap.cameras.height, dist, cap.cameras.names)
    cap2 = Capture(cams, cap.frames, cap.fps)
    p = save_capture(cap2, tmp_path)
    meta = json.loads(p.read_text())
    assert "fl_x" not in meta and "k1" not in meta and meta["fl_y"] == 20.0
    assert [f["fl_x"] for f in meta["frames"]] == [20.0, 25.5] and [f["k1"] for f in meta["frames"]] == [
        -0.05,
        -0.1,
    ]
    back = read_transforms(p)
    assert back.cameras.dist is not None
    assert torch.equal(back.cameras.K, K) and torch.equal(back.cameras.dist, dist)
    assert write_transforms(back, tmp_path / "b.json").read_text() == p.read_text()


def test_foreign_nerfstudio_file(tmp_path):
    """A file from ns-process-data / instant-ngp: no camera_index, per-frame intrinsics, 3x4 matrices, extras."""
    from nerfhead.data import save_image

    R = axis_angle_to_matrix(torch.tensor([0.1, 0.2, -0.3], dtype=torch.float64)).numpy()
    frames = []
    for i in range(3):
        save_image(tmp_path / "images" / f"frame_{i:05d}.jpg", np.full((24, 32, 3), 0.5))
        c2w = np.concatenate([R, [[0.1 * i], [0.0], [2.0]]], 1)
        frames.append(
            {
                "file_path": f"images/frame_{i:05d}.jpg",
                "transform_matrix": c2w.tolist(),
                "fl_x": 30.0 + i,
                "fl_y": 31.0,
                "depth_file_path": "x.png",
            }
        )
    meta = {
        "w": 32,
        "h": 24,
        "cx": 16.1,
        "cy": 12.2,
        "camera_model": "OPENCV",
        "k1": 0.01,
        "k2": 0.0,
        "p1": 0.0,
        "p2": 0.0,
        "frames": frames,
        "applied_scale": 0.5,
        "ply_file_path": "sparse_pc.ply",
    }
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    cap = load_capture(tmp_path)
    assert cap.num_cameras == 3 and cap.num_timesteps == 1 and cap.cameras.names is None
    assert cap.cameras.K[:, 0, 0].tolist() == [30.0, 31.0, 32.0] and cap.cameras.K[0, 1, 2].item() == 12.2
    assert cap.cameras.dist is not None and cap.cameras.dist[:, 0].tolist() == [0.01] * 3
    assert cap.metadata["nerfstudio_extra"] == {"applied_scale": 0.5, "ply_file_path": "sparse_pc.ply"}
    assert cap.metadata["ignored_frame_keys"] == ["depth_file_path"]
    c2w_cv = cap.cameras.camtoworld
    np.testing.assert_allclose(c2w_cv[2, :3, 3].numpy(), [0.2, 0.0, 2.0], atol=1e-12)
    np.testing.assert_allclose(c2w_cv[0, :3, 2].numpy(), -R[:, 2], atol=1e-12)  # OpenCV +z = OpenGL -z
    assert cap.image(1).shape == (24, 32, 3)
    # extras survive a rewrite; the nerfstudio-only per-frame key is dropped
    out = json.loads(save_capture(cap, tmp_path / "out").read_text())
    assert out["applied_scale"] == 0.5 and "depth_file_path" not in out["frames"][0]


def test_blender_dnerf_flavour(tmp_path):
    """camera_angle_x instead of focal lengths, no w/h (read from the image), extension-less paths, 'time'."""
    from nerfhead.data import save_image

    frames = []
    for i, t in enumerate([0.0, 1.0, 0.5]):
        save_image(tmp_path / "train" / f"r_{i}.png", np.zeros((20, 30, 3)))
        frames.append({"file_path": f"./train/r_{i}", "time": t, "transform_matrix": np.eye(4).tolist()})
    (tmp_path / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.8, "frames": frames}))
    cap = load_capture(tmp_path / "transforms_train.json")
    fx = 0.5 * 30 / math.tan(0.4)
    assert cap.cameras.K[0].tolist() == [[fx, 0.0, 15.0], [0.0, fx, 10.0], [0.0, 0.0, 1.0]]
    assert [f.timestep for f in cap.frames] == [0, 2, 1] and cap.frames[0].image_path.suffix == ".png"
    assert cap.cameras.width.tolist() == [30] * 3


def test_opengl_opencv_conversion_round_trip():
    g = torch.Generator().manual_seed(3)
    V = torch.eye(4, dtype=torch.float64).repeat(5, 1, 1)
    V[:, :3, :3] = axis_angle_to_matrix(torch.randn(5, 3, generator=g, dtype=torch.float64))
    V[:, :3, 3] = torch.randn(5, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(opengl_c2w_to_viewmat(viewmat_to_opengl_c2w(V)), V, rtol=0, atol=1e-14)


def test_frames_sharing_a_camera_index_must_agree(tmp_path):
    cap = write_tiny_capture(tmp_path, n_cams=1, T=2, masks=False, drive=False)
    p = save_capture(cap, tmp_path)
    meta = json.loads(p.read_text())
    meta["frames"][1]["transform_matrix"][0][3] = 0.5
    p.write_text(json.dumps(meta))
    with pytest.raises(Exception, match="share camera_index 0 but differ"):
        read_transforms(p)


def test_skewed_cameras_cannot_be_written(tmp_path):
    cap = write_tiny_capture(tmp_path, n_cams=1, T=1, masks=False, drive=False)
    K = cap.cameras.K.clone()
    K[0, 0, 1] = 0.3
    c = Cameras(K, cap.cameras.viewmat, cap.cameras.width, cap.cameras.height)
    with pytest.raises(ValueError, match="skew"):
        save_capture(Capture(c, (Frame(0, 0, 0.0, cap.frames[0].image_path),)), tmp_path)
