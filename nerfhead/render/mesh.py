"""Textured triangle-mesh rendering on top of :func:`nerfhead.ops.rasterize_mesh`.

Per pixel: the visible triangle and its perspective-correct barycentrics come from the rasterizer; vertex
attributes are interpolated with them, UV textures are sampled bilinearly (``grid_sample``), and an optional
Lambertian + ambient term lights the surface from a directional light fixed in world space. Images are
composited over a background colour. With ``supersample = s`` the mesh is rendered at s x s the resolution and
box-filtered down (anti-aliased edges and a fractional alpha).

Gradients reach vertex positions (through the barycentrics, no silhouette gradients), vertex colours and the
texture.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from nerfhead.ops.rasterize_mesh import Fragments, rasterize_mesh


@dataclass(frozen=True)
class ShadingConfig:
    """Lambertian + ambient shading from one directional light."""

    enabled: bool = True
    """Apply shading; when False the surface colour is rendered as is (unlit)."""
    ambient: float = 0.6
    """Ambient term (fraction of the albedo lit everywhere)."""
    diffuse: float = 0.4
    """Weight of the Lambertian term max(0, n . l)."""
    light_dir: tuple[float, float, float] = (0.3, -0.4, 1.0)
    """Direction from the surface towards the light, world space (normalised here)."""


@dataclass(frozen=True)
class MeshRenderConfig:
    """How :class:`MeshRenderer` draws a mesh."""

    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """RGB in [0, 1] behind the mesh (overridden per call by ``background=``)."""
    shading: ShadingConfig = field(default_factory=ShadingConfig)
    """Lighting."""
    supersample: int = 1
    """Render at this factor per axis and box-filter down (1 = hard edges, alpha in {0, 1})."""
    near: float = 0.01
    """Triangles with a vertex closer than this (camera units) are dropped."""
    flip_v: bool = True
    """UV origin at the bottom-left (OBJ / OpenGL / three.js): the texture is sampled at (u, 1 - v)."""
    backend: str = "auto"
    """Rasterizer backend: ``"auto"|"cuda"|"cpu"|"torch"``."""


@dataclass(frozen=True)
class TexturedMesh:
    """Topology and appearance of a mesh whose vertex positions are given per render.

    Args:
        faces: [F, 3] int64 vertex indices.
        uv: [Vt, 2] texture coordinates in [0, 1], or None.
        faces_uv: [F, 3] indices into ``uv`` (defaults to ``faces`` when ``uv`` is per vertex).
        texture: [Ht, Wt, C] float texture in [0, 1], or None.
        vertex_colors: [V, C] colours, used when there is no texture; None renders a uniform grey.
    """

    faces: Tensor
    uv: Tensor | None = None
    faces_uv: Tensor | None = None
    texture: Tensor | None = None
    vertex_colors: Tensor | None = None

    def __post_init__(self) -> None:
        if self.faces.dim() != 2 or self.faces.shape[1] != 3:
            raise ValueError(f"faces must be [F, 3], got {tuple(self.faces.shape)}")
        if (self.texture is None) != (self.uv is None):
            raise ValueError("texture and uv go together")
        fuv = self.faces_uv
        if fuv is not None and fuv.shape != self.faces.shape:
            raise ValueError(f"faces_uv {tuple(fuv.shape)} must match faces {tuple(self.faces.shape)}")

    def to(self, device: torch.device | str) -> TexturedMesh:
        """A copy with every tensor on ``device``."""

        def mv(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)

        return TexturedMesh(
            self.faces.to(device), mv(self.uv), mv(self.faces_uv), mv(self.texture), mv(self.vertex_colors)
        )


class MeshRenderOutput(NamedTuple):
    """Images of :meth:`MeshRenderer.render` (B views of H x W pixels)."""

    rgb: Tensor
    """[B, H, W, 3] composited over the background."""
    alpha: Tensor
    """[B, H, W, 1] coverage in [0, 1] (exactly {0, 1} without supersampling)."""
    depth: Tensor
    """[B, H, W, 1] camera-space z of the surface (coverage-weighted mean when supersampled), 0 on background."""
    fragments: Fragments
    """Rasterizer output at the render resolution (H * s x W * s)."""


class Packed(NamedTuple):
    """The covered pixels of a :class:`Fragments` as flat lists (N covered pixels)."""

    b: Tensor
    """[N] image index."""
    y: Tensor
    """[N] pixel row."""
    x: Tensor
    """[N] pixel column."""
    tri: Tensor
    """[N] visible triangle."""
    bary: Tensor
    """[N, 3] its perspective-correct barycentrics."""


def pack(frags: Fragments) -> Packed:
    """Covered pixels of ``frags`` as flat index lists (row-major order)."""
    if frags.pixels is not None:
        return Packed(*frags.pixels)
    b, y, x = frags.mask.nonzero(as_tuple=True)
    return Packed(b, y, x, frags.tri_id[b, y, x], frags.bary[b, y, x])


def interpolate_packed(attr: Tensor, faces: Tensor, p: Packed) -> Tensor:
    """Vertex attributes at covered pixels.

    Args:
        attr: [V, C] shared by the batch, or [B, V, C] per image.
        faces: [F, 3] indices into ``attr``'s vertex dimension.
        p: covered pixels from :func:`pack`.

    Returns:
        [N, C] barycentric blend of the visible triangle's three vertex values.
    """
    idx = faces.index_select(0, p.tri)  # [N, 3]
    bary = p.bary.to(attr.dtype)
    if attr.dim() == 3:  # per image: rows of the flattened [B * V, C] table
        idx = idx + (p.b * attr.shape[1])[:, None]
        attr = attr.reshape(-1, attr.shape[-1])
    # Corner-wise gathers and a 3-term sum (much faster on CPU than an [N, 3, C] gather and a small reduction).
    out = attr.index_select(0, idx[:, 0]) * bary[:, 0:1]
    out = out + attr.index_select(0, idx[:, 1]) * bary[:, 1:2]
    return out + attr.index_select(0, idx[:, 2]) * bary[:, 2:3]


def interpolate(attr: Tensor, faces: Tensor, frags: Fragments) -> Tensor:
    """Vertex attributes interpolated at every pixel.

    Args:
        attr: [V, C] shared by the batch, or [B, V, C] per image.
        faces: [F, 3] indices into ``attr`` (e.g. the UV faces for UV coordinates).
        frags: rasterizer output with ``tri_id`` [B, H, W].

    Returns:
        [B, H, W, C], 0 on background.
    """
    p = pack(frags)
    vals = interpolate_packed(attr, faces, p)
    B, H, W = frags.tri_id.shape
    return vals.new_zeros(B, H, W, vals.shape[-1]).index_put((p.b, p.y, p.x), vals)


def sample_texture(texture: Tensor, uv: Tensor, flip_v: bool = True) -> Tensor:
    """Bilinear texture lookup (texel centres at +0.5, border clamped).

    Args:
        texture: [Ht, Wt, C] with row 0 at the top of the image.
        uv: [..., 2] coordinates in [0, 1]; u to the right.
        flip_v: v grows upwards (OBJ / OpenGL / three.js), i.e. sample the image at (u, 1 - v).

    Returns:
        [..., C] sampled values (differentiable w.r.t. ``texture`` and ``uv``).
    """
    lead = uv.shape[:-1]
    u, v = uv.reshape(-1, 2).unbind(-1)
    gy = (1.0 - 2.0 * v) if flip_v else (2.0 * v - 1.0)
    grid = torch.stack([2.0 * u - 1.0, gy], -1).to(texture.dtype)[None, None]  # [1, 1, N, 2]
    img = texture.permute(2, 0, 1)[None]  # [1, C, Ht, Wt]
    out = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0, :, 0].transpose(0, 1).reshape(*lead, texture.shape[-1])


def vertex_normals(verts: Tensor, faces: Tensor) -> Tensor:
    """Area-weighted vertex normals [B, V, 3] of meshes [B, V, 3] (unit length; zero for unused vertices)."""
    v0, v1, v2 = (verts[:, faces[:, k]] for k in range(3))
    fn = torch.linalg.cross(v1 - v0, v2 - v0, dim=-1)  # [B, F, 3], length = 2 * area
    n = torch.zeros_like(verts)
    for k in range(3):
        n = n.index_add(1, faces[:, k], fn)
    return n / n.norm(dim=-1, keepdim=True).clamp_min(1e-20)


def _scale_intrinsics(K: Tensor, s: int) -> Tensor:
    """Intrinsics for an image s times larger per axis (continuous pixel coordinates scale by s)."""
    if s == 1:
        return K
    Ks = K.clone()
    Ks[..., :2, :] = K[..., :2, :] * s
    return Ks


class MeshRenderer:
    """Draws one mesh topology (with its texture or colours) for any vertex positions and cameras.

    Args:
        mesh: faces and appearance.
        config: rendering options.

    >>> import torch
    >>> faces = torch.tensor([[0, 1, 2]])
    >>> r = MeshRenderer(TexturedMesh(faces, vertex_colors=torch.ones(3, 3)), MeshRenderConfig(
    ...     background=(0.0, 0.0, 0.0), shading=ShadingConfig(enabled=False), backend="torch"))
    >>> verts = torch.tensor([[-3.0, -3.0, 2.0], [9.0, -3.0, 2.0], [-3.0, 9.0, 2.0]])
    >>> K = torch.tensor([[4.0, 0.0, 4.0], [0.0, 4.0, 4.0], [0.0, 0.0, 1.0]])
    >>> out = r.render(verts, torch.eye(4)[None], K[None], 8, 8)
    >>> float(out.rgb.mean()), float(out.alpha.mean())
    (1.0, 1.0)
    """

    def __init__(self, mesh: TexturedMesh, config: MeshRenderConfig | None = None):
        self.mesh = mesh
        self.config = config or MeshRenderConfig()
        if self.config.supersample < 1:
            raise ValueError(f"supersample must be >= 1, got {self.config.supersample}")

    def render(
        self,
        verts: Tensor,
        viewmats: Tensor,
        K: Tensor,
        width: int,
        height: int,
        background: Tensor | None = None,
    ) -> MeshRenderOutput:
        """Render the mesh from B cameras.

        Args:
            verts: [V, 3] world-space vertices shared by all views, or [B, V, 3] per view.
            viewmats: [B, 4, 4] world-to-camera (OpenCV axes).
            K: [B, 3, 3] intrinsics for a ``width`` x ``height`` image.
            width, height: output size in pixels.
            background: [3] or [B, 3] RGB, defaults to ``config.background``.

        Returns:
            :class:`MeshRenderOutput`.
        """
        cfg = self.config
        B = viewmats.shape[0]
        dev, dt = verts.device, verts.dtype
        mesh = self.mesh if self.mesh.faces.device == dev else self.mesh.to(dev)
        faces = mesh.faces.long()
        vw = verts.expand(B, -1, -1) if verts.dim() == 2 else verts
        R, t = viewmats[:, :3, :3].to(dt), viewmats[:, :3, 3].to(dt)
        vcam = vw @ R.transpose(1, 2) + t[:, None]
        s = int(cfg.supersample)
        Hs, Ws = height * s, width * s
        frags = rasterize_mesh(vcam, faces, _scale_intrinsics(K.to(dt), s), Ws, Hs, cfg.near, cfg.backend)
        p = pack(frags)
        color = self._albedo(mesh, faces, p, dt)
        if cfg.shading.enabled:
            color = color * self._shade(verts, faces, R, _scale_intrinsics(K.to(dt), s), p)[:, None]
        bg = (
            torch.tensor(cfg.background, dtype=dt, device=dev)
            if background is None
            else background.to(dev, dt)
        )
        bg = bg.expand(B, 3)
        rgb = bg[:, None, None, :].expand(B, Hs, Ws, 3).index_put((p.b, p.y, p.x), color)
        alpha = frags.mask.to(dt)[..., None]
        depth = frags.depth[..., None]
        if s > 1:
            rgb = _box_down(rgb, s)
            depth = _box_down(depth, s)
            alpha = _box_down(alpha, s)
            depth = torch.where(alpha > 0, depth / alpha.clamp_min(1e-12), torch.zeros_like(depth))
        return MeshRenderOutput(rgb=rgb, alpha=alpha, depth=depth, fragments=frags)

    def _albedo(self, mesh: TexturedMesh, faces: Tensor, p: Packed, dt: torch.dtype) -> Tensor:
        """[N, 3] surface colour at the covered pixels."""
        if mesh.texture is not None and mesh.uv is not None:
            fuv = faces if mesh.faces_uv is None else mesh.faces_uv.long()
            uv = interpolate_packed(mesh.uv.to(dt), fuv, p)
            return sample_texture(mesh.texture.to(dt), uv, self.config.flip_v)[:, :3]
        if mesh.vertex_colors is not None:
            return interpolate_packed(mesh.vertex_colors.to(dt), faces, p)[:, :3]
        return torch.full((p.b.shape[0], 3), 0.7, dtype=dt, device=p.b.device)

    def _shade(self, verts: Tensor, faces: Tensor, R: Tensor, K: Tensor, p: Packed) -> Tensor:
        """[N] ambient + diffuse factor; normals are flipped to face the camera (two-sided lighting)."""
        sh = self.config.shading
        if verts.dim() == 2:  # shared by all views: normals once
            n = interpolate_packed(vertex_normals(verts[None], faces)[0], faces, p)
        else:
            n = interpolate_packed(vertex_normals(verts, faces), faces, p)
        n = n / n.norm(dim=-1, keepdim=True).clamp_min(1e-20)
        # World direction of each pixel's ray: R^T K^-1 (x + 0.5, y + 0.5, 1); the surface faces the camera when
        # n . ray < 0, else its normal is flipped (two-sided lighting).
        M = (R.transpose(1, 2) @ torch.linalg.inv(K)).reshape(-1, 9).index_select(0, p.b)  # [N, 9]
        px, py = p.x.to(n.dtype) + 0.5, p.y.to(n.dtype) + 0.5
        facing = n[:, 0] * (M[:, 0] * px + M[:, 1] * py + M[:, 2])
        facing = facing + n[:, 1] * (M[:, 3] * px + M[:, 4] * py + M[:, 5])
        facing = facing + n[:, 2] * (M[:, 6] * px + M[:, 7] * py + M[:, 8])
        light = torch.tensor(sh.light_dir, dtype=n.dtype, device=n.device)
        ndotl = n @ (light / light.norm())
        ndotl = torch.where(facing > 0, -ndotl, ndotl)
        return sh.ambient + sh.diffuse * ndotl.clamp_min(0.0)


def _box_down(img: Tensor, s: int) -> Tensor:
    """[B, H*s, W*s, C] -> [B, H, W, C] mean over s x s blocks."""
    return F.avg_pool2d(img.permute(0, 3, 1, 2), s).permute(0, 2, 3, 1)
