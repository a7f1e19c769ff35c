"""Meshes from densities: marching cubes on a density grid, vertex colours, and obj / ply / glb files (trimesh).

:func:`density_mesh` works on any density function over a box (tested on an analytic sphere);
:func:`nerf_head_mesh` extracts the nerf head's surface for one drive timestep (the canonical field deformed by
that timestep's expression), coloured by the field seen from outside, in the world frame of that timestep or
in the head frame.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from nerfhead.errors import InputError

if TYPE_CHECKING:
    from nerfhead.data.drive import Drive
    from nerfhead.models.nerf_head import NerfHead

MESH_FORMATS = (".obj", ".ply", ".glb")
"""File suffixes :func:`save_mesh` writes."""


@dataclass(frozen=True)
class Mesh:
    """A triangle mesh with optional vertex colours.

    Attributes:
        vertices: [V, 3] float32 positions.
        faces: [F, 3] int64 vertex indices (counter-clockwise seen from outside).
        colors: [V, 3] float32 colours in [0, 1], or None.
    """

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray | None = None


@torch.no_grad()
def density_grid(
    density_fn: Callable[[Tensor], Tensor], aabb: Tensor, resolution: int, chunk: int = 1 << 18
) -> Tensor:
    """Density at the vertices of a regular grid over a box.

    Args:
        density_fn: points [N, 3] -> densities [N].
        aabb: [6] box (xmin, ymin, zmin, xmax, ymax, zmax).
        resolution: vertices per axis.
        chunk: points per call of ``density_fn``.

    Returns:
        [R, R, R] densities, index ``[i, j, k]`` at ``lo + (i, j, k) / (R - 1) * (hi - lo)``.
    """
    lo, hi = aabb[:3], aabb[3:]
    lin = torch.linspace(0.0, 1.0, resolution, device=aabb.device, dtype=aabb.dtype)
    g = torch.stack(torch.meshgrid(lin, lin, lin, indexing="ij"), -1).reshape(-1, 3)
    x = lo + g * (hi - lo)
    vals = torch.cat([density_fn(c).reshape(-1) for c in x.split(chunk)])
    return vals.reshape(resolution, resolution, resolution)


def density_mesh(
    density_fn: Callable[[Tensor], Tensor], aabb: Tensor, resolution: int = 128, threshold: float = 10.0
) -> Mesh:
    """The iso-surface ``density == threshold`` by marching cubes (faces oriented outwards: density falls outside).

    Args:
        density_fn: points [N, 3] -> densities [N].
        aabb: [6] box to mesh.
        resolution: grid vertices per axis.
        threshold: iso-level.

    Raises:
        InputError: the density never crosses ``threshold`` inside the box.
    """
    from skimage.measure import marching_cubes

    grid = density_grid(density_fn, aabb.float(), resolution).cpu().numpy()
    if not (grid.min() < threshold < grid.max()):
        raise InputError(
            "threshold", f"density never crosses {threshold} (range {grid.min():.3g}..{grid.max():.3g})"
        )
    lo, hi = aabb[:3].cpu().numpy(), aabb[3:].cpu().numpy()
    spacing = tuple(float(s) for s in (hi - lo) / (resolution - 1))
    verts, faces, _, _ = marching_cubes(grid, level=threshold, spacing=spacing, gradient_direction="ascent")
    verts = verts + lo
    return Mesh(vertices=verts.astype(np.float32), faces=faces.astype(np.int64))


def save_mesh(path: str | os.PathLike, mesh: Mesh) -> Path:
    """Write ``mesh`` as .obj, .ply or .glb (by suffix), with vertex colours when it has them.

    Raises:
        InputError: unknown suffix.
    """
    import trimesh

    path = Path(path)
    if path.suffix.lower() not in MESH_FORMATS:
        raise InputError(
            path, f"unknown mesh format {path.suffix!r}", hint=f"use one of {', '.join(MESH_FORMATS)}"
        )
    colors = None
    if mesh.colors is not None:
        rgb = np.clip(np.round(mesh.colors * 255.0), 0, 255).astype(np.uint8)
        colors = np.concatenate([rgb, np.full((rgb.shape[0], 1), 255, np.uint8)], axis=1)
    tm = trimesh.Trimesh(vertices=mesh.vertices, faces=mesh.faces, vertex_colors=colors, process=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tm.export(str(path))
    return path


@torch.no_grad()
def nerf_head_mesh(
    model: NerfHead,
    drive: Drive,
    timestep: int = 0,
    resolution: int = 128,
    threshold: float = 10.0,
    world: bool = True,
) -> Mesh:
    """The nerf head's surface at one drive timestep, with vertex colours.

    Densities come from the canonical field deformed by the timestep's expression, on a grid over the head box
    (head frame). Each vertex is coloured by the field seen along the inward normal (a ray hitting it from
    outside), evaluated slightly inside the surface.

    Args:
        model: a trained nerf head.
        drive: the drive (``timestep`` selects the frame).
        timestep: frame of ``drive``.
        resolution: grid vertices per axis.
        threshold: density iso-level (per metre; 10 keeps surfaces where 10 cm of matter is ~63% opaque).
        world: place the mesh with the timestep's head pose (else: head frame).
    """
    import trimesh

    dev = model.background.device
    d = drive[timestep : timestep + 1].to(dev, torch.float32)
    cond = model.conditioning(d)
    mesh = density_mesh(lambda x: model.density(x, cond), model.grid.aabb.to(dev), resolution, threshold)
    normals = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False).vertex_normals
    v = torch.as_tensor(mesh.vertices, device=dev)
    n = torch.as_tensor(np.array(normals, dtype=np.float32), device=dev)
    inside = v - n * model.march.step_size
    tix = torch.zeros(v.shape[0], dtype=torch.long, device=dev)
    rgb, _ = model.query(inside, -n, cond, tix)
    verts = v
    if world:
        from nerfhead.geometry import axis_angle_to_matrix

        R = axis_angle_to_matrix(d.rotation)[0]
        verts = v @ R.T + d.translation[0]
    return Mesh(vertices=verts.cpu().numpy().astype(np.float32), faces=mesh.faces, colors=rgb.cpu().numpy())


def export_run_mesh(
    run: str | os.PathLike,
    out: str | os.PathLike | None = None,
    frame: int = 0,
    resolution: int = 128,
    threshold: float = 10.0,
    world: bool = True,
    drive_path: str | os.PathLike | None = None,
) -> Path:
    """Mesh of a trained nerf head (a run folder) at one drive frame, written as obj / ply / glb.

    Args:
        run: run folder written by ``nerfhead fit --model nerf``.
        out: output file (default ``RUN/export/mesh_{frame:05d}.ply``).
        frame: drive timestep.
        resolution: marching-cubes grid vertices per axis.
        threshold: density iso-level.
        world: place the mesh with the frame's head pose (else: head frame).
        drive_path: another drive (.npz) instead of the run's ``drive.npz``.

    Raises:
        InputError: not a nerf head run, no drive, or a frame outside the drive.
    """
    from nerfhead.data.drive import Drive
    from nerfhead.models.avatar import load_avatar, read_avatar_json
    from nerfhead.models.nerf_head import KIND

    run = Path(run)
    spec = read_avatar_json(run)
    if spec["kind"] != KIND:
        raise InputError(
            run, f"holds a {spec['kind']}, not a nerf head", hint="mesh export reads nerf head runs"
        )
    dpath = Path(drive_path) if drive_path is not None else run / "drive.npz"
    if not dpath.is_file():
        raise InputError(dpath, "drive not found")
    drive = Drive.load_npz(dpath)
    if not 0 <= frame < len(drive):
        raise InputError("--frame", f"must be in [0, {len(drive) - 1}], got {frame}")
    model = load_avatar(run)
    mesh = nerf_head_mesh(model, drive, frame, resolution, threshold, world)
    path = Path(out) if out is not None else run / "export" / f"mesh_{frame:05d}.ply"
    return save_mesh(path, mesh)
