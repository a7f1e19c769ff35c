"""Open any supported capture layout by looking at what is on disk."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from nerfhead.data.capture import Capture
from nerfhead.errors import InputError

CaptureFormat = Literal["nerfhead", "nerfstudio", "nersemble"]


def detect_format(path: str | os.PathLike) -> tuple[CaptureFormat, Path]:
    """(format, path to hand to its reader) for a capture folder or file.

    ``nerfhead``: a transforms.json with a ``nerfhead`` block; ``nerfstudio``: any other transforms.json-like
    file (``transforms*.json`` or a JSON file given directly); ``nersemble``: camera_params.json + frame folders.

    Raises:
        InputError: the path is missing or matches no format.
    """
    from nerfhead.data.nersemble import find_nersemble

    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file or directory")
    json_file = None
    if path.is_file():
        if path.name == "camera_params.json":
            found = find_nersemble(path)
            if found is not None:
                return "nersemble", path
        json_file = path
    elif (path / "transforms.json").is_file():
        json_file = path / "transforms.json"
    elif find_nersemble(path) is not None:
        return "nersemble", path
    if json_file is None:
        raise InputError(
            path,
            "not a capture: no transforms.json here and no NeRSemble camera_params.json with frame_* folders",
        )
    try:  # nerfhead writes its block last: look at both ends of big files
        with open(json_file, "rb") as f:
            head = f.read(1 << 20)
            f.seek(max(f.seek(0, os.SEEK_END) - (1 << 20), 0))
            tail = f.read()
    except OSError as e:
        raise InputError(json_file, f"cannot read ({type(e).__name__})") from None
    return ("nerfhead" if b'"nerfhead"' in head + tail else "nerfstudio"), json_file


def load_capture(path: str | os.PathLike, allow_outside_paths: bool = False) -> Capture:
    """Read a capture in any supported layout (see :func:`detect_format`). Image and mask paths must lie inside
    the capture's folder (symlinks resolved) unless ``allow_outside_paths``.

    Raises:
        InputError: naming the file and the problem.
    """
    fmt, p = detect_format(path)
    if fmt == "nersemble":
        from nerfhead.data.nersemble import read_nersemble

        return read_nersemble(p)
    from nerfhead.data.nerfstudio import read_transforms

    return read_transforms(p, allow_outside_paths=allow_outside_paths)
