"""Training the splat head on a capture: the fit config, its presets and the task the engine's loop runs.

Each step draws one timestep and ``cameras_per_step`` training cameras (from the step's generator only), renders
them over the capture's background and minimises ``(1 - w) L1 + w D-SSIM`` (3DGS) plus, with masks, an alpha
loss, and GaussianAvatars's position / scale regularisers. Densification (:class:`BoundStrategy`) keeps every
Gaussian bound to a triangle. The Drive is the capture's per-timestep drive (ground truth for rig captures,
tracked for videos).

Monocular captures (one frame per timestep and no stored split, e.g. a tracked video) are split by time: the
held-out timesteps of the ``split`` policy are evaluated (default: blocks inside speech, see
:mod:`nerfhead.data.split`). With ``backdrop`` a fixed camera's
background (backdrop, torso, everything the head mesh does not carry) is a learned image, initialised with the
per-pixel median of the training frames outside the masks, and the fit and evaluation compare full frames.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nerfhead.data.capture import Capture
from nerfhead.data.framestore import FrameLoader, FrameStore, to_float
from nerfhead.data.split import SplitPolicy
from nerfhead.engine.chroma import head_like_bins, refine_mask
from nerfhead.engine.config import TrainerConfig
from nerfhead.engine.distributed import current, shard
from nerfhead.engine.losses import photometric_loss
from nerfhead.engine.metrics import psnr
from nerfhead.engine.targets import capture_background, composite_target, synth_metadata
from nerfhead.engine.trainer import Optimizers, StepOutput, step_generator
from nerfhead.errors import InputError
from nerfhead.models.deform import DeformConfig
from nerfhead.models.fit_task import (
    MODEL_PREFIX,
    avatar_spec,
    eval_views,
    heldout_psnr,
    log_lerp,
    progress,
    strip_prefix,
    with_prefix,
)
from nerfhead.models.splat_head import KIND, SplatHead, SplatHeadConfig
from nerfhead.models.splat_mono import SurfaceConfig, colour_prior_loss, projected_colours
from nerfhead.models.splat_silhouette import masked_out_triangles, novel_camera, silhouette_l1
from nerfhead.parametric.ict import ICTHead
from nerfhead.splats.strategy import BoundStrategy, load_strategy_state, strategy_state_tensors

__all__ = [  # SurfaceConfig and projected_colours live in splat_mono (the monocular priors)
    "PRESETS",
    "SplatFit",
    "SplatFitConfig",
    "SplatLossConfig",
    "SplatOptimConfig",
    "SurfaceConfig",
    "head_for_capture",
    "make_task",
    "projected_colours",
]

STRATEGY_PREFIX = "strategy."


@dataclass(frozen=True)
class SplatOptimConfig:
    """Adam learning rates (GaussianAvatars's, in triangle units for the geometry)."""

    means: float = 5e-3
    """Local means, start of the exponential decay."""
    means_final: float = 5e-5
    """Local means at the last step."""
    scales: float = 1.7e-2
    """Log-scales."""
    quats: float = 1e-3
    """Rotations."""
    opacities: float = 5e-2
    """Opacity logits."""
    sh0: float = 1e-2
    """Degree-0 SH (4x GaussianAvatars's 2.5e-3: short CPU schedules need colour to move faster)."""
    shN: float = 1e-2 / 20
    """Higher SH."""
    deform: float = 1e-3
    """Deformation MLP."""
    deform_grid: float = 1e-2
    """Deformation hash grid."""
    backdrop: float = 2e-3
    """Backdrop image (monocular captures), colour units."""


@dataclass(frozen=True)
class SplatLossConfig:
    """Loss weights."""

    ssim_weight: float = 0.2
    """Weight w of D-SSIM in ``(1 - w) L1 + w D-SSIM``."""
    alpha_weight: float = 0.1
    """L1 between rendered alpha and the capture's mask (when it has masks)."""
    position_weight: float = 1e-2
    """Local means beyond ``position_threshold`` triangle units."""
    position_threshold: float = 1.0
    """Free radius of the local means (triangle units)."""
    scale_weight: float = 1.0
    """Local scales beyond ``scale_threshold`` triangle units."""
    scale_threshold: float = 0.6
    """Free local scale (triangle units)."""
    offset_weight: float = 1e-2
    """Mean squared deformation offset (triangle units)."""
    colour_prior_weight: float = 1.0
    """Monocular captures: mean squared distance of each Gaussian's base colour from its triangle's projected
    colour (:func:`projected_colours`), weighted by how poorly the training views saw the triangle (1 - the
    largest squared cosine between its normal and a view ray), so sides seen edge-on and the unseen side
    keep the colour the visible skin (or its mirror image) gave them instead of the wall's."""
    unseen_opacity_weight: float = 1.0
    """Monocular captures: mean ``1 - opacity`` of the Gaussians, weighted as the colour prior, so the surface
    the views barely show stays opaque (a half-transparent side shows the background from other angles)."""


@dataclass(frozen=True)
class SplatFitConfig:
    """Everything ``nerfhead fit --model splat`` uses."""

    model: SplatHeadConfig = field(default_factory=SplatHeadConfig)
    optim: SplatOptimConfig = field(default_factory=SplatOptimConfig)
    loss: SplatLossConfig = field(default_factory=SplatLossConfig)
    strategy: BoundStrategy = field(default_factory=BoundStrategy)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    cameras_per_step: int = 2
    """Training cameras rendered per step (all at one timestep)."""
    sh_increase_every: int = 500
    """Raise the SH degree in use by one every this many steps (3DGS uses 1000)."""
    eval_views: int = 8
    """Held-out (camera, timestep) pairs in the quick evaluation during training."""
    image_cache_gb: float = 0.05
    """Decoded float targets kept in memory (GiB; an LRU that is also the prefetch buffer). Frames come from the
    capture's uint8 frame store (:mod:`nerfhead.data.framestore`), so memory does not grow with its length."""
    split: SplitPolicy = field(default_factory=SplitPolicy)
    """How a monocular capture (one frame per timestep, no stored split) is split by time: held-out blocks
    inside speech (default) or the last fraction ("tail"); ``fraction`` 0 trains on every timestep."""
    monocular_outside_weight: float = 1.0
    """Fixed-camera monocular fits (with a backdrop): weight of the mean rendered head alpha outside the masks,
    so the head's Gaussians leave the wall to the backdrop instead of learning its colour at the silhouette."""
    surface: SurfaceConfig = field(default_factory=SurfaceConfig)
    """Monocular captures: Gaussians kept as thin discs on the mesh (:class:`SurfaceConfig`)."""
    monocular_sh_degree: int = 0
    """Largest SH degree on a monocular capture: one view cannot constrain view-dependent colour (higher
    degrees learn whatever explains that view and show speckles from others; the deformation network's
    colour residual still follows the head's rotation)."""
    colour_init: bool = True
    """Monocular captures: start each Gaussian at its triangle's colour projected from the training views
    (visible triangles only, a mirrored or nearest seen triangle's colour elsewhere) instead of grey."""
    backdrop: bool = True
    """Monocular captures from one fixed camera: learn its background as an image behind the head (full-frame
    fit and evaluation); off: composite the images over the background colour with their masks, as for a rig."""
    monocular_wall_band: int = 6
    """Fixed-camera monocular fits with masks: the pixels within this many pixels of a mask's edge whose chroma
    is the backdrop's rather than the head's (:func:`nerfhead.engine.chroma.refine_mask`: the wall a tracked
    mask takes in at the ears, cheek and neck) leave the mask for the whole fit (alpha target, head alpha
    outside the mask, colour prior, the backdrop's first guess), so the head is not pushed to cover the wall
    and learn its colour; 0 keeps the masks as tracked."""


def _default() -> SplatFitConfig:
    """The CPU default: fits a 16-camera 128x128 rig capture (25 timesteps) in under 10 minutes on 2 cores.

    2000 steps of 2 cameras with a 7.5-minute budget on the loop (it stops early, with a checkpoint, on a slow
    machine); densification grows the ~28k initial Gaussians up to 60k between steps 200 and 1500. The same
    preset fits a tracked GRID clip (360x288, one camera: 60 training frames and a learned backdrop) in the
    same budget (BENCHMARKS.md: 34.4 dB on the rig's held-out cameras, 33.4 dB on GRID's held-out frames).
    """
    return SplatFitConfig(
        strategy=BoundStrategy(refine_start=200, refine_every=100, refine_stop=1500, max_gaussians=60_000),
        trainer=TrainerConfig(steps=2000, max_minutes=7.5, eval_every=500, checkpoint_every=500),
    )


def _fast() -> SplatFitConfig:
    """A few dozen steps of a small model (smoke tests)."""
    return SplatFitConfig(
        model=SplatHeadConfig(
            sh_degree=1, triangle_stride=4, deform=DeformConfig(n_levels=4, log2_hashmap_size=10, hidden=16)
        ),
        strategy=BoundStrategy(refine_start=20, refine_every=20, refine_stop=60),
        trainer=TrainerConfig(steps=60, eval_every=0, checkpoint_every=30, log_every=10, progress=False),
        sh_increase_every=30,
        eval_views=4,
    )


def _quality() -> SplatFitConfig:
    """A longer schedule for a GPU."""
    return SplatFitConfig(
        model=SplatHeadConfig(gaussians_per_triangle=2),
        strategy=BoundStrategy(refine_start=500, refine_every=100, refine_stop=15_000, max_gaussians=300_000),
        trainer=TrainerConfig(steps=30_000, eval_every=2000, checkpoint_every=2000),
        cameras_per_step=4,
        sh_increase_every=1000,
    )


PRESETS = {"default": _default, "fast": _fast, "quality": _quality}
"""Fit presets by name."""


def head_for_capture(capture: Capture) -> ICTHead:
    """The parametric head of the person in ``capture``.

    Synthetic captures (``metadata["synth"]``, or ``metadata["head"] == "rigged"``) show the bundled rigged
    real-scan head (``load_rigged_head()``); ``metadata["identity"]`` (10 ICT identity coefficients, e.g. from
    tracking; also read from ``metadata["track"]["identity"]``, where ``nerfhead track`` writes it) is baked
    into the ICT neutral; otherwise the plain ICT head.
    """
    meta = capture.metadata
    if meta.get("head") == "rigged" or (synth_metadata(capture) and meta.get("head") is None):
        from nerfhead.parametric import load_rigged_head

        return load_rigged_head().head
    head = ICTHead()
    track = meta.get("track")
    identity = meta.get("identity", track.get("identity") if isinstance(track, Mapping) else None)
    if identity is not None:
        head.bake_(identity=torch.as_tensor(identity, dtype=torch.float32).reshape(-1))
    return head


class SplatFit:
    """The splat head's training task (a :class:`nerfhead.engine.trainer.Trainable`).

    Args:
        capture: the capture (with a drive); its ``train_cameras`` train, its ``test_cameras`` evaluate
            (all cameras train when it names none); a monocular capture is split by time instead.
        cfg: fit settings.
        device: where to train.
        model: start from this model instead of a fresh one.
    """

    def __init__(
        self,
        capture: Capture,
        cfg: SplatFitConfig = SplatFitConfig(),
        device: str | torch.device = "cpu",
        model: SplatHead | None = None,
    ):
        if capture.drive is None:
            raise InputError(
                None, "the capture has no drive", hint="track the capture first (nerfhead track)"
            )
        self.capture = capture
        self.cfg = cfg
        self.device = torch.device(device)
        n = capture.num_cameras
        split = self.split = capture.split(cfg.split)
        self.split_policy = split.policy
        self.train_cameras, self.test_cameras = split.train_cameras, split.test_cameras
        self.train_timesteps = split.train_timesteps
        self.test_timesteps = split.test_timesteps  # None: every timestep of the test cameras
        self.monocular = split.monocular
        self.surface = cfg.surface if self.monocular and cfg.surface.enabled else None
        self.full_frame = self.monocular and cfg.backdrop and n == 1  # a backdrop needs a fixed camera
        self.drive = capture.drive.to(self.device, torch.float32)
        self.cameras = capture.cameras.to(self.device, torch.float32)
        self.has_masks = capture.has_masks
        self.bg = torch.tensor(capture_background(capture), dtype=torch.float32, device=self.device)
        self.store = FrameStore.open(capture)
        w0, h0 = int(capture.cameras.width.max()), int(capture.cameras.height.max())
        per_frame = w0 * h0 * 4 * (4 if self.has_masks else 3)
        # fixed camera: the chroma bins of the head (not the wall) that decide a mask's edge pixels
        self.head_like: Tensor | None = None
        if self.full_frame and self.has_masks and cfg.monocular_wall_band > 0:
            self.head_like = self.head_chroma()
        self.loader = FrameLoader(
            self.store,
            lambda img, m: composite_target(
                capture,
                to_float(img),
                None if m is None else self.edge_mask(img, m),
                self.bg.cpu(),
                not self.full_frame,
            ),
            capacity=max(2 * cfg.cameras_per_step + 2, int(cfg.image_cache_gb * 2**30) // per_frame),
        )
        fresh = model is None
        if model is None:
            mcfg = cfg.model
            if self.monocular and mcfg.sh_degree > cfg.monocular_sh_degree:  # one view cannot constrain SH
                mcfg = replace(mcfg, sh_degree=cfg.monocular_sh_degree)
            if self.surface is not None:
                sc = cfg.surface
                mcfg = replace(mcfg, large_triangle_ratio=sc.large_triangle_ratio, eps2d=sc.eps2d)
            if self.full_frame:
                mcfg = replace(
                    mcfg, backdrop_size=(int(capture.cameras.width[0]), int(capture.cameras.height[0]))
                )
            model = SplatHead(mcfg, head_for_capture(capture), background=self.bg.cpu())
            if self.full_frame:
                model.set_backdrop(self.median_background(), capture.cameras.viewmat[0], capture.cameras.K[0])
        self.model = model.to(self.device)
        self.flatten()
        # monocular: every triangle's colour as the training views show it, and how well they show it
        self.colour_prior: tuple[Tensor, Tensor] | None = None
        if self.monocular and (cfg.colour_init or cfg.loss.colour_prior_weight > 0):
            self.colour_prior = projected_colours(self, capture)
            if cfg.colour_init and fresh:
                self.model.init_colours(self.colour_prior[0])
            if self.surface is not None and self.surface.seen_colour_residual:
                self.model.set_colour_residual_gain(self.colour_prior[1])
        # monocular: triangles the video's masks call background are left out of the novel-view silhouette
        self.masked_out: Tensor | None = None
        if self.surface is not None and self.surface.novel_silhouette_weight > 0 and self.has_masks:
            self.masked_out = masked_out_triangles(self, capture)
        if self.model.deform is not None:  # the deformation net holds still outside the training expressions
            self.model.deform.set_expression_range(self.drive.expression[self.train_timesteps])
        # the background the fit renders over: None lets the backdrop's camera show the backdrop
        self.render_bg: Tensor | None = None if self.full_frame else self.bg
        self.strategy = cfg.strategy
        self.strategy_state: dict[str, Any] = self.strategy.initialize_state()
        self.eval_views = eval_views(capture, split, cfg.eval_views)  # the quick evaluation's fixed views

    # ---------------------------------------------------------------- data
    def target(self, frame: int) -> tuple[Tensor, Tensor | None]:
        """Frame's target image and mask (as :func:`nerfhead.engine.targets.target_image`; with the backdrop, the
        full frame as it is and its mask), from the frame store through the prefetching loader."""
        img, m = self.loader.get(frame)
        return img.to(self.device), (None if m is None else m.to(self.device))

    def training_views(self, max_frames: int) -> list[tuple[int, int]]:
        """Up to ``max_frames`` training (camera, timestep) pairs with a frame, evenly spread over the split."""
        views = [
            (c, t)
            for t in self.train_timesteps
            for c in self.train_cameras
            if self.capture.frame_index(c, t) is not None
        ]
        return views[:: max(1, -(-len(views) // max_frames))]

    def head_chroma(self, max_frames: int = 16) -> Tensor:
        """:func:`nerfhead.engine.chroma.head_like_bins` of up to ``max_frames`` training frames of camera 0."""
        frames = [f for t in self.train_timesteps if (f := self.capture.frame_index(0, t)) is not None]
        step = max(1, -(-len(frames) // max_frames))
        views = []
        for f in frames[::step]:
            m = self.store.mask(f)
            if m is not None:
                views.append((to_float(self.store.image(f)), torch.from_numpy(m > 127)))
        return head_like_bins(views)

    def edge_mask(self, img: np.ndarray, m: np.ndarray) -> Tensor:
        """Float mask [H, W] of a frame (uint8 image and mask), without the wall at its edge when
        ``monocular_wall_band`` is on (:func:`nerfhead.engine.chroma.refine_mask`)."""
        mf = to_float(m)
        if self.head_like is None:
            return mf
        keep = refine_mask(to_float(img), mf > 0.5, self.head_like, self.cfg.monocular_wall_band)
        return mf * keep

    @torch.no_grad()
    def median_background(self) -> Tensor:
        """[H, W, 3] per-pixel median of camera 0's training frames over the frames where the mask marks the
        pixel as background: the backdrop's first guess. Pixels that are never background (behind the head in
        every frame) start at the mean colour of the others, so the head is left to the Gaussians; without
        masks, the median of all frames."""
        frames = [f for t in self.train_timesteps if (f := self.capture.frame_index(0, t)) is not None]
        step = max(1, len(frames) // 32)  # at most ~32 frames
        pairs = [self.target(f) for f in frames[::step]]
        imgs = torch.stack([p[0].cpu() for p in pairs])  # [F, H, W, 3]
        med = imgs.median(dim=0).values
        if pairs[0][1] is None:
            return med
        bgm = torch.stack([p[1].cpu() for p in pairs]) < 0.5  # type: ignore[union-attr]  # [F, H, W, 1]
        masked = torch.where(bgm, imgs, torch.tensor(float("nan")))
        med_bg = masked.nanmedian(dim=0).values
        seen = bgm.any(0)  # [H, W, 1]
        if not bool(seen.any()):
            return med
        fill = med_bg[seen[..., 0]].mean(0)
        return torch.where(seen, med_bg, fill)

    def sh_degree_at(self, step: int) -> int:
        """SH degree in use at ``step`` (raised by one every ``sh_increase_every`` steps)."""
        return min(self.cfg.model.sh_degree, step // max(self.cfg.sh_increase_every, 1))

    # ------------------------------------------------------------ Trainable
    def make_optimizers(self) -> Optimizers:
        o = self.cfg.optim
        lrs = {"means": o.means, "quats": o.quats, "scales": o.scales, "opacities": o.opacities, "sh0": o.sh0}
        lrs["shN"] = o.shN
        opts: Optimizers = {
            k: torch.optim.Adam([{"params": [p], "lr": lrs[k], "name": k}], eps=1e-15)
            for k, p in self.model.splats.params.items()
        }
        if self.model.deform is not None:
            net = self.model.deform
            grid = list(net.grid.parameters())
            rest = [p for n, p in net.named_parameters() if not n.startswith("grid.")]
            opts["deform"] = torch.optim.Adam(
                [
                    {"params": grid, "lr": o.deform_grid, "name": "grid"},
                    {"params": rest, "lr": o.deform, "name": "mlp"},
                ],
                eps=1e-15,
            )
        if self.model.backdrop is not None:
            opts["backdrop"] = torch.optim.Adam(
                [{"params": [self.model.backdrop], "lr": o.backdrop, "name": "backdrop"}], eps=1e-15
            )
        return opts

    def set_learning_rates(self, step: int, optimizers: Optimizers) -> None:
        o = self.cfg.optim
        lr = log_lerp(o.means, o.means_final, progress(step, self.cfg.trainer.steps))
        for g in optimizers["means"].param_groups:
            g["lr"] = lr

    def draw_views(self, generator: torch.Generator) -> tuple[int, list[int]]:
        """A step's timestep and (up to ``cameras_per_step``) training cameras with a frame at it."""
        cap = self.capture
        t = self.train_timesteps[int(torch.randint(len(self.train_timesteps), (1,), generator=generator))]
        order = torch.randperm(len(self.train_cameras), generator=generator).tolist()
        cams = [self.train_cameras[i] for i in order if cap.frame_index(self.train_cameras[i], t) is not None]
        return t, cams[: self.cfg.cameras_per_step]

    def step_views(self, step: int, generator: torch.Generator) -> tuple[int, list[int]]:
        """This rank's views of step ``step``: its shard of the global draw when that has a view per rank, else
        (e.g. one view per step of a monocular video) a draw of its own from its rank-offset generator."""
        dist = current()
        t, cams = self.draw_views(generator)
        if dist.active:
            if len(cams) >= dist.world_size:
                cams = shard(cams, dist)
            elif dist.rank > 0:
                t, cams = self.draw_views(dist.generator(self.cfg.trainer.seed, step))
        return t, cams

    def training_loss(self, step: int, generator: torch.Generator) -> StepOutput:
        cap = self.capture
        t, cams = self.step_views(step, generator)
        if not cams:
            raise InputError(None, f"no training camera has a frame at timestep {t}")
        frames = [cap.frame_index(c, t) for c in cams]
        targets = [self.target(f) for f in frames]  # type: ignore[arg-type]
        gt = torch.stack([x[0] for x in targets])
        # monocular: the outline from a side the video never shows, drawn from the step's posed Gaussians
        novel, verts = None, None
        sc = self.surface
        if (
            sc is not None
            and sc.novel_silhouette_weight > 0
            and step % max(1, sc.novel_silhouette_every) == 0
        ):
            with torch.no_grad():
                verts = self.model.posed_vertices(self.drive[t])[0]
            novel = novel_camera(
                self.model,
                verts,
                self.cameras[cams[0]],
                self.drive[t],
                generator,
                sc.novel_max_yaw_deg,
                sc.novel_max_pitch_deg,
                sc.novel_max_size,
            )
        out, metas = self.model.render_views(
            self.cameras[torch.tensor(cams)],
            self.drive[t],
            self.render_bg,
            sh_degree=self.sh_degree_at(step),
            alpha_cameras=novel,
        )
        lc = self.cfg.loss
        photo = photometric_loss(out.rgb, gt, lc.ssim_weight)
        loss = photo
        scalars = {"photo": float(photo.detach())}
        if self.has_masks and lc.alpha_weight > 0:
            mask = torch.stack([x[1] for x in targets])  # type: ignore[misc]
            a = (out.alpha - mask).abs().mean()
            loss = loss + lc.alpha_weight * a
            scalars["alpha"] = float(a.detach())
            if self.full_frame and self.cfg.monocular_outside_weight > 0:  # head and backdrop kept apart
                loss = loss + self.cfg.monocular_outside_weight * (out.alpha * (1.0 - mask)).mean()
        if self.colour_prior is not None and lc.colour_prior_weight > 0:
            loss = loss + colour_prior_loss(
                self.model, *self.colour_prior, lc.colour_prior_weight, lc.unseen_opacity_weight
            )
        if novel is not None and verts is not None and sc is not None:
            sil = silhouette_l1(self.model, verts, novel, metas[0]["alpha_views"][0], self.masked_out)
            loss = loss + sc.novel_silhouette_weight * max(1, sc.novel_silhouette_every) * sil
            scalars["novel_silhouette"] = float(sil.detach())
        reg = self.model.regularizers(lc.position_threshold, lc.scale_threshold)
        loss = loss + lc.position_weight * reg["position"] + lc.scale_weight * reg["scale"]
        if self.surface is not None and self.surface.opacity_weight > 0:  # the skin opaque, as a surface is
            loss = loss + self.surface.opacity_weight * self.model.transparency()
        off = metas[0].get("offsets")
        if off is not None and lc.offset_weight > 0:
            loss = loss + lc.offset_weight * (off**2).sum(-1).mean()
        scalars["psnr"] = psnr(out.rgb.detach().clamp(0, 1), gt)
        scalars["gaussians"] = float(len(self.model.splats))
        _, k = self.model.canonical_positions()
        info = dict(metas[0])
        info.update({"scale_factor": k, "seed": self.cfg.trainer.seed})
        if current().active:  # densify from the statistics of every rank's views
            info["reduce"] = current().all_reduce_sum
        return StepOutput(loss=loss, scalars=scalars, aux={"info": info})

    def before_backward(self, step: int, optimizers: Optimizers, out: StepOutput) -> None:
        self.strategy.step_pre_backward(
            self.model.splats, optimizers, self.strategy_state, step, out.aux["info"]
        )
        if self.surface is not None and self.surface.seen_colour_steps and self.colour_prior is not None:
            self._sh0_before = self.model.splats.params["sh0"].detach().clone()

    def after_step(self, step: int, optimizers: Optimizers, out: StepOutput) -> None:
        before = self.__dict__.pop("_sh0_before", None)
        if before is not None and self.colour_prior is not None:  # colour steps as large as the views' look
            sh0 = self.model.splats.params["sh0"]
            gain = self.colour_prior[1][self.model.splats.binding][:, None, None]
            with torch.no_grad():
                sh0.copy_(before + gain * (sh0 - before))
        self.strategy.step_post_backward(
            self.model.splats, optimizers, self.strategy_state, step + 1, out.aux["info"]
        )
        self.flatten()
        if step + 1 < self.cfg.trainer.steps:  # the next step's views load while this one finishes
            t, cams = self.step_views(step + 1, step_generator(self.cfg.trainer.seed, step + 1))
            self.loader.prefetch(f for c in cams if (f := self.capture.frame_index(c, t)) is not None)

    def flatten(self) -> None:
        """Monocular captures: project the Gaussians onto thin discs on their triangles (:class:`SurfaceConfig`)."""
        if self.surface is not None:
            s = self.surface
            self.model.flatten_onto_surface(s.max_offset, s.max_normal_scale, s.max_scale, s.min_scale)

    def state_tensors(self) -> dict[str, Tensor]:
        out = with_prefix(MODEL_PREFIX, self.model.state_dict())
        out.update(with_prefix(STRATEGY_PREFIX, strategy_state_tensors(self.strategy_state)))
        return out

    def load_state_tensors(self, tensors: Mapping[str, Tensor]) -> None:
        self.model.load_state_dict(strip_prefix(MODEL_PREFIX, tensors))
        self.model.to(self.device)
        self.strategy_state = self.strategy.initialize_state()
        state = strip_prefix(STRATEGY_PREFIX, tensors)
        load_strategy_state(self.strategy_state, {k: v.to(self.device) for k, v in state.items()})

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        def view(c: int, t: int) -> tuple[Tensor, Tensor]:
            out = self.model.render(self.cameras[c], self.drive[t], self.render_bg)
            return out.rgb[0], self.target(self.capture.frame_index(c, t))[0]  # type: ignore[arg-type]

        return heldout_psnr(self.eval_views, view)

    def avatar_spec(self) -> dict[str, Any]:
        return avatar_spec(KIND, self.model.cfg, self.cfg, self.split, self.bg, full_frame=self.full_frame)


def make_task(capture: Capture, cfg: SplatFitConfig, device: str | torch.device = "cpu") -> SplatFit:
    """The training task for ``capture`` (the entry point ``nerfhead fit`` uses for every model)."""
    return SplatFit(capture, cfg, device)
