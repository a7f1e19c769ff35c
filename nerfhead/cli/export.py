"""``nerfhead export ...``: the exporters of a trained avatar (``ply`` here; video, mesh and curves elsewhere)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import tyro


def ply(
    run: Annotated[Path, tyro.conf.Positional],
    out: Path | None = None,
    frame: int = 0,
    sequence: bool = False,
    drive: Path | None = None,
) -> None:
    """Write the avatar's Gaussians at one drive frame (or every frame) as 3DGS PLY (Inria layout: viewable in
    SuperSplat, antimatter15 or any 3DGS viewer).

    Args:
        run: run folder written by ``nerfhead fit``.
        out: a .ply file (one frame) or a folder for frame_00000.ply, ... (default RUN/export).
        frame: drive timestep to export.
        sequence: export every timestep of the drive.
        drive: another drive file (.npz) instead of the run's training drive.
    """
    from nerfhead.export.ply import export_run_ply

    paths = export_run_ply(run, out, frame=frame, sequence=sequence, drive_path=drive)
    print(f"wrote {len(paths)} PLY file(s): {paths[0]}" + (f" .. {paths[-1].name}" if len(paths) > 1 else ""))


def group_help() -> None:
    """Export a trained avatar: `nerfhead export ply RUN` (3DGS PLY), `nerfhead export mesh RUN` (obj/ply/glb)."""
    from nerfhead.cli.main import run

    run(["export", "--help"])
