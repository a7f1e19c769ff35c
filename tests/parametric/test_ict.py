"""ICTHead: units, blend shapes, pose convention, triangulation, parts and devices, against the raw npz."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nerfhead.assets import asset_path
from nerfhead.errors import InputError
from nerfhead.geometry import axis_angle_to_matrix
from nerfhead.parametric.ict import (
    CANONICAL_ORIGIN_CM,
    ICT_PARTS,
    NON_OPAQUE_PARTS,
    PART_ID,
    ICTHead,
    triangulate_quads,
)

NPZ = asset_path("ict_facekit/ict_facekit_light.npz")


@pytest.fixture(scope="module")
def raw() -> dict[str, np.ndarray]:
    with np.load(NPZ, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def head() -> ICTHead:
    return ICTHead()


def _neutral_m(raw) -> torch.Tensor:
    return torch.from_numpy((raw["neutral"] - np.asarray(CANONICAL_ORIGIN_CM, np.float32)) / 100.0)


def test_buffers_shapes_dtypes(head: ICTHead, raw):
    V = raw["neutral"].shape[0]
    n_tri = int((raw["faces_quad"][:, 3] < 0).sum())
    F = 2 * len(raw["faces_quad"]) - n_tri
    assert head.neutral.shape == (V, 3) and head.neutral.dtype == torch.float32
    assert head.expr_basis.shape == (53, V, 3) and head.expr_basis.dtype == torch.float32
    assert head.id_basis.shape == (10, V, 3)
    assert head.faces.shape == (F, 3) and head.faces.dtype == torch.int64
    assert head.faces_uv.shape == (F, 3) and head.uv.shape == raw["uv"].shape
    assert head.landmark_idx.tolist() == raw["landmarks68_vertex_idx"].tolist()
    assert head.expression_names == tuple(str(n) for n in raw["expr_names"])
    assert int(head.faces.max()) == V - 1 and int(head.faces_uv.max()) == len(raw["uv"]) - 1
    # non-persistent: modules holding an ICTHead do not drag 20 MB of bases into checkpoints
    assert head.state_dict() == {}


def test_expression_names_match_drive_order(head: ICTHead):
    from nerfhead.data.expressions import EXPRESSION_NAMES

    assert head.expression_names == EXPRESSION_NAMES


def test_zero_expression_identity_pose_is_neutral_in_metres(head: ICTHead, raw):
    out = head(torch.zeros(1, 53), torch.zeros(1, 3), torch.zeros(1, 3))
    torch.testing.assert_close(out.vertices[0], _neutral_m(raw), rtol=0, atol=1e-7)
    # metres: the head (chin to crown) is about 0.22 m tall
    v = out.vertices[0]
    lm = out.landmarks[0]
    height = float(v[head.skin_mask][:, 1].max() - lm[8, 1])
    assert 0.2 < height < 0.25


def test_one_expression_adds_exactly_its_delta(head: ICTHead, raw):
    for k in (0, 26, 45, 52):
        e = torch.zeros(1, 53)
        e[0, k] = 1.0
        v = head(e, torch.zeros(1, 3), torch.zeros(1, 3)).vertices[0]
        delta = torch.from_numpy(raw["expr_delta"][k].astype(np.float32) / 100.0)
        torch.testing.assert_close(v - _neutral_m(raw), delta, rtol=0, atol=2e-7)
        assert float(delta.abs().max()) > 1e-3  # the shape does move something


def test_identity_and_offsets_add_and_bake(raw):
    head = ICTHead()
    ident = torch.linspace(-1.0, 1.0, 10)
    offsets = torch.randn(head.num_vertices, 3, generator=torch.Generator().manual_seed(0)) * 1e-3
    id_delta = torch.from_numpy(
        np.einsum("k,kvc->vc", ident.numpy(), raw["id_delta"].astype(np.float32)) / 100.0
    )
    z = torch.zeros(1, 53)
    v = head(z, torch.zeros(1, 3), torch.zeros(1, 3), identity=ident, offsets=offsets).vertices[0]
    torch.testing.assert_close(v, _neutral_m(raw) + id_delta + offsets, rtol=0, atol=1e-6)
    head.bake_(ident, offsets)
    torch.testing.assert_close(
        head(z, torch.zeros(1, 3), torch.zeros(1, 3)).vertices[0], v, rtol=0, atol=1e-7
    )


def test_pose_convention_scale_rotation_translation(head: ICTHead):
    g = torch.Generator().manual_seed(1)
    e = torch.rand(3, 53, generator=g) * 0.5
    rot = torch.tensor([[0.0, math.pi / 2, 0.0], [0.3, -0.2, 0.1], [0.0, 0.0, 0.0]])
    t = torch.tensor([[0.1, -0.2, 1.5], [0.0, 0.0, 0.0], [-1.0, 2.0, 3.0]])
    s = torch.tensor([1.0, 0.5, 2.0])
    out = head(e, rot, t, scale=s)
    canon = head.canonical(e)
    R = axis_angle_to_matrix(rot)
    want = s[:, None, None] * torch.einsum("bij,bvj->bvi", R, canon) + t[:, None]
    torch.testing.assert_close(out.vertices, want, rtol=0, atol=1e-6)
    # explicit numbers: +90 deg about y takes the nose (+z) to +x; scale 1, then translate
    nose = int(head.landmark_idx[30])
    p = canon[0, nose]
    torch.testing.assert_close(
        out.vertices[0, nose], torch.stack([p[2], p[1], -p[0]]) + t[0], rtol=0, atol=1e-6
    )
    # float scale equals tensor scale
    out2 = head(e, rot, t, scale=2.0)
    out3 = head(e, rot, t, scale=torch.full((3,), 2.0))
    torch.testing.assert_close(out2.vertices, out3.vertices)


def test_landmarks_are_vertex_rows(head: ICTHead):
    e = torch.rand(2, 53, generator=torch.Generator().manual_seed(2))
    out = head(e, torch.randn(2, 3) * 0.2, torch.randn(2, 3))
    assert torch.equal(out.landmarks, out.vertices[:, head.landmark_idx])
    assert out.landmarks.shape == (2, 68, 3)


def test_batched_equals_looped(head: ICTHead):
    g = torch.Generator().manual_seed(3)
    B = 4
    e, r, t = (
        torch.rand(B, 53, generator=g),
        torch.randn(B, 3, generator=g) * 0.3,
        torch.randn(B, 3, generator=g),
    )
    ident = torch.randn(B, 10, generator=g)
    sc = torch.rand(B, generator=g) + 0.5
    batched = head(e, r, t, scale=sc, identity=ident)
    for i in range(B):
        one = head(e[i : i + 1], r[i : i + 1], t[i : i + 1], scale=float(sc[i]), identity=ident[i : i + 1])
        torch.testing.assert_close(one.vertices[0], batched.vertices[i], rtol=0, atol=2e-6)


def test_triangulation_covers_every_quad(raw):
    quads = raw["faces_quad"]
    faces, source = triangulate_quads(quads)
    n_tri = int((quads[:, 3] < 0).sum())
    assert len(faces) == 2 * len(quads) - n_tri == 52220
    assert (faces >= 0).all()
    # each polygon's corners are exactly the union of its triangles' corners, split along a-c
    for q in (0, 1, 777, len(quads) - 1, int(np.nonzero(quads[:, 3] < 0)[0][0])):
        tris = faces[source == q]
        want = set(quads[q][quads[q] >= 0].tolist())
        assert set(tris.ravel().tolist()) == want
        if quads[q, 3] >= 0:
            a, b, c, d = quads[q]
            assert tris.tolist() == [[a, b, c], [a, c, d]]
    # a planar quad's two triangles tile it: areas add up
    sq = np.array([[0, 1, 2, 3]])
    pts = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 1.0], [0.0, 1.0]])
    f, _ = triangulate_quads(sq)
    area = sum(0.5 * abs(np.cross(pts[b] - pts[a], pts[c] - pts[a])) for a, b, c in f)
    assert area == pytest.approx(2.0)


def test_parts_and_masks(head: ICTHead, raw):
    part = head.vertex_part.numpy()
    for i, (_, lo, hi) in enumerate(ICT_PARTS):
        assert (part[lo:hi] == i).all()
    assert ICT_PARTS[-1][2] == head.num_vertices
    assert int(head.skin_mask.sum()) == 11248 and int(head.face_mask.sum()) == 9409
    # polygon ranges of the ICT-FaceKit README: the triangles of polygons [start_i, start_i+1) are part i
    starts = [0, 9230, 11144, 13226, 13630, 14034, 17006, 21496, 23094, 24692, 24855, 25018, 25033, 25048]
    starts += [25176, 25304, 25844]
    _, source = triangulate_quads(raw["faces_quad"])
    fpart = head.face_part.numpy()
    assert (fpart == np.searchsorted(starts, source, side="right") - 1).all()
    # every triangle's vertices lie in its part or (sockets, head/neck) on the face border
    faces = head.faces.numpy()
    assert ((part[faces] == fpart[:, None]) | (part[faces] == PART_ID["face"])).all()
    hidden = np.isin(fpart, [PART_ID[n] for n in NON_OPAQUE_PARTS])
    assert (head.render_face_mask.numpy() == ~hidden).all()


def test_canonical_frame_y_up_face_forward_origin_centred(head: ICTHead):
    v = head.neutral
    lm = v[head.landmark_idx]
    nose, chin = lm[30], lm[8]
    eyes = v[head.part_slice("eyeball_left")].mean(0), v[head.part_slice("eyeball_right")].mean(0)
    assert float(nose[2]) > 0.09  # the face looks toward +z
    assert float(eyes[0][1]) > float(nose[1]) > float(chin[1])  # y up
    assert float(eyes[0][0]) > 0 > float(eyes[1][0])  # the left eye at +x (subject's left)
    skin = v[head.skin_mask]
    above_chin = skin[skin[:, 1] > chin[1]]
    centre = (above_chin.max(0).values + above_chin.min(0).values) / 2
    assert float(centre.abs().max()) < 0.005  # origin within 5 mm of the head's bounding-box centre


def test_bad_path_raises_input_error(tmp_path):
    with pytest.raises(InputError):
        ICTHead(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, neutral=np.zeros((3, 3)))
    with pytest.raises(InputError, match="missing"):
        ICTHead(bad)


def test_float64_and_grad(head: ICTHead):
    h64 = ICTHead().double()
    e = torch.zeros(1, 53, dtype=torch.float64, requires_grad=True)
    out = h64(e, torch.zeros(1, 3, dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64))
    assert out.vertices.dtype == torch.float64
    out.vertices[0, :, 1].sum().backward()
    want = h64.expr_basis[:, :, 1].sum(1)
    assert e.grad is not None
    torch.testing.assert_close(e.grad[0], want)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(head: ICTHead):
    g = torch.Generator().manual_seed(4)
    e, r, t = (
        torch.rand(3, 53, generator=g),
        torch.randn(3, 3, generator=g) * 0.3,
        torch.randn(3, 3, generator=g),
    )
    cpu = head(e, r, t)
    hc = ICTHead().to("cuda")
    out = hc(e.cuda(), r.cuda(), t.cuda())
    assert out.vertices.device.type == "cuda" and out.landmarks.device.type == "cuda"
    torch.testing.assert_close(out.vertices.cpu(), cpu.vertices, rtol=0, atol=1e-5)
