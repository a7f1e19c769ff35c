"""Bad inputs to ``nerfhead drive``: each answered before the render with exit 2 and one line naming the file
or option; a drive never writes into a run folder (the issue's lost tracked drive), and nothing written before
changes."""

from __future__ import annotations

import pytest

from tests.badinput.conftest import (
    Cases,
    assert_one_line,
    checkpoint_file,
    copy_run,
    run_subprocess,
    snapshot,
    tmpfs,
    truncate,
)

SMALL = ["--res", "32", "--device", "cpu", "--driver", "rules"]
CASES = Cases()


@CASES.add
def out_into_its_own_run(tmp, good):
    return [good.run, "--audio", good.audio, "--out", good.run / "talk.mp4"], [
        "--out",
        "inside the run folder",
    ]


@CASES.add
def out_into_another_run(tmp, good):
    other = copy_run(good, tmp / "other")
    return [good.run, "--audio", good.audio, "--out", other / "talk.mp4"], ["--out", "inside the run folder"]


@CASES.add
def out_is_a_folder(tmp, good):
    (tmp / "talk.mp4").mkdir()
    return [good.run, "--audio", good.audio, "--out", tmp / "talk.mp4"], ["--out", "is a folder"]


@CASES.add
def out_not_mp4(tmp, good):
    (tmp / "notes.txt").write_text("keep me")
    return [good.run, "--audio", good.audio, "--out", tmp / "notes.txt"], ["--out", ".mp4"]


@CASES.add
def out_below_a_file(tmp, good):
    (tmp / "notes.txt").write_text("keep me")
    return [good.run, "--audio", good.audio, "--out", tmp / "notes.txt" / "talk.mp4"], ["--out", "notes.txt"]


@CASES.add
def curves_next_to_out_is_a_folder(tmp, good):
    (tmp / "curves.csv").mkdir()
    return [good.run, "--audio", good.audio, "--out", tmp / "talk.mp4"], ["--out", "curves.csv"]


@CASES.add
def audio_missing(tmp, good):
    return [good.run, "--audio", tmp / "gone.wav", "--out", tmp / "talk.mp4"], ["gone.wav"]


@CASES.add
def audio_not_audio(tmp, good):
    (tmp / "speech.wav").write_text("this is not a wav file")
    return [good.run, "--audio", tmp / "speech.wav", "--out", tmp / "talk.mp4"], ["speech.wav"]


@CASES.add
def res_out_of_range(tmp, good):
    return [good.run, "--audio", good.audio, "--out", tmp / "talk.mp4", "--res", "5"], ["--res"]


@CASES.add
def fps_zero(tmp, good):
    return [good.run, "--audio", good.audio, "--out", tmp / "talk.mp4", "--fps", "0"], ["--fps"]


@CASES.add
def driver_unknown(tmp, good):
    return [good.run, "--audio", good.audio, "--out", tmp / "talk.mp4", "--driver", "magic"], ["--driver"]


@CASES.add
def device_cuda_missing(tmp, good):
    return [good.run, "--audio", good.audio, "--out", tmp / "talk.mp4", "--device", "cuda:64"], ["--device"]


@CASES.add
def run_missing(tmp, good):
    return [tmp / "no_run", "--audio", good.audio, "--out", tmp / "talk.mp4"], ["no_run"]


@CASES.add
def run_truncated_checkpoint(tmp, good):
    run = copy_run(good, tmp / "run")
    truncate(checkpoint_file(run))
    return [run, "--audio", good.audio, "--out", tmp / "talk.mp4"], ["model.safetensors"]


@CASES.add
def camera_path_missing(tmp, good):
    return [good.run, "--audio", good.audio, "--out", tmp / "talk.mp4", "--camera", tmp / "path.json"], [
        "path.json"
    ]


@pytest.mark.parametrize("name", sorted(CASES))
def test_drive_bad_input(name, tmp_path, good, bad):
    args, names = CASES[name](tmp_path, good)
    bad(["drive", *SMALL, *map(str, args)], names, keep=(tmp_path,))
    assert not (tmp_path / "talk.mp4").is_file()


def test_drive_read_only_out(tmp_path, good, run_cli):
    with tmpfs(tmp_path / "ro", "1m", read_only=True, seed={"talk.mp4": b"earlier video"}) as ro:
        before = snapshot(ro, good.run)
        code, _, err = run_cli("drive", good.run, "--audio", good.audio, "--out", ro / "talk.mp4", *SMALL)
        assert_one_line(code, err, "--out", "read-only")
        assert snapshot(ro, good.run) == before


def test_drive_full_disk(tmp_path, good, run_cli):
    """A full disk when the video is written (after the render): one line naming talk.mp4, the earlier video
    intact, no temporary file left."""
    with tmpfs(tmp_path / "full", "64k", seed={"talk.mp4": b"earlier video"}, fill=True) as disk:
        before = snapshot(disk / "talk.mp4")
        code, _, err = run_cli("drive", good.run, "--audio", good.audio, "--out", disk / "talk.mp4", *SMALL)
        assert_one_line(code, err, disk / "talk.mp4", "no space left")
        assert snapshot(disk / "talk.mp4") == before
        assert sorted(p.name for p in disk.iterdir()) == ["pad", "talk.mp4"]


def test_subprocess_drive_into_its_own_run(good):
    """The issue's data loss, end to end: `drive RUN --out RUN/talk.mp4` is refused and RUN/drive.npz (the
    tracked drive later exports use) is unchanged."""
    before = snapshot(good.run)
    p = run_subprocess("drive", good.run, "--audio", good.audio, "--out", good.run / "talk.mp4", *SMALL)
    assert_one_line(p.returncode, p.stderr, "--out", good.run)
    assert snapshot(good.run) == before
