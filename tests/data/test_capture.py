"""Capture: frame indexing, lazy images through the LRU cache, splits by camera and by time, validation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from nerfhead.data import Capture, Frame
from nerfhead.data.images import ImageCache, load_image, load_mask
from nerfhead.errors import InputError
from tests.data.data_synth import tiny_cameras, write_tiny_capture


def _fi(cap: Capture, camera: int, timestep: int) -> int:
    i = cap.frame_index(camera, timestep)
    assert i is not None
    return i


def test_indexing(tiny_capture: Capture):
    cap = tiny_capture
    assert (cap.num_cameras, cap.num_timesteps, len(cap)) == (3, 4, 12)
    i = cap.frame_index(2, 3)
    assert i is not None and (cap.frames[i].camera, cap.frames[i].timestep) == (2, 3)
    assert cap.frame_index(5, 0) is None
    assert [cap.frames[j].camera for j in cap.frames_at(1)] == [0, 1, 2]
    assert [cap.frames[j].timestep for j in cap.frames_of(1)] == [0, 1, 2, 3]
    torch.testing.assert_close(cap.timestamps, torch.arange(4, dtype=torch.float64) / 25.0)
    assert cap.camera_ids(["cam02", 0, "1"]) == [2, 0, 1]
    with pytest.raises(InputError, match="unknown camera"):
        cap.camera_ids(["nope"])


def test_images_are_float_rgb_exactly_the_file(tiny_capture: Capture):
    cap = tiny_capture
    img = cap.image(4)
    raw = np.asarray(Image.open(cap.frames[4].image_path))
    assert img.dtype == torch.float32 and img.shape == (12, 16, 3)
    assert torch.equal(img, torch.from_numpy(raw.astype(np.float32) / 255.0))
    m = cap.mask(4)
    assert m is not None and m.shape == (12, 16) and set(m.unique().tolist()) == {0.0, 1.0}
    assert cap.image(4) is img  # cached
    assert len(cap.load_images()) == 12
    assert cap.check_files(decode=5) == 5 and cap.check_files() == 12


def test_lru_cache_evicts_oldest(tiny_capture: Capture):
    cache = ImageCache(capacity=2)
    paths = [f.image_path for f in tiny_capture.frames[:3]]
    a = cache.get(paths[0], "image")
    cache.get(paths[1], "image")
    assert cache.get(paths[0], "image") is a  # refresh 0
    cache.get(paths[2], "image")  # evicts 1
    assert len(cache) == 2 and cache.get(paths[0], "image") is a
    assert ImageCache(0).get(paths[0], "image") is not ImageCache(0).get(paths[0], "image")


def test_image_modes(tmp_path):
    grey16 = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    img = load_image(tmp_path / "g16.png")
    assert img.shape == (3, 4, 3) and float(img[2, 3, 1]) == pytest.approx(55000 / 65535)
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 3] = [[0, 255], [128, 255]]
    rgba[..., 0] = 200
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert load_image(tmp_path / "a.png")[..., 0].unique().tolist() == [np.float32(200) / np.float32(255)]
    assert torch.equal(load_mask(tmp_path / "a.png"), torch.tensor([[0.0, 255.0], [128.0, 255.0]]) / 255.0)


def test_split_by_camera_uses_stored_lists(tiny_capture: Capture):
    train, test = tiny_capture.split_by_camera()
    assert train.cameras.names == ("cam00", "cam01") and test.cameras.names == ("cam02",)
    assert len(train) == 8 and len(test) == 4
    f = test.frames[_fi(test, 0, 2)]  # renumbered camera 0 == original camera 2
    assert f.image_path == tiny_capture.frames[_fi(tiny_capture, 2, 2)].image_path
    torch.testing.assert_close(test.cameras.viewmat[0], tiny_capture.cameras.viewmat[2], rtol=0, atol=0)
    assert train.train_cameras == (0, 1) and train.test_cameras == () and test.test_cameras == (0,)
    assert train.drive is not None and tiny_capture.drive is not None
    assert torch.equal(train.drive.expression, tiny_capture.drive.expression)
    # explicit lists, by name or index; images come from the shared cache
    a, b = tiny_capture.split_by_camera(train=["cam01"], test=[0])
    assert a.cameras.names == ("cam01",) and b.cameras.names == ("cam00",)
    assert a.image(0) is tiny_capture.image(_fi(tiny_capture, 1, 0))
    with pytest.raises(InputError, match="both"):
        tiny_capture.split_by_camera(train=[0, 1], test=[1])


def test_split_by_time_keeps_timestamps_and_slices_drive(tiny_capture: Capture):
    cap = tiny_capture
    train, test = cap.split_by_time(train_fraction=0.75)
    assert (train.num_timesteps, test.num_timesteps) == (3, 1)
    assert test.timestamps.tolist() == [3 / 25.0]  # absolute seconds: audio stays aligned
    assert test.drive is not None and cap.drive is not None and cap.drive.latent is not None
    assert torch.equal(test.drive.rotation, cap.drive.rotation[3:])
    a, b = cap.split_by_time(train_timesteps=[0, 2])
    assert b.timestamps.tolist() == [1 / 25.0, 3 / 25.0]
    assert a.drive is not None and a.drive.latent is not None
    assert torch.equal(a.drive.latent, cap.drive.latent[[0, 2]])
    assert b.frames[_fi(b, 1, 1)].image_path == cap.frames[_fi(cap, 1, 3)].image_path
    with pytest.raises(InputError, match="non-empty"):
        cap.split_by_time(train_timesteps=[0, 1, 2, 3])


def test_capture_validation(tmp_path):
    cap = write_tiny_capture(tmp_path, n_cams=2, T=2, masks=False, drive=False)
    fr = list(cap.frames)
    with pytest.raises(ValueError, match="both camera 0"):
        Capture(cap.cameras, (*fr, dataclasses.replace(fr[0])))
    with pytest.raises(ValueError, match="gaps: no frame at timestep 2, 3, 4 "):
        Capture(cap.cameras, (*fr, dataclasses.replace(fr[0], timestep=5)))
    with pytest.raises(ValueError, match=r"gaps: no frame at timestep 2, 3, 4, 5, 6, 7, 8, 9, \.\.\."):
        Capture(cap.cameras, (*fr, dataclasses.replace(fr[0], timestep=10**12)))
    with pytest.raises(ValueError, match="out of range"):
        Capture(cap.cameras, (*fr, dataclasses.replace(fr[0], camera=7)))
    with pytest.raises(ValueError, match="no frames"):
        Capture(cap.cameras, ())
    with pytest.raises(ValueError, match="in both"):
        Capture(cap.cameras, tuple(fr), train_cameras=(0, 1), test_cameras=(1,))
    with pytest.raises(ValueError, match="drive has"):
        from nerfhead.data import Drive

        Capture(cap.cameras, tuple(fr), drive=Drive.neutral(3))


def test_image_size_mismatch_names_the_file(tmp_path):
    cams = tiny_cameras(1, 16, 12)
    p = tmp_path / "x.png"
    Image.fromarray(np.zeros((10, 16, 3), np.uint8)).save(p)
    cap = Capture(cams, (Frame(0, 0, 0.0, p),))
    with pytest.raises(InputError, match="16x10 but camera 0 \\(cam00\\) expects 16x12") as e:
        cap.image(0)
    assert e.value.path == str(p)
