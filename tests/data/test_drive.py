"""Drive: exact npz round trip, slicing, concat, validation, and InputError for bad drive files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nerfhead.data import EXPRESSION_NAMES, Drive
from nerfhead.errors import InputError


def _drive(T: int = 6, L: int | None = 5, dtype=torch.float32) -> Drive:
    g = torch.Generator().manual_seed(1)
    return Drive(
        rotation=torch.randn(T, 3, generator=g, dtype=dtype),
        translation=torch.randn(T, 3, generator=g, dtype=dtype),
        expression=torch.rand(T, 53, generator=g, dtype=dtype),
        latent=None if L is None else torch.randn(T, L, generator=g, dtype=dtype),
        fps=29.97,
    )


def _same(a: Drive, b: Drive) -> None:
    for n in ("rotation", "translation", "expression", "latent"):
        x, y = getattr(a, n), getattr(b, n)
        assert (x is None) == (y is None)
        if x is not None:
            assert x.dtype == y.dtype and torch.equal(x, y), n
    assert a.fps == b.fps


@pytest.mark.parametrize("L,dtype", [(5, torch.float32), (None, torch.float32), (3, torch.float64)])
def test_npz_round_trip_is_exact(tmp_path, L, dtype):
    d = _drive(L=L, dtype=dtype)
    p = d.save_npz(tmp_path / "sub" / "drive.npz")
    back = Drive.load_npz(p)
    _same(d, back)
    with np.load(p, allow_pickle=False) as z:
        assert tuple(z["expression_names"]) == EXPRESSION_NAMES
        assert z["fps"].dtype == np.float64 and float(z["fps"]) == 29.97
    assert not list(tmp_path.glob("sub/*.tmp"))  # atomic write leaves no temp file


def test_index_slice_concat_dict():
    d = _drive(T=6)
    one = d[2]
    assert len(one) == 1 and torch.equal(one.expression[0], d.expression[2])
    assert torch.equal(d[-1].rotation[0], d.rotation[5])
    part = d[1:4]
    assert part.latent is not None and d.latent is not None
    assert len(part) == 3 and torch.equal(part.latent, d.latent[1:4])
    picked = d[torch.tensor([5, 0])]
    assert torch.equal(picked.translation, d.translation[[5, 0]])
    _same(Drive.concat([d[:2], d[2:]]), d)
    _same(Drive.from_dict(d.as_dict()), d)
    with pytest.raises(IndexError):
        d[6]
    with pytest.raises(ValueError, match="fps"):
        Drive.concat([d, Drive.neutral(2, fps=10.0, latent_dim=5)])


def test_neutral_timestamps_and_to():
    n = Drive.neutral(4, fps=20.0, latent_dim=2, dtype=torch.float64)
    assert float(n.expression.abs().sum() + n.rotation.abs().sum()) == 0.0
    assert n.latent is not None and n.latent.shape == (4, 2) and n.latent_dim == 2
    assert n.timestamps.tolist() == [0.0, 0.05, 0.1, 0.15]
    assert n.duration == 0.2
    assert n.to(dtype=torch.float16).expression.dtype == torch.float16


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"rotation": torch.zeros(3, 4)}, "rotation"),
        ({"expression": torch.zeros(3, 52)}, r"\[T, 53\]"),
        ({"translation": torch.zeros(2, 3)}, "translation"),
        ({"latent": torch.zeros(2, 4)}, "latent"),
        ({"fps": 0.0}, "fps"),
        ({"rotation": torch.zeros(3, 3, dtype=torch.int64)}, "floating"),
    ],
)
def test_constructor_rejects_inconsistent_shapes(kw, match):
    base = {"rotation": torch.zeros(3, 3), "translation": torch.zeros(3, 3), "expression": torch.zeros(3, 53)}
    with pytest.raises(ValueError, match=match):
        Drive(**{**base, **kw})


def _write(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    "change,match",
    [
        ({"rotation": np.full((4, 3), np.nan, np.float32)}, "rotation is not finite"),
        ({"expression": np.full((4, 53), 1.5, np.float32)}, r"expression must lie in \[0, 1\]"),
        ({"expression": np.zeros((4, 50), np.float32)}, r"\[T, 53\]"),
        ({"translation": np.zeros((5, 3), np.float32)}, "translation"),
        ({"rotation": np.zeros((4, 3), np.int32)}, "floats"),
        ({"fps": np.array([25.0, 30.0])}, "fps"),
        ({"expression_names": np.array(EXPRESSION_NAMES[::-1])}, "expression_names"),
        ({"rotation": None}, "lacks key"),
    ],
)
def test_load_rejects_bad_files(tmp_path, change, match):
    arrays = {
        "rotation": np.zeros((4, 3), np.float32),
        "translation": np.zeros((4, 3), np.float32),
        "expression": np.zeros((4, 53), np.float32),
        "fps": np.array(25.0),
    }
    arrays.update(change)
    p = _write(tmp_path / "d.npz", **{k: v for k, v in arrays.items() if v is not None})
    with pytest.raises(InputError, match=match) as e:
        Drive.load_npz(p)
    assert e.value.path == str(p)


def test_load_rejects_non_npz_and_missing(tmp_path):
    p = tmp_path / "drive.npz"
    p.write_bytes(b"not a zip file")
    with pytest.raises(InputError, match="not a .npz file") as e:
        Drive.load_npz(p)
    assert e.value.path == str(p)
    with pytest.raises(InputError, match="not found"):
        Drive.load_npz(tmp_path / "nope.npz")
