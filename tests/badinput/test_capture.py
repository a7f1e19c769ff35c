"""Bad captures and capture outputs for ``nerfhead inspect`` and ``nerfhead track``: capture paths that escape
the capture folder (absolute, ``..``, symlinks; ``/etc/passwd`` never opened), broken files, and track outputs
that are files, run folders or read-only. Each: exit 2, one line naming the file or option, nothing changed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.badinput.conftest import (
    Cases,
    assert_one_line,
    edited_capture,
    set_frame,
    snapshot,
    tmpfs,
    truncate,
)

CASES = Cases()


@CASES.add
def inspect_passwd(tmp, good):
    cap = edited_capture(good, tmp, set_frame(0, "file_path", "../../../../../../../../../etc/passwd"))
    return ["inspect", cap], ["transforms.json", "frame 0 file_path", "outside the capture"]


@CASES.add
def inspect_absolute_path(tmp, good):
    shutil.copy(good.capture / "c0_t0.png", tmp / "abs.png")
    cap = edited_capture(good, tmp, set_frame(5, "file_path", str(tmp / "abs.png")))
    return ["inspect", cap], ["frame 5 file_path", "outside the capture"]


@CASES.add
def inspect_symlinked_folder(tmp, good):
    (tmp / "elsewhere").mkdir()
    shutil.copy(good.capture / "c0_t0.png", tmp / "elsewhere" / "c0_t0.png")

    def edit(meta: dict, cap: Path) -> None:
        (cap / "imgs").symlink_to(tmp / "elsewhere", target_is_directory=True)
        meta["frames"][0]["file_path"] = "imgs/c0_t0.png"

    return ["inspect", edited_capture(good, tmp, edit)], ["frame 0 file_path", "imgs/c0_t0.png", "outside"]


@CASES.add
def inspect_mask_escape(tmp, good):
    (tmp / "cap_masks").mkdir()
    shutil.copy(good.capture / "c0_t0_mask.png", tmp / "cap_masks" / "m.png")
    cap = edited_capture(good, tmp, set_frame(2, "mask_path", "../cap_masks/m.png"))
    return ["inspect", cap], ["frame 2 mask_path", "outside the capture"]


@CASES.add
def inspect_capture_missing(tmp, good):
    return ["inspect", tmp / "nothing"], ["nothing"]


@CASES.add
def inspect_bad_json(tmp, good):
    cap = edited_capture(good, tmp)
    (cap / "transforms.json").write_text('{"frames": [')
    return ["inspect", cap], ["transforms.json", "not valid JSON"]


@CASES.add
def inspect_truncated_image(tmp, good):
    cap = edited_capture(good, tmp)
    truncate(cap / "c1_t2.png", 0.6)
    return ["inspect", cap], ["c1_t2.png"]


@CASES.add
def inspect_truncated_drive(tmp, good):
    cap = edited_capture(good, tmp)
    truncate(cap / "drive.npz", 0.5)
    return ["inspect", cap], ["drive.npz"]


@CASES.add
def track_out_is_a_file(tmp, good):
    (tmp / "tracked.txt").write_text("keep me")
    return ["track", good.capture, "--out", tmp / "tracked.txt", "--quiet"], ["--out", "tracked.txt"]


@CASES.add
def track_out_is_a_run(tmp, good):
    return ["track", good.capture, "--out", good.run, "--quiet"], ["--out", "run folder"]


@CASES.add
def track_capture_escapes(tmp, good):
    cap = edited_capture(good, tmp, set_frame(1, "file_path", "../../../../../../../../../etc/passwd"))
    return ["track", cap, "--out", tmp / "tracked", "--quiet"], ["frame 1 file_path", "outside the capture"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_capture_bad_input(name, tmp_path, good, bad):
    args, names = CASES[name](tmp_path, good)
    bad(list(map(str, args)), names, keep=(tmp_path,))


def test_allow_outside_paths_is_explicit(tmp_path, good, run_cli):
    """The same escaping capture fits with --allow-outside-paths (the option exists and works), and the run
    records it so eval reads the capture the same way."""
    shutil.copy(good.capture / "c0_t0.png", tmp_path / "shared.png")
    cap = edited_capture(good, tmp_path, set_frame(0, "file_path", "../shared.png"))
    fast = ["--preset", "fast", "--steps", "1", "--no-evaluate", "--threads", "1", "--device", "cpu"]
    code, _, err = run_cli("fit", cap, "--out", tmp_path / "run", *fast)
    assert_one_line(code, err, "outside the capture")
    code, _, err = run_cli("fit", cap, "--out", tmp_path / "run", *fast, "--allow-outside-paths")
    assert code == 0, err
    spec = json.loads((tmp_path / "run" / "avatar.json").read_text())
    assert spec["fit_settings"]["allow_outside_paths"] is True


def test_track_read_only_out(tmp_path, good, run_cli):
    with tmpfs(tmp_path / "ro", "1m", read_only=True, seed={"transforms.json": b"{}"}) as ro:
        before = snapshot(ro, good.capture)
        code, _, err = run_cli("track", good.capture, "--out", ro / "tracked", "--quiet")
        assert_one_line(code, err, "--out", "read-only")
        assert snapshot(ro, good.capture) == before


def test_written_capture_brings_outside_images_along(tmp_path, good):
    """Writing a capture elsewhere (as `track` does for a calibrated input) hard-links its images and masks into
    the new folder, so the default contained reader accepts it and no pixels are copied on one file system."""
    from nerfhead.data import load_capture, save_capture

    src = load_capture(good.capture)
    save_capture(src, tmp_path / "tracked")
    back = load_capture(tmp_path / "tracked")
    root = (tmp_path / "tracked").resolve()
    for a, b in zip(src.frames, back.frames, strict=True):
        assert b.image_path.resolve().is_relative_to(root) and b.mask_path is not None
        assert (
            a.image_path.samefile(b.image_path)
            and a.mask_path is not None
            and a.mask_path.samefile(b.mask_path)
        )
    assert back.num_cameras == src.num_cameras and back.drive is not None


def test_inspect_allow_outside_paths(tmp_path, good, run_cli):
    shutil.copy(good.capture / "c0_t0.png", tmp_path / "shared.png")
    cap = edited_capture(good, tmp_path, set_frame(0, "file_path", "../shared.png"))
    code, _, err = run_cli("inspect", cap, "--json")
    assert_one_line(code, err, "frame 0 file_path", "--allow-outside-paths")
    code, out, err = run_cli("inspect", cap, "--json", "--allow-outside-paths")
    assert code == 0, err
    assert json.loads(out)["frames"] == 12
