"""Reader for the NeRSemble (v1, paper code) multi-view layout.

::

    <participant>/camera_params.json                  {"intrinsics": 3x3 (full 3208x2200 resolution, shared),
                                                       "world_2_cam": {serial: 4x4 OpenCV world-to-camera}}
    <participant>/sequences/<SEQ>/frame_<t:05d>/images-2x[-73fps]/cam_<serial>.png
    <participant>/sequences/<SEQ>/frame_<t:05d>/alpha_map[-73fps]/cam_<serial>.png      (optional masks)

World space is metric and the extrinsics are already OpenCV world-to-camera (maintainer, NeRSemble issue #9),
so no axis conversion happens here. ``images-<d>x`` folders hold images downsampled d times: the intrinsics are
scaled by 1/d. Timesteps are the sorted frame numbers renumbered from 0; timestamps are frame number / fps.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import torch

from nerfhead.data.cameras import Cameras
from nerfhead.data.capture import Capture, Frame
from nerfhead.data.images import read_image_size
from nerfhead.errors import InputError

PAPER_TEST_SERIALS = ("222200040", "220700191", "222200043", "221501007")
"""Hold-out cameras of the NeRSemble paper's evaluation (train on the other 12)."""

RIG_FPS = 73.0
"""NeRSemble's capture rate."""

_FRAME_RE = re.compile(r"^frame_(\d+)$")
_IMAGES_RE = re.compile(r"^images(?:-(\d+)x)?(-\d+fps)?$")
_CAM_RE = re.compile(r"^cam_(.+)\.(png|jpg|jpeg)$", re.IGNORECASE)


def find_nersemble(path: Path) -> tuple[Path, Path] | None:
    """(camera_params.json, sequence folder) for a participant folder, a sequence folder, or the
    camera_params.json itself; None when ``path`` does not look like NeRSemble."""
    path = path.absolute()
    if path.is_file() and path.name == "camera_params.json":
        path = path.parent
    if not path.is_dir():
        return None

    def has_frames(d: Path) -> bool:
        return any(_FRAME_RE.match(p.name) and p.is_dir() for p in d.iterdir())

    if (path / "camera_params.json").is_file():
        if has_frames(path):
            return path / "camera_params.json", path
        seqs = (
            sorted(p for p in (path / "sequences").glob("*") if p.is_dir())
            if (path / "sequences").is_dir()
            else []
        )
        if len(seqs) == 1:
            return path / "camera_params.json", seqs[0]
        if len(seqs) > 1:
            names = ", ".join(p.name for p in seqs[:6])
            raise InputError(path, f"holds {len(seqs)} sequences", hint=f"pass one sequence folder: {names}")
        raise InputError(path, "has camera_params.json but no frame_* folders or sequences/")
    for params in (path.parent.parent / "camera_params.json", path.parent / "camera_params.json"):
        if params.is_file() and has_frames(path):
            return params, path
    return None


def _read_params(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray | dict[str, np.ndarray]]:
    import json

    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(path, f"not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(path, f"cannot read ({type(e).__name__})") from None
    if (
        not isinstance(meta, dict)
        or not isinstance(meta.get("world_2_cam"), dict)
        or "intrinsics" not in meta
    ):
        raise InputError(path, "expected {'intrinsics': 3x3, 'world_2_cam': {serial: 4x4}}")

    def mat(v, shape: tuple[int, int], what: str) -> np.ndarray:
        try:
            a = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError):
            a = None
        if a is None or a.shape != shape:
            raise InputError(path, f"{what} must be a {shape[0]}x{shape[1]} list of numbers")
        return a

    w2c = {str(s): mat(m, (4, 4), f"world_2_cam[{s}]") for s, m in meta["world_2_cam"].items()}
    if not w2c:
        raise InputError(path, "world_2_cam lists no cameras")
    intr = meta["intrinsics"]
    if isinstance(intr, dict):
        return w2c, {str(s): mat(m, (3, 3), f"intrinsics[{s}]") for s, m in intr.items()}
    return w2c, mat(intr, (3, 3), "intrinsics")


def _pick_image_folder(frame_dirs: list[Path], seq: Path) -> str:
    counts: dict[str, int] = {}
    for d in frame_dirs:
        for p in d.iterdir():
            if p.is_dir() and _IMAGES_RE.match(p.name):
                counts[p.name] = counts.get(p.name, 0) + 1
    if not counts:
        raise InputError(seq, "no images*/ folder in any frame_* folder")
    return max(sorted(counts), key=lambda k: counts[k])


def read_nersemble(
    path: str | os.PathLike, fps: float | None = None, image_folder: str | None = None, masks: bool = True
) -> Capture:
    """Read a NeRSemble sequence into a Capture (float64 cameras named by serial).

    Args:
        path: participant folder (with one sequence), sequence folder, or its camera_params.json.
        fps: frame rate of the frame numbers; default 73 (the rig rate).
        image_folder: e.g. ``"images-2x-73fps"``; default: the images* folder present in most frames.
        masks: attach ``alpha_map*`` files as masks when they exist.

    Raises:
        InputError: naming the file and the problem.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file or directory")
    found = find_nersemble(path)
    if found is None:
        raise InputError(path, "not a NeRSemble folder (no camera_params.json with frame_* folders)")
    params_path, seq = found
    w2c, intr = _read_params(params_path)
    fps = RIG_FPS if fps is None else float(fps)
    frame_dirs = sorted(
        (p for p in seq.iterdir() if p.is_dir() and _FRAME_RE.match(p.name)), key=lambda p: int(p.name[6:])
    )
    folder = image_folder or _pick_image_folder(frame_dirs, seq)
    m = _IMAGES_RE.match(folder)
    down = int(m.group(1)) if m and m.group(1) else 1
    mask_folder = "alpha_map" + ((m.group(2) or "") if m else "")

    serials = list(w2c)
    items: list[tuple[int, str, Path, Path | None]] = []  # (frame number, serial, image, mask)
    for d in frame_dirs:
        img_dir = d / folder
        if not img_dir.is_dir():
            continue
        for p in sorted(img_dir.iterdir()):
            cm = _CAM_RE.match(p.name)
            if not cm:
                continue
            serial = cm.group(1)
            if serial not in w2c:
                raise InputError(p, f"camera serial {serial} is not in {params_path}")
            mp = d / mask_folder / f"cam_{serial}.png"
            items.append((int(d.name[6:]), serial, p, mp if masks and mp.is_file() else None))
    if not items:
        raise InputError(seq, f"no cam_<serial> images in {folder}/ folders")

    used = [s for s in serials if any(it[1] == s for it in items)]
    cam_index = {s: k for k, s in enumerate(used)}
    numbers = sorted({it[0] for it in items})
    t_index = {n: k for k, n in enumerate(numbers)}
    first_image = {}
    for it in items:
        first_image.setdefault(it[1], it[2])
    sizes = torch.tensor([read_image_size(first_image[s]) for s in used], dtype=torch.int64)
    if isinstance(intr, dict):
        missing = [s for s in used if s not in intr]
        if missing:
            raise InputError(params_path, f"no intrinsics for camera {missing[0]}")
        K = torch.tensor(np.stack([intr[s] for s in used]))
    else:
        K = torch.tensor(intr).expand(len(used), 3, 3).clone()
    K[:, :2] = K[:, :2] / down
    viewmat = torch.tensor(np.stack([w2c[s] for s in used]))
    try:
        cameras = Cameras(K, viewmat, sizes[:, 0], sizes[:, 1], None, tuple(used))
        cameras.check()
    except ValueError as e:
        raise InputError(params_path, str(e)) from None
    for k, s in enumerate(used):
        cx, cy, w, h = float(K[k, 0, 2]), float(K[k, 1, 2]), int(sizes[k, 0]), int(sizes[k, 1])
        if not (0 <= cx <= w and 0 <= cy <= h):
            raise InputError(
                params_path,
                f"camera {s}: principal point ({cx:.1f}, {cy:.1f}) lies outside its {w}x{h} {folder} images",
                hint="intrinsics are expected at full resolution, images in images-<d>x folders at 1/d",
            )
    frames = tuple(Frame(cam_index[s], t_index[n], n / fps, p, mp) for n, s, p, mp in items)
    test = tuple(cam_index[s] for s in PAPER_TEST_SERIALS if s in cam_index)
    train = (
        tuple(k for k in range(len(used)) if k not in test) if len(test) == len(PAPER_TEST_SERIALS) else None
    )
    metadata = {
        "source_format": "nersemble",
        "sequence": seq.name,
        "image_folder": folder,
        "frame_numbers": numbers,
    }
    if not math.isfinite(fps) or fps <= 0:
        raise InputError(None, f"fps must be positive, got {fps}")
    try:
        return Capture(
            cameras,
            frames,
            fps,
            train_cameras=train,
            test_cameras=test if train is not None else None,
            metadata=metadata,
        )
    except ValueError as e:
        raise InputError(seq, str(e)) from None
