"""Distance between a run's exported mesh and the synthetic capture's ground-truth head surface, as JSON.

    python scripts/eval_mesh.py RUN [--capture CAP] [--frame T] [--resolution 128] [--mesh FILE]

Exports the run's mesh at frame T (nerf head: marching cubes on density; splat head: fused depth) unless
``--mesh`` names an exported file (world frame), rebuilds the surface ``nerfhead synth`` rendered at T, and prints
nearest-surface distances in mm both ways on the face skin seen by the training cameras
(:mod:`nerfhead.export.mesh_eval`). Exit code 2 with one line on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", type=Path, help="run folder written by nerfhead fit")
    p.add_argument("--capture", type=Path, default=None, help="the synthetic capture (default: the run's)")
    p.add_argument("--frame", type=int, default=0, help="drive timestep")
    p.add_argument("--resolution", type=int, default=128, help="marching-cubes grid vertices per axis")
    p.add_argument("--threshold", type=float, default=10.0, help="density iso-level (nerf head)")
    p.add_argument("--mesh", type=Path, default=None, help="an exported mesh to measure instead")
    p.add_argument("--samples", type=int, default=20000, help="points sampled on the compared region")
    args = p.parse_args(argv)

    import numpy as np
    import trimesh

    from nerfhead.data.loaders import load_capture
    from nerfhead.errors import InputError
    from nerfhead.export.mesh import Mesh, export_run_mesh
    from nerfhead.export.mesh_eval import ground_truth_mesh, surface_distances
    from nerfhead.models.avatar import read_avatar_json

    try:
        spec = read_avatar_json(args.run)
        cap_path = args.capture or spec.get("capture")
        if cap_path is None:
            raise InputError(args.run / "avatar.json", "names no capture", hint="pass --capture")
        capture = load_capture(cap_path)
        t0 = time.perf_counter()
        path = args.mesh
        if path is None:
            out = args.run / "export" / f"mesh_{args.frame:05d}.ply"
            path = export_run_mesh(
                args.run, out, frame=args.frame, resolution=args.resolution, threshold=args.threshold
            )
        elif not path.is_file():
            raise InputError(path, "mesh file not found")
        export_s = time.perf_counter() - t0
        tm = trimesh.load(str(path), process=False, force="mesh")
        pred = Mesh(np.asarray(tm.vertices, np.float32), np.asarray(tm.faces, np.int64))
        gt, region = ground_truth_mesh(capture, args.frame)
        result = surface_distances(pred, gt, region, n_samples=args.samples)
    except InputError as e:
        print(e.one_line(), file=sys.stderr)
        return 2
    report = {
        "run": str(args.run),
        "kind": spec["kind"],
        "capture": str(cap_path),
        "frame": args.frame,
        "mesh": str(path),
        "resolution": args.resolution,
        "export_seconds": round(export_s, 2),
        "vertices": int(len(pred.vertices)),
        "faces": int(len(pred.faces)),
        "watertight": bool(tm.is_watertight),
        **result,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
