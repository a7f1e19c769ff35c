"""Files the viewer's export buttons write: a PNG of the current view and an mp4 of the timeline.

Both go to ``RUN/exports/`` with a timestamped name; writes go to a temporary file first and are renamed, so a
half-written file never carries the final name.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from nerfhead.atomic import atomic_path


def export_path(run_dir: str | os.PathLike, stem: str, suffix: str) -> Path:
    """``RUN/exports/<stem>_<YYYYmmdd-HHMMSS>[-n]<suffix>`` (a new name that does not exist yet)."""
    folder = Path(run_dir) / "exports"
    folder.mkdir(parents=True, exist_ok=True)
    base = f"{stem}_{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = folder / f"{base}{suffix}", 1
    while path.exists():
        path, n = folder / f"{base}-{n}{suffix}", n + 1
    return path


def _atomic(path: Path, write: Callable[[Path], None]) -> Path:
    with atomic_path(path) as tmp:
        write(tmp)
    return path


def save_png(image: np.ndarray, path: str | os.PathLike) -> Path:
    """Write an [H, W, 3] uint8 image as PNG."""
    import imageio.v3 as iio

    return _atomic(Path(path), lambda p: iio.imwrite(p, image, extension=".png"))


def write_mp4(
    frames: Iterable[np.ndarray],
    size: tuple[int, int],
    fps: float,
    path: str | os.PathLike,
    audio_wav: bytes | None = None,
) -> Path:
    """Encode [H, W, 3] uint8 frames (H.264, yuv420p) with an optional AAC soundtrack, synced from time 0.

    Args:
        frames: the images, all of ``size``.
        size: (width, height); both must be even (yuv420p).
        fps: frame rate.
        path: output ``.mp4``.
        audio_wav: WAV file bytes to mux as the soundtrack, or None.
    """
    import imageio_ffmpeg

    w, h = size
    if w % 2 or h % 2:
        raise ValueError(f"mp4 frame size must be even, got {w}x{h}")

    def write(tmp: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="nerfhead_mp4_") as td:
            audio = None
            if audio_wav is not None:
                audio = Path(td) / "audio.wav"
                audio.write_bytes(audio_wav)
            gen = imageio_ffmpeg.write_frames(
                str(tmp),
                (w, h),
                fps=fps,  # pyright: ignore[reportArgumentType]  (annotated int; non-integer rates work)
                macro_block_size=1,
                codec="libx264",
                output_params=["-f", "mp4"] + ([] if audio is None else ["-shortest"]),
                audio_path=None if audio is None else str(audio),
                audio_codec=None if audio is None else "aac",
            )
            gen.send(None)
            try:
                for frame in frames:
                    if frame.shape != (h, w, 3) or frame.dtype != np.uint8:
                        raise ValueError(
                            f"frame must be uint8 [{h}, {w}, 3], got {frame.dtype} {frame.shape}"
                        )
                    gen.send(np.ascontiguousarray(frame))
            finally:
                gen.close()

    return _atomic(Path(path), write)
