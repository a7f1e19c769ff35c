"""The rigged real-scan head asset: loads, lies on the scan, carries the scan's colours, and drives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nerfhead.assets import asset_path
from nerfhead.errors import InputError
from nerfhead.parametric.atlas import atlas_uv
from nerfhead.parametric.ict import ICTHead
from nerfhead.parametric.rigged import RiggedHead, load_rigged_head
from nerfhead.parametric.scan import MeshQuery, Scan, load_scan, sample_image

SCAN_DIR = "head_scan_leeperrysmith"


@pytest.fixture(scope="module")
def rig() -> RiggedHead:
    return load_rigged_head()


@pytest.fixture(scope="module")
def scan() -> Scan:
    return load_scan(asset_path(f"{SCAN_DIR}/LeePerrySmith.glb"), asset_path(f"{SCAN_DIR}/Map-COL.jpg"))


def _in_scan_expression(rig: RiggedHead) -> np.ndarray:
    """The rigged neutral in the scan's own expression (closed eyes): the surface that was fitted."""
    e = torch.from_numpy(rig.scan_expression)[None]
    with torch.no_grad():
        return rig(e, torch.zeros(1, 3), torch.zeros(1, 3)).vertices[0].double().numpy()


def test_asset_small_and_complete():
    folder = asset_path("rigged_head")
    names = {p.name for p in folder.iterdir()}
    assert {"rigged_head.npz", "albedo.png", "README.md", "LICENSE.md"} <= names
    assert sum(p.stat().st_size for p in folder.iterdir()) < 2_000_000
    lic = (folder / "LICENSE.md").read_text()
    assert "CC BY 3.0" in lic or "Attribution 3.0" in lic
    assert "MIT" in lic and "Lee Perry-Smith" in lic and "USC Institute for Creative Technologies" in lic


def test_neutral_is_ict_plus_identity_plus_offsets(rig: RiggedHead):
    with np.load(asset_path("rigged_head/rigged_head.npz"), allow_pickle=False) as z:
        ident, offsets = z["identity"], z["offsets"].astype(np.float32)
    plain = ICTHead()
    want = plain.canonical(None, torch.from_numpy(ident), torch.from_numpy(offsets))[0]
    torch.testing.assert_close(rig.head.neutral, want, rtol=0, atol=1e-7)
    # the person differs from ICT's mean head, but by a head-sized amount, not a broken one
    d = (rig.head.neutral - plain.neutral)[plain.skin_mask].norm(dim=1)
    assert 1e-3 < float(d.mean()) < 1.5e-2
    # metric: the rigged head is about 0.2 m from chin to crown, as the stored metrics say
    v = rig.head.neutral
    height = float(v[rig.head.skin_mask][:, 1].max() - v[rig.head.landmark_idx[8], 1])
    assert height == pytest.approx(rig.metrics["head_crown_to_chin_m"], abs=1e-4)
    assert 0.18 < height < 0.24


def test_fitted_surface_lies_on_the_scan(rig: RiggedHead, scan: Scan):
    fitted = _in_scan_expression(rig)
    scan_c = rig.scan_to_canonical(scan.vertices)
    rng = np.random.default_rng(0)
    face = np.nonzero(rig.head.narrow_face_mask.numpy())[0]
    pick = rng.choice(face, 2000, replace=False)
    d_mm = MeshQuery(scan_c, scan.faces).closest(fitted[pick]).distance * 1000
    # within the reported fit (float16 offsets cost about 10 um) and sub-millimetre in absolute terms
    assert d_mm.mean() < rig.metrics["fit_to_scan_mean_mm_narrow"] + 0.05
    assert np.percentile(d_mm, 95) < rig.metrics["fit_to_scan_p95_mm_narrow"] + 0.1
    assert d_mm.mean() < 0.5
    # and the cheap check of the brief: nearest scan *vertex* distances stay within the scan's vertex spacing
    from scipy.spatial import cKDTree

    d_vert = cKDTree(scan_c).query(fitted[pick])[0] * 1000
    assert d_vert.mean() < 4.0


def test_scan_scale_is_metric(rig: RiggedHead, scan: Scan):
    assert rig.scan_scale == pytest.approx(rig.metrics["scan_scale_m_per_unit"])
    scan_c = rig.scan_to_canonical(scan.vertices)
    # the bust (head, neck, shoulders) is 7.9 units tall: about 0.36 m at the fitted scale
    assert 0.3 < float(np.ptp(scan_c[:, 1])) < 0.42


def _scan_face_albedo(rig: RiggedHead, scan: Scan) -> np.ndarray:
    """Albedo at the scan vertices in the narrow face region (outer skin, not the hidden eye/mouth cavities)."""
    scan_c = rig.scan_to_canonical(scan.vertices)
    fitted = _in_scan_expression(rig)
    narrow = fitted[rig.head.narrow_face_mask.numpy()]
    from scipy.spatial import cKDTree

    d, _ = cKDTree(narrow).query(scan_c)
    on = d < 0.003
    H, W = scan.albedo.shape[:2]
    return sample_image(scan.albedo, scan.uv[on, 0] * W, scan.uv[on, 1] * H)


def test_colours_resemble_the_scan_skin(rig: RiggedHead, scan: Scan):
    vc = rig.vertex_colors.numpy()
    narrow = rig.head.narrow_face_mask.numpy()
    ours = vc[narrow]
    ref = _scan_face_albedo(rig, scan)
    assert len(ref) > 1000
    np.testing.assert_allclose(ours.mean(0), ref.mean(0), atol=0.03)
    assert (ours.std(0) > 0.03).all()  # not constant
    # skin tone: red > green > blue, and the lips are redder than the cheeks
    m = ours.mean(0)
    assert m[0] > m[1] > m[2]
    lm = rig.head.landmark_idx.numpy()
    lips, cheeks = vc[lm[48:60]], vc[lm[[2, 3, 13, 14]]]
    redness = lambda c: (c[:, 0] - c[:, 1]).mean()  # noqa: E731
    assert redness(lips) > redness(cheeks) + 0.04


def test_texture_agrees_with_vertex_colours(rig: RiggedHead):
    tex = rig.texture.numpy()
    assert tex.shape == (1024, 1024, 3) and tex.dtype == np.float32
    uv, fuv = rig.uv.numpy(), rig.faces_uv.numpy()
    faces = rig.faces.numpy()
    # a texel at each narrow-face vertex's atlas UV shows that vertex's colour
    narrow = np.nonzero(rig.head.narrow_face_mask.numpy())[0]
    vt = np.full(rig.head.num_vertices, -1)
    vt[faces.ravel()] = fuv.ravel()
    t = uv[vt[narrow]]
    S = tex.shape[0]
    texel = sample_image(tex, t[:, 0] * S, (1 - t[:, 1]) * S)
    vc = rig.vertex_colors.numpy()[narrow]
    assert np.abs(texel.mean(0) - vc.mean(0)).max() < 0.02
    assert np.median(np.abs(texel - vc).max(1)) < 0.06
    # atlas UVs are in [0, 1] and every triangle keeps ICT's UV shape (same cell scale, no flips)
    assert uv.min() >= 0 and uv.max() <= 1
    uv2, fuv2 = atlas_uv(ICTHead().uv.numpy(), ICTHead().faces_uv.numpy(), rig.head.face_part.numpy())
    assert np.array_equal(uv2, uv) and np.array_equal(fuv2, fuv)


def test_drive_like_input(rig: RiggedHead):
    from nerfhead.data.drive import Drive

    T = 3
    e = torch.zeros(T, 53)
    e[1, rig.expression_names.index("jawOpen")] = 1.0
    rot = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.3, 0.0], [0.1, 0.0, 0.0]])
    tr = torch.tensor([[0.0, 0.0, 1.0], [0.1, 0.0, 1.0], [0.0, 0.0, 0.5]])
    drive = Drive(rotation=rot, translation=tr, expression=e, fps=25.0)
    out = rig.drive(drive)
    assert out.vertices.shape == (T, rig.head.num_vertices, 3)
    torch.testing.assert_close(out.vertices[0], rig.head.neutral + tr[0], rtol=0, atol=1e-6)
    # jawOpen lowers the chin by centimetres
    chin = int(rig.head.landmark_idx[8])
    direct = rig(e[1:2], torch.zeros(1, 3), torch.zeros(1, 3)).vertices[0]
    assert float(rig.head.neutral[chin, 1] - direct[chin, 1]) > 0.01


def test_missing_asset_raises(tmp_path):
    with pytest.raises(InputError, match="make_rigged_head"):
        load_rigged_head(tmp_path)
