"""``nerfhead track`` bad inputs: one-line InputErrors (exit code 2 through the CLI once the verb is registered)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mediapipe", reason="needs the track extra (mediapipe)")

from nerfhead.cli.track import main
from nerfhead.errors import InputError
from nerfhead.media.video import write_video


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_track_inputs")
    corrupt = d / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    noise = np.random.default_rng(0).integers(0, 256, (6, 96, 128, 3), dtype=np.uint8)
    no_face = write_video(iter(noise), d / "noise.mp4", 25.0)
    zero = d / "zero.avi"
    import av

    with av.open(str(zero), "w") as c:
        s = c.add_stream("mpeg4", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        c.start_encoding()
    return {
        "missing": (d / "missing.mp4", "no such file"),
        "corrupt": (corrupt, "not a readable video|no decodable frames|corrupt"),
        "no_face": (no_face, "no face found in any of its 6 frames"),
        "zero_frames": (zero, "zero frames"),
        "not_a_capture": (d, "not a capture"),
    }


@pytest.mark.parametrize("case", ["missing", "corrupt", "no_face", "zero_frames", "not_a_capture"])
def test_bad_input_raises_input_error(bad_inputs, tmp_path, case):
    path, what = bad_inputs[case]
    with pytest.raises(InputError, match=what) as e:
        main(path, tmp_path / "out", quiet=True)
    line = e.value.one_line()
    assert line.startswith("error: ") and "\n" not in line


@pytest.mark.parametrize("case", ["missing", "no_face", "zero_frames"])
def test_cli_exit_code_2(bad_inputs, tmp_path, run_cli, case):
    from nerfhead.cli.main import _verbs

    if "track" not in _verbs():
        pytest.skip("the track verb is not registered in nerfhead.cli.main yet")
    path, what = bad_inputs[case]
    code, out, err = run_cli("track", path, "--out", tmp_path / "out", "--quiet")
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and str(path) in lines[0]
