"""3DGS PLY: exact Inria layout (checked with plyfile), exact round trips, and read-back Gaussians that render
identically to the avatar they came from."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from nerfhead.errors import InputError
from nerfhead.export.ply import (
    PlyGaussians,
    export_run_ply,
    property_names,
    read_ply,
    write_ply,
)
from tests.models.tiny_capture import one_thread, tiny_cameras, tiny_drive, tiny_head_config


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def random_gaussians(n: int, degree: int, seed: int = 0) -> PlyGaussians:
    g = np.random.default_rng(seed)
    k = (degree + 1) ** 2
    f32 = np.float32
    return PlyGaussians(
        means=g.normal(size=(n, 3)).astype(f32),
        log_scales=g.normal(-4, 1, size=(n, 3)).astype(f32),
        quats=g.normal(size=(n, 4)).astype(f32),
        opacity_logits=g.normal(size=n).astype(f32),
        sh=g.normal(size=(n, k, 3)).astype(f32),
    )


def assert_same(a: PlyGaussians, b: PlyGaussians) -> None:
    for name in ("means", "log_scales", "quats", "opacity_logits", "sh"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype == np.float32, name
        assert x.shape == y.shape, name
        assert np.array_equal(x, y), name


def test_layout_is_inria_3dgs(tmp_path):
    g = random_gaussians(57, degree=3)
    path = write_ply(tmp_path / "a.ply", g)
    ply = PlyData.read(str(path))
    assert ply.text is False and ply.byte_order == "<"
    assert [e.name for e in ply.elements] == ["vertex"]
    v = ply["vertex"]
    names = [p.name for p in v.properties]
    expect = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    expect += [f"f_rest_{i}" for i in range(45)]
    expect += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    assert names == expect == property_names(16)
    assert all(v.data.dtype[p].str == "<f4" for p in names)
    assert v.count == 57
    # f_rest is channel-major: 15 red coefficients, then 15 green, then 15 blue (3DGS's transpose(1, 2))
    for c in range(3):
        for j in range(15):
            assert np.array_equal(v[f"f_rest_{c * 15 + j}"], g.sh[:, 1 + j, c])
    assert np.array_equal(np.stack([v["f_dc_0"], v["f_dc_1"], v["f_dc_2"]], 1), g.sh[:, 0])
    assert np.array_equal(v["opacity"], g.opacity_logits)
    assert np.array_equal(np.stack([v[f"scale_{i}"] for i in range(3)], 1), g.log_scales)
    assert np.array_equal(np.stack([v[f"rot_{i}"] for i in range(4)], 1), g.quats)  # w, x, y, z
    assert not np.any(np.stack([v["nx"], v["ny"], v["nz"]]))
    # header size + 62 floats per Gaussian, nothing else
    assert path.stat().st_size == len(path.read_bytes().split(b"end_header\n")[0]) + 11 + 57 * 62 * 4


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_round_trip_exact(tmp_path, degree):
    g = random_gaussians(33, degree, seed=degree)
    back = read_ply(write_ply(tmp_path / "g.ply", g))
    assert back.sh_degree == degree
    assert_same(g, back)


def test_reader_takes_other_writers(tmp_path):
    """A plyfile-written file: big-endian, float64, shuffled property order, an extra element first."""
    g = random_gaussians(20, degree=1, seed=3)
    cols = {"x": g.means[:, 0], "y": g.means[:, 1], "z": g.means[:, 2], "opacity": g.opacity_logits}
    for c in range(3):
        cols[f"f_dc_{c}"] = g.sh[:, 0, c]
        for j in range(3):
            cols[f"f_rest_{c * 3 + j}"] = g.sh[:, 1 + j, c]
        cols[f"scale_{c}"] = g.log_scales[:, c]
    for i in range(4):
        cols[f"rot_{i}"] = g.quats[:, i]
    order = sorted(cols)[::-1]
    arr = np.empty(20, dtype=[(k, ">f8") for k in order])
    for k in order:
        arr[k] = cols[k]
    extra = np.zeros(2, dtype=[("a", ">i4")])
    PlyData([PlyElement.describe(extra, "meta"), PlyElement.describe(arr, "vertex")], byte_order=">").write(
        str(tmp_path / "b.ply")
    )
    assert_same(g, read_ply(tmp_path / "b.ply"))


def test_reader_errors(tmp_path):
    (tmp_path / "x.ply").write_bytes(b"not a ply")
    with pytest.raises(InputError, match="not a PLY"):
        read_ply(tmp_path / "x.ply")
    arr = np.zeros(3, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    PlyData([PlyElement.describe(arr, "vertex")]).write(str(tmp_path / "pts.ply"))
    with pytest.raises(InputError, match="not a 3DGS PLY"):
        read_ply(tmp_path / "pts.ply")
    data = (tmp_path / "pts.ply").read_bytes()
    g = write_ply(tmp_path / "t.ply", random_gaussians(5, 0))
    g.write_bytes(g.read_bytes()[:-8])
    with pytest.raises(InputError, match="truncated"):
        read_ply(g)
    assert data  # the point cloud itself is a valid PLY


def test_exported_run_renders_identically(tmp_path):
    """fit-style run folder -> ``export ply`` -> read back -> render == the avatar's own render."""
    from nerfhead.engine.checkpoint import atomic_write_json, save_checkpoint
    from nerfhead.engine.config import to_dict
    from nerfhead.models.splat_head import SplatHead
    from nerfhead.ops.rasterize_gaussians import rasterize_gaussians

    torch.manual_seed(0)
    cfg = tiny_head_config(sh_degree=2)
    model = SplatHead(cfg)
    with torch.no_grad():  # a non-trivial avatar: perturbed geometry, SH, a non-zero deformation network
        for p in model.splats.params.values():
            p.add_(0.1 * torch.randn_like(p))
        assert model.deform is not None
        for p in model.deform.out.parameters():
            p.normal_(0, 0.05)
    drive = tiny_drive(3)
    run = tmp_path / "run"
    save_checkpoint(run, 1, {f"model.{k}": v for k, v in model.state_dict().items()})
    atomic_write_json(run / "avatar.json", {"kind": "splat_head", "config": to_dict(cfg)})
    drive.save_npz(run / "drive.npz")
    paths = export_run_ply(run, frame=2)
    assert [p.name for p in paths] == ["frame_00002.ply"]
    assert len(export_run_ply(run, tmp_path / "seq", sequence=True)) == 3
    g = read_ply(paths[0])
    assert len(g) == len(model.splats) and g.sh_degree == 2

    cams = tiny_cameras(32, 2)
    bg = torch.tensor([0.2, 0.3, 0.4])
    with torch.no_grad():
        ref = model.render(cams, drive[2], bg)
        img, alpha, _ = rasterize_gaussians(
            torch.from_numpy(g.means),
            torch.from_numpy(g.quats),
            torch.exp(torch.from_numpy(g.log_scales)),
            torch.sigmoid(torch.from_numpy(g.opacity_logits)),
            torch.from_numpy(g.sh),
            cams.viewmat.float(),
            cams.K.float(),
            32,
            32,
            backgrounds=bg.expand(2, 3),
            sh_degree=2,
            backend="torch",
        )
    assert float(ref.alpha.mean()) > 0.05  # the head is in view
    torch.testing.assert_close(img, ref.rgb, atol=1e-5, rtol=0)
    torch.testing.assert_close(alpha, ref.alpha, atol=1e-5, rtol=0)
    spec = json.loads((run / "avatar.json").read_text())
    assert spec["kind"] == "splat_head" and not math.isnan(float(g.means.sum()))
