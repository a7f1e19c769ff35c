"""Feeding a streaming driver (rules or network: both push / flush) a clip in chunks, as the tests do."""

from __future__ import annotations

import numpy as np

from nerfhead.data.drive import Drive


def stream_clip(drv, wav: np.ndarray, fps: float, chunk: int, sr: int = 16000, check=None):
    """Push ``wav`` in chunks of ``chunk`` samples, then flush.

    Returns:
        (all frames as one Drive, per frame the seconds of audio that had arrived past its timestamp when it
        was returned, the driver). ``check(drv)`` runs after every push (e.g. a bound on its state).
    """
    frames: list[Drive] = []
    delays: list[float] = []
    for i in range(0, wav.size, chunk):
        out = drv.push(wav[i : i + chunk])
        arrived = min(i + chunk, wav.size) / sr
        delays += [arrived - (len(frames) + k) / fps for k in range(len(out))]
        frames += out
        if check is not None:
            check(drv)
    frames += drv.flush()
    return Drive.concat(frames), np.asarray(delays), drv
