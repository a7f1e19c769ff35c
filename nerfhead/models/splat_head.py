"""The splat head: 3D Gaussians bound to the triangles of the ICT-FaceKit head (GaussianAvatars-style).

For a drive timestep the ICT mesh is posed (expression blend shapes, then head rotation and translation); each
Gaussian follows its triangle's frame (:mod:`nerfhead.splats.binding`), plus an expression-conditioned offset and
colour residual from a small hash-grid network (:mod:`nerfhead.models.deform`); colour is view-dependent SH.
Rendering goes through :func:`nerfhead.ops.rasterize_gaussians` (gsplat on CUDA, a compiled kernel or the torch
twin on the CPU). Cameras are treated as pinholes (distortion is ignored).

The model's persistent state holds the Gaussians, the deformation network, the person's neutral mesh
(``neutral`` [V, 3], the ICT neutral with identity and offsets baked in) and the background colour, so a
checkpoint is self-contained given the bundled ICT-FaceKit asset.

For a fixed camera (monocular video) the model can also learn a **backdrop**: an image ``backdrop`` [H, W, 3]
seen by that one camera (``backdrop_viewmat``, ``backdrop_K``) behind the Gaussians, which carries what the
head mesh cannot (the static background, torso, collar), as INSTA and FlashAvatar do. Renders from that camera
with no explicit background are composited over it (``rgb + (1 - alpha) * backdrop``); any other camera gets
the background colour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from nerfhead.data.cameras import Cameras
from nerfhead.data.drive import Drive
from nerfhead.models.deform import DeformConfig
from nerfhead.models.interface import RenderOutput, pair_indices
from nerfhead.parametric.ict import PART_ID, ICTHead
from nerfhead.splats.binding import TriangleFrames, WorldGaussians, bind_to_world, triangle_frames
from nerfhead.splats.gaussians import SH_C0, SplatParams, rgb_to_sh0

KIND = "splat_head"

INTERIOR_COLOURS: dict[str, tuple[float, float, float]] = {
    "mouth_socket": (0.30, 0.12, 0.12),
    "teeth": (0.85, 0.83, 0.78),
    "gums_and_tongue": (0.65, 0.30, 0.30),
}
"""The mouth interior's parts and their initial colours: a dark cavity, off-white teeth, pink gums and tongue,
so an open mouth is plausible where the video never showed it (the fit learns them where it did)."""
DEFAULT_PARTS = ("face", "head_and_neck", "eyeball_left", "eyeball_right", *INTERIOR_COLOURS)
"""ICT parts that carry Gaussians by default: the skin, the eyeballs and the mouth interior (socket, teeth, gums
and tongue; not the eye sockets, lacrimal fluid, occlusion shells or lashes)."""


@dataclass(frozen=True)
class SplatHeadConfig:
    """Splat head settings."""

    sh_degree: int = 3
    """Largest SH degree stored (0..3); training raises the degree in use step by step."""
    parts: tuple[str, ...] = DEFAULT_PARTS
    """ICT mesh parts whose triangles get Gaussians at initialisation (``nerfhead.parametric.ict.ICT_PARTS``)."""
    gaussians_per_triangle: int = 1
    """Gaussians placed on each triangle at initialisation."""
    triangle_stride: int = 1
    """Use every this-many-th triangle of the parts at initialisation (larger Gaussians cover the gaps)."""
    interior_stride: int = 4
    """The same for the mouth-interior parts (``INTERIOR_COLOURS``), which the video shows little of."""
    large_triangle_ratio: float = 0.0
    """Triangles larger than this multiple of the median skin triangle (scale ``k``) get ``ceil((k / (ratio *
    median))^2)`` Gaussians (at most 9), each smaller, so a big triangle (the scalp's) is covered by Gaussians
    the size of a face triangle and its silhouette stays sharp from every side; 0: off."""
    init_scale: float = 0.5
    """Initial in-plane scale, in units of the triangle scale."""
    init_normal_scale: float = 0.1
    """Initial scale along the normal, in units of the triangle scale."""
    init_opacity: float = 0.5
    """Initial opacity."""
    init_grey: float = 0.5
    """Initial colour (grey level); the init never reads image colours."""
    deform: DeformConfig = field(default_factory=DeformConfig)
    """Expression-conditioned offset / colour network."""
    near_plane: float = 0.01
    """Gaussians nearer than this (metres) are culled."""
    eps2d: float = 0.3
    """Low-pass filter added to the 2D covariance (pixels^2)."""
    backdrop_size: tuple[int, int] | None = None
    """(width, height) of a learned backdrop image for one fixed camera (monocular video); None: none."""
    backend: str = "auto"
    """Rasteriser and hash-grid backend: auto, cuda, cpu, torch."""


class SplatHead(nn.Module):
    """Gaussians bound to the ICT head mesh, driven by a :class:`~nerfhead.data.drive.Drive`.

    Args:
        cfg: settings.
        head: the parametric head whose neutral is the person (e.g. ``load_rigged_head()``); plain ICT if None.
        background: [3] default background colour in [0, 1].

    Example:
        >>> from nerfhead.models.deform import DeformConfig
        >>> m = SplatHead(SplatHeadConfig(parts=("eyeball_left",), deform=DeformConfig(enabled=False)))
        >>> len(m.splats)
        3132
    """

    neutral: Tensor
    background: Tensor
    colour_residual_gain: Tensor
    backdrop_viewmat: Tensor
    backdrop_K: Tensor

    def __init__(
        self, cfg: SplatHeadConfig = SplatHeadConfig(), head: ICTHead | None = None, background: Any = None
    ):
        super().__init__()
        self.cfg = cfg
        self.ict = head if head is not None else ICTHead()
        bad = [p for p in cfg.parts if p not in PART_ID]
        if bad:
            raise ValueError(f"unknown ICT part(s) {bad}; known: {sorted(PART_ID)}")
        self.register_buffer("neutral", self.ict.neutral.detach().clone())
        bg = (
            torch.ones(3)
            if background is None
            else torch.as_tensor(background, dtype=torch.float32).reshape(3)
        )
        self.register_buffer("background", bg.clone())
        # [F] per mesh triangle: how much of the deformation network's colour residual its Gaussians take
        # (1 everywhere unless a fit lowers it: a monocular fit, where the video barely sees the triangle)
        self.register_buffer("colour_residual_gain", torch.ones(int(self.faces.shape[0])))

        stride = max(1, int(cfg.triangle_stride))
        inner = [p for p in cfg.parts if p in INTERIOR_COLOURS]
        outer = torch.tensor([PART_ID[p] for p in cfg.parts if p not in INTERIOR_COLOURS], dtype=torch.int64)
        tris = torch.isin(self.ict.face_part, outer).nonzero()[:, 0][::stride]
        n = max(1, int(cfg.gaussians_per_triangle))
        counts = torch.full((int(tris.shape[0]),), n, dtype=torch.int64)
        if cfg.large_triangle_ratio > 0 and len(tris):
            k = triangle_frames(self.neutral[None], self.faces[tris]).scale[0]
            want = (k / (cfg.large_triangle_ratio * k.median())).square().ceil().clamp(1, 9).long()
            counts = torch.maximum(counts, want)
        inner_stride = max(1, int(cfg.interior_stride)) * stride
        inner_tris = [(self.ict.face_part == PART_ID[p]).nonzero()[:, 0][::inner_stride] for p in inner]
        counts = torch.cat([counts, *(torch.full((len(t),), n, dtype=torch.int64) for t in inner_tris)])
        binding = torch.cat([tris, *inner_tris]).repeat_interleave(counts)
        per = counts.repeat_interleave(counts)  # each Gaussian's count on its triangle
        self.splats = SplatParams.on_triangles(
            binding,
            sh_degree=cfg.sh_degree,
            scale=cfg.init_scale,
            normal_scale=cfg.init_normal_scale,
            opacity=cfg.init_opacity,
            rgb=cfg.init_grey,
        )
        with torch.no_grad():  # n on a triangle share its area; the mouth interior's larger strides: larger
            self.splats.params["scales"][:, :2] += 0.5 * torch.log(stride / per.float())[:, None]
            a = int(counts[: len(tris)].sum())
            for p, t in zip(inner, inner_tris, strict=True):
                b = a + int(t.shape[0]) * n
                self.splats.params["scales"][a:b, :2] += 0.5 * math.log(inner_stride / stride)
                self.splats.params["sh0"][a:b] = rgb_to_sh0(torch.tensor(INTERIOR_COLOURS[p]))
                a = b
        if bool((per > 1).any()):
            self._spread_on_triangles(per > 1)
        self.deform = cfg.deform.build(cfg.backend) if cfg.deform.enabled else None
        self.backdrop: nn.Parameter | None = None
        if cfg.backdrop_size is not None:
            w, h = (int(x) for x in cfg.backdrop_size)
            self.backdrop = nn.Parameter(bg.reshape(1, 1, 3).repeat(h, w, 1))
            self.register_buffer("backdrop_viewmat", torch.eye(4))
            self.register_buffer("backdrop_K", torch.eye(3))

    def skin(self) -> Tensor:
        """[N] bool: the Gaussians on the skin (every part but the mouth interior)."""
        part = self.ict.face_part.to(self.splats.binding.device)[self.splats.binding]
        inner = torch.tensor([PART_ID[p] for p in INTERIOR_COLOURS], device=part.device)
        return ~torch.isin(part, inner)

    @torch.no_grad()
    def init_colours(self, colour: Tensor) -> None:
        """Set each Gaussian's base colour (and clear its higher SH) to its triangle's ``colour`` [F, 3]
        (e.g. projected from the training views), except on the mouth interior, which keeps its own."""
        sp = self.splats
        skin = self.skin()
        c = colour.to(sp.params["sh0"])[sp.binding]
        sp.params["sh0"][skin] = rgb_to_sh0(c[skin])[:, None]
        sp.params["shN"][skin] = 0.0

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any, **kwargs: Any) -> None:
        # checkpoints written before ``colour_residual_gain`` existed: the full residual everywhere, as then
        state_dict.setdefault(prefix + "colour_residual_gain", self.colour_residual_gain.clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def set_colour_residual_gain(self, gain: Tensor) -> None:
        """Scale the deformation network's colour residual of every Gaussian by its triangle's ``gain`` [F]
        in [0, 1] (e.g. how well the training views saw the triangle: a residual the video never constrained
        is whatever the hash grid's shared cells hold, speckles seen from other views)."""
        self.colour_residual_gain.copy_(gain.to(self.colour_residual_gain).reshape(-1).clamp(0.0, 1.0))

    @torch.no_grad()
    def set_backdrop(self, image: Tensor, viewmat: Tensor, K: Tensor) -> None:
        """Set the backdrop image [H, W, 3] and the camera (world-to-camera ``viewmat`` [4, 4], ``K`` [3, 3])
        that sees it (the model must have been built with ``backdrop_size`` (W, H))."""
        if self.backdrop is None or tuple(image.shape) != tuple(self.backdrop.shape):
            have = None if self.backdrop is None else tuple(self.backdrop.shape)
            raise ValueError(f"backdrop image of shape {tuple(image.shape)} for a model expecting {have}")
        self.backdrop.copy_(image)
        self.backdrop_viewmat.copy_(viewmat.reshape(4, 4))
        self.backdrop_K.copy_(K.reshape(3, 3))

    def _sees_backdrop(self, cameras: Cameras, index: list[int], width: int, height: int) -> bool:
        """True when every camera of ``index`` is the backdrop's camera (same size, K and pose)."""
        if self.backdrop is None or (width, height) != (self.backdrop.shape[1], self.backdrop.shape[0]):
            return False
        vm = cameras.viewmat[index].to(self.backdrop_viewmat)
        K = cameras.K[index].to(self.backdrop_K)
        return bool(
            torch.allclose(vm, self.backdrop_viewmat.expand_as(vm), atol=1e-4)
            and torch.allclose(K, self.backdrop_K.expand_as(K), rtol=1e-4, atol=1e-3)
        )

    # ----------------------------------------------------------------- geometry
    @property
    def faces(self) -> Tensor:
        """[F, 3] int64 triangles of the ICT mesh."""
        return self.ict.faces

    def _cached(self, name: str, sources: tuple[Tensor, ...], build: Any) -> Any:
        """``build()``, computed once and kept until one of ``sources`` is replaced (a new tensor object, e.g. by
        densification) or modified in place (its version counter moves: an optimiser step, ``load_state_dict``)
        or moves device. The cache holds the sources themselves (no address reuse) and builds outside inference
        mode with no autograd, so what it keeps is usable by training as well as by the viewer."""
        key = tuple((t, t._version, t.device) for t in sources)
        cache = self.__dict__.get(name)
        if (
            cache is None
            or len(cache[0]) != len(key)
            or any(
                a is not b or va != vb or da != db
                for (a, va, da), (b, vb, db) in zip(cache[0], key, strict=True)
            )
        ):
            with torch.inference_mode(False), torch.no_grad():
                cache = (key, build())
            self.__dict__[name] = cache
        return cache[1]

    def _canonical_frames(self) -> TriangleFrames:
        """Frames of every triangle of the neutral mesh (cached until ``neutral`` changes or moves)."""
        return self._cached(
            "_canonical_cache", (self.neutral,), lambda: triangle_frames(self.neutral[None], self.faces)
        )

    def _bindings(self) -> tuple[Tensor, Tensor]:
        """(faces [U, 3] of the U triangles that carry Gaussians, index [N] of each Gaussian into them), cached
        until the binding changes."""

        def build() -> tuple[Tensor, Tensor]:
            used, index = torch.unique(self.splats.binding, return_inverse=True)
            return self.faces.to(used.device)[used], index

        return self._cached("_binding_cache", (self.splats.binding,), build)

    def _bound_frames(self, vertices: Tensor) -> tuple[TriangleFrames, Tensor]:
        """Frames of the triangles that carry Gaussians only, and each Gaussian's index into them.

        Args:
            vertices: [T, V, 3] posed vertices.

        Returns:
            (frames [T, U, ...] of the U bound triangles, index [N] into them).
        """
        faces, index = self._bindings()
        return triangle_frames(vertices, faces), index

    def _deform_input(self) -> Tensor:
        """[N, 3] the deformation network's input (canonical Gaussian positions in the unit box; detached),
        cached until the neutral, the binding or the local means change."""
        sources = (self.neutral, self.splats.binding, self.splats.params["means"])
        return self._cached(
            "_deform_input_cache", sources, lambda: self._unit_box(self.canonical_positions()[0])
        )

    @torch.no_grad()
    def _spread_on_triangles(self, which: Tensor) -> None:
        """Place the Gaussians of ``which`` [N] bool (those that share a triangle) at fixed, evenly spread
        barycentric points of their triangles."""
        gen = torch.Generator().manual_seed(0)
        u = torch.rand(len(self.splats), 2, generator=gen)
        su = u[:, 0].sqrt()
        bary = torch.stack([1 - su, su * (1 - u[:, 1]), su * u[:, 1]], -1)  # uniform on the triangle
        fr = self._canonical_frames().select(self.splats.binding)
        v = self.neutral[self.faces[self.splats.binding]]  # [N, 3, 3]
        p = (bary[..., None] * v).sum(1)
        R, k, c = fr.rotation[0], fr.scale[0][:, None], fr.centroid[0]
        local = (R.transpose(-1, -2) @ (p - c)[..., None])[..., 0] / k
        self.splats.params["means"][which] = local[which]

    def posed_vertices(self, drive: Drive) -> Tensor:
        """[T, V, 3] mesh vertices of the person for each drive timestep (metres, world)."""
        d = drive.to(self.neutral.device, torch.float32)
        return self.ict(
            d.expression, d.rotation, d.translation, offsets=self.neutral - self.ict.neutral
        ).vertices

    def canonical_positions(self) -> tuple[Tensor, Tensor]:
        """Gaussian means on the neutral, unposed mesh and the scale of their triangles (both detached).

        Returns:
            (positions [N, 3] metres, triangle scales [N]).
        """
        with torch.no_grad():
            fr = self._canonical_frames().select(self.splats.binding)
            k = fr.scale[0]
            pos = (fr.rotation[0] @ (k[:, None] * self.splats["means"])[..., None])[..., 0] + fr.centroid[0]
            return pos, k

    def _unit_box(self, positions: Tensor) -> Tensor:
        lo, hi = self.neutral.min(0).values, self.neutral.max(0).values
        pad = 0.05 * (hi - lo)
        return (positions - (lo - pad)) / (hi - lo + 2 * pad)

    def gaussians(
        self, drive: Drive, sh_degree: int | None = None
    ) -> tuple[WorldGaussians, Tensor, Tensor, Tensor | None]:
        """World-space Gaussians for every drive timestep; ``sh_degree`` limits the SH coefficients returned (and
        computed) to that degree (default: all stored).

        Returns:
            (WorldGaussians with [T, N, ...] tensors, opacities [N] in (0, 1), SH coefficients [T, N, K, 3],
            deformation offsets [T, N, 3] in triangle units or None without the network).
        """
        sp = self.splats
        verts = self.posed_vertices(drive)
        frames, index = self._bound_frames(verts)
        means = sp["means"]
        sh0 = sp["sh0"]
        offset = None
        if self.deform is not None:
            d = drive.to(self.neutral.device, torch.float32)
            offset, rgb = self.deform(self._deform_input(), torch.cat([d.expression, d.rotation], -1)).split(
                3, -1
            )
            means = means[None] + offset  # [T, N, 3]
            gain = self.colour_residual_gain[sp.binding][None, :, None]
            sh0 = sh0[None] + (gain * rgb / SH_C0)[:, :, None, :]  # [T, N, 1, 3]
        else:
            sh0 = sh0[None].expand(len(drive), -1, -1, -1)
        world = bind_to_world(frames, index, means, sp["quats"], sp["scales"])
        degree = self.cfg.sh_degree if sh_degree is None else max(0, min(int(sh_degree), self.cfg.sh_degree))
        n_rest = (degree + 1) ** 2 - 1
        if n_rest == 0:
            sh = sh0
        else:
            sh = torch.cat([sh0, sp["shN"][None, :, :n_rest].expand(sh0.shape[0], -1, -1, -1)], dim=2)
        return world, torch.sigmoid(sp["opacities"]), sh, offset

    @torch.no_grad()
    def world_splats(self, drive: Drive, sh_degree: int | None = None) -> dict[str, Tensor]:
        """Static world-space Gaussians of each drive timestep, pre-activation (the 3DGS PLY's values).

        What does not depend on the drive (the bound triangles, the canonical frames, the deformation network's
        input) is cached and rebuilt when the parameters change (e.g. during a live fit), so a pose costs the
        mesh, the frames of the bound triangles, the network and the binding. ``sh_degree`` limits the SH
        coefficients returned (0: the browser's view-independent colour only; default: all stored).

        Returns:
            ``means`` [T, N, 3], ``quats`` [T, N, 4] (unit, w, x, y, z), ``log_scales`` [T, N, 3],
            ``opacity_logits`` [N], ``sh`` [T, N, K, 3] (deformation colour residual included; K = (d + 1)^2).
        """
        world, _, sh, _ = self.gaussians(drive, sh_degree)
        return {
            "means": world.means,
            "quats": world.quats,
            "log_scales": torch.log(world.scales),
            "opacity_logits": self.splats["opacities"].detach().clone(),
            "sh": sh,
        }

    def _pose_constants(self) -> dict[str, Any]:
        """:func:`nerfhead.models.splat_pose.pose_constants` of this head (cached)."""
        from nerfhead.models.splat_pose import pose_constants

        return pose_constants(self)

    @torch.no_grad()
    def posed_splats(self, drive: Drive, head_frame: bool = False) -> dict[str, Tensor]:
        """The viewer's fast pose step: :func:`nerfhead.models.splat_pose.posed_splats` of this head."""
        from nerfhead.models.splat_pose import posed_splats

        return posed_splats(self, drive, head_frame)

    def packed_splats(self, drive: Drive, min_alpha: int = 0) -> Tensor:
        """:meth:`posed_splats` packed as viser's [M, 8] Gaussian buffer in one fused pass
        (:func:`nerfhead.models.splat_pose.packed_splats`)."""
        from nerfhead.models.splat_pose import packed_splats

        return packed_splats(self, drive, min_alpha)

    # ---------------------------------------------------------------- rendering
    def render(self, cameras: Cameras, drive: Drive, background: Tensor | None = None) -> RenderOutput:
        """:meth:`nerfhead.models.avatar.Avatar.render` (camera ``b`` at timestep ``b``; B = max(N, T) images)."""
        return self.render_views(cameras, drive, background)[0]

    def render_views(
        self,
        cameras: Cameras,
        drive: Drive,
        background: Tensor | None = None,
        sh_degree: int | None = None,
        alpha_cameras: Cameras | None = None,
    ) -> tuple[RenderOutput, list[dict[str, Any]]]:
        """:meth:`render` plus the rasteriser's meta of each call (one per distinct timestep, in order of first
        use; with the deformation network, ``meta["offsets"]`` [N, 3] holds its offsets), which densification
        and the regularisers read; ``sh_degree`` limits the SH degree used (default: all stored). With no
        ``background``, the backdrop's camera renders over the backdrop image. ``alpha_cameras``: also the
        alpha [H, W] of each of these cameras (any size) at the first timestep, from the same posed Gaussians
        (no second pass through the deformation network), in ``metas[0]["alpha_views"]``."""
        from nerfhead.ops.rasterize_gaussians import rasterize_gaussians

        cam_idx, t_idx = pair_indices(len(cameras), len(drive))
        sizes = {(int(cameras.width[c]), int(cameras.height[c])) for c in set(cam_idx)}
        if len(sizes) != 1:
            raise ValueError(f"render needs cameras of one image size, got {sorted(sizes)}")
        (width, height) = sizes.pop()
        dev = self.neutral.device
        B = len(cam_idx)
        backdrop = background is None and self._sees_backdrop(cameras, sorted(set(cam_idx)), width, height)
        bg = self.background if background is None else background.to(dev, torch.float32)
        bg = torch.zeros_like(self.background) if backdrop else bg
        bg = bg.reshape(-1, 3).expand(B, 3)
        degree = self.cfg.sh_degree if sh_degree is None else min(sh_degree, self.cfg.sh_degree)
        n_coef = (degree + 1) ** 2
        used_t = sorted(set(t_idx), key=t_idx.index)
        world, opac, sh, offsets = self.gaussians(drive[torch.tensor(used_t)])
        viewmats = cameras.viewmat.to(dev, torch.float32)
        Ks = cameras.K.to(dev, torch.float32)
        rgb: list[Tensor | None] = [None] * B
        alpha: list[Tensor | None] = [None] * B
        depth: list[Tensor | None] = [None] * B
        metas = []
        for j, t in enumerate(used_t):
            bs = [b for b in range(B) if t_idx[b] == t]
            cs = torch.tensor([cam_idx[b] for b in bs], device=dev)
            if degree == 0:  # view-independent: hand the renderer colours (same as SH degree 0, cheaper)
                colors, deg = torch.clamp_min(SH_C0 * sh[j, :, 0] + 0.5, 0.0), None
            else:
                colors, deg = sh[j, :, :n_coef], degree
            img, alp, meta = rasterize_gaussians(
                world.means[j],
                world.quats[j],
                world.scales[j],
                opac,
                colors,
                viewmats[cs],
                Ks[cs],
                width,
                height,
                sh_degree=deg,
                backgrounds=bg[torch.tensor(bs, device=dev)],
                render_mode="RGB+ED",
                near_plane=self.cfg.near_plane,
                eps2d=self.cfg.eps2d,
                backend=self.cfg.backend,
            )
            if offsets is not None:
                meta["offsets"] = offsets[j]
            metas.append(meta)
            for k, b in enumerate(bs):
                rgb[b], alpha[b], depth[b] = img[k, ..., :3], alp[k], img[k, ..., 3:4]
        if alpha_cameras is not None:
            ones = torch.ones(len(opac), 1, device=dev)
            views = []
            for c in range(len(alpha_cameras)):
                _, a, _ = rasterize_gaussians(
                    world.means[0],
                    world.quats[0],
                    world.scales[0],
                    opac,
                    ones,
                    alpha_cameras.viewmat[c : c + 1].to(dev, torch.float32),
                    alpha_cameras.K[c : c + 1].to(dev, torch.float32),
                    int(alpha_cameras.width[c]),
                    int(alpha_cameras.height[c]),
                    near_plane=self.cfg.near_plane,
                    eps2d=self.cfg.eps2d,
                    backend=self.cfg.backend,
                )
                views.append(a[0, ..., 0])
            metas[0]["alpha_views"] = views
        out_rgb, out_alpha = torch.stack(rgb), torch.stack(alpha)  # type: ignore[arg-type]
        if backdrop and self.backdrop is not None:
            out_rgb = out_rgb + (1.0 - out_alpha) * self.backdrop
        return RenderOutput(out_rgb, out_alpha, torch.stack(depth)), metas  # type: ignore[arg-type]

    # ------------------------------------------------------------------ regularisers
    def regularizers(
        self, position_threshold: float = 1.0, scale_threshold: float = 0.6
    ) -> dict[str, Tensor]:
        """GaussianAvatars's losses on local parameters (triangle units): means farther than
        ``position_threshold`` and scales larger than ``scale_threshold`` are penalised."""
        sp = self.splats
        pos = torch.relu(sp["means"].norm(dim=-1) - position_threshold).mean()
        scale = torch.relu(torch.exp(sp["scales"]) - scale_threshold).mean()
        return {"position": pos, "scale": scale}

    def transparency(self) -> Tensor:
        """Mean ``1 - opacity`` of the skin's Gaussians (every part but the mouth interior), a scalar."""
        sp = self.splats
        skin = self.skin()
        return ((1.0 - torch.sigmoid(sp["opacities"].reshape(-1))) * skin).mean()

    @torch.no_grad()
    def flatten_onto_surface(
        self, max_offset: float, max_normal_scale: float, max_scale: float, min_scale: float = 0.0
    ) -> None:
        """Project the Gaussians onto thin discs on their triangles (in place, triangle units): the local mean
        at most ``max_offset`` off the triangle's plane, the rotation a turn about the normal only, the scale
        along the normal at most ``max_normal_scale`` and in the plane at most ``max_scale`` (times the square
        root of the triangle stride over the number of Gaussians sharing the triangle, as the init scales)
        and, with ``min_scale`` > 0, at least ``min_scale`` (the same way) on the skin, so no disc shrinks to a
        dot that leaves its triangle see-through. The surface one view fits then looks right from other views
        too (a monocular fit; GaussianAvatars-style bounds)."""
        p = self.splats.params
        p["means"][:, 2].clamp_(-max_offset, max_offset)
        q = p["quats"]
        q[:, 1:3] = 0.0
        norm = q.norm(dim=-1, keepdim=True)
        q.copy_(torch.where(norm > 1e-6, q / norm.clamp_min(1e-12), torch.tensor([1.0, 0.0, 0.0, 0.0]).to(q)))
        p["scales"][:, 2].clamp_(max=math.log(max_normal_scale))
        b = self.splats.binding
        share = torch.bincount(b, minlength=int(b.max()) + 1 if len(b) else 0)[b].to(q)
        cap = math.log(max_scale) + 0.5 * torch.log(max(1, int(self.cfg.triangle_stride)) / share)
        p["scales"][:, :2] = torch.minimum(p["scales"][:, :2], cap[:, None])
        if min_scale > 0:  # the skin only: the mouth interior's Gaussians are sized by their own stride
            floor = cap + math.log(min_scale / max_scale)
            skin = self.skin()
            p["scales"][skin, :2] = torch.maximum(p["scales"][skin, :2], floor[skin, None])

    def extra_repr(self) -> str:
        extra = "" if self.cfg.backdrop_size is None else f", backdrop={list(self.cfg.backdrop_size)}"
        return f"gaussians={len(self.splats)}, sh_degree={self.cfg.sh_degree}, parts={list(self.cfg.parts)}{extra}"


def from_checkpoint(
    spec: dict[str, Any], tensors: dict[str, Tensor], device: str | torch.device = "cpu"
) -> SplatHead:
    """Rebuild a :class:`SplatHead` from ``avatar.json`` and a checkpoint's model tensors."""
    from nerfhead.engine.config import from_dict

    cfg = from_dict(SplatHeadConfig, spec.get("config", {}))
    model = SplatHead(cfg)
    model.load_state_dict(dict(tensors))
    return model.to(device)
