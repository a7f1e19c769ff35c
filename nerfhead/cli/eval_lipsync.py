"""``nerfhead eval-lipsync``: lip sync of a monocular run's renders on its held-out speaking frames."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import tyro


def main(
    run: Annotated[Path, tyro.conf.Positional],
    out: Path | None = None,
    device: str = "auto",
    driver: str = "auto",
    calibrate: bool = True,
    normalise: bool = True,
    lag: bool = True,
) -> None:
    """Render RUN's held-out timesteps at the capture's camera and tracked head pose with (a) the tracked drive
    and (b) the speech drive predicted from the capture's audio (the speech policy of `nerfhead drive`,
    calibrated on the training timesteps only), find MediaPipe Face Mesh lips on the real frames and on both
    renders, and report LMD (pixels, each lip set centred on its mean), the inner-lip gap ratio (render / real)
    and a frozen-mouth baseline (one real frame repeated). Writes eval_lipsync.json and lipsync.png
    (real | tracked | speech).

    Args:
        run: run folder written by `nerfhead fit` on a monocular capture with audio (e.g. a tracked video).
        out: folder for eval_lipsync.json and lipsync.png (default: the run folder).
        device: auto, cpu or cuda.
        driver: speech driver: auto, network or rules (as `nerfhead drive --driver`).
        calibrate: calibrate the driver to the person (off: the driver's raw expression, as before the speech
            policy had a calibration).
        normalise: normalise the clip's loudness before the driver.
        lag: calibrate the audio-visual lag on the training frames (as `nerfhead drive --lag`; off: lag 0).
    """
    from nerfhead.cli.checks import check_device
    from nerfhead.models.run_eval import evaluate_lipsync

    rep = evaluate_lipsync(
        run,
        out,
        device=check_device(device),
        driver=driver,
        calibrate=calibrate,
        normalise=normalise,
        lag=lag,
    )
    keys = ("split_policy", "driver", "calibrated", "lag_s", "real_gap_px", "tracked", "speech", "frozen")
    short = {k: rep[k] for k in (*keys, "speech_over_tracked_lmd")}
    for k in ("tracked", "speech", "frozen"):  # the per-frame list is in the JSON file
        short[k] = {m: v for m, v in short[k].items() if m != "lmd_per_frame"}
    print(json.dumps(short, indent=2))
