"""nerfhead.atomic: a file appears whole or not at all; a failed write keeps the old file and leaves no temp."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nerfhead.atomic import (
    atomic_open,
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
)


def test_writes_and_replaces(tmp_path):
    p = tmp_path / "sub" / "a.json"
    atomic_write_json(p, {"b": 1, "a": [1, 2]})
    assert json.loads(p.read_text()) == {"a": [1, 2], "b": 1}
    assert p.read_text().startswith('{\n  "a"')  # sorted keys, indented
    atomic_write_text(p, "x\r\ny", newline="")
    assert p.read_bytes() == b"x\r\ny"
    atomic_write_bytes(p, b"\x00\x01")
    assert p.read_bytes() == b"\x00\x01"
    assert [q.name for q in p.parent.iterdir()] == ["a.json"]
    plain = tmp_path / "plain"
    plain.write_bytes(b"")
    assert p.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777  # like a plain open(), not 0600


def test_failure_keeps_old_file_and_no_temp(tmp_path):
    p = tmp_path / "d.npz"
    with atomic_open(p) as f:
        np.savez(f, x=np.arange(3))
    old = p.read_bytes()
    with pytest.raises(RuntimeError):
        with atomic_open(p) as f:
            f.write(b"half")
            raise RuntimeError("killed")
    assert p.read_bytes() == old
    with pytest.raises(ValueError):
        with atomic_path(p) as tmp:
            assert tmp.parent == p.parent and tmp.suffix == ".npz" and tmp != p
            tmp.write_bytes(b"junk")
            raise ValueError
    assert p.read_bytes() == old and [q.name for q in tmp_path.iterdir()] == ["d.npz"]
    np.testing.assert_array_equal(np.load(p)["x"], np.arange(3))
    with pytest.raises(ValueError, match="mode"):
        with atomic_open(p, "ab"):
            pass
