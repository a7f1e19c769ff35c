"""Mesh export: marching cubes on an analytic sphere, obj/ply/glb round trips, and the nerf head's posed mesh."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from nerfhead.errors import InputError
from nerfhead.export.mesh import Mesh, density_mesh, nerf_head_mesh, save_mesh

RADIUS = 0.3


def sphere_density(x: torch.Tensor) -> torch.Tensor:
    """100 inside a sphere of radius 0.3 about (0.1, 0, 0), falling linearly to 0 over 0.1 outside."""
    r = (x - torch.tensor([0.1, 0.0, 0.0])).norm(dim=-1)
    return 100.0 * ((RADIUS + 0.1 - r) / 0.2).clamp(0.0, 1.0)


def test_sphere_mesh_lies_on_the_sphere():
    aabb = torch.tensor([-0.5, -0.5, -0.5, 0.6, 0.5, 0.5])
    mesh = density_mesh(sphere_density, aabb, resolution=48, threshold=50.0)  # density 50 at r = 0.3
    r = np.linalg.norm(mesh.vertices - np.array([0.1, 0.0, 0.0]), axis=1)
    assert np.abs(r - RADIUS).max() < 2e-3
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=True)
    assert tm.is_watertight
    assert (
        abs(tm.volume - 4 / 3 * np.pi * RADIUS**3) / (4 / 3 * np.pi * RADIUS**3) < 0.02
    )  # positive: outward
    assert abs(tm.area - 4 * np.pi * RADIUS**2) / (4 * np.pi * RADIUS**2) < 0.02


@pytest.mark.parametrize("suffix", [".obj", ".ply", ".glb"])
def test_mesh_files_reload(tmp_path, suffix):
    aabb = torch.tensor([-0.5, -0.5, -0.5, 0.6, 0.5, 0.5])
    mesh = density_mesh(sphere_density, aabb, resolution=24, threshold=50.0)
    colors = (mesh.vertices - mesh.vertices.min(0)) / np.ptp(mesh.vertices, 0)
    path = save_mesh(tmp_path / f"sphere{suffix}", Mesh(mesh.vertices, mesh.faces, colors.astype(np.float32)))
    back = trimesh.load(str(path), force="mesh", process=False)
    assert len(back.faces) == len(mesh.faces)
    # same surface (vertex order may change in obj/glb writers): compare sorted radii and colours
    r0 = np.sort(np.linalg.norm(mesh.vertices - [0.1, 0, 0], axis=1))
    r1 = np.sort(np.linalg.norm(np.asarray(back.vertices) - [0.1, 0, 0], axis=1))
    np.testing.assert_allclose(r0[:: max(len(r0) // 50, 1)], r1[:: max(len(r1) // 50, 1)], atol=1e-5)
    visual = back.visual.to_color() if hasattr(back.visual, "to_color") else back.visual
    got = np.asarray(visual.vertex_colors)[:, :3].astype(np.float64) / 255.0
    assert abs(got.mean() - colors.mean()) < 2e-2


def test_bad_inputs(tmp_path):
    aabb = torch.tensor([-0.5, -0.5, -0.5, 0.6, 0.5, 0.5])
    with pytest.raises(InputError):
        density_mesh(sphere_density, aabb, resolution=16, threshold=1e4)
    mesh = density_mesh(sphere_density, aabb, resolution=16, threshold=50.0)
    with pytest.raises(InputError):
        save_mesh(tmp_path / "x.stl", mesh)


def test_nerf_head_mesh_is_posed(monkeypatch):
    from nerfhead.data.drive import Drive
    from nerfhead.geometry import axis_angle_to_matrix
    from nerfhead.models.nerf_head import NerfHead
    from nerfhead.models.nerf_train import PRESETS

    torch.manual_seed(0)
    cfg = PRESETS["fast"]().model
    model = NerfHead(cfg)
    ball = lambda x, cond: 100.0 * ((0.1 - x.norm(dim=-1)) / 0.05 + 0.5).clamp(0.0, 1.0)  # noqa: E731
    monkeypatch.setattr(model, "density", ball)
    drive = Drive.neutral(2)
    drive = drive.replace(
        rotation=torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.4, -0.2]]),
        translation=torch.tensor([[0.0] * 3, [0.01, 0.02, 0.3]]),
    )
    head = nerf_head_mesh(model, drive, timestep=1, resolution=32, threshold=50.0, world=False)
    world = nerf_head_mesh(model, drive, timestep=1, resolution=32, threshold=50.0, world=True)
    assert np.abs(np.linalg.norm(head.vertices, axis=1) - 0.1).max() < 5e-3
    R = axis_angle_to_matrix(drive.rotation[1:2])[0].numpy()
    np.testing.assert_allclose(world.vertices, head.vertices @ R.T + [0.01, 0.02, 0.3], atol=1e-5)
    assert world.colors is not None and world.colors.shape == (len(world.vertices), 3)
    assert 0.0 <= world.colors.min() and world.colors.max() <= 1.0


def test_close_caps_a_surface_cut_by_the_box():
    """A sphere cut by the box's top face: open without ``close``; with it, a closed solid whose cap lies on the
    face and whose volume is the spherical segment inside the box."""
    aabb = torch.tensor(
        [-0.5, -0.5, -0.5, 0.6, 0.2, 0.5]
    )  # y <= 0.2 cuts the sphere (radius 0.3 about x=0.1)
    open_mesh = density_mesh(sphere_density, aabb, resolution=56, threshold=50.0)
    assert not trimesh.Trimesh(open_mesh.vertices, open_mesh.faces, process=True).is_watertight
    mesh = density_mesh(sphere_density, aabb, resolution=56, threshold=50.0, close=True)
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces, process=True)
    assert tm.is_watertight
    assert mesh.vertices[:, 1].max() <= 0.2 + 1e-6
    cap = mesh.vertices[np.abs(mesh.vertices[:, 1] - 0.2) < 1e-6]
    assert (
        len(cap) > 50
        and np.linalg.norm(cap[:, [0, 2]] - [0.1, 0.0], axis=1).max() < np.sqrt(0.3**2 - 0.2**2) + 0.02
    )
    h = RADIUS - 0.2  # the part above y = 0.2 is a cap of height 0.1
    inside = 4 / 3 * np.pi * RADIUS**3 - np.pi * h**2 * (3 * RADIUS - h) / 3
    assert tm.volume > 0 and abs(tm.volume - inside) / inside < 0.03
