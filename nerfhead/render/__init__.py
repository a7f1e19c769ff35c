"""Rendering of explicit geometry: textured triangle meshes (the capture rig's renderer and the tracker's
photometric model) on top of :func:`nerfhead.ops.rasterize_mesh`."""

from nerfhead.render.mesh import (
    MeshRenderConfig,
    MeshRenderer,
    MeshRenderOutput,
    Packed,
    ShadingConfig,
    TexturedMesh,
    interpolate,
    interpolate_packed,
    pack,
    sample_texture,
    vertex_normals,
)

__all__ = [
    "MeshRenderConfig",
    "MeshRenderOutput",
    "MeshRenderer",
    "Packed",
    "ShadingConfig",
    "TexturedMesh",
    "interpolate",
    "interpolate_packed",
    "pack",
    "sample_texture",
    "vertex_normals",
]
