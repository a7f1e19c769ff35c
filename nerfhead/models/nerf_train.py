"""Training the nerf head on a capture: the fit config, its presets and the task the engine's loop runs.

Each step draws ``n_rays`` random pixels over all training (camera, timestep) images (from the step's generator
only), marches them through the occupancy grid in their timestep's head frame, composites over the capture's
background and minimises the squared colour error plus, with masks, an alpha loss (the rendered opacity against
the mask). The occupancy grid is updated every ``occupancy_every`` steps after ``occupancy_start`` from the
density at a random training timestep.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from nerfhead.components.occupancy_grid import OccupancyGrid
from nerfhead.data.capture import Capture
from nerfhead.data.framestore import FrameStore, to_float
from nerfhead.data.split import SplitPolicy
from nerfhead.engine.config import TrainerConfig
from nerfhead.engine.distributed import current
from nerfhead.engine.targets import capture_background, composite_target, images_over_background
from nerfhead.engine.trainer import Optimizers, StepOutput, step_generator
from nerfhead.errors import InputError
from nerfhead.fields.deformation import DeformationConfig
from nerfhead.fields.ensemble import EnsembleConfig
from nerfhead.models import fit_task
from nerfhead.models.fit_task import MODEL_PREFIX
from nerfhead.models.nerf_head import KIND, NerfHead, NerfHeadConfig


@dataclass(frozen=True)
class NerfOptimConfig:
    """Adam learning rates (decayed exponentially to ``final_factor`` times their value at the last step)."""

    grids: float = 1e-2
    """Hash-ensemble tables."""
    mlp: float = 1e-2
    """Density, colour and blend MLPs."""
    deform_grid: float = 2e-3
    """Deformation hash table."""
    deform_mlp: float = 1e-3
    """Deformation MLP."""
    final_factor: float = 0.1
    """Learning rates at the last step relative to the start."""


@dataclass(frozen=True)
class NerfLossConfig:
    """Loss weights."""

    alpha_weight: float = 0.1
    """Squared error between rendered opacity and the capture's mask (when it has masks)."""


@dataclass(frozen=True)
class NerfFitConfig:
    """Everything ``nerfhead fit --model nerf`` uses."""

    model: NerfHeadConfig = field(default_factory=NerfHeadConfig)
    optim: NerfOptimConfig = field(default_factory=NerfOptimConfig)
    loss: NerfLossConfig = field(default_factory=NerfLossConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    n_rays: int = 2048
    """Rays per step (over all training images)."""
    fit_aabb: bool = True
    """Set ``model.aabb`` from the capture's parametric head (neutral mesh plus ``aabb_padding``)."""
    aabb_padding: float = 0.12
    """Padding of the fitted box, as a fraction of its size per side."""
    occupancy_start: int = 100
    """First occupancy-grid update (before it every cell counts as occupied)."""
    occupancy_every: int = 16
    """Steps between occupancy-grid updates."""
    occupancy_warmup: int = 400
    """Until this step an update evaluates every cell; later a random quarter plus the occupied ones."""
    occupancy_prior: float = 0.03
    """Only cells within this distance (metres) of the capture's parametric head surface (at any drive timestep)
    may be occupied: early steps march through the head's shell only, and no fog grows outside it. Leave room for
    hair and clothing the parametric head does not have; 0: no prior."""
    eval_views: int = 4
    """Held-out (camera, timestep) pairs in the quick evaluation during training."""
    split: SplitPolicy = field(default_factory=SplitPolicy)
    """How a monocular capture (one frame per timestep, no stored split) is split by time, as the splat head
    does (:meth:`nerfhead.data.capture.Capture.split`)."""


def _default() -> NerfFitConfig:
    """The CPU default: a 16-camera 128x128 rig capture reaches ~29 dB on held-out cameras within a few hundred
    steps; 2000 steps (capped at 11 minutes of training, so fit + final evaluation stay within 15 minutes on 2
    cores) go further."""
    return NerfFitConfig(
        model=NerfHeadConfig(
            ensemble=EnsembleConfig(n_grids=4, n_levels=12, log2_hashmap_size=16, finest_resolution=512),
            chunk=4096,
        ),
        trainer=TrainerConfig(steps=2000, max_minutes=11.0, eval_every=500, checkpoint_every=500),
    )


def _fast() -> NerfFitConfig:
    """A few dozen steps of a small model (smoke tests)."""
    return NerfFitConfig(
        model=NerfHeadConfig(
            deformation=DeformationConfig(n_levels=4, log2_hashmap_size=10, finest_resolution=32, hidden=16),
            ensemble=EnsembleConfig(
                n_grids=2, n_levels=6, log2_hashmap_size=12, finest_resolution=96, hidden=32, sh_degree=1
            ),
            occupancy_resolution=16,
            render_steps=64,
        ),
        trainer=TrainerConfig(steps=60, eval_every=0, checkpoint_every=30, log_every=10, progress=False),
        n_rays=256,
        occupancy_start=30,
        occupancy_every=10,
        occupancy_warmup=60,
        occupancy_prior=0.0,
        eval_views=2,
    )


def _quality() -> NerfFitConfig:
    """A longer schedule for a GPU (NeRSemble-like ensemble of 16 grids)."""
    return NerfFitConfig(
        model=NerfHeadConfig(
            ensemble=EnsembleConfig(n_grids=16, n_levels=16, log2_hashmap_size=19, finest_resolution=2048),
            occupancy_resolution=128,
            render_steps=512,
        ),
        trainer=TrainerConfig(steps=30_000, eval_every=2000, checkpoint_every=2000),
        n_rays=8192,
        occupancy_warmup=1000,
    )


PRESETS = {"default": _default, "fast": _fast, "quality": _quality}
"""Fit presets by name."""


def head_box(capture: Capture, padding: float) -> tuple[float, ...]:
    """Head-frame box (metres) around the capture's parametric neutral head, padded by ``padding`` per side."""
    from nerfhead.models.splat_train import head_for_capture

    v = head_for_capture(capture).neutral.detach().float()
    lo, hi = v.min(0).values, v.max(0).values
    pad = padding * (hi - lo)
    return tuple(float(x) for x in torch.cat([lo - pad, hi + pad]))


@torch.no_grad()
def surface_occupancy(
    capture: Capture, grid: OccupancyGrid, margin: float, max_timesteps: int = 16
) -> Tensor:
    """[C, R, R, R] bool: the grid's cells within about ``margin`` metres of the capture's parametric head surface
    (head frame) at up to ``max_timesteps`` drive timesteps spread over the capture (vertices and triangle centres,
    dilated by ``margin``)."""
    from nerfhead.models.splat_train import head_for_capture

    head = head_for_capture(capture)
    assert capture.drive is not None
    T = len(capture.drive)
    ts = torch.linspace(0, T - 1, min(T, max_timesteps)).round().long()
    verts = head.canonical(capture.drive.expression[ts].float())  # [t, V, 3] head frame
    faces = head.faces[head.render_face_mask]
    pts = torch.cat([verts, verts[:, faces].mean(2)], 1).reshape(-1, 3)
    r, c = grid.resolution, grid.n_cascades
    occ = torch.zeros(c, r, r, r, dtype=torch.bool)
    for k in range(c):
        box = grid.cascade_aabb(k).cpu()
        cell = (box[3:] - box[:3]) / r
        ijk = ((pts - box[:3]) / cell).floor().long()
        ok = ((ijk >= 0) & (ijk < r)).all(-1)
        ijk = ijk[ok]
        hit = torch.zeros(r, r, r)
        hit[ijk[:, 0], ijk[:, 1], ijk[:, 2]] = 1.0
        rad = max(int(math.ceil(margin / float(cell.min()))), 0)
        pool = torch.nn.functional.max_pool3d
        for axis in range(3 if rad > 0 else 0):  # a cube of side 2 rad + 1 cells, one axis at a time
            size, pad = [1, 1, 1], [0, 0, 0]
            size[axis], pad[axis] = 2 * rad + 1, rad
            hit = pool(hit[None, None], tuple(size), stride=1, padding=tuple(pad))[0, 0]
        occ[k] = hit > 0
    return occ


class NerfFit:
    """The nerf head's training task (a :class:`nerfhead.engine.trainer.Trainable`).

    Args:
        capture: the capture (with a drive); its ``train_cameras`` train, its ``test_cameras`` evaluate.
        cfg: fit settings.
        device: where to train.
    """

    def __init__(
        self, capture: Capture, cfg: NerfFitConfig = NerfFitConfig(), device: str | torch.device = "cpu"
    ):
        if capture.drive is None:
            raise InputError(
                None, "the capture has no drive", hint="track the capture first (nerfhead track)"
            )
        cams = capture.cameras
        if bool((cams.width != cams.width[0]).any()) or bool((cams.height != cams.height[0]).any()):
            raise InputError(
                None, "the nerf head trains on cameras of one image size", hint="resize the capture"
            )
        if cfg.fit_aabb:
            cfg = replace(cfg, model=replace(cfg.model, aabb=head_box(capture, cfg.aabb_padding)))
        self.capture, self.cfg, self.device = capture, cfg, torch.device(device)
        split = self.split = capture.split(cfg.split)
        self.split_policy = split.policy
        self.train_cameras, self.test_cameras = split.train_cameras, split.test_cameras
        self.train_timesteps, self.test_timesteps = split.train_timesteps, split.test_timesteps
        self.drive = capture.drive.to(self.device, torch.float32)
        self.cameras = cams.to(self.device, torch.float32)
        self.bg = torch.tensor(capture_background(capture), dtype=torch.float32, device=self.device)
        occ = cfg.model.occupancy(
            warmup_steps=cfg.occupancy_warmup, update_every=cfg.occupancy_every, ema_decay=0.95
        )
        self.model = NerfHead(cfg.model, background=self.bg.cpu(), occupancy=occ).to(self.device)
        self.prior: Tensor | None = None
        if cfg.occupancy_prior > 0:
            self.prior = surface_occupancy(capture, self.model.grid, cfg.occupancy_prior).to(self.device)
            self.model.grid.set_binary(self.prior)
        # training pixels are read ray by ray from the capture's uint8 frame store (memory flat in its length)
        train, train_t = set(self.train_cameras), set(self.train_timesteps)
        self.frames = [i for i, f in enumerate(capture.frames) if f.camera in train and f.timestep in train_t]
        if not self.frames:
            raise InputError(None, "the capture has no training frames")
        self.store = FrameStore.open(capture)
        self.store_frame = torch.tensor(self.frames)
        self.use_masks = all(capture.frames[i].mask_path is not None for i in self.frames)
        self.composite = self.use_masks and not images_over_background(capture)
        self.frame_camera = torch.tensor([capture.frames[i].camera for i in self.frames], device=self.device)
        self.frame_time = torch.tensor([capture.frames[i].timestep for i in self.frames], device=self.device)
        self.h, self.w = int(cams.height[0]), int(cams.width[0])
        self.cond = self.model.conditioning(self.drive)
        self.eval_views = fit_task.eval_views(
            capture, split, cfg.eval_views
        )  # the quick evaluation's fixed views

    # ------------------------------------------------------------ Trainable
    def make_optimizers(self) -> Optimizers:
        o, m = self.cfg.optim, self.model
        grids = [p for g in m.ensemble.grids for p in g.parameters()]
        mlps = [p for n, p in m.ensemble.named_parameters() if not n.startswith("grids.")]
        dgrid = list(m.deformation.grid.parameters())
        dmlp = [p for n, p in m.deformation.named_parameters() if not n.startswith("grid.")]
        groups = [
            {"params": grids, "lr": o.grids, "name": "grids", "base_lr": o.grids},
            {"params": mlps, "lr": o.mlp, "name": "mlp", "base_lr": o.mlp},
            {"params": dgrid, "lr": o.deform_grid, "name": "deform_grid", "base_lr": o.deform_grid},
            {"params": dmlp, "lr": o.deform_mlp, "name": "deform_mlp", "base_lr": o.deform_mlp},
        ]
        return {"nerf": torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15)}

    def set_learning_rates(self, step: int, optimizers: Optimizers) -> None:
        factor = fit_task.log_lerp(
            1.0, self.cfg.optim.final_factor, fit_task.progress(step, self.cfg.trainer.steps)
        )
        for g in optimizers["nerf"].param_groups:
            g["lr"] = g["base_lr"] * factor

    def training_loss(self, step: int, generator: torch.Generator) -> StepOutput:
        hw = self.h * self.w
        gen = generator
        idx = torch.randint(len(self.frames) * hw, (self.cfg.n_rays,), generator=gen)
        dist = current()
        if dist.active:  # this rank's share of the global rays; its own jitter along them
            idx = idx[dist.rank :: dist.world_size]
            gen = dist.generator(self.cfg.trainer.seed, step)
        idx = idx.to(self.device)
        f, p = idx // hw, idx % hw
        pix = torch.stack([(p % self.w).float() + 0.5, (p // self.w).float() + 0.5], -1)
        cam, t = self.frame_camera[f], self.frame_time[f]
        o_w, d_w = self.cameras.generate_rays(cam, pix)
        o, d = self.model.to_head(o_w, d_w, self.drive.rotation[t], self.drive.translation[t])
        rgb, a, _, n_samples = self.model.render_rays(o, d, t, self.cond, stratified=True, generator=gen)
        rgb = rgb + (1 - a) * self.bg
        gt, mask = self.ray_targets(f, p)
        mse = ((rgb - gt) ** 2).mean()
        loss = mse
        scalars = {"mse": float(mse.detach()), "psnr": -10.0 * math.log10(max(float(mse.detach()), 1e-10))}
        if mask is not None and self.cfg.loss.alpha_weight > 0:
            am = ((a[:, 0] - mask) ** 2).mean()
            loss = loss + self.cfg.loss.alpha_weight * am
            scalars["alpha"] = float(am.detach())
        scalars["samples_per_ray"] = n_samples / max(self.cfg.n_rays, 1)
        return StepOutput(loss=loss, scalars=scalars)

    def ray_targets(self, f: Tensor, p: Tensor) -> tuple[Tensor, Tensor | None]:
        """Colours [N, 3] (over the background where there are masks) and masks [N] (or None) of pixels ``p`` of
        training frames ``f``, read from the frame store."""
        rgb, m = self.store.pixels(self.store_frame[f.cpu()], p.cpu())
        gt = rgb.float().div_(255.0).to(self.device)
        if m is None or not self.use_masks:
            return gt, None
        mask = m.float().div_(255.0).to(self.device)
        if self.composite:
            gt = gt * mask[:, None] + self.bg * (1 - mask[:, None])
        return gt, mask

    def before_backward(self, step: int, optimizers: Optimizers, out: StepOutput) -> None:
        return None

    def after_step(self, step: int, optimizers: Optimizers, out: StepOutput) -> None:
        s = step + 1
        if s < self.cfg.occupancy_start or s % max(self.cfg.occupancy_every, 1):
            return
        gen = step_generator(self.cfg.trainer.seed + 7_777, s, self.device)
        t = int(torch.randint(self.cond.shape[0], (1,), generator=gen, device=self.device))
        cond, dt = self.cond[t : t + 1], self.model.march.step_size
        grid = self.model.grid
        grid.update(s, lambda x: self.model.density(x, cond) * dt, generator=gen, force=True)
        if self.prior is not None:
            grid.set_binary(grid.binary & self.prior)
        current().broadcast(*grid.buffers())  # every rank marches the grid rank 0 decided

    def state_tensors(self) -> dict[str, Tensor]:
        return fit_task.with_prefix(MODEL_PREFIX, self.model.state_dict())

    def load_state_tensors(self, tensors: Mapping[str, Tensor]) -> None:
        self.model.load_state_dict(fit_task.strip_prefix(MODEL_PREFIX, tensors))
        self.model.to(self.device)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        def view(c: int, t: int) -> tuple[Tensor, Tensor]:
            out = self.model.render(self.cameras[c], self.drive[t], self.bg)
            f = self.capture.frame_index(c, t)
            img, m = self.store.image(f), self.store.mask(f)  # type: ignore[arg-type]
            gt, _ = composite_target(
                self.capture, to_float(img), None if m is None else to_float(m), self.bg.cpu()
            )
            return out.rgb[0], gt.to(self.device)

        return fit_task.heldout_psnr(self.eval_views, view)

    def avatar_spec(self) -> dict[str, Any]:
        return fit_task.avatar_spec(KIND, self.cfg.model, self.cfg, self.split, self.bg)


def make_task(capture: Capture, cfg: NerfFitConfig, device: str | torch.device = "cpu") -> NerfFit:
    """The training task for ``capture`` (the entry point ``nerfhead fit`` uses for every model)."""
    return NerfFit(capture, cfg, device)
