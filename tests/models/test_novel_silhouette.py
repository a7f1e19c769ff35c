"""The mesh's silhouette from views a monocular video never shows (``SurfaceConfig.novel_silhouette_weight``):
the orbited, cropped view, the mesh's coverage as its target, and what the loss buys from a view the fit never
saw."""

from __future__ import annotations

import dataclasses

import torch

from nerfhead.data.capture import Capture
from nerfhead.geometry import axis_angle_to_matrix
from nerfhead.models.deform import DeformConfig
from nerfhead.models.splat_head import SplatHead
from nerfhead.models.splat_silhouette import (
    cropped_to_head,
    masked_out_triangles,
    mesh_coverage,
    novel_silhouette_loss,
    orbited,
    see_through,
    see_through_share,
    silhouette_target,
)
from nerfhead.models.splat_train import SplatFit, SurfaceConfig
from tests.models.test_colour_prior import _one_thread, mono  # noqa: F401  (the same fixtures)
from tests.models.test_splat_monocular import tiny_cfg
from tests.models.tiny_capture import tiny_cameras, tiny_drive, tiny_head_config

UP = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)


def _centre(cam) -> torch.Tensor:
    vm = cam.viewmat[0].double()
    return -(vm[:3, :3].T @ vm[:3, 3])


def test_orbit_keeps_the_head_in_view_and_the_crop_is_the_full_render_cut():
    cam = tiny_cameras(40, 4)[1]
    centre = torch.tensor([0.0, -0.03, 0.0])
    same = orbited(cam, centre, UP, 0.0, 0.0)
    torch.testing.assert_close(same.viewmat, cam.viewmat)
    moved = orbited(cam, centre, UP, 40.0, 15.0)
    a, b = _centre(cam) - centre.double(), _centre(moved) - centre.double()
    assert abs(float(a.norm() - b.norm())) < 1e-6  # on a sphere about the head
    angle = torch.rad2deg(torch.arccos((a @ b) / (a.norm() * b.norm())))
    assert 40.0 < float(angle) < 45.0  # 40 deg of yaw then 15 of pitch: about 42.7 deg in all
    # the head's centre stays where it was in the image
    torch.testing.assert_close(
        moved.project(centre[None])[0], cam.project(centre[None])[0], atol=1e-4, rtol=0
    )

    head = SplatHead(tiny_head_config(deform=DeformConfig(enabled=False)))
    d = tiny_drive(1)
    verts = head.posed_vertices(d)[0]
    crop = cropped_to_head(head, verts, moved)
    w, h = int(crop.width[0]), int(crop.height[0])
    assert 0 < w < 40 and h > 0  # the head's width, not the image's
    with torch.no_grad():
        full = head.render(moved, d, torch.ones(3)).alpha[0, ..., 0]
        cut = head.render(crop, d, torch.ones(3)).alpha[0, ..., 0]
        x0 = round(float(moved.K[0, 0, 2] - crop.K[0, 0, 2]))
        y0 = round(float(moved.K[0, 1, 2] - crop.K[0, 1, 2]))
        # the window's part inside the full image is the same render
        ya, yb, xa, xb = max(y0, 0), min(y0 + h, 40), max(x0, 0), min(x0 + w, 40)
        assert (yb - ya) * (xb - xa) > 0.5 * w * h
        torch.testing.assert_close(
            cut[ya - y0 : yb - y0, xa - x0 : xb - x0], full[ya:yb, xa:xb], atol=1e-4, rtol=0
        )
        cov = mesh_coverage(head, verts, crop)
    assert cov.shape == (h, w) and float(cov.min()) == 0.0 and float(cov.max()) == 1.0
    # anti-aliased: the outline has partial pixels; the margin is empty
    assert bool(((cov > 0) & (cov < 1)).any()) and float(cov[:2].sum() + cov[:, :2].sum()) == 0.0
    # a size cap scales the view down: the same head in fewer pixels
    small = cropped_to_head(head, verts, moved, max_size=16)
    ws, hs = int(small.width[0]), int(small.height[0])
    k = 16 / max(w, h)
    assert max(ws, hs) <= 16 and abs(ws - k * w) <= 1 and abs(hs - k * h) <= 1
    area = float(mesh_coverage(head, verts, small).sum())
    assert abs(area - k * k * float(cov.sum())) < 0.1 * k * k * float(cov.sum())


def test_spill_past_the_mesh_costs_and_the_loss_removes_it():
    """Gaussians grown past their triangles cost more than the plain head; steps on the loss alone take the
    outline back to the mesh's from a view the loss never drew (the case that must fail: no steps)."""
    torch.manual_seed(0)
    head = SplatHead(tiny_head_config(deform=DeformConfig(enabled=False), init_opacity=0.9))
    d = tiny_drive(1)
    cam = tiny_cameras(40, 4)[1]
    centre = d.translation[0]
    up = axis_angle_to_matrix(d.rotation[0].double()) @ UP
    verts = head.posed_vertices(d)[0]
    held = cropped_to_head(head, verts, orbited(cam, centre, up, 50.0, -10.0))  # never drawn below
    target = mesh_coverage(head, verts, held)

    def spill() -> float:
        with torch.no_grad():
            a = head.render(held, d, torch.ones(3)).alpha[0, ..., 0]
        return float((a * (target < 0.5)).sum())

    def loss(seed: int) -> float:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            return float(novel_silhouette_loss(head, cam, d, g, 45.0, 20.0))

    plain_loss = sum(loss(s) for s in range(4))
    with torch.no_grad():
        head.splats.params["scales"][:, :2] += 0.7  # twice the size: discs past their triangles
    fat_spill, fat_loss = spill(), sum(loss(s) for s in range(4))
    assert fat_loss > 1.15 * plain_loss, (fat_loss, plain_loss)
    opt = torch.optim.Adam([head.splats.params["scales"], head.splats.params["opacities"]], lr=0.05)
    for s in range(40):
        opt.zero_grad()
        novel_silhouette_loss(head, cam, d, torch.Generator().manual_seed(100 + s), 45, 20).backward()
        opt.step()
    assert spill() < 0.75 * fat_spill, (spill(), fat_spill)


def test_monocular_fits_draw_the_novel_silhouette_and_rigs_do_not(mono: Capture, tmp_path):  # noqa: F811
    from tests.models.tiny_capture import write_tiny_capture

    g = torch.Generator().manual_seed(0)
    task = SplatFit(mono, tiny_cfg(1))
    assert task.surface is not None and task.surface.novel_silhouette_weight > 0
    assert float(task.training_loss(0, g).scalars["novel_silhouette"]) > 0
    # every other step by default (the view costs about as much as the step's own render), at twice the weight
    assert task.surface.novel_silhouette_every == 2
    assert "novel_silhouette" not in task.training_loss(1, g).scalars
    assert "novel_silhouette" in task.training_loss(2, g).scalars
    every = dataclasses.replace(tiny_cfg(1), surface=SurfaceConfig(novel_silhouette_every=1))
    a = SplatFit(mono, every).training_loss(0, torch.Generator().manual_seed(5))
    b = SplatFit(mono, tiny_cfg(1)).training_loss(0, torch.Generator().manual_seed(5))
    sil = a.scalars["novel_silhouette"]
    assert sil == b.scalars["novel_silhouette"] > 0
    torch.testing.assert_close(float(b.loss.detach() - a.loss.detach()), sil, rtol=1e-3, atol=1e-6)
    off = dataclasses.replace(tiny_cfg(1), surface=SurfaceConfig(novel_silhouette_weight=0.0))
    assert "novel_silhouette" not in SplatFit(mono, off).training_loss(0, g).scalars
    rig = SplatFit(write_tiny_capture(tmp_path), tiny_cfg(1))
    assert "novel_silhouette" not in rig.training_loss(0, g).scalars


def test_alpha_cameras_are_the_same_posed_gaussians_alpha():
    head = SplatHead(tiny_head_config())  # with the deformation network
    with torch.no_grad():
        head.deform.out.bias.normal_(0, 0.3)  # type: ignore[union-attr]  # it moves the Gaussians
    d = tiny_drive(1)
    cams = tiny_cameras(40, 4)
    other = cropped_to_head(head, head.posed_vertices(d)[0], cams[3])
    with torch.no_grad():
        out, metas = head.render_views(cams[1], d, torch.ones(3), alpha_cameras=other)
        plain = head.render_views(cams[1], d, torch.ones(3))[0]
        want = head.render(other, d, torch.ones(3)).alpha[0, ..., 0]
    torch.testing.assert_close(out.rgb, plain.rgb)  # the step's own render is unchanged
    (got,) = metas[0]["alpha_views"]
    assert got.shape == want.shape and float(want.max()) > 0.9
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_triangles_the_masks_cut_off_are_left_out(mono: Capture):  # noqa: F811
    """A mask cut below the chin (as a tracked clip's) takes the neck out of the novel views' target; the
    teacher's own masks take nothing out."""
    task = SplatFit(mono, tiny_cfg(1))
    assert task.masked_out is not None and int(task.masked_out.sum()) == 0
    target = task.target

    def cut(frame: int):
        img, m = target(frame)
        m = m.clone()  # type: ignore[union-attr]
        m[24:] = 0.0  # everything below row 24 of the 40-px image is background
        return img, m

    task.target = cut  # type: ignore[method-assign]
    out = masked_out_triangles(task, mono)
    m = task.model
    cen = m.neutral[m.faces].mean(1)
    used = torch.unique(m.splats.binding)
    low = used[cen[used, 1] < cen[used, 1].quantile(0.2)]  # the neck's lowest triangles
    high = used[cen[used, 1] > cen[used, 1].quantile(0.8)]  # the top of the scalp
    assert float(out[low].float().mean()) > 0.9 and not bool(out[high].any())
    # their pixels leave the target and the weight; the rest of the view is as before
    d = mono.drive[0]  # type: ignore[index]
    verts = m.posed_vertices(d)[0]
    cam = cropped_to_head(m, verts, task.cameras[0])
    full, w_full = silhouette_target(m, verts, cam)
    part, w_part = silhouette_target(m, verts, cam, out)
    assert float(w_full.min()) == 1.0 and float(w_part.min()) < 0.5
    keep = w_part == 1.0
    torch.testing.assert_close(part[keep], full[keep])


def test_see_through_counts_holes_inside_the_mesh_and_shrunk_discs_fail():
    # every triangle carries Gaussians (as the default preset's stride 1): the mesh covers its interior whole
    head = SplatHead(tiny_head_config(deform=DeformConfig(enabled=False), triangle_stride=1))
    d = tiny_drive(1)
    verts = head.posed_vertices(d)[0]
    cam = orbited(tiny_cameras(200, 4)[1], torch.tensor([0.0, -0.03, 0.0]), UP, 35.0, 0.0)
    with torch.no_grad():
        head.splats.params["opacities"].fill_(6.0)  # opaque discs, as the fit holds the skin
        whole = head.render(cam, d, torch.ones(3)).alpha[0, ..., 0]
        holes, interior = see_through(head, verts, cam, whole)
        assert int(interior.sum()) > 1000 and not bool((holes & ~interior).any())
        # the interior lies inside the outline: no pixel the mesh covers only in part
        cov = mesh_coverage(head, verts, cam)
        assert bool((cov[interior] >= 1.0).all()) and int(interior.sum()) < int((cov > 0).sum())
        assert see_through_share(head, verts, cam, whole) < 0.02
        assert see_through_share(head, verts, cam, torch.zeros_like(whole)) == 1.0
        # the same discs shrunk to dots (what the fit did to the GRID neck): the surface is see-through
        head.splats.params["scales"][:, :2] -= 3.0
        dots = head.render(cam, d, torch.ones(3)).alpha[0, ..., 0]
        assert see_through_share(head, verts, cam, dots) > 0.3
