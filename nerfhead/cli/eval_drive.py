"""``nerfhead eval-drive``: held-out evaluation of the speech drivers on a capture with audio and a Drive."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import tyro


@dataclass(frozen=True)
class EvalDriveOptions:
    """The options of ``nerfhead eval-drive`` (also taken by :func:`run_eval_drive`)."""

    out: Path | None = None
    """JSON report (default CAPTURE/eval_drive.json)."""
    holdout: float = 0.2
    """fraction of timesteps held out at the end."""
    steps: int = 150
    """fine-tuning steps (0 = the prior alone)."""
    phonetic: bool = False
    """use the prior with pocketsphinx viseme input channels."""
    save_run: Path | None = None
    """also fine-tune on all timesteps and store the network in this run folder (RUN/audio_to_drive.safetensors,
    used by `nerfhead drive RUN` and the viewer): the fine-tuned network when its held-out lip error beat the
    calibrated prior's, else the calibrated prior."""
    seed: int = 0
    """seed of fine-tuning."""
    folds: int = 1
    """1 = hold out the last HOLDOUT of the timesteps; K > 1 = K-fold cross-validation over contiguous blocks
    (every timestep predicted once; half a window of frames left out around each block)."""


def run_eval_drive(capture: Path, options: EvalDriveOptions | None = None, **changes: Any) -> dict:
    """The work of ``nerfhead eval-drive`` with ``options`` (default :class:`EvalDriveOptions`, with ``changes``
    to its fields applied); returns the report (also written as JSON to ``options.out``)."""
    import dataclasses
    import json

    import torch

    from nerfhead.atomic import atomic_write_text
    from nerfhead.audio.evaluate import EvalDriveConfig, evaluate_drive, save_run_network
    from nerfhead.audio.train import FinetuneConfig
    from nerfhead.data.loaders import load_capture
    from nerfhead.errors import InputError

    o = dataclasses.replace(options if options is not None else EvalDriveOptions(), **changes)
    if not 0.0 < o.holdout < 1.0:
        raise InputError("--holdout", f"holdout must lie in (0, 1), got {o.holdout}")
    if not 0 <= o.steps <= 100_000:
        raise InputError("--steps", f"steps {o.steps} out of range [0, 100000]")
    torch.manual_seed(o.seed)
    cap = load_capture(capture)
    if not 1 <= o.folds <= 50:
        raise InputError("--folds", f"folds {o.folds} out of range [1, 50]")
    cfg = EvalDriveConfig(
        holdout=o.holdout,
        finetune=FinetuneConfig(steps=o.steps, seed=o.seed),
        phonetic=o.phonetic,
        folds=o.folds,
    )
    if o.phonetic:
        from nerfhead.audio.visemes import pocketsphinx_available

        if not pocketsphinx_available():
            raise InputError("--phonetic", "needs pocketsphinx", hint="pip install 'nerfhead[audio]'")
        from nerfhead.audio.speech import prior_path

        if not prior_path(True).is_file():
            raise InputError(
                prior_path(True),
                "the phonetic prior is not shipped (it did not lower held-out error on GRID)",
                hint="train it: python scripts/train_audio_prior.py --phonetic",
            )
    report = {"capture": str(capture), **evaluate_drive(cap, cfg)}
    if o.save_run is not None:
        saved, kind = save_run_network(cap, o.save_run, cfg, report)
        report["saved_network"], report["saved_network_kind"] = str(saved), kind
    path = o.out or (capture if capture.is_dir() else capture.parent) / "eval_drive.json"
    atomic_write_text(path, json.dumps(report, indent=2) + "\n")
    report["report"] = str(path)
    return report


def main(
    capture: Annotated[Path, tyro.conf.Positional],
    options: Annotated[EvalDriveOptions, tyro.conf.arg(name="")] = EvalDriveOptions(),
) -> None:
    """Hold out the audio of the last frames of CAPTURE, fine-tune the speech network on the rest (from the
    bundled prior), predict the held-out frames and score them against the capture's tracked or true Drive:
    jawOpen and lip-gap correlation, lip-vertex error in mm (ICT head), next to the prior alone, the rule
    driver and a baseline that predicts the mean training Drive. Also reports two oracles that read the
    held-out reference (exact jawOpen; exact amount of the dominant lip-geometry mode) as ceilings of what any
    speech driver can reach on this capture. Prints the JSON report and writes it.

    Args:
        capture: capture folder with audio and drive.npz (from `nerfhead track` or `nerfhead synth --audio`).
        options: what to hold out, fine-tune and write (:class:`EvalDriveOptions`).
    """
    import json

    from nerfhead.cli.checks import check_out_dir, check_out_file

    if options.out is not None:
        check_out_file(options.out, "--out", (".json",))
    if options.save_run is not None:
        check_out_dir(options.save_run, "--save-run")
    print(json.dumps(run_eval_drive(capture, options)))
