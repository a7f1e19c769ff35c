"""The bundled MediaPipe -> ICT correspondence table, and the robust build steps (medoid, triangulated offsets)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nerfhead.errors import InputError
from nerfhead.geometry import axis_angle_to_matrix
from nerfhead.parametric import ICTHead
from nerfhead.parametric.ict import PART_ID
from nerfhead.track.correspondence import (
    Correspondence,
    aggregate_views,
    load_correspondence,
    triangulate_offsets,
)
from nerfhead.track.fit import LandmarkModel


@pytest.fixture(scope="module")
def head() -> ICTHead:
    return ICTHead()


def test_bundled_table_is_consistent(head):
    c = load_correspondence(num_faces=int(head.faces.shape[0]))
    assert c.num_vertices == head.num_vertices
    assert 400 <= len(c) <= 468 and np.all(np.diff(c.landmark) > 0) and c.landmark.max() < 468
    np.testing.assert_allclose(c.bary.sum(1), 1.0, atol=1e-5)
    assert c.bary.min() >= 0.0
    assert np.all((c.weight > 0) & (c.weight <= 1))
    assert np.abs(c.offsets).max() < 0.012  # offsets are millimetres, not centimetres
    # every landmark sits on the skin (face or head-and-neck part), never on eyeballs or teeth
    parts = head.face_part.numpy()[c.face]
    assert set(np.unique(parts)) <= {PART_ID["face"], PART_ID["head_and_neck"]}
    # the key points are present: nose tip, eye corners, mouth corners
    assert set(c.landmark) >= {1, 33, 133, 263, 362, 61, 291}
    # contour (face-oval) points are weak: no more than a quarter of the best weight
    oval = [10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152]
    have = np.isin(c.landmark, oval)
    assert c.weight[have].max() <= 0.25 + 1e-6


def test_landmarks_land_where_expected_on_the_face(head):
    """Left/right and up/down of well-known MediaPipe points, on the neutral ICT head (x = subject's left)."""
    c = load_correspondence()
    p = c.points(head.neutral[None], head.faces)[0].numpy()
    at = {lm: p[np.searchsorted(c.landmark, lm)] for lm in (1, 33, 263, 61, 291, 10, 152)}
    assert at[263][0] > 0.02 and at[33][0] < -0.02  # 263 is the subject's left eye corner (+x)
    assert at[291][0] > 0.015 and at[61][0] < -0.015  # mouth corners
    assert at[1][2] > max(at[33][2], at[263][2]) + 0.01  # the nose tip sticks out
    if 10 in c.landmark and 152 in c.landmark:  # forehead above chin (may be dropped as contour points)
        assert at[10][1] > at[152][1] + 0.1
    assert abs(at[1][0]) < 0.005  # nose tip on the mid-plane


def test_points_match_landmark_model_and_rotate_offsets(head):
    c = load_correspondence()
    e = torch.zeros(2, 53)
    e[1, 26] = 0.7
    beta = torch.linspace(-1, 1, 10)
    v = head.canonical(e, beta)
    model = LandmarkModel(head, c)
    torch.testing.assert_close(c.points(v, head.faces), model(e, beta), atol=1e-6, rtol=0)
    rot = torch.tensor([[0.1, -0.4, 0.2], [0.0, 0.3, 0.0]])
    posed = head(e, rot, torch.zeros(2, 3), identity=beta).vertices
    want = model(e, beta) @ axis_angle_to_matrix(rot).transpose(1, 2)
    torch.testing.assert_close(c.points(posed, head.faces, rot), want, atol=1e-6, rtol=0)


def test_save_load_round_trip_and_bad_files(tmp_path):
    c = Correspondence(
        np.array([3, 7]),
        np.array([10, 20]),
        np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]], np.float32),
        np.array([1.0, 0.25], np.float32),
        np.array([0.5, 3.0], np.float32),
        100,
        np.array([[0.001, 0.0, -0.002], [0.0, 0.0, 0.0]], np.float32),
    )
    p = c.save(tmp_path / "c.npz")
    d = load_correspondence(p)
    for k in ("landmark", "face", "bary", "weight", "spread_mm", "offset"):
        np.testing.assert_array_equal(getattr(d, k), getattr(c, k))
    with pytest.raises(InputError, match="not found"):
        load_correspondence(tmp_path / "missing.npz")
    with pytest.raises(InputError, match="out of range"):
        load_correspondence(p, num_faces=15)
    np.savez(tmp_path / "bad.npz", version=np.int64(1), landmark=np.zeros(2))
    with pytest.raises(InputError, match="lacks"):
        load_correspondence(tmp_path / "bad.npz")


def test_aggregate_views_takes_the_medoid_and_drops_unstable_points():
    N, P = 9, 3
    rng = np.random.default_rng(0)
    canonical = np.zeros((N, P, 3))
    canonical[:, 0] = [0.01, 0.02, 0.03] + rng.normal(0, 2e-4, (N, 3))  # stable
    canonical[:, 0][4] = [0.01, 0.02, 0.03]  # one view exactly at the centre
    canonical[:, 0][8] += 0.05  # one wild outlier view
    canonical[:, 1] = rng.normal(0, 0.02, (N, 3))  # slides by centimetres: dropped
    faces = np.tile(np.arange(N)[:, None] * 10 + np.arange(P), (1, 1))
    faces[:2, 2] = -1
    faces[2:, 2] = -1  # landmark 2 never seen: dropped
    bary = np.full((N, P, 3), 1.0 / 3.0)
    c = aggregate_views(faces, bary, canonical, num_vertices=5)
    assert list(c.landmark) == [0]
    assert c.face[0] == 40  # the view at the centre wins, the outlier does not move it
    assert c.spread_mm[0] < 0.5 and c.weight[0] == 1.0


def test_triangulate_offsets_recovers_a_known_offset():
    rng = np.random.default_rng(1)
    N, M = 12, 4
    anchors = rng.normal(0, 0.05, (N, M, 3))  # per-view anchors (expressions move them)
    true_off = rng.normal(0, 0.003, (M, 3))
    K = np.array([[800.0, 0, 320], [0, 800.0, 240], [0, 0, 1]])
    P = []
    for _ in range(N):
        R = axis_angle_to_matrix(torch.tensor(rng.normal(0, 0.3, 3))).numpy()
        t = np.array([0.0, 0.0, 0.6])
        P.append(K @ np.concatenate([R, t[:, None]], 1))
    P = np.stack(P)
    X = np.concatenate([anchors + true_off[None], np.ones((N, M, 1))], -1)
    proj = np.einsum("nij,nmj->nmi", P, X)
    xy = proj[..., :2] / proj[..., 2:]
    off, rms = triangulate_offsets(anchors, P, xy, np.ones((N, M), bool))
    np.testing.assert_allclose(off, true_off, atol=1e-7)
    assert rms.max() < 1e-4
