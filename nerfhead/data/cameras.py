"""Calibrated pinhole cameras with optional OpenCV distortion, in gsplat's convention.

Axes are OpenCV (x right, y down, z forward); ``viewmat`` maps world to camera. ``K`` maps normalised camera
coordinates to *continuous* pixel coordinates in which pixel (column i, row j) covers [i, i+1) x [j, j+1), so
its centre is (i + 0.5, j + 0.5) and a centred camera has ``cx = width / 2`` (docs/conventions.md).

>>> import torch
>>> cams = Cameras.from_look_at(torch.tensor([[0.0, 0.0, 1.0]]), torch.zeros(3), torch.tensor([0.0, 1.0, 0.0]),
...                             focal=100.0, width=64, height=48)
>>> cams.project(torch.zeros(1, 3))[0]
tensor([[[32., 24.]]])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from nerfhead.geometry import look_at, rigid_inverse

ROTATION_TOL = 1e-3
"""Largest |R R^T - I| entry accepted for a camera rotation read from a file."""


def distort(xy: Tensor, dist: Tensor) -> Tensor:
    """Apply OpenCV distortion to normalised coordinates.

    Args:
        xy: [..., 2] undistorted normalised coordinates (x/z, y/z).
        dist: [..., k] with k = 4 (k1, k2, p1, p2) or 5 (k1, k2, p1, p2, k3), broadcast against ``xy``.

    Returns:
        [..., 2] distorted normalised coordinates.
    """
    x, y = xy.unbind(-1)
    k1, k2, p1, p2 = dist[..., 0], dist[..., 1], dist[..., 2], dist[..., 3]
    k3 = dist[..., 4] if dist.shape[-1] > 4 else torch.zeros_like(k1)
    r2 = x * x + y * y
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return torch.stack([xd, yd], -1)


def undistort(xy_d: Tensor, dist: Tensor, iters: int = 40) -> Tensor:
    """Invert :func:`distort` by fixed-point iteration (as OpenCV's undistortPoints).

    Args:
        xy_d: [..., 2] distorted normalised coordinates.
        dist: [..., k] as in :func:`distort`.
        iters: iterations; 40 reaches float64 round-off for the distortion of real lenses.

    Returns:
        [..., 2] undistorted normalised coordinates.
    """
    k1, k2, p1, p2 = dist[..., 0], dist[..., 1], dist[..., 2], dist[..., 3]
    k3 = dist[..., 4] if dist.shape[-1] > 4 else torch.zeros_like(k1)
    xd, yd = xy_d.unbind(-1)
    x, y = xd, yd
    for _ in range(iters):
        r2 = x * x + y * y
        radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
        dx = 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        dy = p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        x = (xd - dx) / radial
        y = (yd - dy) / radial
    return torch.stack([x, y], -1)


def pixel_centers(height: int, width: int, device: torch.device | str | None = None) -> Tensor:
    """Continuous coordinates of every pixel centre: [H, W, 2] with ``[j, i] = (i + 0.5, j + 0.5)``."""
    ys = torch.arange(height, device=device, dtype=torch.float32) + 0.5
    xs = torch.arange(width, device=device, dtype=torch.float32) + 0.5
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy], -1)


def intrinsics_matrix(fx: Tensor, fy: Tensor, cx: Tensor, cy: Tensor) -> Tensor:
    """Stack focal lengths and principal points ([N] each) into K [N, 3, 3] (no skew)."""
    o, one = torch.zeros_like(fx), torch.ones_like(fx)
    return torch.stack([fx, o, cx, o, fy, cy, o, o, one], -1).reshape(*fx.shape, 3, 3)


@dataclass(frozen=True)
class Cameras:
    """N calibrated cameras (tensors on one device). Readers keep float64; render in float32 via ``to``.

    Args:
        K: [N, 3, 3] intrinsics (upper triangular, ``K[2] = (0, 0, 1)``), continuous pixel coordinates.
        viewmat: [N, 4, 4] world-to-camera rigid transforms, OpenCV axes.
        width: [N] int64 image widths in pixels.
        height: [N] int64 image heights in pixels.
        dist: [N, k] OpenCV distortion (k1, k2, p1, p2[, k3]) with k in {4, 5}, or None for none.
        names: N camera names (e.g. serials), or None.

    Raises:
        ValueError: inconsistent shapes. Value checks (finite, rigid, positive focal) are in :meth:`check`.
    """

    K: Tensor
    viewmat: Tensor
    width: Tensor
    height: Tensor
    dist: Tensor | None = None
    names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        N = self.K.shape[0] if self.K.dim() == 3 else -1
        if tuple(self.K.shape) != (N, 3, 3):
            raise ValueError(f"cameras K must be [N, 3, 3], got {tuple(self.K.shape)}")
        if tuple(self.viewmat.shape) != (N, 4, 4):
            raise ValueError(f"cameras viewmat must be [{N}, 4, 4], got {tuple(self.viewmat.shape)}")
        for name in ("width", "height"):
            t = getattr(self, name)
            if tuple(t.shape) != (N,) or t.dtype != torch.int64:
                raise ValueError(f"cameras {name} must be int64 [{N}], got {t.dtype} {tuple(t.shape)}")
        if self.dist is not None and (
            self.dist.dim() != 2 or self.dist.shape[0] != N or self.dist.shape[1] not in (4, 5)
        ):
            raise ValueError(f"cameras dist must be [{N}, 4 or 5], got {tuple(self.dist.shape)}")
        if self.names is not None:
            object.__setattr__(self, "names", tuple(str(n) for n in self.names))
            if len(self.names) != N:
                raise ValueError(f"cameras names has {len(self.names)} entries for {N} cameras")

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return self.K.shape[0]

    def __getitem__(self, index: int | slice | Tensor | Sequence[int]) -> Cameras:
        """Cameras selected by an int (keeps the N axis, length 1), a slice, or an index/bool tensor."""
        if isinstance(index, int):
            N = len(self)
            if not -N <= index < N:
                raise IndexError(f"camera {index} out of range for {N} cameras")
            index = slice(index % N, index % N + 1)
        elif not isinstance(index, slice):
            index = torch.as_tensor(index, device=self.K.device)
            index = index.reshape(1) if index.dim() == 0 else index
        names = None
        if self.names is not None:
            picked = torch.arange(len(self))[index.cpu() if isinstance(index, Tensor) else index]
            names = tuple(self.names[int(i)] for i in picked)
        return Cameras(
            self.K[index],
            self.viewmat[index],
            self.width[index],
            self.height[index],
            None if self.dist is None else self.dist[index],
            names,
        )

    @property
    def device(self) -> torch.device:
        return self.K.device

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Cameras:
        """Copy to ``device``; ``dtype`` applies to the floating tensors (sizes stay int64)."""
        return Cameras(
            self.K.to(device=device, dtype=dtype),
            self.viewmat.to(device=device, dtype=dtype),
            self.width.to(device=device),
            self.height.to(device=device),
            None if self.dist is None else self.dist.to(device=device, dtype=dtype),
            self.names,
        )

    @property
    def camtoworld(self) -> Tensor:
        """[N, 4, 4] camera-to-world (OpenCV axes)."""
        return rigid_inverse(self.viewmat)

    @property
    def centers(self) -> Tensor:
        """[N, 3] camera centres in world space."""
        R, t = self.viewmat[:, :3, :3], self.viewmat[:, :3, 3]
        return -(R.transpose(-1, -2) @ t[..., None])[..., 0]

    def label(self, i: int) -> str:
        """``"camera 3"`` or ``"camera 3 (222200037)"``."""
        return f"camera {i}" + (f" ({self.names[i]})" if self.names is not None else "")

    def check(self) -> None:
        """Value checks: finite; K upper triangular with last row (0, 0, 1) and positive focal lengths;
        positive sizes; viewmat rigid (orthonormal rotation, det +1, last row (0, 0, 0, 1)).

        Raises:
            ValueError: naming the first bad camera and what is wrong.
        """
        K, V = self.K.double(), self.viewmat.double()
        for i in range(len(self)):
            what = _camera_problem(K[i], V[i], int(self.width[i]), int(self.height[i]), self.dist, i)
            if what:
                raise ValueError(f"{self.label(i)}: {what}")

    # ------------------------------------------------------------- projection
    def project(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Project world points into every camera (distortion applied when ``dist`` is set).

        Args:
            points: [P, 3] (same points for every camera) or [N, P, 3] world points.

        Returns:
            pixels: [N, P, 2] continuous pixel coordinates (x right, y down; pixel centres at +0.5).
            depth: [N, P] camera-space z (negative behind the camera; such pixels are meaningless).
        """
        if points.dim() == 2:
            points = points.expand(len(self), *points.shape)
        R, t = self.viewmat[:, None, :3, :3], self.viewmat[:, None, :3, 3]
        pc = (R @ points[..., None])[..., 0] + t  # [N, P, 3]
        z = pc[..., 2]
        xy = pc[..., :2] / z[..., None]
        if self.dist is not None:
            xy = distort(xy, self.dist[:, None, :])
        K = self.K[:, None]
        u = K[..., 0, 0] * xy[..., 0] + K[..., 0, 1] * xy[..., 1] + K[..., 0, 2]
        v = K[..., 1, 1] * xy[..., 1] + K[..., 1, 2]
        return torch.stack([u, v], -1), z

    def generate_rays(self, cam_idx: int | Tensor, pixels: Tensor) -> tuple[Tensor, Tensor]:
        """World-space rays through continuous pixel coordinates (undistorted when ``dist`` is set).

        Args:
            cam_idx: camera index (int) or [R] int64 indices, one per pixel.
            pixels: [R, 2] continuous coordinates (x, y); pixel (i, j)'s centre is (i + 0.5, j + 0.5).

        Returns:
            origins: [R, 3] camera centres.
            dirs: [R, 3] unit directions in world space.
        """
        idx = torch.as_tensor(cam_idx, device=self.K.device, dtype=torch.long).expand(pixels.shape[0])
        K = self.K[idx]
        yn = (pixels[:, 1] - K[:, 1, 2]) / K[:, 1, 1]
        xn = (pixels[:, 0] - K[:, 0, 2] - K[:, 0, 1] * yn) / K[:, 0, 0]
        xy = torch.stack([xn, yn], -1)
        if self.dist is not None:
            xy = undistort(xy, self.dist[idx])
        d_cam = torch.cat([xy, torch.ones_like(xy[:, :1])], -1)
        Rt = self.viewmat[idx, :3, :3].transpose(-1, -2)
        dirs = (Rt @ d_cam[..., None])[..., 0]
        dirs = dirs / dirs.norm(dim=-1, keepdim=True)
        return self.centers[idx], dirs

    def scale(self, factor: float) -> Cameras:
        """Cameras for images resized by ``factor``: sizes round to whole pixels and K scales by the exact
        per-axis ratio ``new_size / size`` (exact in the +0.5 pixel-centre convention)."""
        w = torch.round(self.width.double() * factor).long()
        h = torch.round(self.height.double() * factor).long()
        if bool((w < 1).any() | (h < 1).any()):
            raise ValueError(f"scale {factor} leaves an image smaller than one pixel")
        sx = (w.double() / self.width.double()).to(self.K)
        sy = (h.double() / self.height.double()).to(self.K)
        K = self.K.clone()
        K[:, 0] = K[:, 0] * sx[:, None]
        K[:, 1] = K[:, 1] * sy[:, None]
        return Cameras(K, self.viewmat, w, h, self.dist, self.names)

    @classmethod
    def from_look_at(
        cls,
        eye: Tensor,
        target: Tensor,
        up: Tensor,
        focal: float,
        width: int,
        height: int,
        names: Sequence[str] | None = None,
    ) -> Cameras:
        """Centred pinhole cameras (``cx = width / 2``) at ``eye`` [N, 3] looking at ``target`` [3] or [N, 3].

        ``up`` [3] is the world direction that should appear *up* in the image (OpenCV y points down).
        """
        N = eye.shape[0]
        viewmat = look_at(eye, target.expand_as(eye), up.expand_as(eye))
        f = torch.full((N,), float(focal), dtype=eye.dtype, device=eye.device)
        K = intrinsics_matrix(f, f, torch.full_like(f, width / 2), torch.full_like(f, height / 2))
        w = torch.full((N,), width, dtype=torch.int64, device=eye.device)
        h = torch.full((N,), height, dtype=torch.int64, device=eye.device)
        return cls(K, viewmat, w, h, None, None if names is None else tuple(names))


def _camera_problem(K: Tensor, V: Tensor, w: int, h: int, dist: Tensor | None, i: int) -> str | None:
    """What is wrong with one camera (float64 K [3, 3], viewmat [4, 4]), or None."""
    if not bool(torch.isfinite(K).all()):
        return "intrinsics are not finite"
    if not bool(torch.isfinite(V).all()):
        return "pose matrix is not finite"
    if dist is not None and not bool(torch.isfinite(dist[i]).all()):
        return "distortion coefficients are not finite"
    if w < 1 or h < 1:
        return f"image size {w}x{h} is not positive"
    if float(K[0, 0]) <= 0 or float(K[1, 1]) <= 0:
        return f"focal length must be positive, got fx={float(K[0, 0]):g} fy={float(K[1, 1]):g}"
    lower = torch.stack([K[1, 0], K[2, 0], K[2, 1], K[2, 2] - 1]).abs().max()
    if float(lower) > 1e-9:
        return "intrinsics matrix must be upper triangular with last row (0, 0, 1)"
    return rigid_problem(V, "pose")


def rigid_problem(T: Tensor, what: str = "matrix") -> str | None:
    """Why a float64 [4, 4] (or [3, 4]) matrix is not a rigid transform, or None when it is one."""
    if not bool(torch.isfinite(T).all()):
        return f"{what} is not finite"
    if T.shape[0] == 4:
        last = (T[3] - torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=T.dtype)).abs().max()
        if float(last) > 1e-6:
            return f"{what} last row must be (0, 0, 0, 1), got {[round(float(x), 6) for x in T[3]]}"
    R = T[:3, :3]
    err = float((R @ R.T - torch.eye(3, dtype=T.dtype)).abs().max())
    if err > ROTATION_TOL:
        return f"{what} is not rigid (rotation not orthonormal, |R R^T - I| = {err:.3g}; scaled or singular?)"
    if float(torch.linalg.det(R)) < 0:
        return f"{what} rotation is a reflection (det -1; flipped axis convention?)"
    return None
