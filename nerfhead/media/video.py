"""mp4 writing with the audio track muxed in one pass (H.264 + AAC through imageio-ffmpeg's bundled ffmpeg).

Frames are streamed: the writer holds one frame at a time, so a 10-minute clip renders in constant memory.
The file appears atomically: it is written under a temporary name next to the target and renamed at the end.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from nerfhead.atomic import atomic_path
from nerfhead.errors import InputError


def rgb_uint8(frame: torch.Tensor | np.ndarray) -> np.ndarray:
    """[H, W, 3] float in [0, 1] (or uint8) → contiguous uint8 RGB (:func:`nerfhead.media.image.to_uint8`)."""
    from nerfhead.media.image import to_uint8

    return np.ascontiguousarray(to_uint8(frame)[..., :3])


def write_video(
    frames: Iterable[torch.Tensor | np.ndarray],
    path: str | os.PathLike,
    fps: float,
    audio_path: str | os.PathLike | None = None,
    quality: int = 7,
    preset: str | None = None,
) -> Path:
    """Write ``frames`` ([H, W, 3] each, float in [0, 1] or uint8) to an H.264 mp4, muxing ``audio_path`` as AAC.

    Odd frame sizes are padded by one black row / column. The audio starts at the first frame; ffmpeg's ``-shortest`` is not used, so the video's length is the number
    of frames / fps and the audio is cut or left as it is by the player.

    ``preset`` is x264's speed preset (default ``medium``; ``veryfast`` encodes a 720p stream several times
    faster at a somewhat larger file).

    Returns:
        The written path.
    """
    import imageio_ffmpeg

    writer = None
    stopped = False  # ffmpeg stopped reading frames (it failed to write: a full disk, a vanished folder)
    with atomic_path(path) as tmp:
        try:
            for frame in frames:
                img = rgb_uint8(frame)
                h, w = img.shape[:2]
                if writer is None:
                    writer = imageio_ffmpeg.write_frames(
                        str(tmp),
                        (w + w % 2, h + h % 2),
                        fps=fps,  # pyright: ignore[reportArgumentType]  (ffmpeg takes fractional rates)
                        quality=quality,
                        codec="libx264",
                        macro_block_size=1,
                        ffmpeg_log_level="quiet",  # failures are answered by check_written_video
                        audio_path=None if audio_path is None else str(audio_path),
                        audio_codec=None if audio_path is None else "aac",
                        output_params=["-movflags", "+faststart"] + (["-preset", preset] if preset else []),
                    )
                    writer.send(None)
                if w % 2 or h % 2:  # yuv420p needs even sizes: pad one black row / column
                    img = np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)))
                try:
                    writer.send(np.ascontiguousarray(img))
                except OSError as e:  # imageio-ffmpeg's broken-pipe IOError has no errno: say why below
                    if e.errno is not None:
                        raise
                    stopped = True
                    break
            if writer is None:
                raise ValueError("write_video got no frames")
        finally:
            if writer is not None:
                writer.close()
        check_written_video(tmp, path, stopped)
    return Path(path)


def check_written_video(tmp: Path, path: str | os.PathLike, stopped: bool = False) -> None:
    """imageio-ffmpeg does not report ffmpeg's exit status: open what it wrote, so a failed write raises (and the
    atomic write keeps the previous file) instead of replacing it with a broken video.

    Raises:
        OSError: ENOSPC when the disk is full.
        InputError: any other failed write.
    """
    import errno

    import av

    try:
        with av.open(str(tmp)) as c:
            ok = not stopped and len(c.streams.video) > 0
    except (av.FFmpegError, OSError):
        ok = False
    if ok:
        return
    if os.statvfs(tmp.parent).f_bavail == 0:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    raise InputError(
        path, "ffmpeg could not write the video", hint="is the folder writable and the disk not full?"
    )
