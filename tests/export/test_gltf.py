"""``nerfhead export gltf``: the fitted head with 53 ARKit-named morph targets, baked vertex colours and the drive as
an animation; the Khronos glTF validator finds 0 errors, and Blender (the ``bpy`` package) imports it with the shape
keys and an action of the drive's length.

The validator is the npm package ``gltf-validator`` run by node (``NERFHEAD_GLTF_VALIDATOR``: its folder; .ci/run
installs it); Blender is ``bpy`` run by the Python in ``NERFHEAD_BPY_PYTHON`` (.ci/run makes a venv for it, bpy
needs Python 3.11). Where either is missing the check is skipped, except in CI (``CI`` set), where it fails.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from nerfhead.data.drive import Drive
from nerfhead.data.expressions import EXPRESSION_INDEX, EXPRESSION_NAMES
from nerfhead.errors import InputError
from nerfhead.export.gltf import MORPH_NAMES, accessor_array, bake_vertex_colors, read_glb, rigged_head
from tests.models.tiny_capture import fit_tiny_run_cli

REPO = Path(__file__).resolve().parents[2]
FPS = 25.0

VALIDATE_JS = """
const v = require(process.argv[2]);
const data = new Uint8Array(require('fs').readFileSync(process.argv[3]));
v.validateBytes(data, {maxIssues: 100}).then(r => console.log(JSON.stringify({
  errors: r.issues.numErrors, warnings: r.issues.numWarnings,
  codes: r.issues.messages.filter(m => m.severity === 0).map(m => m.code)})))
 .catch(e => { console.error(String(e)); process.exit(3); });
"""

BLENDER_PY = """
import json, sys
import bpy
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.import_scene.gltf(filepath=sys.argv[1])
ob = [o for o in bpy.data.objects if o.type == "MESH"][0]
keys = ob.data.shape_keys
act = keys.animation_data.action
try:
    fcs = list(act.fcurves)
except AttributeError:  # Blender 4.4+: slotted actions keep F-curves in channel bags
    fcs = [f for layer in act.layers for strip in layer.strips for bag in strip.channelbags for f in bag.fcurves]
print("BLENDER " + json.dumps({
    "verts": len(ob.data.vertices), "keys": [k.name for k in keys.key_blocks],
    "range": list(act.frame_range), "fps": bpy.context.scene.render.fps,
    "shape_fcurves": sorted({len(f.keyframe_points) for f in fcs if f.data_path.startswith("key_blocks")}),
    "object_fcurves": sorted({f.data_path for f in fcs if not f.data_path.startswith("key_blocks")}),
}))
"""


def _tool(env: str, what: str) -> str:
    path = os.environ.get(env)
    if path and Path(path).exists():
        return path
    if os.environ.get("CI"):
        pytest.fail(f"{what} missing in CI: set {env} (.ci/run installs it)")
    pytest.skip(f"{what} not available: set {env}")


def validate(path: Path, tmp: Path) -> dict:
    node = shutil.which("node")
    if node is None:
        _tool("NERFHEAD_NODE_MISSING", "node")
    js = tmp / "validate.js"
    js.write_text(VALIDATE_JS)
    v = _tool("NERFHEAD_GLTF_VALIDATOR", "the npm gltf-validator")
    proc = subprocess.run([str(node), str(js), v, str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    run, proc = fit_tiny_run_cli(tmp_path_factory.mktemp("gltf"), 2)
    assert proc.returncode == 0, proc.stderr
    return run


def _drive(T: int = 30) -> Drive:
    e = torch.zeros(T, 53)
    e[:, EXPRESSION_INDEX["jawOpen"]] = torch.linspace(0, 1, T)
    e[:, EXPRESSION_INDEX["eyeBlink_L"]] = torch.linspace(0, 1, T).flip(0)
    rot = torch.zeros(T, 3)
    rot[:, 1] = torch.linspace(-0.4, 0.4, T)
    trans = torch.stack([torch.linspace(0, 0.05, T), torch.zeros(T), torch.full((T,), 0.02)], -1)
    return Drive(rot, trans, e, None, FPS)


def test_glb_from_drive_file_validates_and_imports_in_blender(run, tmp_path, run_cli):
    from nerfhead.geometry import axis_angle_to_matrix, quaternion_to_matrix
    from nerfhead.models.avatar import load_avatar

    d = _drive()
    d.save_npz(tmp_path / "drive.npz")
    out = tmp_path / "head.glb"
    code, stdout, err = run_cli("export", "gltf", run, "--drive", tmp_path / "drive.npz", "--out", out)
    assert code == 0, err
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert summary["morph_targets"] == 53 and summary["frames"] == 30

    doc, binary = read_glb(out)
    mesh = doc["meshes"][0]
    prim = mesh["primitives"][0]
    assert mesh["extras"]["targetNames"] == list(MORPH_NAMES) and len(prim["targets"]) == 53
    assert "jawOpen" in MORPH_NAMES and "eyeBlinkLeft" in MORPH_NAMES and "browInnerUpLeft" in MORPH_NAMES
    # the mesh is the fitted identity, the targets ICT's expression deltas
    model = load_avatar(run)
    head = rigged_head(model)
    pos = accessor_array(doc, binary, prim["attributes"]["POSITION"])
    assert np.array_equal(pos, head.vertices) and pos.shape[0] == head.vertices.shape[0]
    jaw = accessor_array(doc, binary, prim["targets"][EXPRESSION_INDEX["jawOpen"]]["POSITION"])
    assert np.array_equal(jaw, head.targets[EXPRESSION_INDEX["jawOpen"]]) and np.abs(jaw).max() > 0.005
    colors = accessor_array(doc, binary, prim["attributes"]["COLOR_0"])
    assert np.array_equal(colors, head.colors)  # baked as test_baked_colours_follow_the_gaussians checks
    # the animation: the drive at its own frame rate
    anim = doc["animations"][0]
    by_path = {c["target"]["path"]: anim["samplers"][c["sampler"]] for c in anim["channels"]}
    times = accessor_array(doc, binary, by_path["weights"]["input"])[:, 0]
    np.testing.assert_allclose(times, np.arange(30) / FPS, atol=1e-6)
    weights = accessor_array(doc, binary, by_path["weights"]["output"]).reshape(30, 53)
    assert np.array_equal(weights, d.expression.numpy())
    q = torch.from_numpy(accessor_array(doc, binary, by_path["rotation"]["output"])).double()
    R = quaternion_to_matrix(q[:, [3, 0, 1, 2]])
    torch.testing.assert_close(R, axis_angle_to_matrix(d.rotation.double()), atol=1e-6, rtol=0)
    trans = accessor_array(doc, binary, by_path["translation"]["output"])
    assert np.array_equal(trans, d.translation.numpy())

    report = validate(out, tmp_path)
    assert report["errors"] == 0, report
    # the check can fail: a weights output one value short is an error to the validator
    bad_doc = json.loads(json.dumps(doc))
    bad_doc["accessors"][by_path["weights"]["output"]]["count"] -= 1
    from nerfhead.export.gltf import _GlbBuilder

    b = _GlbBuilder()
    b.bin = bytearray(binary)
    views, accs = bad_doc.pop("bufferViews"), bad_doc.pop("accessors")
    b.views, b.accessors = views, accs
    bad_doc.pop("buffers")
    (tmp_path / "bad.glb").write_bytes(b.glb(bad_doc))
    assert validate(tmp_path / "bad.glb", tmp_path)["errors"] > 0

    py = _tool("NERFHEAD_BPY_PYTHON", "a Python with the bpy package")
    (tmp_path / "blend.py").write_text(BLENDER_PY)
    proc = subprocess.run(
        [py, str(tmp_path / "blend.py"), str(out)], capture_output=True, text=True, timeout=300
    )
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("BLENDER ")]
    assert proc.returncode == 0 and line, proc.stderr[-2000:]
    b = json.loads(line[0][len("BLENDER ") :])
    assert b["verts"] == head.vertices.shape[0]
    assert b["keys"][0] == "Basis" and sorted(b["keys"][1:]) == sorted(MORPH_NAMES)
    assert b["shape_fcurves"] == [30]  # one key per drive frame on every shape key
    span = (b["range"][1] - b["range"][0]) / b["fps"]
    assert span == pytest.approx(29 / FPS, abs=0.5 / b["fps"])  # the action lasts as long as the drive
    assert any("rotation" in p for p in b["object_fcurves"]) and "location" in b["object_fcurves"]


def test_glb_from_speech(run, tmp_path, run_cli):
    from nerfhead.media.audio import load_audio

    clip = sorted((REPO / "scenes/assets/audio").glob("*.wav"))[0]
    out = tmp_path / "talk.glb"
    code, stdout, err = run_cli("export", "gltf", run, "--audio", clip, "--out", out, "--fps", "30")
    assert code == 0, err
    wave, sr = load_audio(clip, 16000)
    T = math.ceil(wave.size / sr * 30 - 1e-9)
    doc, binary = read_glb(out)
    anim = doc["animations"][0]
    assert anim["extras"]["frames"] == T == json.loads(stdout.strip().splitlines()[-1])["frames"]
    w = accessor_array(doc, binary, anim["samplers"][0]["output"]).reshape(T, 53)
    assert w[:, EXPRESSION_INDEX["jawOpen"]].std() > 0.02  # the mouth moves with the speech
    assert validate(out, tmp_path)["errors"] == 0


def test_bad_inputs_one_line(run, tmp_path, run_cli):
    clip = sorted((REPO / "scenes/assets/audio").glob("*.wav"))[0]
    for args in (
        ["--out", tmp_path / "a.glb"],
        ["--audio", clip, "--drive", tmp_path / "d.npz", "--out", tmp_path / "a.glb"],
        ["--audio", clip, "--out", tmp_path / "a.gltf"],
        ["--drive", tmp_path / "missing.npz", "--out", tmp_path / "a.glb"],
    ):
        code, _, err = run_cli("export", "gltf", run, *args)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "a.glb").exists()


def test_baked_colours_follow_the_gaussians():
    from nerfhead.models.splat_head import SplatHead
    from nerfhead.splats.gaussians import rgb_to_sh0
    from tests.models.tiny_capture import tiny_head_config

    model = SplatHead(tiny_head_config())
    model.deform = None
    centres = model.neutral[model.faces[model.splats.binding]].mean(1)
    left = centres[:, 0] > 0  # +x: the subject's left
    with torch.no_grad():
        model.splats.params["sh0"][:] = rgb_to_sh0(torch.tensor([0.2, 0.5, 0.8]))
        model.splats.params["sh0"][left] = rgb_to_sh0(torch.tensor([0.9, 0.1, 0.1]))
    c = bake_vertex_colors(model)
    x = model.neutral[:, 0].numpy()
    far_left, far_right = x > 0.03, x < -0.03
    np.testing.assert_allclose(c[far_left].mean(0), [0.9, 0.1, 0.1], atol=0.02)
    np.testing.assert_allclose(c[far_right].mean(0), [0.2, 0.5, 0.8], atol=0.02)
    assert c.shape == (model.neutral.shape[0], 3)
    with pytest.raises(InputError, match="parametric head mesh"):
        rigged_head(object())
    assert len(MORPH_NAMES) == len(EXPRESSION_NAMES) == len(set(MORPH_NAMES)) == 53
