"""Bad-input corpus, generated from a table: every case is answered by ``nerfhead inspect`` with exit code 2 and
one stderr line ``error: <the file at fault>: <the problem>``, no traceback."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nerfhead.data import save_capture, save_image, save_mask
from tests.data.data_synth import write_tiny_capture


def _good(root: Path) -> Path:
    """A valid 2-camera, 2-timestep capture with masks and a drive; returns its folder."""
    cap = write_tiny_capture(root, n_cams=2, T=2)
    save_capture(cap, root)
    return root


def _edit(root: Path, fn: Callable[[dict], object]) -> Path:
    p = root / "transforms.json"
    meta = json.loads(p.read_text())
    fn(meta)
    p.write_text(json.dumps(meta))
    return root


def _drive(root: Path, **change) -> Path:
    p = root / "drive.npz"
    with np.load(p) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(change)
    np.savez(p, **arrays)
    return root


def _set(meta: dict, key: str, value) -> None:
    meta[key] = value


def _frame(meta: dict, i: int, key: str, value) -> None:
    meta["frames"][i][key] = value


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:60])


IMG = "images/cam00/00000.png"
MASK = "masks/cam01/00001.png"


# name -> (make(root) -> path to inspect, file the error must name (relative to root), message regex)
CASES: dict[str, tuple[Callable[[Path], Any], str, str]] = {
    "missing_path": (lambda r: r / "nope", "nope", "no such file or directory"),
    "not_a_capture": (lambda r: (r / "empty").mkdir() or r / "empty", "empty", "not a capture"),
    "not_json": (
        lambda r: (r / "transforms.json").write_text("{frames: [") and r,
        "transforms.json",
        "not valid JSON .*line 1",
    ),
    "json_list": (
        lambda r: (r / "transforms.json").write_text("[1, 2]") and r,
        "transforms.json",
        "expected a JSON object with a 'frames' list, got list",
    ),
    "frames_not_objects": (
        lambda r: _edit(_good(r), lambda m: _set(m, "frames", [1])),
        "transforms.json",
        "frame 0 must be a JSON object",
    ),
    "empty_frames": (
        lambda r: _edit(_good(r), lambda m: _set(m, "frames", [])),
        "transforms.json",
        "frame list is empty",
    ),
    "matrix_wrong_shape": (
        lambda r: _edit(_good(r), lambda m: _frame(m, 1, "transform_matrix", [1, 2, 3])),
        "transforms.json",
        "frame 1: transform_matrix must be a 4x4",
    ),
    "matrix_missing": (
        lambda r: _edit(_good(r), lambda m: m["frames"][2].pop("transform_matrix")),
        "transforms.json",
        "frame 2 has no transform_matrix",
    ),
    "matrix_nan": (
        lambda r: _edit(_good(r), lambda m: m["frames"][0]["transform_matrix"][0].__setitem__(3, math.nan)),
        "transforms.json",
        "frame 0: transform_matrix is not finite",
    ),
    "matrix_scaled": (
        lambda r: _edit(
            _good(r),
            lambda m: _frame(
                m, 0, "transform_matrix", (2 * np.array(m["frames"][0]["transform_matrix"])).tolist()
            ),
        ),
        "transforms.json",
        "frame 0: transform_matrix (last row|is not rigid)",
    ),
    "matrix_singular": (
        lambda r: _edit(
            _good(r),
            lambda m: _frame(
                m, 0, "transform_matrix", [[0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]]
            ),
        ),
        "transforms.json",
        "is not rigid",
    ),
    "matrix_reflection": (
        lambda r: _edit(
            _good(r), lambda m: _frame(m, 0, "transform_matrix", np.diag([1.0, 1.0, -1.0, 1.0]).tolist())
        ),
        "transforms.json",
        "reflection",
    ),
    "unknown_camera_model": (
        lambda r: _edit(_good(r), lambda m: _set(m, "camera_model", "PANORAMIC")),
        "transforms.json",
        "unknown camera model 'PANORAMIC'",
    ),
    "fisheye_camera_model": (
        lambda r: _edit(_good(r), lambda m: _set(m, "camera_model", "OPENCV_FISHEYE")),
        "transforms.json",
        "'OPENCV_FISHEYE' is not supported",
    ),
    "negative_focal": (
        lambda r: _edit(_good(r), lambda m: _set(m, "fl_x", -20.0)),
        "transforms.json",
        "focal length must be positive",
    ),
    "nan_focal": (
        lambda r: _edit(_good(r), lambda m: _set(m, "fl_y", math.nan)),
        "transforms.json",
        "fl_y must be a finite number",
    ),
    "missing_focal": (lambda r: _edit(_good(r), lambda m: m.pop("fl_x")), "transforms.json", "no fl_x"),
    "fisheye_k4": (lambda r: _edit(_good(r), lambda m: _set(m, "k4", 0.1)), "transforms.json", "k4"),
    "image_size_vs_wh": (
        lambda r: _edit(_good(r), lambda m: _set(m, "w", 20)),
        IMG,
        "image is 16x12 but camera 0 \\(cam00\\) expects 20x12",
    ),
    "missing_image": (
        lambda r: (_good(r) / "images/cam01/00001.png").unlink() or r,
        "images/cam01/00001.png",
        "image file not found",
    ),
    "corrupt_image": (
        lambda r: (_good(r) / IMG).write_bytes(b"\x89PNG garbage") and r,
        IMG,
        "not a readable image",
    ),
    "truncated_image": (lambda r: _truncate(_good(r) / IMG) or r, IMG, "corrupt image"),
    "missing_mask": (lambda r: (_good(r) / MASK).unlink() or r, MASK, "mask file not found"),
    "mask_size_mismatch": (
        lambda r: save_mask(_good(r) / MASK, np.ones((8, 8))) and r,
        MASK,
        "mask is 8x8 but camera 1 \\(cam01\\) expects 16x12",
    ),
    "empty_mask": (lambda r: save_mask(_good(r) / MASK, np.zeros((12, 16))) and r, MASK, "mask is empty"),
    "timestep_gap": (
        lambda r: _edit(
            _good(r),
            lambda m: [f.__setitem__("timestep_index", 2) for f in m["frames"] if f["timestep_index"] == 1],
        ),
        "transforms.json",
        "timestep indices have gaps: no frame at timestep 1",
    ),
    "timestep_duplicate": (
        lambda r: _edit(_good(r), lambda m: _frame(m, 2, "timestep_index", 0)),
        "transforms.json",
        "frames 0 and 2 are both camera 0 \\(cam00\\) at timestep 0",
    ),
    "timestep_not_int": (
        lambda r: _edit(_good(r), lambda m: _frame(m, 1, "timestep_index", 0.5)),
        "transforms.json",
        "timestep_index must be a non-negative integer",
    ),
    "camera_index_partial": (
        lambda r: _edit(_good(r), lambda m: m["frames"][3].pop("camera_index")),
        "transforms.json",
        "frame 3 lacks 'camera_index'",
    ),
    "drive_missing": (lambda r: (_good(r) / "drive.npz").unlink() or r, "drive.npz", "drive file not found"),
    "drive_wrong_shape": (
        lambda r: _drive(_good(r), expression=np.zeros((2, 50), np.float32)),
        "drive.npz",
        r"expression must be \[T, 53\]",
    ),
    "drive_nan": (
        lambda r: _drive(_good(r), rotation=np.full((2, 3), np.nan, np.float32)),
        "drive.npz",
        "rotation is not finite",
    ),
    "drive_out_of_range": (
        lambda r: _drive(_good(r), expression=np.full((2, 53), -0.5, np.float32)),
        "drive.npz",
        r"expression must lie in \[0, 1\]",
    ),
    "drive_length": (
        lambda r: _drive(
            _good(r),
            **{
                k: np.zeros((3, w), np.float32)
                for k, w in [("rotation", 3), ("translation", 3), ("expression", 53), ("latent", 4)]
            },
        ),
        "transforms.json",
        "the drive has 3 timesteps but the frames have 2",
    ),
    "drive_not_npz": (
        lambda r: (_good(r) / "drive.npz").write_text("hello") and r,
        "drive.npz",
        "not a .npz file",
    ),
    "audio_missing": (
        lambda r: _edit(_good(r), lambda m: m["nerfhead"].__setitem__("audio", "speech.wav")),
        "speech.wav",
        "audio file not found",
    ),
    "audio_not_audio": (
        lambda r: (
            (_edit(_good(r), lambda m: m["nerfhead"].__setitem__("audio", "a.wav")) / "a.wav").write_text("x")
            and r
        ),
        "a.wav",
        "not a readable audio file",
    ),
    "newer_format": (
        lambda r: _edit(_good(r), lambda m: m["nerfhead"].__setitem__("version", 99)),
        "transforms.json",
        "newer nerfhead",
    ),
    "bad_split": (
        lambda r: _edit(_good(r), lambda m: m["nerfhead"].__setitem__("test_cameras", [5])),
        "transforms.json",
        "test_cameras \\[5\\] must be distinct camera indices",
    ),
    "nersemble_not_json": (lambda r: _nersemble(r, params="{oops"), "camera_params.json", "not valid JSON"),
    "nersemble_bad_intrinsics": (
        lambda r: _nersemble(
            r, params=json.dumps({"intrinsics": [1, 2], "world_2_cam": {"1": np.eye(4).tolist()}})
        ),
        "camera_params.json",
        "intrinsics must be a 3x3",
    ),
}


def _nersemble(root: Path, params: str) -> Path:
    (root / "camera_params.json").write_text(params)
    save_image(root / "frame_00000" / "images-2x" / "cam_1.png", np.zeros((12, 16, 3)))
    return root


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_line_exit_2(name, tmp_path, inspect_cli):
    make, culprit, pattern = CASES[name]
    root = tmp_path / "cap"
    root.mkdir()
    target = Path(make(root))
    code, out, err = inspect_cli("inspect", target)
    lines = err.strip().splitlines()
    assert code == 2, (out, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    expected_path = (
        str((root / culprit).absolute()) if culprit not in ("nope", "empty") else str(root / culprit)
    )
    assert lines[0].startswith(f"error: {expected_path}: "), lines[0]
    assert __import__("re").search(pattern, lines[0]), lines[0]


def test_corpus_is_large_enough():
    assert len(CASES) >= 30
