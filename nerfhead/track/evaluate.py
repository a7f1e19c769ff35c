"""Compare a tracked drive with ground truth (a synthetic rig capture's drive.npz): pose, 2D landmarks and
expression coefficients.

Pose is compared **head to camera** (``viewmat @ head pose``), which is what an image determines: a monocular
track lives in its own world frame (:func:`nerfhead.track.fit.mono_camera`), and a moving camera's motion is
part of the head's motion relative to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from nerfhead.data.cameras import Cameras
from nerfhead.data.drive import Drive
from nerfhead.data.expressions import EXPRESSION_INDEX
from nerfhead.geometry import axis_angle_to_matrix
from nerfhead.parametric.ict import ICTHead
from nerfhead.track.correspondence import Correspondence
from nerfhead.track.projection import head_to_camera, to_pixels

EXPRESSION_GROUPS: dict[str, tuple[str, ...]] = {
    "jawOpen": ("jawOpen",),
    "mouthSmile": ("mouthSmile_L", "mouthSmile_R"),
    "eyeBlink": ("eyeBlink_L", "eyeBlink_R"),
    "mouthFunnelPucker": ("mouthFunnel", "mouthPucker"),
    "browUp": ("browInnerUp_L", "browInnerUp_R", "browOuterUp_L", "browOuterUp_R"),
}
"""Coefficient groups whose summed activation is correlated between track and truth."""


@dataclass(frozen=True)
class View:
    """A drive seen through cameras: the camera of each timestep (one per timestep, e.g. the most frontal)."""

    drive: Drive
    cameras: Cameras
    camera_of: Tensor
    """[T] int64 camera index per timestep."""
    identity: Tensor | None = None
    """[10] identity coefficients of the head (None: the model's own neutral)."""


def rotation_angle_deg(Ra: Tensor, Rb: Tensor) -> Tensor:
    """[...] angle (degrees) of ``Ra^T Rb`` for rotation matrices [..., 3, 3]."""
    c = ((Ra.transpose(-1, -2) @ Rb).diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0) / 2.0
    return torch.rad2deg(torch.arccos(c.clamp(-1.0, 1.0)))


def head_to_camera_rotation(view: View) -> Tensor:
    """[T, 3, 3] rotation of the head in its timestep's camera frame."""
    R = axis_angle_to_matrix(view.drive.rotation.double())
    V = view.cameras.viewmat.double()[view.camera_of, :3, :3]
    return V @ R


def landmark_pixels(view: View, model_head: ICTHead, corr: Correspondence) -> Tensor:
    """[T, M, 2] pixels of the correspondence points of the posed head in each timestep's camera."""
    from nerfhead.track.fit import LandmarkModel

    model = LandmarkModel(model_head, corr)
    d = view.drive
    with torch.no_grad():
        canon = model(d.expression.float(), None if view.identity is None else view.identity.float())
        T = len(d)
        vm = view.cameras.viewmat.float()[view.camera_of]
        pc = head_to_camera(canon, d.rotation.float(), d.translation.float(), vm, torch.arange(T))
        K = view.cameras.K.float()[view.camera_of]
        uv, _ = to_pixels(K, None, pc)
    return uv


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation (NaN when either side is constant)."""
    if a.std() < 1e-9 or b.std() < 1e-9:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def compare(
    track: View, truth: View, track_head: ICTHead, truth_head: ICTHead, corr: Correspondence
) -> dict[str, float | dict[str, float]]:
    """Errors of a track against the truth.

    Args:
        track: the tracked drive with its cameras (and fitted identity).
        truth: the true drive with the capture's cameras.
        track_head: ICT model the track used (plain ICT).
        truth_head: the head that made the images (e.g. the rigged head's baked ICT).
        corr: correspondence table (for the 2D landmark error).

    Returns:
        ``rotation_deg`` mean/median/max of the head-to-camera rotation error; ``landmark_px`` mean/max of the
        distance between the fitted and the true correspondence points in each timestep's camera;
        ``expression_corr``: per group of :data:`EXPRESSION_GROUPS`, the correlation of summed coefficients.
    """
    err = rotation_angle_deg(head_to_camera_rotation(truth), head_to_camera_rotation(track)).numpy()
    px = (landmark_pixels(track, track_head, corr) - landmark_pixels(truth, truth_head, corr)).norm(dim=-1)
    w = torch.as_tensor(corr.weight)
    px_frame = ((px * w).sum(-1) / w.sum()).numpy()
    corr_out: dict[str, float] = {}
    for name, members in EXPRESSION_GROUPS.items():
        idx = [EXPRESSION_INDEX[m] for m in members]
        a = truth.drive.expression[:, idx].sum(-1).double().numpy()
        b = track.drive.expression[:, idx].sum(-1).double().numpy()
        corr_out[name] = correlation(a, b)
    return {
        "rotation_deg": {
            "mean": float(err.mean()),
            "median": float(np.median(err)),
            "max": float(err.max()),
        },
        "landmark_px": {"mean": float(px_frame.mean()), "max": float(px_frame.max())},
        "expression_corr": corr_out,
    }
