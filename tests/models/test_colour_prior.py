"""Monocular colour prior: each triangle's colour projected from the training views with visibility (the init),
the mirror of the unseen side, and the regulariser that keeps poorly seen Gaussians on that colour, measured
from views the fit never saw."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nerfhead.data.capture import Capture
from nerfhead.models.splat_train import SplatFit, SplatLossConfig, SurfaceConfig
from nerfhead.splats.gaussians import sh0_to_rgb
from tests.models.test_splat_monocular import tiny_cfg, write_mono_capture
from tests.models.tiny_capture import make_teacher, one_thread, tiny_cameras


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def mono(tmp_path_factory) -> Capture:
    with one_thread():
        return write_mono_capture(tmp_path_factory.mktemp("mono"))


def teacher_colours() -> tuple[torch.Tensor, torch.Tensor]:
    """(binding [N], rgb [N, 3]) of the teacher's Gaussians (the student's binding is the same)."""
    t = make_teacher()
    return t.splats.binding, sh0_to_rgb(t.splats["sh0"][:, 0]).detach()


def test_projected_colours_are_the_seen_triangles_colours(mono: Capture):
    torch.manual_seed(0)  # one Gaussian per triangle, as the teacher has (no smaller ones on large triangles)
    surface = SurfaceConfig(large_triangle_ratio=0.0, unseen_colour_diffusion=0)  # the mirror rule alone
    task = SplatFit(mono, dataclasses.replace(tiny_cfg(1), surface=surface))
    assert task.colour_prior is not None
    colour, conf = task.colour_prior
    b, rgb = teacher_colours()
    assert torch.equal(b, task.model.splats.binding)
    well = conf[b] > 0.5  # facing the camera
    hidden = conf[b] == 0  # back of the head, or outside the eroded mask
    assert well.sum() > 200 and hidden.sum() > 200
    err = (colour[b][well] - rgb[well]).abs().mean()
    # the case that must fail: another seen triangle's colour (the image is not uniform)
    other = (colour[b][well].roll(97, 0) - rgb[well]).abs().mean()
    assert err < 0.09 and other > 3.0 * err, (err, other)
    # the init: seen Gaussians start at their projected colour, not grey
    start = sh0_to_rgb(task.model.splats["sh0"][:, 0]).detach()
    assert (start[well] - rgb[well]).abs().mean() < 0.09
    # unseen triangles take the colour of the seen triangle nearest to their mirror image
    cen = task.model.neutral[task.model.faces].mean(1)
    seen = (conf > 0).nonzero()[:, 0]
    seen = seen[torch.isin(seen, b)]
    u = b[hidden][0]
    m = cen[u] * torch.tensor([-1.0, 1.0, 1.0])
    nearest = seen[(cen[seen] - m).norm(dim=-1).argmin()]
    torch.testing.assert_close(colour[u], colour[nearest])


def test_colour_prior_keeps_unseen_views_plausible(mono: Capture):
    """Fit the one view; render the teacher's other ring cameras (never seen). With the prior (init +
    regulariser) the unseen views are closer to the truth than with a grey init and no prior."""

    def novel_psnr(cfg) -> float:
        torch.manual_seed(0)
        task = SplatFit(mono, cfg)
        g = torch.Generator()
        opts = task.make_optimizers()
        for s in range(30):
            g.manual_seed(s)
            out = task.training_loss(s, g)
            for o in opts.values():
                o.zero_grad()
            out.loss.backward()
            for o in opts.values():
                o.step()
        teacher, cams = make_teacher(), tiny_cameras(40, 4)
        vals = []
        with torch.no_grad():
            for c in (0, 3):
                for t in (0, 2):
                    want = teacher.render(cams[c], mono.drive[t], torch.ones(3)).rgb  # type: ignore[index]
                    got = task.model.render(cams[c], mono.drive[t], torch.ones(3)).rgb  # type: ignore[index]
                    vals.append(float(-10 * torch.log10((got.clamp(0, 1) - want).square().mean())))
        return sum(vals) / len(vals)

    cfg = dataclasses.replace(tiny_cfg(30), surface=SurfaceConfig(enabled=False))  # the prior alone
    with_prior = novel_psnr(cfg)
    off = dataclasses.replace(
        cfg,
        colour_init=False,
        loss=SplatLossConfig(colour_prior_weight=0.0, unseen_opacity_weight=0.0),
    )
    without = novel_psnr(off)
    assert with_prior > without + 1.0, (with_prior, without)
