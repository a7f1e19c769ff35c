"""Bad captures and capture outputs for ``nerfhead inspect`` and ``nerfhead track``: capture paths that escape
the capture folder (absolute, ``..``, symlinks; ``/etc/passwd`` never opened), broken files, and track outputs
that are files, run folders or read-only. Each: exit 2, one line naming the file or option, nothing changed."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.badinput.conftest import Good, assert_one_line, snapshot, tmpfs, truncate

CASES: dict[str, Callable[[Path, Good], tuple[list, list]]] = {}


def case(fn: Callable[[Path, Good], tuple[list, list]]) -> Callable[[Path, Good], tuple[list, list]]:
    CASES[fn.__name__] = fn
    return fn


def _capture(good: Good, tmp: Path, edit: Callable[[dict, Path], None] | None = None) -> Path:
    cap = tmp / "cap"
    shutil.copytree(good.capture, cap)
    if edit is not None:
        meta = json.loads((cap / "transforms.json").read_text())
        edit(meta, cap)
        (cap / "transforms.json").write_text(json.dumps(meta))
    return cap


def _set(i: int, key: str, value: str) -> Callable[[dict, Path], None]:
    def edit(meta: dict, cap: Path) -> None:
        meta["frames"][i][key] = value

    return edit


@case
def inspect_passwd(tmp, good):
    cap = _capture(good, tmp, _set(0, "file_path", "../../../../../../../../../etc/passwd"))
    return ["inspect", cap], ["transforms.json", "frame 0 file_path", "outside the capture"]


@case
def inspect_absolute_path(tmp, good):
    shutil.copy(good.capture / "c0_t0.png", tmp / "abs.png")
    cap = _capture(good, tmp, _set(5, "file_path", str(tmp / "abs.png")))
    return ["inspect", cap], ["frame 5 file_path", "outside the capture"]


@case
def inspect_symlinked_folder(tmp, good):
    (tmp / "elsewhere").mkdir()
    shutil.copy(good.capture / "c0_t0.png", tmp / "elsewhere" / "c0_t0.png")

    def edit(meta: dict, cap: Path) -> None:
        (cap / "imgs").symlink_to(tmp / "elsewhere", target_is_directory=True)
        meta["frames"][0]["file_path"] = "imgs/c0_t0.png"

    return ["inspect", _capture(good, tmp, edit)], ["frame 0 file_path", "imgs/c0_t0.png", "outside"]


@case
def inspect_mask_escape(tmp, good):
    cap = _capture(good, tmp, _set(2, "mask_path", "../cap_masks/m.png"))
    return ["inspect", cap], ["frame 2 mask_path", "outside the capture"]


@case
def inspect_capture_missing(tmp, good):
    return ["inspect", tmp / "nothing"], ["nothing"]


@case
def inspect_bad_json(tmp, good):
    cap = _capture(good, tmp)
    (cap / "transforms.json").write_text('{"frames": [')
    return ["inspect", cap], ["transforms.json", "not valid JSON"]


@case
def inspect_truncated_image(tmp, good):
    cap = _capture(good, tmp)
    truncate(cap / "c1_t2.png", 0.6)
    return ["inspect", cap], ["c1_t2.png"]


@case
def inspect_truncated_drive(tmp, good):
    cap = _capture(good, tmp)
    truncate(cap / "drive.npz", 0.5)
    return ["inspect", cap], ["drive.npz"]


@case
def track_out_is_a_file(tmp, good):
    (tmp / "tracked.txt").write_text("keep me")
    return ["track", good.capture, "--out", tmp / "tracked.txt", "--quiet"], ["--out", "tracked.txt"]


@case
def track_out_is_a_run(tmp, good):
    return ["track", good.capture, "--out", good.run, "--quiet"], ["--out", "run folder"]


@case
def track_capture_escapes(tmp, good):
    cap = _capture(good, tmp, _set(1, "file_path", "../../../../../../../../../etc/passwd"))
    return ["track", cap, "--out", tmp / "tracked", "--quiet"], ["frame 1 file_path", "outside the capture"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_capture_bad_input(name, tmp_path, good, bad):
    args, names = CASES[name](tmp_path, good)
    bad(list(map(str, args)), names, keep=(tmp_path,))


def test_allow_outside_paths_is_explicit(tmp_path, good, run_cli):
    """The same escaping capture fits with --allow-outside-paths (the option exists and works), and the run
    records it so eval reads the capture the same way."""
    shutil.copy(good.capture / "c0_t0.png", tmp_path / "shared.png")
    cap = _capture(good, tmp_path, _set(0, "file_path", "../shared.png"))
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
