"""``nerfhead export mesh``: a trained head's surface at one drive frame as obj / ply / glb."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import tyro


def mesh_main(
    run: Annotated[Path, tyro.conf.Positional],
    frame: int = 0,
    out: Path | None = None,
    resolution: int = 128,
    threshold: float = 10.0,
    head_frame: bool = False,
    drive: Path | None = None,
    views: int = 48,
) -> None:
    """Extract the head's surface at FRAME with vertex colours: a nerf head by marching cubes on its density
    (deformed for FRAME), a splat head by fusing depth renders from cameras all around it into a closed surface.

    Args:
        run: run folder written by ``nerfhead fit`` (``--model nerf`` or ``--model splat``).
        frame: drive timestep to export.
        out: .obj, .ply or .glb file (default RUN/export/mesh_FRAME.ply).
        resolution: marching-cubes grid vertices per axis.
        threshold: density iso-level per metre (nerf head).
        head_frame: write the mesh in the head frame instead of the frame's world pose.
        drive: another drive file (.npz) instead of the run's training drive.
        views: depth renders fused (splat head).
    """
    from nerfhead.cli.checks import check_export_out, check_range, check_run
    from nerfhead.export.mesh import export_run_mesh

    check_run(run)
    check_export_out(out, (".obj", ".ply", ".glb"), run=run)
    check_range("--resolution", resolution, 8, 1024)
    check_range("--views", views, 1, 1024)
    path = export_run_mesh(
        run, out, frame, resolution, threshold, world=not head_frame, drive_path=drive, views=views
    )
    print(f"wrote mesh: {path}")
