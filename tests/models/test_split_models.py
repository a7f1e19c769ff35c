"""Both models' training tasks read the split from the data layer: on a monocular capture with speech the NeRF
head holds out exactly what the splat head holds out (the speaking blocks), trains on neither the blocks nor their
gaps, and records them in the run."""

from __future__ import annotations

import dataclasses

import torch

from nerfhead.models import nerf_train
from nerfhead.models.splat_train import SplatFit
from tests.data.test_split import VOICED, speech_wav
from tests.models.test_splat_monocular import tiny_cfg, write_mono_capture
from tests.models.tiny_capture import one_thread


def test_nerf_and_splat_hold_out_the_same_speaking_frames(tmp_path):
    with one_thread():
        cap = write_mono_capture(tmp_path, T=50)
        cap = dataclasses.replace(cap, audio_path=speech_wav(tmp_path / "speech.wav"))
        torch.manual_seed(0)
        splat = SplatFit(cap, tiny_cfg(1))
        nerf = nerf_train.NerfFit(cap, nerf_train.PRESETS["fast"]())
    assert splat.split_policy == nerf.split_policy == "speech"
    assert splat.test_timesteps == nerf.test_timesteps and splat.train_timesteps == nerf.train_timesteps
    assert nerf.test_timesteps is not None and set(nerf.test_timesteps) <= set(VOICED)
    # the NeRF task's training pixels come from the training timesteps only (before: every frame trained)
    trained = {cap.frames[i].timestep for i in nerf.frames}
    assert trained == set(nerf.train_timesteps) and not trained & set(nerf.test_timesteps)
    assert {t for _, t in nerf.eval_views} <= set(nerf.test_timesteps)
    for spec in (splat.avatar_spec(), nerf.avatar_spec()):
        assert spec["test_timesteps"] == nerf.test_timesteps and spec["split_policy"] == "speech"
