"""The viewer's pose step with and without the splat head's caches, interleaved in one process (so load drift
on a shared machine hits both alike), at 1 and 2 torch threads, demo avatar by default.

    python scripts/bench_pose_cache.py --run out/demo/run

"uncached" drops the binding and deformation-input caches before each pose and asks ``world_splats`` for every
SH coefficient (what the pose step did before they existed); "cached" is ``AvatarRenderable.gaussians_at``
(degree-0 colour only). Both include viser's packing. Prints one JSON object (median / p95 ms) and checks the
two packed buffers are identical.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nerfhead.data.drive import Drive
from nerfhead.geometry import quaternion_to_matrix
from nerfhead.splats.gaussians import SH_C0
from nerfhead.viewer import load_renderable
from nerfhead.viewer.renderable import BrowserSplats
from nerfhead.viewer.splats import pack_splats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="out/demo/run")
    ap.add_argument("--frames", type=int, default=60)
    args = ap.parse_args()
    r = load_renderable(args.run)
    m = r.avatar
    drive = r.default_drive()

    def uncached(d: Drive) -> BrowserSplats:
        for k in ("_binding_cache", "_deform_input_cache"):
            m.__dict__.pop(k, None)
        with torch.inference_mode():
            s = m.world_splats(d[0])
        R = quaternion_to_matrix(s["quats"][0].float())
        S2 = torch.exp(2 * s["log_scales"][0].float())
        cov = R @ (S2[..., None] * R.transpose(-1, -2))
        rgb = (0.5 + SH_C0 * s["sh"][0, :, 0].float()).clamp(0, 1)
        opac = torch.sigmoid(s["opacity_logits"].float()).reshape(-1, 1)
        return BrowserSplats(s["means"][0].float(), cov, rgb, opac)

    out: dict[str, object] = {"load_average_start": [round(x, 2) for x in os.getloadavg()]}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        times: dict[str, list[float]] = {"uncached": [], "cached": []}
        for i in range(args.frames + 1):
            d = drive[i % len(drive)]
            for name, pose in (("uncached", uncached), ("cached", r.gaussians_at)):
                t0 = time.perf_counter()
                pack_splats(pose(d))
                if i:  # the first is a warm-up
                    times[name].append(1000 * (time.perf_counter() - t0))
        out[f"threads_{threads}"] = {
            k: {"median_ms": round(float(np.median(v)), 1), "p95_ms": round(float(np.percentile(v, 95)), 1)}
            for k, v in times.items()
        }
    same = np.array_equal(pack_splats(uncached(drive[0])), pack_splats(r.gaussians_at(drive[0])))
    out["identical_buffers"] = bool(same)
    out["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
