"""Fit the ICT-FaceKit head to 2D landmarks of a whole sequence: one identity, per-frame expression and pose.

Unknowns (torch, CPU-friendly, all frames at once):

* identity ``beta`` [10], shared by the sequence (Gaussian prior);
* expression [T, 53], kept in [0, 1] by projected Adam (clamped after every step), with an L1 prior;
* head pose [T, 3] axis-angle + [T, 3] translation (head to world, metres), with first-difference smoothing;
* for a monocular video, the focal length of the one camera (log-parametrised, weak prior towards the guess);
  calibrated multi-view cameras stay fixed and are fitted jointly.

The data term is a Geman-McClure-robustified 2D distance between each MediaPipe landmark and its
:class:`~nerfhead.track.correspondence.Correspondence` point on the posed mesh, projected by each camera
(distortion included), measured in units of 1 % of the face size so the weights do not depend on the
resolution. The model is evaluated only at the landmarks (the barycentric blends are folded into
per-landmark bases), so one Adam step over 75 frames costs about 10 ms on this project's 2-core CPU.

Stages (Adam, cosine-decayed step sizes after the first):

1. rigid: pose (and focal) with a wide robust kernel, expressions at 0;
2. everything: pose, expression, identity;
3. pose fixed: per-landmark static offsets (canonical frame, L2 prior, rigid and scale components projected
   out) absorb what the 10 identity modes cannot express of the person (and MediaPipe's static bias on that
   face), with expression and identity. Without this stage constant shape errors leak into the expressions
   (e.g. a constant ``mouthShrugUpper`` of 0.5-1.0 on the rigged test head); fitting them together with the
   pose instead leaves the pose a near-free direction (1.4 degrees of error on exact synthetic data).

Measured on the rigged head (tests/track/test_track_rig.py): 4 calibrated cameras give 1.2 degrees mean pose
error and jawOpen correlation 0.97; a single video camera gives 3.4 degrees (MediaPipe's landmarks under-read
the head's pitch by about a quarter, which no fixed correspondence can undo) and jawOpen correlation 0.89,
2.5 degrees and 0.98 after :func:`nerfhead.track.photometric.refine_photometric`.

Initial pose: with two or more calibrated views the landmarks are triangulated (DLT) and the neutral
landmarks aligned to them (Kabsch); a monocular head starts frontal at the depth its landmark spread implies.

World frame of a monocular fit (:func:`mono_camera`): the camera sits at ``(0, 0, D)`` looking down -z with +y
up, D the median initial head distance, so a frontal head at the origin has identity pose.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from nerfhead.data.cameras import Cameras
from nerfhead.data.drive import Drive
from nerfhead.geometry import matrix_to_axis_angle
from nerfhead.parametric.ict import ICTHead
from nerfhead.track.correspondence import Correspondence
from nerfhead.track.projection import (
    face_size,
    frontal_spread,
    head_to_camera,
    kabsch,
    mono_camera,
    normalized_coords,
    to_pixels,
    triangulate,
)


@dataclass(frozen=True)
class TrackFitConfig:
    """Optimisation schedule and loss weights of :func:`fit_sequence`."""

    rigid_iters: int = 150
    """Adam steps on pose (and focal) alone."""
    full_iters: int = 400
    """Adam steps on everything."""
    lr_rotation: float = 0.01
    """Adam step size of the axis-angle rotation (radians)."""
    lr_translation: float = 0.004
    """Adam step size of the translation (metres)."""
    lr_expression: float = 0.02
    """Adam step size of the expression coefficients."""
    lr_identity: float = 0.05
    """Adam step size of the identity coefficients."""
    lr_focal: float = 0.01
    """Adam step size of log(focal) (monocular)."""
    robust_scale: float = 4.0
    """Geman-McClure scale c, in units of 1 % of the face size (full stage; the rigid stage uses 5 c)."""
    w_identity: float = 0.02
    """Weight of sum(beta^2)."""
    w_expression_l1: float = 0.05
    """Weight of the mean per-frame sum of expression coefficients (sparsity)."""
    w_expression_smooth: float = 2.0
    """Weight of the mean squared frame-to-frame change of the expression coefficients."""
    w_rotation_smooth: float = 50.0
    """Weight of the mean squared frame-to-frame change of the rotation (radians)."""
    w_translation_smooth: float = 5000.0
    """Weight of the mean squared frame-to-frame change of the translation (metres)."""
    w_focal: float = 0.5
    """Weight of (log f - log f0)^2 (monocular)."""
    offset_iters: int = 150
    """Adam steps of the last stage: pose fixed, per-landmark offsets + expression + identity."""
    w_landmark_offset: float = 0.1
    """Weight of the mean squared per-landmark offset (mm^2) in the last stage; 0 skips that stage."""
    lr_landmark_offset: float = 0.0005
    """Adam step size of the per-landmark offsets (metres)."""
    fit_identity: bool = True
    """Fit the identity coefficients (False keeps ``beta = 0``, or the given one)."""
    fit_focal: bool = True
    """Fit the focal length of a monocular camera."""


@dataclass(frozen=True)
class Observations:
    """N observations (one camera image each) of the correspondence's M landmarks over T timesteps.

    Attributes:
        points: [N, M, 2] continuous pixel coordinates.
        camera: [N] int64 index into ``cameras``.
        timestep: [N] int64 in 0..T-1.
        cameras: the cameras (for a focal fit, their K is the initial guess).
        num_timesteps: T (timesteps without an observation are held by the smoothness terms).
        fps: frame rate of the sequence.
    """

    points: Tensor
    camera: Tensor
    timestep: Tensor
    cameras: Cameras
    num_timesteps: int
    fps: float

    def __len__(self) -> int:
        return int(self.points.shape[0])


@dataclass(frozen=True)
class TrackFitResult:
    """What :func:`fit_sequence` found.

    Attributes:
        drive: per-timestep pose and expression (float32, CPU).
        identity: [10] identity coefficients.
        cameras: the cameras (with the fitted focal when it was fitted; a monocular video's camera placed by
            :func:`mono_camera`).
        reprojection_px: [N] weighted mean landmark distance in pixels per observation.
        loss: final total loss.
        landmark_offset: [M, 3] per-landmark canonical offsets of the last stage (metres; zeros without it).
    """

    drive: Drive
    identity: Tensor
    cameras: Cameras
    reprojection_px: Tensor
    loss: float
    landmark_offset: Tensor | None = None


class LandmarkModel(nn.Module):
    """The ICT head evaluated only at the correspondence's surface points.

    A landmark is a fixed barycentric blend of three vertices and the head is linear in its coefficients, so
    the blend is folded into per-landmark bases once: ``points = neutral + e @ expr_basis + beta @ id_basis``
    (the table's canonical offsets are part of ``neutral``).

    Args:
        head: the ICT model (its current ``neutral``, e.g. a baked person, is used).
        corr: landmark -> triangle table.
    """

    neutral: Tensor
    expr_basis: Tensor
    id_basis: Tensor

    def __init__(self, head: ICTHead, corr: Correspondence):
        super().__init__()
        vid = torch.from_numpy(corr.vertex_ids(head.faces))  # [M, 3]
        w = torch.from_numpy(corr.bary)[..., None]  # [M, 3, 1]

        def blend(x: Tensor) -> Tensor:  # [..., V, 3] -> [..., M * 3]
            out = (x[..., vid, :] * w).sum(-2)
            return out.reshape(*x.shape[:-2], -1).contiguous()

        offset = torch.from_numpy(corr.offsets).reshape(-1)  # canonical offsets ride with the head pose
        self.register_buffer("neutral", blend(head.neutral) + offset, persistent=False)
        self.register_buffer("expr_basis", blend(head.expr_basis), persistent=False)
        self.register_buffer("id_basis", blend(head.id_basis), persistent=False)

    def forward(self, expression: Tensor, identity: Tensor | None = None) -> Tensor:
        """Canonical landmark points [T, M, 3] (metres) for expression [T, 53] and identity [10]."""
        v = self.neutral[None] + expression @ self.expr_basis
        if identity is not None:
            v = v + (identity @ self.id_basis)[None]
        return v.view(v.shape[0], -1, 3)


class LandmarkTerm:
    """The robust 2D landmark data term of a set of observations.

    Residuals are measured in units of 1 % of each observation's face size (resolution independent) and
    robustified with Geman-McClure of scale ``c``: ``c^2 r^2 / (r^2 + c^2)``. Landmarks are weighted by the
    correspondence weights; every timestep weighs 1 however many cameras saw it.

    Args:
        obs: the observations.
        weight: [M] landmark weights.
    """

    def __init__(self, obs: Observations, weight: Tensor):
        dt = weight.dtype
        T = obs.num_timesteps
        self.pts = obs.points.to(dt)
        self.camera, self.timestep = obs.camera, obs.timestep
        cams = obs.cameras
        self.viewmat = cams.viewmat.to(dt)[self.camera]
        self.dist = None if cams.dist is None else cams.dist.to(dt)[self.camera]
        self.unit = face_size(self.pts) / 100.0  # [N] pixels per 1 % of the face size
        count = torch.bincount(self.timestep, minlength=T)
        self.obs_w = 1.0 / count.clamp_min(1).to(dt)[self.timestep]
        self.seen = float((count > 0).sum())
        self.weight = weight
        self.wsum = weight.sum()

    def pixels(
        self, canon: Tensor, rotation: Tensor, translation: Tensor, K: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Projected landmarks [N, M, 2] and depths [N, M] of canonical points [T, M, 3] posed per timestep,
        with intrinsics K [C, 3, 3] of the cameras."""
        pc = head_to_camera(canon, rotation, translation, self.viewmat, self.timestep)
        return to_pixels(K[self.camera], self.dist, pc)

    def __call__(self, canon: Tensor, rotation: Tensor, translation: Tensor, K: Tensor, c: float) -> Tensor:
        """Scalar loss (mean over seen timesteps)."""
        uv, z = self.pixels(canon, rotation, translation, K)
        r2 = ((uv - self.pts) ** 2).sum(-1) / self.unit[:, None] ** 2  # [N, M]
        rho = c * c * r2 / (r2 + c * c)
        rho = torch.where(z > 0, rho, torch.full_like(rho, c * c))
        return ((rho * self.weight).sum(-1) / self.wsum * self.obs_w).sum() / self.seen

    def reprojection_px(self, canon: Tensor, rotation: Tensor, translation: Tensor, K: Tensor) -> Tensor:
        """[N] weighted mean landmark distance in pixels per observation."""
        uv, _ = self.pixels(canon, rotation, translation, K)
        err = ((uv - self.pts) ** 2).sum(-1).sqrt()
        return (err * self.weight).sum(-1) / self.wsum


def smoothness(x: Tensor) -> Tensor:
    """Mean squared frame-to-frame change of [T, D] (summed over D); 0 for T = 1."""
    return ((x[1:] - x[:-1]) ** 2).sum(-1).mean() if x.shape[0] > 1 else x.new_zeros(())


def monocular_observations(
    points: Tensor, width: int, height: int, fps: float, head: ICTHead, corr: Correspondence, focal: float
) -> Observations:
    """Observations of one uncalibrated video camera (one observation per frame).

    The camera is :func:`mono_camera` at the median head distance implied by ``focal`` and the landmark spread.

    Args:
        points: [T, M, 2] landmarks of every frame (missing frames already filled in).
        width, height: frame size.
        fps: frame rate.
        head, corr: the model (for the 3D landmark spread).
        focal: focal length guess in pixels.
    """
    with torch.no_grad():
        canon = LandmarkModel(head, corr)(torch.zeros(1, 53))[0]
    size3d = float(frontal_spread(canon))
    D = float((focal * size3d / face_size(points.double())).median())
    T = points.shape[0]
    zeros = torch.zeros(T, dtype=torch.int64)
    return Observations(points, zeros, torch.arange(T), mono_camera(width, height, focal, D), T, fps)


def _interp_fill(x: Tensor, ok: Tensor) -> Tensor:
    """Fill rows of [T, ...] where ``ok`` is False by linear interpolation in t (held at the ends)."""
    if bool(ok.all()) or not bool(ok.any()):
        return x
    t = np.arange(x.shape[0])
    good = t[ok.cpu().numpy()]
    flat = x.reshape(x.shape[0], -1).cpu().double().numpy()
    out = np.stack([np.interp(t, good, flat[good, j]) for j in range(flat.shape[1])], 1)
    return torch.as_tensor(out, dtype=x.dtype).reshape(x.shape)


def initial_pose(obs: Observations, canon: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """Per-timestep rotation [T, 3] and translation [T, 3] (float64) before the fit.

    Timesteps seen twice or more: Kabsch of the neutral landmarks ``canon`` [M, 3] onto the triangulated ones
    (weights [M]). Timesteps seen once: the head faces that camera, at the depth its landmark spread implies.
    Unseen timesteps: interpolated.
    """
    T = obs.num_timesteps
    canon = canon.double()
    X, ok = triangulate(obs.cameras, obs.points, obs.camera, obs.timestep, obs.num_timesteps)
    R, t = kabsch(canon, X, weight.double())
    rot, trans = matrix_to_axis_angle(R), t
    # single-view guess from the observation with the largest face at each timestep
    size2d = face_size(obs.points.double())
    best = torch.full((T,), -1, dtype=torch.int64)
    best_size = torch.zeros(T, dtype=torch.float64)
    for i in range(len(obs)):
        ti = int(obs.timestep[i])
        if size2d[i] > best_size[ti]:
            best_size[ti], best[ti] = size2d[i], i
    single = (~ok) & (best >= 0)
    if bool(single.any()):
        idx = best[single]
        cam = obs.camera[idx]
        K = obs.cameras.K.double()[cam]
        V = obs.cameras.viewmat.double()[cam]
        size3d = frontal_spread(canon)
        depth = K[:, 0, 0] * size3d / size2d[idx]
        xy = normalized_coords(obs.cameras, cam, obs.points[idx].mean(1, keepdim=True))[:, 0]
        pc = torch.cat([xy * depth[:, None], depth[:, None]], -1)
        Rc2w = V[:, :3, :3].transpose(1, 2)
        Rw = Rc2w @ torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))
        pw = (Rc2w @ (pc - V[:, :3, 3])[..., None])[..., 0]
        rot[single] = matrix_to_axis_angle(Rw)
        trans[single] = pw - (Rw @ canon.mean(0))
    seen = ok | single
    return _interp_fill(rot, seen), _interp_fill(trans, seen)


def _rigid_modes(points: Tensor) -> Tensor:
    """[M * 3, 7] orthonormal basis of the infinitesimal translations, rotations (about the centroid) and the
    uniform scaling of points [M, 3]."""
    p = points - points.mean(0)
    M = p.shape[0]
    eye = torch.eye(3, dtype=p.dtype)
    modes = [eye[k].expand(M, 3) for k in range(3)]
    modes += [torch.linalg.cross(eye[k].expand(M, 3), p, dim=-1) for k in range(3)]
    modes.append(p)
    Q, _ = torch.linalg.qr(torch.stack([m.reshape(-1) for m in modes], 1))
    return Q


def fit_sequence(
    obs: Observations,
    head: ICTHead,
    corr: Correspondence,
    config: TrackFitConfig | None = None,
    fit_focal: bool = False,
    identity: Tensor | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> TrackFitResult:
    """Fit identity, per-timestep expression and pose (and optionally a shared focal scale) to landmarks.

    Args:
        obs: landmarks of the correspondence's M points.
        head: the ICT model.
        corr: its correspondence table (rows match ``obs.points``' M axis).
        config: schedule and weights.
        fit_focal: scale every camera's focal length by one fitted factor (an uncalibrated video camera).
        identity: [10] initial identity (kept fixed when ``config.fit_identity`` is False).
        progress: called as ``progress(step, total_steps, loss)`` every 10 steps.

    Returns:
        :class:`TrackFitResult`.
    """
    config = config or TrackFitConfig()
    fit_focal = fit_focal and config.fit_focal
    dt = torch.float32
    model = LandmarkModel(head, corr).to(dt)
    pts = obs.points.to(dt)
    T = obs.num_timesteps
    weight = torch.as_tensor(corr.weight, dtype=dt)
    with torch.no_grad():
        canon = model(torch.zeros(1, 53, dtype=dt))[0]
    strong = torch.where(weight >= 0.9, weight, torch.zeros_like(weight))
    rot0, trans0 = initial_pose(obs, canon, strong)

    rotation = nn.Parameter(rot0.to(dt))
    translation = nn.Parameter(trans0.to(dt))
    expression = nn.Parameter(torch.zeros(T, 53, dtype=dt))
    beta = nn.Parameter(torch.zeros(10, dtype=dt) if identity is None else identity.to(dt).clone())
    offset_raw = nn.Parameter(torch.zeros(pts.shape[1], 3, dtype=dt))
    rigid = _rigid_modes(canon)  # [M * 3, 7] orthonormal

    def offsets() -> Tensor:  # per-landmark offsets without a rigid or scale component (no pose gauge)
        flat = offset_raw.reshape(-1)
        return (flat - rigid @ (rigid.T @ flat)).view(-1, 3)

    cams = obs.cameras
    K0 = cams.K.to(dt)
    log_s = nn.Parameter(torch.zeros(1, dtype=dt))
    term = LandmarkTerm(obs, weight)

    def intrinsics() -> Tensor:
        if not fit_focal:
            return K0
        s = torch.exp(log_s)
        scale = torch.stack([s, s, torch.ones_like(s)]).reshape(1, 3, 1)
        diag = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]], dtype=dt)
        return K0 * torch.where(diag.bool()[None], scale, torch.ones_like(scale))

    def data_term(e: Tensor, b: Tensor | None, c: float, off: Tensor | None = None) -> Tensor:
        canon = model(e, b) if off is None else model(e, b) + off
        return term(canon, rotation, translation, intrinsics(), c)

    smooth = smoothness

    def pose_terms() -> Tensor:
        loss = config.w_rotation_smooth * smooth(rotation) + config.w_translation_smooth * smooth(translation)
        if fit_focal:
            loss = loss + config.w_focal * (log_s**2).sum()
        return loss

    use_offset = config.w_landmark_offset > 0 and config.offset_iters > 0
    total = config.rigid_iters + config.full_iters + (config.offset_iters if use_offset else 0)
    state = {"step": 0, "loss": math.nan}

    def run(
        iters: int, groups: Sequence[tuple[Tensor, float]], loss_fn: Callable[[], Tensor], decay: bool
    ) -> None:
        if iters <= 0:
            return
        opt = torch.optim.Adam([{"params": [p], "lr": lr} for p, lr in groups])
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda i: 0.1 + 0.45 * (1 + math.cos(math.pi * min(i / iters, 1.0))) if decay else 1.0
        )
        for _ in range(iters):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn()
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                expression.clamp_(0.0, 1.0)
            state["step"] += 1
            state["loss"] = float(loss.detach())
            if progress is not None and state["step"] % 10 == 0:
                progress(state["step"], total, state["loss"])

    def full_loss(off: Tensor | None, with_pose: bool) -> Tensor:
        loss = (
            data_term(expression, beta, config.robust_scale, off)
            + config.w_expression_l1 * expression.sum(-1).mean()
            + config.w_expression_smooth * smooth(expression)
            + config.w_identity * (beta**2).sum()
        )
        if off is not None:
            loss = loss + config.w_landmark_offset * (off * 1000.0).pow(2).sum(-1).mean()
        return loss + pose_terms() if with_pose else loss

    pose_groups = [(rotation, config.lr_rotation), (translation, config.lr_translation)]
    if fit_focal:
        pose_groups.append((log_s, config.lr_focal))
    shape_groups = [(expression, config.lr_expression)]
    if config.fit_identity:
        shape_groups.append((beta, config.lr_identity))
    zero_e = torch.zeros(T, 53, dtype=dt)
    b0 = None if identity is None else beta.detach()
    # stage 1: rigid, wide robust kernel
    run(
        config.rigid_iters,
        pose_groups,
        lambda: data_term(zero_e, b0, 5.0 * config.robust_scale) + pose_terms(),
        False,
    )
    # stage 2: pose, expression and identity
    run(config.full_iters, pose_groups + shape_groups, lambda: full_loss(None, True), True)
    # stage 3: pose fixed; per-landmark offsets absorb the person's static landmark differences
    if use_offset:
        groups = shape_groups + [(offset_raw, config.lr_landmark_offset)]
        run(config.offset_iters, groups, lambda: full_loss(offsets(), False), True)
    loss_val = state["loss"]

    with torch.no_grad():
        K = intrinsics()
        off = offsets() if use_offset else torch.zeros_like(offset_raw)
        reproj = term.reprojection_px(model(expression, beta) + off, rotation, translation, K)
    out_cams = Cameras(K.to(cams.K.dtype), cams.viewmat, cams.width, cams.height, cams.dist, cams.names)
    drive = Drive(
        rotation.detach().float(), translation.detach().float(), expression.detach().float(), None, obs.fps
    )
    return TrackFitResult(drive, beta.detach().float(), out_cams, reproj, loss_val, off.detach().float())
