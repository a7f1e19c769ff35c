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
    from nerfhead.cli.checks import check_export_out, check_run
    from nerfhead.export.ply import export_run_ply

    check_run(run)
    check_export_out(out, (".ply",), folder_ok=True, folder_only=sequence, run=run)
    paths = export_run_ply(run, out, frame=frame, sequence=sequence, drive_path=drive)
    print(f"wrote {len(paths)} PLY file(s): {paths[0]}" + (f" .. {paths[-1].name}" if len(paths) > 1 else ""))


def gltf(
    run: Annotated[Path, tyro.conf.Positional],
    audio: Path | None = None,
    drive: Path | None = None,
    out: Path = Path("head.glb"),
    fps: float = 25.0,
    driver: str = "auto",
) -> None:
    """Write the avatar as a rigged, animated glTF 2.0 binary for game engines and Blender: the fitted head mesh,
    its 53 expressions as ARKit-named morph targets, the appearance baked into vertex colours, and an animation of
    the morph weights and the head's rotation/translation at the drive's frame rate.

    Args:
        run: run folder written by ``nerfhead fit`` (a splat head).
        audio: speech to animate from (as ``nerfhead drive``).
        drive: a drive file to animate from: drive.npz, a Live Link Face .csv or a curves .json.
        out: the .glb to write.
        fps: animation frame rate with --audio (a drive file keeps its own).
        driver: with --audio: network, rules or auto (as ``nerfhead drive``).
    """
    import json

    from nerfhead.export.gltf import export_gltf

    print(json.dumps(export_gltf(run, out, audio=audio, drive_path=drive, fps=fps, driver=driver)))


def group_help() -> None:
    """Export a trained avatar: `nerfhead export ply RUN` (3DGS PLY), `nerfhead export mesh RUN` (obj/ply/glb),
    `nerfhead export gltf RUN --audio CLIP|--drive FILE` (rigged, animated glb)."""
    from nerfhead.cli.main import run

    run(["export", "--help"])
