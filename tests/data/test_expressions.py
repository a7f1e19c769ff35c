"""EXPRESSION_NAMES is a literal copy of the bundled ICT-FaceKit expression order."""

from __future__ import annotations

import numpy as np

from nerfhead.assets import asset_path
from nerfhead.data.expressions import EXPRESSION_INDEX, EXPRESSION_NAMES, NUM_EXPRESSIONS


def test_literal_equals_bundled_npz():
    with np.load(asset_path("ict_facekit/ict_facekit_light.npz"), allow_pickle=False) as z:
        names = tuple(str(n) for n in z["expr_names"])
        n_deltas = z["expr_delta"].shape[0]
    assert names == EXPRESSION_NAMES
    assert NUM_EXPRESSIONS == 53 == n_deltas == len(set(EXPRESSION_NAMES))


def test_index_inverts_names():
    assert [EXPRESSION_INDEX[n] for n in EXPRESSION_NAMES] == list(range(53))
    assert EXPRESSION_INDEX["jawOpen"] == 26
