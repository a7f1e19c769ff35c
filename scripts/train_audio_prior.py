"""Train the generic AudioToDrive prior shipped in scenes/assets/audio_prior/ (deterministic, seeded, CPU).

Data: the bundled speech clips (scenes/assets/audio: LJ Speech en + FLEURS en/de/es) and the soundtracks of the
GRID clips (scenes/assets/video_grid/*.mpg), each also at speeds 0.9 and 1.12 and with white noise at 25 dB SNR.
Targets: the phoneme -> viseme -> ARKit rule curves (pocketsphinx phones, Cohen-Massaro co-articulation; see
nerfhead/audio/visemes.py) of the same audio. The last 20% of every clip is held out (validation numbers below).

    OMP_NUM_THREADS=2 python scripts/train_audio_prior.py                  # prior.safetensors (log-mel)
    OMP_NUM_THREADS=2 python scripts/train_audio_prior.py --phonetic       # prior_phonetic.safetensors

It trains on the engine's loop (nerfhead.engine.trainer): ``--run DIR`` keeps checkpoints and log.jsonl there
(``--resume`` continues a killed run), and ``torchrun --nproc-per-node N scripts/train_audio_prior.py`` splits
every batch over N processes (gloo on CPU); rank 0 writes the prior.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CLIPS = (
    "scenes/assets/audio/en_ljspeech_LJ050-0131.wav",
    "scenes/assets/audio/fleurs_en-001.ogg",
    "scenes/assets/audio/fleurs_de-001.ogg",
    "scenes/assets/audio/fleurs_es-002.ogg",
    "scenes/assets/video_grid/grid_bbaf2n.mpg",
    "scenes/assets/video_grid/grid_lrwp9a.mpg",
    "scenes/assets/video_grid/grid_swiz3n.mpg",
)


def main() -> None:
    from nerfhead.audio.network import AudioToDriveConfig
    from nerfhead.audio.speech import prior_path
    from nerfhead.audio.train import PretrainConfig, prepare_clips, pretrain
    from nerfhead.media.audio import load_audio

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phonetic", action="store_true", help="add the pocketsphinx viseme channels")
    ap.add_argument("--steps", type=int, default=PretrainConfig.steps)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--out", type=Path, default=None, help="default: scenes/assets/audio_prior/prior*.safetensors"
    )
    ap.add_argument("--run", type=Path, default=None, help="keep checkpoints and log.jsonl here")
    ap.add_argument("--resume", action="store_true", help="continue the run in --run")
    args = ap.parse_args()

    from nerfhead.engine.distributed import init_from_env, shutdown

    dist = init_from_env("cpu")
    torch.set_num_threads(2 if not dist.active else 1)
    torch.use_deterministic_algorithms(True)
    cfg = PretrainConfig(network=AudioToDriveConfig(phonetic=args.phonetic), steps=args.steps, seed=args.seed)
    t0 = time.perf_counter()
    clips = [(Path(c).stem, load_audio(ROOT / c, 16000, warn=False)[0]) for c in CLIPS]
    data = prepare_clips(clips, cfg)
    t_prep = time.perf_counter() - t0
    net, stats = pretrain(data, cfg, log_every=250, run_dir=args.run, resume=args.resume)
    shutdown()
    if not dist.is_main:
        return
    out = args.out or prior_path(args.phonetic)
    info = {
        "clips": list(CLIPS),
        "steps": cfg.steps,
        "seed": cfg.seed,
        "targets": "RuleVisemeDriver(mode=auto, phonetic with pocketsphinx) feature curves",
        "augment": {"speeds": list(cfg.speeds), "noise_snr_db": list(cfg.noise_snr_db)},
        "val_fraction": cfg.val_fraction,
        **stats,
        "prepare_seconds": round(t_prep, 1),
    }
    net.save(out, info)
    print(json.dumps({"out": str(out), "bytes": out.stat().st_size, **info}))


if __name__ == "__main__":
    main()
