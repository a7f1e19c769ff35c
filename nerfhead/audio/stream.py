"""Live speech → Drive with the learned :class:`~nerfhead.audio.network.AudioToDrive` network.

:class:`NetworkStreamDriver` is the streaming twin of :class:`~nerfhead.audio.train.NetworkDriver`: chunks of
samples go in (any size; 20-40 ms is typical), video-rate Drive frames come out as soon as the audio their
window reads has arrived. Its frames equal ``NetworkDriver(net).drive(whole_audio, fps)`` to float rounding
(tested), so an avatar driven live moves as it does offline. The look-ahead is half the network window plus
half an STFT frame (0.26 s for the bundled prior), inside the 0.5 s budget of a live link.

State is bounded: the STFT keeps ``n_fft - hop`` samples and the driver the last ``window`` feature frames.

>>> from nerfhead.audio.network import AudioToDrive
>>> drv = NetworkStreamDriver(AudioToDrive(), fps=25)
>>> round(drv.latency_s, 3)
0.251
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from torch import Tensor

from nerfhead.audio.features import LogMelConfig, StreamingLogMel
from nerfhead.audio.network import AudioToDrive, load_network
from nerfhead.data.drive import Drive
from nerfhead.data.expressions import EXPRESSION_INDEX
from nerfhead.media.audio import chunk_samples

_BLINK = (EXPRESSION_INDEX["eyeBlink_L"], EXPRESSION_INDEX["eyeBlink_R"])


class NetworkStreamDriver:
    """Live audio → Drive frames with an AudioToDrive network (log-mel networks; phonetic ones need whole
    utterances and are refused).

    Args:
        network: the network or the path of its safetensors file (a run's fine-tuned one, or the prior).
        fps: video frame rate of the output.
        sr: sample rate of the pushed chunks (resampled per chunk when it is not 16 kHz; offline equality then
            holds only approximately).
        blinks: add the same seeded blinks as :class:`~nerfhead.audio.train.NetworkDriver`.
        seed: blink seed.
    """

    def __init__(
        self,
        network: AudioToDrive | str | os.PathLike,
        fps: float,
        sr: int | None = None,
        blinks: bool = True,
        seed: int = 0,
    ):
        from nerfhead.audio.driver import Blinks

        self.network = network if isinstance(network, AudioToDrive) else load_network(network)
        if self.network.config.phonetic:
            raise ValueError(
                "NetworkStreamDriver needs a log-mel network; phonetic ones read whole utterances"
            )
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be positive, got {fps}")
        self.fps = float(fps)
        self.mel = LogMelConfig()  # the offline front end of NetworkDriver.features
        self.sr = int(sr or self.mel.sample_rate)
        self._stft = StreamingLogMel(self.mel)
        self._window = self.network.config.window
        self._feats = np.zeros((0, self.mel.n_mels), np.float32)  # feature frames from index _base on
        self._base = 0
        self._next_frame = 0
        self._blinks = Blinks((2.0, 5.0), seed) if blinks else None
        self._done = False

    @property
    def latency_s(self) -> float:
        """Algorithmic delay: how far past a video frame's timestamp audio must have arrived to emit it (the
        window's last frame, up to half a feature frame of rounding, plus half an STFT frame)."""
        rate = self.mel.frame_rate
        return (self._window - self._window // 2 - 0.5) / rate + (self.mel.n_fft // 2) / self.mel.sample_rate

    @property
    def frames_emitted(self) -> int:
        """Video frames returned so far."""
        return self._next_frame

    def push(self, chunk: np.ndarray | Tensor) -> list[Drive]:
        """Add a chunk of mono samples [n]; returns the video frames completed by it (possibly none)."""
        if self._done:
            raise RuntimeError("NetworkStreamDriver.push after flush; make a new one")
        self._add(self._stft.push(chunk_samples(chunk, self.sr, self.mel.sample_rate)))
        return self._emit(final=False)

    def flush(self) -> list[Drive]:
        """End of stream: the remaining frames up to the last whose timestamp lies inside the audio."""
        if self._done:
            return []
        self._add(self._stft.flush())
        self._done = True
        return self._emit(final=True)

    # ----------------------------------------------------------------------------------------- internals
    def _add(self, frames: np.ndarray) -> None:
        if frames.shape[0]:
            self._feats = np.concatenate([self._feats, frames])

    def _centre(self, j: int) -> int:
        """Feature index of video frame j's window centre (``windows_at`` rounding)."""
        return math.floor(j / self.fps * self.mel.frame_rate + 0.5)

    def _emit(self, final: bool) -> list[Drive]:
        from nerfhead.audio.driver import default_num_frames

        W, half = self._window, self._window // 2
        known = self._base + self._feats.shape[0]  # feature frames computed so far
        if known == 0:
            return []
        if final:
            last = default_num_frames(self._stft.samples_in, self.mel.sample_rate, self.fps)
        else:  # frames whose window's last feature frame exists
            last = self._next_frame
            while self._centre(last) + W - half - 1 < known:
                last += 1
        js = np.arange(self._next_frame, last)
        if js.size == 0:
            return []
        c = np.floor(js / self.fps * self.mel.frame_rate + 0.5).astype(np.int64)
        idx = np.clip(c[:, None] + np.arange(W)[None] - half, 0, known - 1) - self._base
        windows = torch.from_numpy(self._feats[idx])  # [N, W, n_mels]
        expr, rot = self.network.predict(windows)
        t = js / self.fps
        e = expr.double().numpy()
        if self._blinks is not None:
            b = self._blinks(t)
            for col in _BLINK:
                e[:, col] = np.maximum(e[:, col], b)
        e = np.clip(e, 0.0, 1.0).astype(np.float32)
        out = [
            Drive(
                rotation=rot[k : k + 1].float(),
                translation=torch.zeros(1, 3),
                expression=torch.from_numpy(e[k : k + 1]),
                latent=None,
                fps=self.fps,
            )
            for k in range(js.size)
        ]
        self._next_frame = int(last)
        keep_from = max(0, self._centre(self._next_frame) - half)  # first frame a later window can read
        drop = min(max(0, keep_from - self._base), max(0, self._feats.shape[0] - 1))
        self._feats = self._feats[drop:]
        self._base += drop
        return out
