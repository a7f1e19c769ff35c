"""The uint8 frame store: exact round trip of images and masks, per-pixel reads, a content key that follows the
files, a prefetching loader, and the NeRF head's rays read from it equal to the decoded targets."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from nerfhead.data.framestore import FrameLoader, FrameStore, capture_key, to_float
from nerfhead.data.images import save_image
from nerfhead.engine.targets import target_image
from nerfhead.errors import InputError
from tests.models.tiny_capture import write_tiny_capture


@pytest.fixture()
def capture(tmp_path):
    return write_tiny_capture(tmp_path / "cap", size=24, n_cams=3, T=2)


def _u8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()


def test_round_trip_pixels_and_reopen(capture):
    store = FrameStore.open(capture)
    assert store.folder.parent.name == ".nerfhead_frames" and len(store) == len(capture)
    for i in range(len(capture)):
        np.testing.assert_array_equal(store.image(i), _u8(capture.image(i)))
        np.testing.assert_array_equal(store.mask(i), _u8(capture.mask(i)))  # type: ignore[arg-type]
    g = torch.Generator().manual_seed(0)
    f, p = torch.randint(len(capture), (300,), generator=g), torch.randint(24 * 24, (300,), generator=g)
    rgb, m = store.pixels(f, p)
    ref = torch.stack(
        [torch.from_numpy(store.image(int(a)).reshape(-1, 3)[int(b)]) for a, b in zip(f, p, strict=True)]
    )
    assert torch.equal(rgb, ref) and m is not None
    masks = [store.mask(int(a)) for a in f]
    assert torch.equal(
        m, torch.tensor([int(x.reshape(-1)[int(b)]) for x, b in zip(masks, p, strict=True) if x is not None])
    )
    again = FrameStore.open(capture, build=False)  # no second decode
    assert again.folder == store.folder


def test_pixels_mapped_and_read_agree(capture, monkeypatch):
    """Small stores gather rays through a memory map, large ones read them: the same bytes either way."""
    from nerfhead.data import framestore

    g = torch.Generator().manual_seed(1)
    f, p = torch.randint(len(capture), (500,), generator=g), torch.randint(24 * 24, (500,), generator=g)
    mapped = FrameStore.open(capture)
    a = mapped.pixels(f, p)
    assert mapped._maps  # the tiny store is mapped
    monkeypatch.setattr(framestore, "MAP_BUDGET", 0)
    read = FrameStore.open(capture)
    b = read.pixels(f, p)
    assert not read._maps
    assert torch.equal(a[0], b[0]) and a[1] is not None and b[1] is not None and torch.equal(a[1], b[1])
    assert a[0].shape == (500, 3) and a[0].dtype == torch.uint8
    empty = read.pixels(f[:0], p[:0])
    assert empty[0].shape == (0, 3) and empty[1] is not None and empty[1].shape == (0,)
    mapped.close()
    read.close()


def test_key_follows_the_files_and_stale_stores_go(capture):
    store = FrameStore.open(capture)
    key = capture_key(capture)
    path = capture.frames[1].image_path
    save_image(path, torch.zeros(24, 24, 3))  # the capture changes
    os.utime(path, ns=(1, 1))
    assert capture_key(capture) != key
    capture._cache.clear()  # type: ignore[attr-defined]
    new = FrameStore.open(capture)
    assert new.folder != store.folder and not store.folder.exists()
    assert int(new.image(1).max()) == 0


def test_loader_prefetches_the_same_targets(capture):
    store = FrameStore.open(capture)
    bg = torch.tensor([1.0, 1.0, 1.0])
    loader = FrameLoader(store, lambda i, m: (to_float(i), None if m is None else to_float(m)), capacity=2)
    loader.prefetch(range(len(capture)))
    for i in range(len(capture)):
        img, _ = loader.get(i)
        ref, _ = target_image(capture, i, bg, composite=False)
        torch.testing.assert_close(img, ref, atol=0.5 / 255, rtol=0)
    assert len(loader._items) == 2  # bounded
    loader.close()


def test_nerf_rays_come_from_the_store(capture):
    from nerfhead.engine.config import replace_nested
    from nerfhead.models.nerf_train import NerfFit
    from nerfhead.models.registry import preset

    task = NerfFit(capture, replace_nested(preset("nerf", "fast"), fit_aabb=False))
    assert not hasattr(task, "pixels")  # no image held in memory
    f = torch.tensor([0, 1, 1, 3])
    p = torch.tensor([0, 100, 300, 575])
    gt, mask = task.ray_targets(f, p)
    assert mask is not None
    for k in range(4):
        img, m = target_image(capture, task.frames[int(f[k])], task.bg)
        torch.testing.assert_close(gt[k], img.reshape(-1, 3)[p[k]], atol=1e-6, rtol=0)
        torch.testing.assert_close(mask[k], m.reshape(-1)[p[k]], atol=1e-6, rtol=0)  # type: ignore[union-attr]


def test_unreadable_frame_names_the_file(capture):
    capture.frames[2].image_path.write_bytes(b"not an image")
    with pytest.raises(InputError, match=capture.frames[2].image_path.name):
        FrameStore.open(capture)
