"""ARKit curves: Live Link Face CSV and JSON, ICT <-> ARKit mapping, exact round trips."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from nerfhead.data.drive import Drive
from nerfhead.data.expressions import EXPRESSION_INDEX, EXPRESSION_NAMES
from nerfhead.errors import InputError
from nerfhead.export.curves import (
    ARKIT_NAMES,
    ARKIT_TO_ICT,
    CSV_HEADER,
    arkit_to_ict,
    head_angles,
    ict_to_arkit,
    read_curves_csv,
    read_curves_json,
    rotation_from_angles,
    write_curves_csv,
    write_curves_json,
)

# Live Link Face's columns from JawForward to TongueOut, as the app writes them
LLF_MIDDLE = (
    "JawForward,JawRight,JawLeft,JawOpen,MouthClose,MouthFunnel,MouthPucker,MouthRight,MouthLeft,MouthSmileLeft,"
    "MouthSmileRight,MouthFrownLeft,MouthFrownRight,MouthDimpleLeft,MouthDimpleRight,MouthStretchLeft,"
    "MouthStretchRight,MouthRollLower,MouthRollUpper,MouthShrugLower,MouthShrugUpper,MouthPressLeft,"
    "MouthPressRight,MouthLowerDownLeft,MouthLowerDownRight,MouthUpperUpLeft,MouthUpperUpRight,BrowDownLeft,"
    "BrowDownRight,BrowInnerUp,BrowOuterUpLeft,BrowOuterUpRight,CheekPuff,CheekSquintLeft,CheekSquintRight,"
    "NoseSneerLeft,NoseSneerRight,TongueOut"
)
PAIRS = (("browInnerUp_L", "browInnerUp_R"), ("cheekPuff_L", "cheekPuff_R"))


def _drive(T=100, fps=30.0, seed=0, equal_pairs=True) -> Drive:
    g = torch.Generator().manual_seed(seed)
    e = torch.rand(T, 53, generator=g)
    e[::7] = 0.0  # exact zeros and ones appear in real curves
    e[3, :10] = 1.0
    if equal_pairs:
        for a, b in PAIRS:
            e[:, EXPRESSION_INDEX[b]] = e[:, EXPRESSION_INDEX[a]]
    rot = (torch.rand(T, 3, generator=g) - 0.5) * 0.8  # up to ~23 degrees per axis
    trans = torch.randn(T, 3, generator=g) * 0.01
    return Drive(rot, trans, e, None, fps)


def test_arkit_names_and_header():
    assert len(ARKIT_NAMES) == 52 and len(set(ARKIT_NAMES)) == 52
    assert (
        ARKIT_NAMES[0] == "eyeBlinkLeft" and ARKIT_NAMES[17] == "jawOpen" and ARKIT_NAMES[-1] == "tongueOut"
    )
    assert CSV_HEADER[:3] == ("Timecode", "BlendShapeCount", "EyeBlinkLeft")
    assert ",".join(CSV_HEADER[16:54]) == LLF_MIDDLE
    assert CSV_HEADER[54:57] == ("HeadYaw", "HeadPitch", "HeadRoll") and len(CSV_HEADER) == 63
    used = [n for src in ARKIT_TO_ICT.values() for n in src]
    assert sorted(used) == sorted(EXPRESSION_NAMES)  # every ICT shape maps, exactly once
    assert ARKIT_TO_ICT["tongueOut"] == () and ARKIT_TO_ICT["browInnerUp"] == PAIRS[0]
    assert ARKIT_TO_ICT["mouthSmileLeft"] == ("mouthSmile_L",) and ARKIT_TO_ICT["jawLeft"] == ("jawLeft",)


def test_mapping_values():
    e = torch.arange(53, dtype=torch.float32)[None] / 100.0
    a = ict_to_arkit(e)[0]
    assert float(a[ARKIT_NAMES.index("jawOpen")]) == float(e[0, EXPRESSION_INDEX["jawOpen"]])
    assert float(a[ARKIT_NAMES.index("eyeBlinkRight")]) == float(e[0, EXPRESSION_INDEX["eyeBlink_R"]])
    i, j = EXPRESSION_INDEX["cheekPuff_L"], EXPRESSION_INDEX["cheekPuff_R"]
    assert float(a[ARKIT_NAMES.index("cheekPuff")]) == pytest.approx((i + j) / 200.0)
    assert float(a[ARKIT_NAMES.index("tongueOut")]) == 0.0
    back = arkit_to_ict(a[None])[0]
    assert float(back[i]) == float(back[j]) == float(a[ARKIT_NAMES.index("cheekPuff")])


def test_csv_round_trip_exact(tmp_path):
    d = _drive()
    p = write_curves_csv(d, tmp_path / "take.csv")
    with open(p, newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == CSV_HEADER and len(rows) == 101
    assert rows[1][0] == "00:00:00:00.000" and rows[31][0] == "00:00:01:00.000" and rows[1][1] == "61"
    assert rows[4][CSV_HEADER.index("TongueOut")] == "0"
    back = read_curves_csv(p)  # fps inferred from the timecodes
    assert back.fps == 30.0 and len(back) == len(d)
    assert torch.equal(back.expression, d.expression)  # bit-exact
    torch.testing.assert_close(back.rotation, d.rotation, atol=2e-6, rtol=0)
    assert torch.equal(back.translation, torch.zeros(100, 3))


def test_csv_unequal_pairs_become_their_mean(tmp_path):
    d = _drive(T=10, equal_pairs=False)
    back = read_curves_csv(write_curves_csv(d, tmp_path / "t.csv"), fps=30.0)
    one_to_one = [
        EXPRESSION_INDEX[n] for n in EXPRESSION_NAMES if not n.startswith(("browInnerUp", "cheekPuff"))
    ]
    assert len(one_to_one) == 49
    assert torch.equal(back.expression[:, one_to_one], d.expression[:, one_to_one])
    for a, b in PAIRS:
        ia, ib = EXPRESSION_INDEX[a], EXPRESSION_INDEX[b]
        mean = 0.5 * (d.expression[:, ia] + d.expression[:, ib])
        assert torch.equal(back.expression[:, ia], mean) and torch.equal(back.expression[:, ib], mean)


def test_csv_degrees_and_camelcase_header(tmp_path):
    d = _drive(T=5)
    p = write_curves_csv(d, tmp_path / "deg.csv", angle_unit="deg")
    back = read_curves_csv(p, fps=30.0, angle_unit="deg")
    torch.testing.assert_close(back.rotation, d.rotation, atol=5e-6, rtol=0)
    # ARKit camelCase names, a subset of columns, 60 fps app timecodes
    q = tmp_path / "camel.csv"
    q.write_text(
        "Timecode,BlendShapeCount,jawOpen,eyeBlinkLeft\n00:00:00:00.000,2,0.5,0.25\n00:00:00:01.000,2,1,0\n"
    )
    c = read_curves_csv(q, fps=60.0)
    assert (
        c.expression[0, EXPRESSION_INDEX["jawOpen"]] == 0.5
        and c.expression[0, EXPRESSION_INDEX["eyeBlink_L"]] == 0.25
    )
    assert float(c.expression[1].sum()) == 1.0 and c.fps == 60.0


def test_json_round_trip_exact(tmp_path):
    d = _drive(fps=29.97)
    p = write_curves_json(d, tmp_path / "take.json")
    doc = json.loads(p.read_text())
    assert doc["names"] == list(ARKIT_NAMES) and len(doc["frames"]) == 100 and len(doc["frames"][0]) == 52
    back = read_curves_json(p)
    assert back.fps == 29.97
    assert torch.equal(back.expression, d.expression)
    assert torch.equal(back.rotation, d.rotation) and torch.equal(back.translation, d.translation)


def test_head_angles_round_trip():
    a = (torch.rand(200, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) - 0.5) * 2.0
    torch.testing.assert_close(head_angles(rotation_from_angles(a)), a, atol=1e-9, rtol=0)
    yaw = head_angles(torch.tensor([[0.0, 0.3, 0.0]], dtype=torch.float64))[0]  # about y (down): pure yaw
    torch.testing.assert_close(yaw, torch.tensor([0.3, 0.0, 0.0], dtype=torch.float64))


def test_bad_curves_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_curves_csv(tmp_path / "none.csv")
    p = tmp_path / "x.csv"
    p.write_text("frame,jawOpen\n0,0.5\n")
    with pytest.raises(InputError, match="Timecode") as e:
        read_curves_csv(p)
    assert e.value.path == str(p)
    q = tmp_path / "bad.csv"
    q.write_text("Timecode,JawOpen\n00:00:00:00.000,abc\n")
    with pytest.raises(InputError, match="line 2"):
        read_curves_csv(q, fps=30.0)
    j = tmp_path / "bad.json"
    j.write_text("{not json")
    with pytest.raises(InputError, match="not a curves JSON"):
        read_curves_json(j)


def test_drive_from_audio_survives_csv(tmp_path):
    """A rule-driven Drive (pairs equal by construction) round-trips exactly."""
    from nerfhead.audio.driver import RuleDriverConfig, RuleVisemeDriver

    t = np.arange(16000) / 16000
    wav = (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
    d = RuleVisemeDriver(RuleDriverConfig(mode="energy")).drive(wav, 30.0)  # 30 fps: written frame for frame
    back = read_curves_csv(write_curves_csv(d, tmp_path / "a.csv"), fps=30.0)
    assert torch.equal(back.expression, d.expression)


# ---------------------------------------------------------------- Unreal's LiveLinkFaceImporter, in Python
def unreal_import(path) -> tuple[int, dict[str, list[tuple[float, float]]]]:
    """What ``ULiveLinkFaceImporterFactory::FactoryCreateText`` does with a CSV (UE 5 LiveLinkFaceImporter):
    lines split on ",", the first two keys must be Timecode and BlendShapeCount, every other key becomes a
    property; the frame rate is 30 unless some row's frame number (4th ":" field, ``Atof``) is above 30, then
    60; a row is keyed at ``HH*3600 + MM*60 + SS + FF / rate`` seconds. Returns the rate and, per property,
    (seconds, value) keys."""
    lines = [ln for ln in open(path).read().splitlines() if ln]
    keys = lines[0].split(",")
    assert keys[0] == "Timecode" and keys[1] == "BlendShapeCount"
    rows = [ln.split(",") for ln in lines[1:]]
    frames = []
    for r in rows:
        parts = r[0].split(":")
        assert len(parts) == 4
        frames.append((int(parts[0]), int(parts[1]), int(parts[2]), float(parts[3])))
    rate = 60 if any(f > 30.0 for *_, f in frames) else 30
    props: dict[str, list[tuple[float, float]]] = {k: [] for k in keys[2:]}
    for r, (h, m, sec, f) in zip(rows, frames, strict=True):
        assert len(r) == len(keys)
        t = h * 3600 + m * 60 + sec + f / rate
        for k, v in zip(keys[2:], r[2:], strict=True):
            props[k].append((t, float(v)))
    return rate, props


def _ramp_drive(T: int, fps: float) -> Drive:
    """JawOpen rises linearly with time, so a key's value tells the time it was sampled at."""
    e = torch.zeros(T, 53)
    e[:, EXPRESSION_INDEX["jawOpen"]] = torch.arange(T) / (T - 1)
    return Drive(torch.zeros(T, 3), torch.zeros(T, 3), e, None, fps)


@pytest.mark.parametrize("fps,rate", [(25.0, 30), (24.0, 30), (50.0, 60), (60.0, 60), (30.0, 30)])
def test_unreal_importer_timing_within_half_a_frame(tmp_path, fps, rate):
    T = int(3.4 * fps)  # 3.4 s: full seconds plus a partial one
    d = _ramp_drive(T, fps)
    got_rate, props = unreal_import(write_curves_csv(d, tmp_path / "take_1_nerfhead.csv"))
    assert got_rate == rate
    keys = props["JawOpen"]
    duration = (T - 1) / fps
    assert keys[-1][0] == pytest.approx(duration, abs=0.5 / rate)  # the take ends when the drive does
    err = max(abs(t - v * duration) for t, v in keys)  # value encodes the drive's time for that sample
    assert err <= 0.5 / rate, f"sample timing off by {err:.4f} s (half a frame is {0.5 / rate:.4f} s)"


def test_unreal_importer_mistimes_raw_25fps_timecodes(tmp_path):
    """The case the test must catch: 25 fps timecodes (the old writer) are read at 30 fps by the importer."""
    from nerfhead.export.curves import _timecode

    d = _ramp_drive(85, 25.0)
    p = write_curves_csv(d.replace(fps=30.0), tmp_path / "a.csv")  # frame-for-frame rows ...
    rows = p.read_text().splitlines()
    rows[1:] = [
        _timecode(i / 25.0, 25.0) + r[r.index(",") :] for i, r in enumerate(rows[1:])
    ]  # ... 25 fps codes
    p.write_text("\n".join(rows) + "\n")
    rate, props = unreal_import(p)
    duration = 84 / 25.0
    err = max(abs(t - v * duration) for t, v in props["JawOpen"])
    assert rate == 30 and err > 0.5 / rate  # up to 0.16 s early


def test_llf_angle_columns_units_and_signs(tmp_path):
    from nerfhead.export.curves import EYE_COLUMNS, HEAD_COLUMNS

    T = 4
    rot = torch.zeros(T, 3)
    rot[0, 1] = 0.3  # about y (up): the face turns toward +x, the subject's left → HeadYaw = +0.3 / pi
    rot[1, 0] = 0.2  # about x (the subject's left): the face tilts down → HeadPitch = +0.2 / pi
    rot[2, 2] = 0.1  # about z (where the face looks): the top tilts to the subject's right → HeadRoll > 0
    e = torch.zeros(T, 53)
    e[0, EXPRESSION_INDEX["eyeLookOut_L"]] = 1.0  # left eye looks to the subject's left
    e[0, EXPRESSION_INDEX["eyeLookIn_R"]] = 1.0  # right eye too
    e[1, EXPRESSION_INDEX["eyeLookDown_L"]] = 0.5
    e[1, EXPRESSION_INDEX["eyeLookUp_R"]] = 0.5
    d = Drive(rot, torch.zeros(T, 3), e, None, 30.0)
    tongue = torch.tensor([0.0, 0.25, 1.0, 0.5])
    p = write_curves_csv(d, tmp_path / "a.csv", tongue=tongue)
    with open(p, newline="") as f:
        rows = list(csv.DictReader(f))
    head = np.array([[float(r[c]) for c in HEAD_COLUMNS] for r in rows])
    eyes = np.array([[float(r[c]) for c in EYE_COLUMNS] for r in rows])
    np.testing.assert_allclose(head[0], [0.3 / np.pi, 0, 0], atol=1e-7)
    np.testing.assert_allclose(head[1], [0, 0.2 / np.pi, 0], atol=1e-7)
    np.testing.assert_allclose(head[2], [0, 0, 0.1 / np.pi], atol=1e-7)
    assert np.abs(head).max() < 1.0  # the app's -1..1 range, not radians
    np.testing.assert_allclose(eyes[0], [30 / 180, 0, 0, 30 / 180, 0, 0], atol=1e-7)
    np.testing.assert_allclose(eyes[1], [0, 0.5 * 25 / 180, 0, 0, -0.5 * 25 / 180, 0], atol=1e-7)
    assert [float(r["TongueOut"]) for r in rows] == [0.0, 0.25, 1.0, 0.5]
    from nerfhead.export.curves import read_curves_csv_tongue

    back, tg = read_curves_csv_tongue(p)
    assert torch.equal(tg, tongue)  # TongueOut carried through
    torch.testing.assert_close(back.rotation, d.rotation, atol=2e-6, rtol=0)
    # our old radians file misread as the app's units would be off by pi
    q = write_curves_csv(d, tmp_path / "rad.csv", angle_unit="rad")
    assert not torch.allclose(read_curves_csv(q, fps=30.0).rotation, d.rotation, atol=1e-2)


def test_resampled_tongue_and_expression(tmp_path):
    from nerfhead.export.curves import read_curves_csv_tongue

    d = _ramp_drive(51, 25.0)  # 2 s at 25 fps → 61 rows at 30 fps
    tongue = torch.linspace(0, 1, 51)
    back, tg = read_curves_csv_tongue(write_curves_csv(d, tmp_path / "a.csv", tongue=tongue))
    assert back.fps == 30.0 and len(back) == 61
    torch.testing.assert_close(tg, torch.linspace(0, 1, 61), atol=1e-6, rtol=0)
    torch.testing.assert_close(back.expression[:, EXPRESSION_INDEX["jawOpen"]], tg, atol=1e-6, rtol=0)
