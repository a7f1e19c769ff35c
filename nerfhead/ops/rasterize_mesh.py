"""Triangle-mesh rasterization: which triangle is visible at each pixel, with perspective-correct barycentrics.

Conventions: camera space is OpenCV (x right, y down, z forward); ``K`` maps camera points to continuous pixel
coordinates, and pixel (x, y) samples the point (x + 0.5, y + 0.5). Visibility (a z-buffer: nearest depth wins,
then the smaller triangle id) is computed without gradients by the compiled kernel or its torch twin;
barycentrics and depth are then recomputed in torch from the triangle ids, so gradients flow to the vertex
positions through the interior of triangles (as pytorch3d's and nvdiffrast's interpolation; there are no
silhouette gradients).

Triangles with a vertex closer than ``near`` are dropped (no clipping); both windings are drawn. Shared edges
leave no holes: a pixel centre exactly on an edge belongs to exactly one of the two triangles.

>>> import torch
>>> verts = torch.tensor([[[-3.0, -3.0, 2.0], [9.0, -3.0, 2.0], [-3.0, 9.0, 2.0]]])
>>> K = torch.tensor([[[4.0, 0.0, 4.0], [0.0, 4.0, 4.0], [0.0, 0.0, 1.0]]])
>>> frags = rasterize_mesh(verts, torch.tensor([[0, 1, 2]]), K, 8, 8, backend="torch")
>>> bool(frags.mask.all()), float(frags.depth[0, 4, 4])
(True, 2.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from nerfhead._backend import get_ext
from nerfhead.ops._dispatch import resolve_backend
from nerfhead.ops._torch.rasterize_mesh import (
    _perspective_barycentrics,
    _project,
    _rasterize_mesh_visibility,
)


@dataclass(frozen=True)
class Fragments:
    """Per-pixel results of :func:`rasterize_mesh` (B images of H x W pixels)."""

    tri_id: Tensor
    """[B, H, W] int64 index of the visible triangle, -1 for background."""
    bary: Tensor
    """[B, H, W, 3] perspective-correct barycentric weights of that triangle's vertices; 0 on background."""
    depth: Tensor
    """[B, H, W] camera-space z of the visible surface; 0 on background."""
    pixels: tuple[Tensor, Tensor, Tensor, Tensor, Tensor] | None = None
    """The same data at the N covered pixels only, as flat lists ``(b, y, x, tri, bary [N, 3])`` in row-major
    order (saves renderers a gather); None when not computed."""

    @property
    def mask(self) -> Tensor:
        """[B, H, W] bool, True where a triangle is visible."""
        return self.tri_id >= 0


def rasterize_visibility(
    verts_screen: Tensor, faces: Tensor, width: int, height: int, near: float = 0.01, backend: str = "auto"
) -> tuple[Tensor, Tensor]:
    """Z-buffer of screen-space triangles (no gradients).

    Args:
        verts_screen: [B, V, 3] (u, v, z): continuous pixel coordinates and camera-space depth.
        faces: [F, 3] integer vertex indices.
        width, height: image size in pixels.
        near: triangles with a vertex at z < near are dropped.
        backend: ``"auto"|"cuda"|"cpu"|"torch"``.

    Returns:
        tri_id: [B, H, W] int32, -1 for background.
        depth: [B, H, W] float32, 0 for background.
    """
    be = resolve_backend(backend, verts_screen.device, "rasterize_mesh")
    vs = verts_screen.detach().float().contiguous()
    if be == "torch":
        return _rasterize_mesh_visibility(vs, faces, int(width), int(height), float(near))
    ext = get_ext()
    f32 = faces.to(device=vs.device, dtype=torch.int32).contiguous()
    return ext.rasterize_mesh_forward(vs, f32, int(width), int(height), float(near))  # type: ignore[union-attr]


def rasterize_mesh(
    verts_cam: Tensor,
    faces: Tensor,
    K: Tensor,
    width: int,
    height: int,
    near: float = 0.01,
    backend: str = "auto",
) -> Fragments:
    """Rasterize triangle meshes seen by pinhole cameras.

    Args:
        verts_cam: [B, V, 3] vertices in each camera's space (OpenCV axes), any float dtype.
        faces: [F, 3] integer vertex indices, shared by the batch.
        K: [B, 3, 3] (or [3, 3], shared) intrinsics.
        width, height: image size in pixels.
        near: triangles with a vertex at z < near (camera units) are dropped.
        backend: ``"auto"|"cuda"|"cpu"|"torch"`` for the visibility pass.

    Returns:
        :class:`Fragments` with differentiable ``bary`` and ``depth`` (w.r.t. ``verts_cam`` and ``K``).
    """
    if verts_cam.dim() != 3 or verts_cam.shape[-1] != 3:
        raise ValueError(f"rasterize_mesh: verts_cam must be [B, V, 3], got {tuple(verts_cam.shape)}")
    if faces.dim() != 2 or faces.shape[-1] != 3:
        raise ValueError(f"rasterize_mesh: faces must be [F, 3], got {tuple(faces.shape)}")
    if K.dim() == 2:
        K = K.expand(verts_cam.shape[0], 3, 3)
    screen = _project(verts_cam, K.to(verts_cam.dtype))
    tri_id, _ = rasterize_visibility(screen, faces, width, height, near, backend)
    faces_l = faces.to(device=verts_cam.device, dtype=torch.int64)
    tri_id = tri_id.long()
    bary, depth, pixels = _perspective_barycentrics(screen, faces_l, tri_id)
    return Fragments(tri_id=tri_id, bary=bary, depth=depth, pixels=pixels)
