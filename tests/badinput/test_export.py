"""Bad inputs to ``nerfhead export ply`` and ``nerfhead export mesh``: each answered before any work with exit 2
and one line naming the file or option, nothing written before it changed."""

from __future__ import annotations

import pytest

from tests.badinput.conftest import (
    Cases,
    assert_one_line,
    checkpoint_file,
    copy_run,
    foreign_weights,
    snapshot,
    tmpfs,
    truncate,
)

CASES = Cases()


@CASES.add
def ply_out_other_kind(tmp, good):
    (tmp / "notes.txt").write_text("keep me")
    return ["ply", good.run, "--out", tmp / "notes.txt"], ["--out", "notes.txt", ".ply"]


@CASES.add
def ply_out_is_a_folder_named_ply(tmp, good):
    (tmp / "head.ply").mkdir()
    return ["ply", good.run, "--out", tmp / "head.ply"], ["--out", "head.ply", "is a folder"]


@CASES.add
def ply_sequence_into_a_file(tmp, good):
    return ["ply", good.run, "--sequence", "--out", tmp / "head.ply"], ["--out", "head.ply", "folder"]


@CASES.add
def ply_out_folder_is_a_file(tmp, good):
    (tmp / "frames").write_text("keep me")
    return ["ply", good.run, "--sequence", "--out", tmp / "frames"], ["--out", "frames"]


@CASES.add
def ply_frame_out_of_range(tmp, good):
    return ["ply", good.run, "--frame", "99", "--out", tmp / "head.ply"], ["--frame", "99"]


@CASES.add
def ply_drive_missing(tmp, good):
    return ["ply", good.run, "--drive", tmp / "gone.npz", "--out", tmp / "head.ply"], ["gone.npz"]


@CASES.add
def ply_drive_not_npz(tmp, good):
    (tmp / "drive.npz").write_text("not a zip")
    return ["ply", good.run, "--drive", tmp / "drive.npz", "--out", tmp / "head.ply"], ["drive.npz"]


@CASES.add
def ply_run_missing(tmp, good):
    return ["ply", tmp / "no_run", "--out", tmp / "head.ply"], ["no_run"]


@CASES.add
def ply_truncated_checkpoint(tmp, good):
    run = copy_run(good, tmp / "run")
    truncate(checkpoint_file(run), 0.3)
    return ["ply", run, "--out", tmp / "head.ply"], ["model.safetensors"]


@CASES.add
def ply_wrong_kind_weights(tmp, good):
    run = copy_run(good, tmp / "run")
    foreign_weights(checkpoint_file(run))
    return ["ply", run, "--out", tmp / "head.ply"], ["model.safetensors", "do not fit"]


@CASES.add
def ply_into_another_run(tmp, good):
    other = copy_run(good, tmp / "other")
    return ["ply", good.run, "--out", other / "head.ply"], ["--out", "inside the run folder"]


@CASES.add
def mesh_into_another_run(tmp, good):
    other = copy_run(good, tmp / "other")
    return ["mesh", good.run, "--out", other], ["--out", "inside the run folder"]


@CASES.add
def mesh_out_other_kind(tmp, good):
    (tmp / "head.stl").write_text("keep me")
    return ["mesh", good.run, "--out", tmp / "head.stl"], ["--out", "head.stl"]


@CASES.add
def mesh_out_is_a_folder(tmp, good):
    (tmp / "head.obj").mkdir()
    return ["mesh", good.run, "--out", tmp / "head.obj"], ["--out", "is a folder"]


@CASES.add
def mesh_resolution_too_small(tmp, good):
    return ["mesh", good.run, "--out", tmp / "head.obj", "--resolution", "1"], ["--resolution"]


@CASES.add
def mesh_no_views(tmp, good):
    return ["mesh", good.run, "--out", tmp / "head.obj", "--views", "0"], ["--views"]


@CASES.add
def mesh_run_not_a_run(tmp, good):
    (tmp / "plain").mkdir()
    return ["mesh", tmp / "plain", "--out", tmp / "head.obj"], ["plain", "avatar.json"]


@CASES.add
def mesh_frame_out_of_range(tmp, good):
    return ["mesh", good.run, "--frame", "-4", "--out", tmp / "head.obj", "--views", "1"], ["frame"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_export_bad_input(name, tmp_path, good, bad):
    args, names = CASES[name](tmp_path, good)
    bad(["export", *map(str, args)], names, keep=(tmp_path,))


def test_export_ply_full_disk(tmp_path, good, run_cli):
    """A full disk while the PLY is written: one line naming it, the earlier PLY intact, no temporary file."""
    with tmpfs(tmp_path / "full", "256k", seed={"head.ply": b"earlier ply"}, fill=True) as disk:
        before = snapshot(disk / "head.ply", good.run)
        code, _, err = run_cli("export", "ply", good.run, "--out", disk / "head.ply")
        assert_one_line(code, err, disk / "head.ply", "no space left")
        assert snapshot(disk / "head.ply", good.run) == before
        assert sorted(p.name for p in disk.iterdir()) == ["head.ply", "pad"]


def test_export_mesh_read_only(tmp_path, good, run_cli):
    with tmpfs(tmp_path / "ro", "1m", read_only=True, seed={"head.obj": b"earlier mesh"}) as ro:
        before = snapshot(ro, good.run)
        code, _, err = run_cli("export", "mesh", good.run, "--out", ro / "head.obj")
        assert_one_line(code, err, "--out", "read-only")
        assert snapshot(ro, good.run) == before
