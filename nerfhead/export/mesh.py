"""Head meshes: marching cubes on a density grid or on depth maps fused into a signed distance, vertex colours, and
obj / ply / glb files (trimesh).

:func:`density_mesh` works on any density function over a box (tested on an analytic sphere);
:func:`nerf_head_mesh` extracts the nerf head's surface for one drive timestep (the canonical field deformed by
that timestep's expression), coloured by the field seen from outside, in the world frame of that timestep or
in the head frame. :func:`splat_head_mesh` does it for the splat head, whose Gaussians have no density worth
thresholding (they are thin discs on a surface): depth maps rendered from cameras all around the head are fused
into a truncated signed distance (:func:`fuse_depth`) whose zero level is a closed surface, coloured from the
renders.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from nerfhead.errors import InputError

if TYPE_CHECKING:
    from nerfhead.data.cameras import Cameras
    from nerfhead.data.drive import Drive
    from nerfhead.models.nerf_head import NerfHead
    from nerfhead.models.splat_head import SplatHead

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
    density_fn: Callable[[Tensor], Tensor],
    aabb: Tensor,
    resolution: int = 128,
    threshold: float = 10.0,
    close: bool = False,
) -> Mesh:
    """The iso-surface ``density == threshold`` by marching cubes (faces oriented outwards: density falls outside).

    Args:
        density_fn: points [N, 3] -> densities [N].
        aabb: [6] box to mesh.
        resolution: grid vertices per axis.
        threshold: iso-level.
        close: cap the surface where it leaves the box (see :func:`grid_mesh`).

    Raises:
        InputError: the density never crosses ``threshold`` inside the box.
    """
    return grid_mesh(density_grid(density_fn, aabb.float(), resolution), aabb, threshold, close)


def grid_mesh(grid: Tensor, aabb: Tensor, threshold: float, close: bool = False) -> Mesh:
    """Marching cubes on a grid of values [R, R, R] (as :func:`density_grid` lays them out over ``aabb``), higher
    inside: the surface ``grid == threshold``, faces oriented outwards.

    Args:
        close: cap the surface where it runs into the box (a head cut at the neck): the grid is padded by one
            layer below ``threshold`` and the cap's vertices are moved onto the box faces, so the mesh is closed.

    Raises:
        InputError: the values never cross ``threshold``.
    """
    from skimage.measure import marching_cubes

    g = grid.detach().float().cpu().numpy()
    if not (g.min() < threshold < g.max()):
        raise InputError(
            "threshold", f"density never crosses {threshold} (range {g.min():.3g}..{g.max():.3g})"
        )
    lo, hi = aabb[:3].cpu().numpy(), aabb[3:].cpu().numpy()
    step = (hi - lo) / (np.array(g.shape) - 1)
    origin = lo
    if close:
        outside = min(float(g.min()), threshold - 1.0)
        g = np.pad(g, 1, constant_values=outside)
        origin = lo - step
    spacing = tuple(float(s) for s in step)
    verts, faces, _, _ = marching_cubes(
        g, level=threshold, spacing=spacing, gradient_direction="ascent", allow_degenerate=not close
    )
    verts = verts + origin
    if close:
        verts = np.clip(verts, lo, hi)
    return Mesh(vertices=verts.astype(np.float32), faces=faces.astype(np.int64))


def drop_small_parts(mesh: Mesh, min_fraction: float = 0.05) -> Mesh:
    """``mesh`` without its connected parts of fewer than ``min_fraction`` times the largest part's triangles
    (floaters, and bubbles inside a fused surface)."""
    import trimesh

    if len(mesh.faces) == 0:
        return mesh
    labels = trimesh.graph.connected_component_labels(
        trimesh.graph.face_adjacency(mesh.faces), node_count=len(mesh.faces)
    )
    sizes = np.bincount(labels)
    keep_face = sizes[labels] >= min_fraction * sizes.max()
    faces = mesh.faces[keep_face]
    used = np.unique(faces)
    remap = np.full(len(mesh.vertices), -1, np.int64)
    remap[used] = np.arange(len(used))
    colors = None if mesh.colors is None else mesh.colors[used]
    return Mesh(vertices=mesh.vertices[used], faces=remap[faces], colors=colors)


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
    (head frame); where the head leaves the box (the neck) the surface is capped on the box face, so the mesh is
    closed. Each vertex is coloured by the field seen along the inward normal (a ray hitting it from
    outside), evaluated slightly inside the surface. Parts smaller than 5% of the largest (floaters) are dropped.

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
    mesh = drop_small_parts(
        density_mesh(
            lambda x: model.density(x, cond), model.grid.aabb.to(dev), resolution, threshold, close=True
        )
    )
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
    views: int = 48,
) -> Path:
    """Mesh of a trained head (a nerf head or splat head run folder) at one drive frame, written as obj/ply/glb.

    The avatar's capabilities (:mod:`nerfhead.models.registry`) choose the method: a density field (the nerf
    head) is meshed by marching cubes on its density (:func:`nerf_head_mesh`); Gaussians (the splat head) by
    fusing depth renders from ``views`` cameras around them (:func:`splat_head_mesh`; ``threshold`` does not
    apply, and the mesh is always in the world frame of the frame's pose unless ``world`` is False). A model
    with neither is refused.

    Args:
        run: run folder written by ``nerfhead fit``.
        out: output file (default ``RUN/export/mesh_{frame:05d}.ply``).
        frame: drive timestep.
        resolution: marching-cubes grid vertices per axis.
        threshold: density iso-level (nerf head).
        world: place the mesh with the frame's head pose (else: head frame).
        drive_path: another drive (.npz) instead of the run's ``drive.npz``.
        views: depth maps fused (splat head).

    Raises:
        InputError: an avatar with neither a density field nor Gaussians, no drive, or a frame outside the drive.
    """
    from nerfhead.data.drive import Drive
    from nerfhead.models.avatar import load_avatar, read_avatar_json
    from nerfhead.models.registry import DENSITY_FIELD, GAUSSIANS, by_kind

    run = Path(run)
    kind = by_kind(read_avatar_json(run)["kind"])
    caps = kind.capabilities if kind is not None else frozenset()
    if DENSITY_FIELD not in caps and GAUSSIANS not in caps:
        name = kind.name if kind is not None else "?"
        raise InputError(
            run, f"holds a {name} avatar, which has no mesh export (no density field or Gaussians)"
        )
    dpath = Path(drive_path) if drive_path is not None else run / "drive.npz"
    if not dpath.is_file():
        raise InputError(dpath, "drive not found")
    drive = Drive.load_npz(dpath)
    if not 0 <= frame < len(drive):
        raise InputError("--frame", f"must be in [0, {len(drive) - 1}], got {frame}")
    if resolution < 8:
        raise InputError("--resolution", f"must be at least 8, got {resolution}")
    model: Any = load_avatar(run)
    if DENSITY_FIELD in caps:  # an iso-surface of the density
        mesh = nerf_head_mesh(model, drive, frame, resolution, threshold, world)
    else:  # Gaussians: fused depth maps
        if views < 1:
            raise InputError("--views", f"must be at least 1, got {views}")
        mesh = splat_head_mesh(model, drive, frame, resolution, views)
        if not world:
            mesh = _to_head_frame(mesh, drive, frame)
    path = Path(out) if out is not None else run / "export" / f"mesh_{frame:05d}.ply"
    return save_mesh(path, mesh)


def _to_head_frame(mesh: Mesh, drive: Drive, frame: int) -> Mesh:
    """World-frame ``mesh`` moved to the head frame of ``drive``'s ``frame`` (``R^T (x - t)``)."""
    from nerfhead.geometry import axis_angle_to_matrix

    R = axis_angle_to_matrix(drive.rotation[frame : frame + 1].float())[0].numpy()
    t = drive.translation[frame].float().numpy()
    return Mesh(vertices=((mesh.vertices - t) @ R).astype(np.float32), faces=mesh.faces, colors=mesh.colors)


@torch.no_grad()
def _first_surface(model: SplatHead, cameras: Cameras, drive: Drive, boost: float) -> tuple[Tensor, Tensor]:
    """(alpha, depth) [B, H, W, 1] on the CPU rendered with opacities ``1 - (1 - o)^boost`` (see
    :func:`splat_head_mesh`); the model is left as it was."""
    param = model.splats["opacities"]
    saved = param.detach().clone()
    try:
        o = torch.sigmoid(saved)
        param.data.copy_(torch.logit((1.0 - (1.0 - o) ** max(boost, 1.0)).clamp(1e-6, 1.0 - 1e-6)))
        out = model.render(cameras, drive, torch.zeros(3, device=saved.device))
    finally:
        param.data.copy_(saved)
    return out.alpha.cpu(), out.depth.cpu()


def sphere_cameras(
    center: Tensor,
    rotation: Tensor,
    radius: float,
    n: int = 48,
    size: int = 192,
    fov_deg: float = 30.0,
    min_elevation_deg: float = 0.0,
) -> Cameras:
    """``n`` pinhole cameras on a sphere around ``center`` looking at it, spread evenly (a Fibonacci lattice) over
    the directions at or above ``min_elevation_deg`` in the head's frame (y up), placed so a ball of ``radius``
    fills the view.

    Args:
        center: [3] world point to look at.
        rotation: [3, 3] head-to-world rotation (the head's up, +y, appears up in every image).
        radius: radius of the ball that must stay in view (metres).
        n: cameras.
        size: image width and height.
        fov_deg: field of view.
        min_elevation_deg: lowest camera elevation above the head's horizontal plane (from below, the open
            neck of a head mesh shows its inside, which the fusion would then hollow out).
    """
    from nerfhead.data.cameras import Cameras

    sin_min = float(np.sin(np.radians(min_elevation_deg)))
    k = torch.arange(n, dtype=torch.float64) + 0.5
    y = 1.0 - k / n * (1.0 - sin_min)  # heights in [sin_min, 1], equal-area bands
    phi = k * np.pi * (3.0 - np.sqrt(5.0))
    r = torch.sqrt((1.0 - y * y).clamp_min(0.0))
    dirs = torch.stack([r * torch.sin(phi), y, r * torch.cos(phi)], -1).float()  # head frame
    R = rotation.float().cpu()
    dist = radius / float(np.sin(np.radians(fov_deg) / 2))
    eye = center.float().cpu() + dist * dirs @ R.T
    focal = 0.5 * size / float(np.tan(np.radians(fov_deg) / 2))
    up = R[:, 1]
    # OpenCV cameras: looking straight down the up axis is degenerate; the lattice's first row is 1/n off it
    return Cameras.from_look_at(eye, center.float().cpu(), up, focal, size, size)


@torch.no_grad()
def fuse_depth(
    depths: Tensor,
    alphas: Tensor,
    cameras: Cameras,
    aabb: Tensor,
    resolution: int,
    trunc: float,
    min_alpha: float = 0.5,
) -> Tensor:
    """Truncated signed distance (Curless and Levoy) fused from depth maps, on the vertices of a regular grid.

    A vertex seen by a view through a pixel with ``alpha < min_alpha`` is free space there (+1); through an
    opaque pixel it gets ``clamp((depth - z) / trunc, -1, 1)`` unless it lies more than ``trunc`` behind that
    surface (hidden: no vote). The value is the mean over the votes; vertices no view could vote on (inside the
    head) are -1, so the zero level set is closed.

    Args:
        depths: [B, H, W, 1] camera-z depth of the visible surface (metres, normalised by alpha).
        alphas: [B, H, W, 1] opacity.
        cameras: the B cameras.
        aabb: [6] box of the grid.
        resolution: vertices per axis (laid out as :func:`density_grid`).
        trunc: truncation distance (metres).
        min_alpha: opacity above which a pixel shows a surface.

    Returns:
        [R, R, R] values in [-1, 1], negative inside.
    """
    lo, hi = aabb[:3].float().cpu(), aabb[3:].float().cpu()
    lin = torch.linspace(0.0, 1.0, resolution)
    x = lo + torch.stack(torch.meshgrid(lin, lin, lin, indexing="ij"), -1).reshape(-1, 3) * (hi - lo)
    total = torch.zeros(x.shape[0])
    count = torch.zeros(x.shape[0])
    depths, alphas = depths.float().cpu(), alphas.float().cpu()
    H, W = depths.shape[1], depths.shape[2]
    for b in range(depths.shape[0]):
        V, K = cameras.viewmat[b].float().cpu(), cameras.K[b].float().cpu()
        pc = x @ V[:3, :3].T + V[:3, 3]
        z = pc[:, 2]
        zs = z.clamp_min(1e-6)
        col = torch.floor(K[0, 0] * pc[:, 0] / zs + K[0, 2]).long()
        row = torch.floor(K[1, 1] * pc[:, 1] / zs + K[1, 2]).long()
        seen = (z > 1e-3) & (col >= 0) & (col < W) & (row >= 0) & (row < H)
        idx = torch.nonzero(seen).squeeze(-1)
        pix = row[idx] * W + col[idx]
        a = alphas[b].reshape(-1)[pix]
        d = depths[b].reshape(-1)[pix]
        sdf = torch.where(a < min_alpha, torch.ones_like(d), ((d - z[idx]) / trunc).clamp(-1.0, 1.0))
        vote = (a < min_alpha) | (d - z[idx] > -trunc)
        total.index_add_(0, idx[vote], sdf[vote])
        count.index_add_(0, idx[vote], torch.ones_like(sdf[vote]))
    out = torch.where(count > 0, total / count.clamp_min(1.0), -torch.ones_like(total))
    return out.reshape(resolution, resolution, resolution)


@torch.no_grad()
def project_colors(
    vertices: Tensor,
    normals: Tensor,
    rgbs: Tensor,
    depths: Tensor,
    alphas: Tensor,
    cameras: Cameras,
    tolerance: float,
    min_alpha: float = 0.5,
) -> Tensor:
    """Vertex colours [V, 3] averaged over the views that see each vertex (its depth within ``tolerance`` of the
    rendered depth), weighted by how squarely the view faces it; vertices no view sees take the colour of the
    nearest seen vertex (grey when none is seen)."""
    from scipy.spatial import cKDTree

    v, n = vertices.float().cpu(), normals.float().cpu()
    acc = torch.zeros(v.shape[0], 3)
    wsum = torch.zeros(v.shape[0])
    H, W = depths.shape[1], depths.shape[2]
    for b in range(depths.shape[0]):
        V, K = cameras.viewmat[b].float().cpu(), cameras.K[b].float().cpu()
        pc = v @ V[:3, :3].T + V[:3, 3]
        z = pc[:, 2].clamp_min(1e-6)
        col = torch.floor(K[0, 0] * pc[:, 0] / z + K[0, 2]).long().clamp(0, W - 1)
        row = torch.floor(K[1, 1] * pc[:, 1] / z + K[1, 2]).long().clamp(0, H - 1)
        pix = row * W + col
        d = depths[b].reshape(-1)[pix].float().cpu()
        a = alphas[b].reshape(-1)[pix].float().cpu()
        eye = -V[:3, :3].T @ V[:3, 3]
        to_eye = torch.nn.functional.normalize(eye - v, dim=-1)
        w = (n * to_eye).sum(-1).clamp_min(0.0)
        w = w * ((d - pc[:, 2]).abs() < tolerance) * (a >= min_alpha)
        acc += w[:, None] * rgbs[b].reshape(-1, 3)[pix].float().cpu()
        wsum += w
    seen = wsum > 1e-6
    out = torch.full((v.shape[0], 3), 0.5)
    out[seen] = acc[seen] / wsum[seen, None]
    if bool(seen.any()) and not bool(seen.all()):
        _, j = cKDTree(v[seen].numpy()).query(v[~seen].numpy())
        out[~seen] = out[seen][torch.as_tensor(j)]
    return out.clamp(0.0, 1.0)


@torch.no_grad()
def splat_head_mesh(
    model: SplatHead,
    drive: Drive,
    timestep: int = 0,
    resolution: int = 128,
    views: int = 48,
    image_size: int | None = None,
    opacity_boost: float = 16.0,
) -> Mesh:
    """The splat head's surface at one drive timestep (world frame), with vertex colours.

    Renders ``views`` depth maps from cameras spread around the posed head (:func:`sphere_cameras`), fuses them
    into a truncated signed distance grid over the head's box (:func:`fuse_depth`; the space no view sees, the
    head's inside, counts as inside, so the surface is closed) and meshes its zero level by marching cubes;
    colours come from the renders (:func:`project_colors`).

    Args:
        model: a splat head.
        drive: the drive (``timestep`` selects the frame).
        timestep: frame of ``drive``.
        resolution: grid vertices per axis.
        views: cameras fused.
        image_size: render size (default: about one pixel per grid cell).
        opacity_boost: depth maps are rendered with every opacity ``o`` raised to ``1 - (1 - o)^boost`` (as if
            stacked ``boost`` times), so that a pixel's expected depth is its first surface's: a half-transparent
            Gaussian in front would otherwise mix in the head's far side and carve the fused surface.
    """
    import trimesh

    from nerfhead.geometry import axis_angle_to_matrix

    dev = model.neutral.device
    d = drive[timestep : timestep + 1].to(dev, torch.float32)
    verts = model.posed_vertices(d)[0].cpu()
    lo, hi = verts.min(0).values, verts.max(0).values
    pad = 0.08 * (hi - lo)
    aabb = torch.cat([lo - pad, hi + pad])
    center = 0.5 * (lo + hi)
    radius = 0.5 * float((hi - lo + 2 * pad).norm())
    size = image_size or int(min(max(round(1.2 * resolution), 64), 512))
    cams = sphere_cameras(center, axis_angle_to_matrix(d.rotation.cpu())[0], radius, views, size)
    out = model.render(cams.to(dev), d, torch.zeros(3, device=dev))
    alpha, depth = _first_surface(model, cams.to(dev), d, opacity_boost)
    cell = float((aabb[3:] - aabb[:3]).max()) / (resolution - 1)
    tsdf = fuse_depth(depth, alpha, cams, aabb, resolution, trunc=3.0 * cell)
    mesh = drop_small_parts(grid_mesh(-tsdf, aabb, 0.0))
    normals = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False).vertex_normals
    rgb = (out.rgb.cpu() / alpha.clamp_min(1e-6)).clamp(0, 1)  # un-premultiply (rendered over black)
    colors = project_colors(
        torch.as_tensor(mesh.vertices),
        torch.as_tensor(np.array(normals, dtype=np.float32)),
        rgb,
        depth,
        alpha,
        cams,
        tolerance=2.0 * cell,
    )
    return Mesh(vertices=mesh.vertices, faces=mesh.faces, colors=colors.numpy())
