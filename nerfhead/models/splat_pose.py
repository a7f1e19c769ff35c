"""The viewer's fast pose step for the splat head: the activated Gaussians of one drive timestep, computed for one
pose after another with everything that does not depend on the drive cached on the head.

:meth:`SplatHead.posed_splats <nerfhead.models.splat_head.SplatHead.posed_splats>` calls :func:`posed_splats`; it
returns the same Gaussians as :meth:`SplatHead.world_splats` with ``sh_degree=0`` (tested to float tolerance).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from nerfhead.data.drive import Drive
from nerfhead.ops._torch.pose_splats import alpha_bytes, bound_to_world
from nerfhead.splats.gaussians import SH_C0

if TYPE_CHECKING:
    from nerfhead.models.splat_head import SplatHead


def pose_constants(head: SplatHead) -> dict[str, Any]:
    """What :func:`posed_splats` needs that does not depend on the drive, cached on ``head`` until a source
    changes: each Gaussian's triangle as indices into the vertices bound triangles use, the neutral and expression
    basis restricted to those vertices, each Gaussian's local ``R S`` (its covariance is ``k^2 (R_tri R S)(...)^T``
    in world space), its degree-0 colour and opacity, and the drive-independent half of the deformation network's
    hidden layer."""
    sp = head.splats
    deform = (
        [] if head.deform is None else [*head.deform.grid.parameters(), *head.deform.hidden_pos.parameters()]
    )
    names = ("means", "quats", "scales", "sh0", "opacities")
    sources = (
        head.neutral,
        head.ict.expr_basis,
        sp.binding,
        head.colour_residual_gain,
        *(sp.params[k] for k in names),
        *deform,
    )

    def build() -> dict[str, Any]:
        from nerfhead.geometry import quaternion_to_matrix

        used, tri = torch.unique(head.faces.to(sp.binding.device)[sp.binding], return_inverse=True)
        basis = head.ict.expr_basis.to(used.device)[:, used]
        local = quaternion_to_matrix(sp["quats"]) * torch.exp(sp["scales"])[:, None, :]
        return {
            "tri": tri.reshape(-1, 3),
            "neutral": head.neutral[used].reshape(1, -1).contiguous(),
            "basis": basis.reshape(basis.shape[0], -1).contiguous(),
            "means": sp["means"].detach(),
            "local": local.contiguous(),
            "rgb": SH_C0 * sp["sh0"][:, 0] + 0.5,
            "opacities": torch.sigmoid(sp["opacities"]),
            "positional": None if head.deform is None else head.deform.positional(head._deform_input()),
            "gain": head.colour_residual_gain[sp.binding][:, None],
        }

    return head._cached("_pose_constants_cache", sources, build)


def _posed_vertices(c: dict[str, Any], drive: Drive, head_frame: bool) -> tuple[Drive, Tensor, Tensor]:
    """Timestep 0 of ``drive`` on the head's device, the posed vertices the bound triangles use (world, or head
    coordinates with ``head_frame``) and the head-to-world rotation; ``c``: :func:`pose_constants`."""
    from nerfhead.geometry import axis_angle_to_matrix

    d = drive[:1].to(c["neutral"].device, torch.float32)
    verts = torch.addmm(c["neutral"], d.expression, c["basis"]).reshape(-1, 3)
    head_to_world = axis_angle_to_matrix(d.rotation[0])
    if not head_frame:
        verts = torch.addmm(d.translation, verts, head_to_world.T)
    return d, verts, head_to_world


@torch.no_grad()
def posed_splats(head: SplatHead, drive: Drive, head_frame: bool = False) -> dict[str, Tensor]:
    """The activated world Gaussians of timestep 0 of ``drive`` with their view-independent colour: what a
    browser-side splat renderer draws. The same Gaussians as :meth:`SplatHead.world_splats` (``sh_degree=0``),
    computed the fast way: the mesh only at the vertices the bound triangles use, each Gaussian's triangle frame
    directly, covariances as ``k^2 (R_tri L)(R_tri L)^T`` with the cached local ``L = R S`` (no quaternions), and
    the deformation network's position half cached.

    ``head_frame``: the Gaussians in head coordinates instead (before the drive's head rotation and translation;
    the deformation network still sees the rotation), with that rigid transform returned: world
    = ``rotation @ x + translation`` (a viewer then moves the whole head by one node transform).

    Returns:
        ``means`` [N, 3], ``covariances`` [N, 3, 3], ``rgb`` [N, 3] in [0, 1], ``opacities`` [N] in (0, 1);
        with ``head_frame`` also ``rotation`` [3, 3] and ``translation`` [3] (head to world).
    """
    c = pose_constants(head)
    d, verts, head_to_world = _posed_vertices(c, drive, head_frame)
    means, rgb = c["means"], c["rgb"]
    if head.deform is not None:
        cond = torch.cat([d.expression, d.rotation], -1)
        out = head.deform.from_positional(c["positional"], head._deform_input(), cond)
        offset, residual = out.split(3, -1)
        means, rgb = means + offset[0], rgb + c["gain"] * residual[0]
    centres, covariances = bound_to_world(verts, c["tri"], means, c["local"])
    out = {
        "means": centres,
        "covariances": covariances,
        "rgb": rgb.clamp(0.0, 1.0),
        "opacities": c["opacities"],
    }
    if head_frame:
        out["rotation"], out["translation"] = head_to_world, d.translation[0]
    return out


def packed_constants(c: dict[str, Any], head: SplatHead, min_alpha: int) -> dict[str, Any]:
    """The :func:`pose_constants` ``c`` of ``head``'s Gaussians whose packed alpha byte is at least ``min_alpha``
    (opacities do not depend on the drive, so the set is fixed), contiguous for the fused kernel; cached in ``c``
    (rebuilt with it)."""
    cache = c.setdefault("_packed", {})
    if min_alpha not in cache:
        keep = alpha_bytes(c["opacities"]) >= min_alpha
        sub = {k: c[k][keep].contiguous() for k in ("tri", "means", "local", "rgb", "opacities")}
        if head.deform is not None:
            sub["positional"] = c["positional"][keep].contiguous()
            sub["gain"] = c["gain"][keep, 0].contiguous()
        cache[min_alpha] = sub
    return cache[min_alpha]


@torch.no_grad()
def packed_splats(head: SplatHead, drive: Drive, min_alpha: int = 0, backend: str = "auto") -> Tensor:
    """:func:`posed_splats` in world coordinates packed as viser's [M, 8] Gaussian buffer (int32; view it as
    uint32), leaving out the Gaussians whose alpha byte is below ``min_alpha``, in one fused pass
    (:func:`nerfhead.ops.pose_splats.pose_splats`: no [N, 3, 3] intermediates, the deformation network's last
    layers included). The same bytes as packing :func:`posed_splats`' output, to float rounding (tested)."""
    from nerfhead.ops.pose_splats import pose_splats

    c = pose_constants(head)
    sub = packed_constants(c, head, min_alpha)
    d, verts, _ = _posed_vertices(c, drive, False)
    deform: dict[str, Any] = {}
    if head.deform is not None:
        lim = tuple(head.deform.limits) or (0.0, 0.0)  # DeformConfig: offsets then colour residuals, 6 wide
        out = head.deform.out
        deform = {
            "pos": sub["positional"],
            "code": head.deform.hidden_of(torch.cat([d.expression, d.rotation], -1))[0].contiguous(),
            "weight": out.weight.detach().contiguous(),
            "bias": (
                out.bias.detach() if out.bias is not None else torch.zeros(6, device=verts.device)
            ).contiguous(),
            "gain": sub["gain"],
            "limit_pos": float(lim[0]),
            "limit_rgb": float(lim[1]),
        }
    return pose_splats(
        verts.contiguous(),
        sub["tri"],
        sub["means"],
        sub["local"],
        sub["rgb"],
        sub["opacities"],
        backend=backend,
        **deform,
    )
