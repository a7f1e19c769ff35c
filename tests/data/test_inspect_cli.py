"""``nerfhead inspect``: JSON and table summaries of a good capture in each layout."""

from __future__ import annotations

import json

from nerfhead.data import save_capture
from tests.data.data_synth import write_tiny_capture


def test_inspect_json_numbers(tmp_path, inspect_cli):
    cap = write_tiny_capture(tmp_path / "cap", n_cams=3, T=4, audio=True)
    save_capture(cap, tmp_path / "cap")
    code, out, err = inspect_cli("inspect", tmp_path / "cap", "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["format"] == "nerfhead"
    assert (r["cameras"], r["timesteps"], r["frames"], r["masks"]) == (3, 4, 12, 12)
    assert r["image_sizes"] == {"16x12": 3} and r["focal_px"] == [20.0, 20.0]
    assert r["camera_names"] == ["cam00", "cam01", "cam02"]
    assert r["train_cameras"] == [0, 1] and r["test_cameras"] == [2]
    assert r["time_span_s"] == [0.0, 0.12] and r["fps"] == 25.0
    assert r["drive"]["timesteps"] == 4 and r["drive"]["latent_dim"] == 4
    assert r["audio"]["sample_rate"] == 16000 and abs(r["audio"]["duration_s"] - 0.16) < 1e-9
    assert r["checked"] == {"headers": 12, "decoded": 12}
    code, out, _ = inspect_cli("inspect", tmp_path / "cap", "--json", "--decode", "2")
    assert code == 0 and json.loads(out)["checked"]["decoded"] == 2


def test_inspect_table_and_plain_nerfstudio(tmp_path, inspect_cli):
    cap = write_tiny_capture(tmp_path / "cap", n_cams=2, T=1, masks=False, drive=False)
    p = save_capture(cap, tmp_path / "cap")
    meta = json.loads(p.read_text())
    del meta["nerfhead"]
    p.write_text(json.dumps(meta))
    code, out, err = inspect_cli("inspect", p)
    assert code == 0, err
    assert "(nerfstudio)" in out and "cameras" in out and "16x12" in out and "drive" in out
