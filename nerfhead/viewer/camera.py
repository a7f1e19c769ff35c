"""Viser's browser camera ↔ nerfhead :class:`~nerfhead.data.Cameras`.

Viser reports each client's camera as an orientation ``wxyz`` and a ``position`` such that
``p_world = R(wxyz) p_camera + position`` with the camera axes in OpenCV order (x right, y down, the view along
+z), a *vertical* field of view ``fov`` in radians and the canvas size in pixels. So ``[R | position]`` is the
camera-to-world transform in nerfhead's own axes and the viewmat is its rigid inverse; the intrinsics are a
centred pinhole with square pixels (``fy = H / (2 tan(fov / 2))``, ``cx = W / 2`` in the +0.5 pixel-centre
convention of docs/conventions.md).

>>> import math, torch
>>> view = ViewCamera(wxyz=(1.0, 0.0, 0.0, 0.0), position=(0.0, 0.0, -1.0), fov=math.pi / 2, width=64, height=48)
>>> cams = view_to_cameras(view)
>>> cams.project(torch.zeros(1, 3))[0]  # the world origin lies straight ahead, 1 m away
tensor([[[32., 24.]]])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from nerfhead.data.cameras import Cameras, intrinsics_matrix
from nerfhead.geometry import matrix_to_quaternion, quaternion_to_matrix, rigid_inverse


@dataclass(frozen=True)
class ViewCamera:
    """One browser camera as viser reports it (plain floats, no viser types).

    Attributes:
        wxyz: camera-to-world rotation as a unit quaternion (w, x, y, z), OpenCV camera axes.
        position: camera centre in world coordinates (metres).
        fov: vertical field of view, radians.
        width: canvas width in pixels.
        height: canvas height in pixels.
    """

    wxyz: tuple[float, float, float, float]
    position: tuple[float, float, float]
    fov: float
    width: int
    height: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "wxyz", tuple(float(v) for v in self.wxyz))
        object.__setattr__(self, "position", tuple(float(v) for v in self.position))
        if len(self.wxyz) != 4 or len(self.position) != 3:
            raise ValueError(f"camera wxyz needs 4 and position 3 values, got {self.wxyz}, {self.position}")
        if not all(math.isfinite(v) for v in (*self.wxyz, *self.position, self.fov)):
            raise ValueError("camera pose and fov must be finite")
        if not 0 < self.fov < math.pi:
            raise ValueError(f"camera fov must lie in (0, pi) radians, got {self.fov}")
        if int(self.width) < 1 or int(self.height) < 1:
            raise ValueError(f"camera canvas must be at least 1x1 pixels, got {self.width}x{self.height}")
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    @property
    def aspect(self) -> float:
        """Width / height."""
        return self.width / self.height

    @classmethod
    def from_handle(cls, camera: object) -> ViewCamera:
        """Snapshot of a viser ``CameraHandle`` (anything with ``wxyz``, ``position``, ``fov``,
        ``image_width`` and ``image_height``)."""
        cam = camera
        return cls(
            tuple(cam.wxyz),  # type: ignore[attr-defined]
            tuple(cam.position),  # type: ignore[attr-defined]
            float(cam.fov),  # type: ignore[attr-defined]
            int(cam.image_width),  # type: ignore[attr-defined]
            int(cam.image_height),  # type: ignore[attr-defined]
        )


def render_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The canvas size scaled (never enlarged) so that its longer side is at most ``max_side``; aspect kept.

    >>> render_size(1600, 900, 800)
    (800, 450)
    """
    s = min(1.0, max_side / max(width, height))
    return max(1, round(width * s)), max(1, round(height * s))


def view_to_cameras(view: ViewCamera, size: tuple[int, int] | None = None) -> Cameras:
    """One nerfhead camera (float32) for a browser view, rendered at ``size`` (default: the canvas size).

    Args:
        view: the browser camera.
        size: (width, height) of the image to render; the vertical field of view is kept and pixels stay
            square, so a size with another aspect than the canvas crops or widens the view horizontally.

    Returns:
        Cameras with N = 1: ``viewmat`` [1, 4, 4] world-to-camera (OpenCV), ``K`` [1, 3, 3].
    """
    w, h = size if size is not None else (view.width, view.height)
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[:3, :3] = quaternion_to_matrix(torch.tensor(view.wxyz, dtype=torch.float64))
    c2w[:3, 3] = torch.tensor(view.position, dtype=torch.float64)
    f64 = torch.float64
    f = torch.tensor([h / (2.0 * math.tan(view.fov / 2.0))], dtype=f64)
    K = intrinsics_matrix(f, f, torch.tensor([w / 2.0], dtype=f64), torch.tensor([h / 2.0], dtype=f64))
    cams = Cameras(
        K,
        rigid_inverse(c2w)[None],
        torch.tensor([w], dtype=torch.int64),
        torch.tensor([h], dtype=torch.int64),
    )
    return cams.to(dtype=torch.float32)


def cameras_to_view(cameras: Cameras, index: int = 0) -> ViewCamera:
    """The browser view of camera ``index`` (inverse of :func:`view_to_cameras` for centred, square-pixel
    cameras; otherwise the field of view follows ``fy`` and the principal point is ignored)."""
    V = cameras.viewmat[index].double()
    c2w = rigid_inverse(V)
    q = matrix_to_quaternion(c2w[:3, :3])
    h = int(cameras.height[index])
    fy = float(cameras.K[index, 1, 1])
    fov = 2.0 * math.atan(h / (2.0 * fy))
    return ViewCamera(tuple(q.tolist()), tuple(c2w[:3, 3].tolist()), fov, int(cameras.width[index]), h)  # type: ignore[arg-type]


def look_at_view(
    eye: tuple[float, float, float],
    target: tuple[float, float, float],
    up: tuple[float, float, float],
    fov: float,
    width: int,
    height: int,
) -> ViewCamera:
    """A browser view at ``eye`` looking at ``target`` with world ``up`` shown up in the image."""
    cams = Cameras.from_look_at(
        torch.tensor([eye], dtype=torch.float64),
        torch.tensor(target, dtype=torch.float64),
        torch.tensor(up, dtype=torch.float64),
        focal=height / (2.0 * math.tan(fov / 2.0)),
        width=width,
        height=height,
    )
    return cameras_to_view(cams)
