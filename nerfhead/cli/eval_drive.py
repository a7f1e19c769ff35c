"""``nerfhead eval-drive``: held-out evaluation of the speech drivers on a capture with audio and a Drive."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import tyro


def run_eval_drive(
    capture: Path,
    out: Path | None = None,
    *,
    holdout: float = 0.2,
    steps: int = 150,
    phonetic: bool = False,
    save_run: Path | None = None,
    seed: int = 0,
    folds: int = 1,
) -> dict:
    """The work of ``nerfhead eval-drive``; returns the report (also written as JSON to ``out``)."""
    import json

    import torch

    from nerfhead.atomic import atomic_write_text
    from nerfhead.audio.evaluate import EvalDriveConfig, evaluate_drive, save_run_network
    from nerfhead.audio.train import FinetuneConfig
    from nerfhead.data.loaders import load_capture
    from nerfhead.errors import InputError

    if not 0.0 < holdout < 1.0:
        raise InputError("--holdout", f"holdout must lie in (0, 1), got {holdout}")
    if not 0 <= steps <= 100_000:
        raise InputError("--steps", f"steps {steps} out of range [0, 100000]")
    torch.manual_seed(seed)
    cap = load_capture(capture)
    if not 1 <= folds <= 50:
        raise InputError("--folds", f"folds {folds} out of range [1, 50]")
    cfg = EvalDriveConfig(
        holdout=holdout, finetune=FinetuneConfig(steps=steps, seed=seed), phonetic=phonetic, folds=folds
    )
    if phonetic:
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
    if save_run is not None:
        saved, kind = save_run_network(cap, save_run, cfg, report)
        report["saved_network"], report["saved_network_kind"] = str(saved), kind
    path = out or (capture if capture.is_dir() else capture.parent) / "eval_drive.json"
    atomic_write_text(path, json.dumps(report, indent=2) + "\n")
    report["report"] = str(path)
    return report


def main(
    capture: Annotated[Path, tyro.conf.Positional],
    out: Path | None = None,
    holdout: float = 0.2,
    steps: int = 150,
    phonetic: bool = False,
    save_run: Path | None = None,
    seed: int = 0,
    folds: int = 1,
) -> None:
    """Hold out the audio of the last frames of CAPTURE, fine-tune the speech network on the rest (from the
    bundled prior), predict the held-out frames and score them against the capture's tracked or true Drive:
    jawOpen and lip-gap correlation, lip-vertex error in mm (ICT head), next to the prior alone, the rule
    driver and a baseline that predicts the mean training Drive. Also reports two oracles that read the
    held-out reference (exact jawOpen; exact amount of the dominant lip-geometry mode) as ceilings of what any
    speech driver can reach on this capture. Prints the JSON report and writes it.

    Args:
        capture: capture folder with audio and drive.npz (from `nerfhead track` or `nerfhead synth --audio`).
        out: JSON report (default CAPTURE/eval_drive.json).
        holdout: fraction of timesteps held out at the end.
        steps: fine-tuning steps (0 = the prior alone).
        phonetic: use the prior with pocketsphinx viseme input channels.
        save_run: also fine-tune on all timesteps and store the network in this run folder
            (RUN/audio_to_drive.safetensors, used by `nerfhead drive RUN` and the viewer): the fine-tuned network
            when its held-out lip error beat the calibrated prior's, else the calibrated prior.
        seed: seed of fine-tuning.
        folds: 1 = hold out the last HOLDOUT of the timesteps; K > 1 = K-fold cross-validation over contiguous
            blocks (every timestep predicted once; half a window of frames left out around each block).
    """
    import json

    from nerfhead.cli.checks import check_out_dir, check_out_file

    if out is not None:
        check_out_file(out, "--out", (".json",))
    if save_run is not None:
        check_out_dir(save_run, "--save-run")
    print(
        json.dumps(
            run_eval_drive(
                capture,
                out,
                holdout=holdout,
                steps=steps,
                phonetic=phonetic,
                save_run=save_run,
                seed=seed,
                folds=folds,
            )
        )
    )
