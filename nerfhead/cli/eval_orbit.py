"""``nerfhead eval-orbit``: colour outliers of a monocular avatar seen from novel views."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import tyro


def main(
    run: Annotated[Path, tyro.conf.Positional],
    angles: tuple[float, ...] = (-35.0, 0.0, 35.0),
    timesteps: int = 4,
    out: Path | None = None,
    device: str = "auto",
) -> None:
    """Orbit the capture's camera about the head of RUN by each angle at a few training timesteps and report
    the colour-outlier share: the share of rendered head pixels (alpha > 0.5) whose chroma (Cb, Cr) lies
    outside the 99.9% highest-density region of the training frames' head pixels without the backdrop's
    colours (a head pixel counts only where its chroma is at least as frequent in the mask's interior as
    outside the mask, so the wall a mask's edge takes in is not in the reference and the wall's colour on the
    rendered head is an outlier); the 0° view is the control (about 0.1% for renders like the video, more
    where it shows the wall at the silhouette); max and mean are over the angles other than 0. A splat avatar
    also gets its see-through share: the share of the pixels its posed mesh covers whole where the render's
    alpha is below 0.5 (holes showing the background). Writes eval_orbit.json and orbit.png (renders, and
    below them the outliers in magenta and the holes in cyan).

    Args:
        run: run folder written by `nerfhead fit` on a capture with masks (e.g. a tracked video).
        angles: orbit angles in degrees about the head's up axis (0: the capture's own view, the control).
        timesteps: training timesteps rendered, spread over the fit.
        out: folder for eval_orbit.json and orbit.png (default: the run folder).
        device: auto, cpu or cuda.
    """
    from nerfhead.cli.checks import check_device
    from nerfhead.errors import InputError
    from nerfhead.models.run_eval import evaluate_orbit

    if not angles or any(abs(a) > 180 for a in angles):
        raise InputError("--angles", f"give angles in [-180, 180] degrees, got {list(angles)}")
    if not 1 <= timesteps <= 100:
        raise InputError("--timesteps", f"{timesteps} out of range [1, 100]")
    rep = evaluate_orbit(run, tuple(angles), timesteps, out, device=check_device(device))
    print(json.dumps(rep, indent=2))
