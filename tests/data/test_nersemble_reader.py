"""NeRSemble v1 layout: a tiny synthetic participant folder read into a Capture."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nerfhead.data import detect_format, load_capture, read_nersemble, save_capture, save_image, save_mask
from nerfhead.data.nersemble import PAPER_TEST_SERIALS
from nerfhead.errors import InputError
from nerfhead.geometry import axis_angle_to_matrix, look_at

SERIALS = ["222200037", *PAPER_TEST_SERIALS]


def _write_participant(root, serials=SERIALS[:5], frames=(0, 3, 6), folder="images-2x-73fps", size=(40, 28)):
    """Participant 018 with one sequence; full-resolution intrinsics, images at 1/2 resolution."""
    w, h = size
    K = [[2.0 * 30.0, 0.0, float(w)], [0.0, 2.0 * 31.0, float(h)], [0.0, 0.0, 1.0]]
    ang = torch.linspace(-0.5, 0.5, len(serials), dtype=torch.float64)
    eyes = torch.stack([torch.sin(ang), torch.zeros_like(ang), torch.cos(ang)], -1)
    V = look_at(
        eyes,
        torch.zeros(len(serials), 3, dtype=torch.float64),
        torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64),
    )
    part = root / "018"
    part.mkdir(parents=True)
    (part / "camera_params.json").write_text(
        json.dumps({"intrinsics": K, "world_2_cam": {s: V[i].tolist() for i, s in enumerate(serials)}})
    )
    seq = part / "sequences" / "EXP-1-head"
    for n in frames:
        for s in serials:
            save_image(seq / f"frame_{n:05d}" / folder / f"cam_{s}.png", np.full((h, w, 3), 0.25))
            save_mask(
                seq / f"frame_{n:05d}" / folder.replace("images-2x", "alpha_map") / f"cam_{s}.png",
                np.ones((h, w)),
            )
    return part, seq, V


def test_reads_cameras_frames_masks_and_paper_split(tmp_path):
    part, seq, V = _write_participant(tmp_path)
    cap = read_nersemble(part)
    assert cap.cameras.names == tuple(SERIALS[:5])
    torch.testing.assert_close(cap.cameras.viewmat, V, rtol=0, atol=0)  # already OpenCV world-to-camera
    # intrinsics given at full resolution, images-2x -> halved
    assert cap.cameras.K[0].tolist() == [[30.0, 0.0, 20.0], [0.0, 31.0, 14.0], [0.0, 0.0, 1.0]]
    assert cap.cameras.width.tolist() == [40] * 5 and cap.cameras.height.tolist() == [28] * 5
    assert cap.num_timesteps == 3 and len(cap) == 15 and cap.has_masks
    assert cap.timestamps.tolist() == [0.0, 3 / 73.0, 6 / 73.0]
    assert cap.metadata["frame_numbers"] == [0, 3, 6] and cap.metadata["image_folder"] == "images-2x-73fps"
    assert cap.test_cameras == (1, 2, 3, 4) and cap.train_cameras == (0,)
    i = cap.frame_index(2, 1)
    assert i is not None
    f = cap.frames[i]
    assert f.image_path == seq / "frame_00003" / "images-2x-73fps" / f"cam_{SERIALS[2]}.png"
    assert f.mask_path == seq / "frame_00003" / "alpha_map-73fps" / f"cam_{SERIALS[2]}.png"
    assert cap.check_files() == 15
    # the pixel the calibration says sees the origin is the image centre
    uv, _ = cap.cameras.project(torch.zeros(1, 3, dtype=torch.float64))
    torch.testing.assert_close(
        uv[:, 0], torch.tensor([[20.0, 14.0]] * 5, dtype=torch.float64), rtol=0, atol=1e-9
    )


def test_autodetect_from_every_entry_point(tmp_path):
    part, seq, _ = _write_participant(tmp_path, serials=SERIALS[:2], frames=(1,))
    for p in (part, seq, part / "camera_params.json"):
        assert detect_format(p)[0] == "nersemble"
        assert load_capture(p).cameras.names == tuple(SERIALS[:2])


def test_converts_to_our_format(tmp_path):
    part, _, V = _write_participant(tmp_path, serials=SERIALS[:2], frames=(0, 1))
    cap = read_nersemble(part, fps=24.0)
    out = save_capture(cap, tmp_path / "ours")
    back = load_capture(out.parent)
    assert detect_format(out.parent)[0] == "nerfhead"
    torch.testing.assert_close(back.cameras.viewmat, V, rtol=0, atol=1e-12)
    assert back.cameras.names == tuple(SERIALS[:2]) and back.timestamps.tolist() == [0.0, 1 / 24.0]


def test_problems_name_the_file(tmp_path):
    part, seq, _ = _write_participant(tmp_path, serials=SERIALS[:2], frames=(0,))
    save_image(seq / "frame_00000" / "images-2x-73fps" / "cam_999.png", np.zeros((28, 40, 3)))
    with pytest.raises(InputError, match="serial 999 is not in") as e:
        read_nersemble(part)
    assert str(e.value.path).endswith("cam_999.png")
    (seq / "frame_00000" / "images-2x-73fps" / "cam_999.png").unlink()
    (part / "sequences" / "EXP-2").mkdir()
    with pytest.raises(InputError, match="holds 2 sequences"):
        read_nersemble(part)
    params = json.loads((part / "camera_params.json").read_text())
    params["intrinsics"] = [[60.0, 0.0, 500.0], [0.0, 62.0, 28.0], [0.0, 0.0, 1.0]]
    (part / "camera_params.json").write_text(json.dumps(params))
    with pytest.raises(InputError, match="principal point .* outside") as e:
        read_nersemble(seq)
    assert str(e.value.path).endswith("camera_params.json")
    params["world_2_cam"][SERIALS[0]] = (torch.eye(4) * 2).tolist()
    (part / "camera_params.json").write_text(json.dumps(params))
    with pytest.raises(InputError, match="not rigid|last row"):
        read_nersemble(seq)


def test_rotated_rig_rounded_calibration_is_accepted(tmp_path):
    part, _, _ = _write_participant(tmp_path, serials=SERIALS[:1], frames=(0,))
    params = json.loads((part / "camera_params.json").read_text())
    M = torch.eye(4, dtype=torch.float64)
    M[:3, :3] = axis_angle_to_matrix(torch.tensor([0.4, 0.1, -0.2], dtype=torch.float64))
    M[:3, 3] = torch.tensor([0.0, 0.0, 1.0])
    params["world_2_cam"][SERIALS[0]] = [[round(v, 6) for v in row] for row in M.tolist()]
    (part / "camera_params.json").write_text(json.dumps(params))
    cap = read_nersemble(part)
    assert cap.test_cameras is None and cap.train_cameras is None
