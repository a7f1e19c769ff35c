"""Speech uploaded in the viewer: checks, decoding, the drive made from it and the ``<audio>`` element that
plays it in the browser.

The browser plays the clip from a base64 ``data:`` URI inside an HTML GUI element; it starts at the timeline's
offset through the element's ``loadedmetadata`` handler. The clip sent is the decoded mono audio as 16-bit
WAV at the driver's sample rate, so what the browser plays is what drove the face.
"""

from __future__ import annotations

import base64
import html
import io
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from nerfhead.data.drive import Drive
from nerfhead.errors import InputError
from nerfhead.viewer.state import SpeechClip

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
"""Largest accepted upload (20 MiB)."""
MAX_SECONDS = 180.0
"""Longest accepted clip."""
AUDIO_EXTENSIONS = (".wav", ".mp3", ".ogg", ".oga", ".opus", ".flac", ".m4a", ".aac", ".webm", ".mp4", ".mov")
"""File name endings accepted by the upload button (each is then decoded with FFmpeg to be sure)."""
SAMPLE_RATE = 16000


def decode_upload(
    name: str,
    content: bytes,
    sr: int = SAMPLE_RATE,
    max_bytes: int = MAX_UPLOAD_BYTES,
    max_seconds: float = MAX_SECONDS,
) -> tuple[np.ndarray, list[str]]:
    """Check and decode an uploaded audio file. The duration is read from the container header before anything
    is decoded, and a first decoding pass counts samples without keeping them, stopping as soon as they pass
    ``max_seconds`` (a header that lies cannot make the viewer hold more than that).

    Args:
        name: the file name the browser sent.
        content: its bytes.
        sr: output sample rate.
        max_bytes: size cap.
        max_seconds: duration cap.

    Returns:
        (mono waveform [S] float32 at ``sr``, warnings about the audio such as silence or clipping).

    Raises:
        InputError: naming the upload: too large, empty, an unknown file type, undecodable or too long.
    """
    suffix = Path(name).suffix.lower()
    if len(content) > max_bytes:
        raise InputError(
            name, f"file is {len(content) / 2**20:.1f} MiB, the limit is {max_bytes / 2**20:g} MiB"
        )
    if not content:
        raise InputError(name, "empty file (0 bytes)")
    if suffix not in AUDIO_EXTENSIONS:
        raise InputError(name, f"not an audio file type ({suffix or 'no extension'})", hint=_accepted())
    from nerfhead.media.audio import load_audio

    with tempfile.TemporaryDirectory(prefix="nerfhead_upload_") as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(content)
        check_duration(path, name, max_seconds)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                wave, _ = load_audio(path, sr)
            except InputError as e:
                raise InputError(name, e.what, hint=e.hint) from None
    if wave.size / sr > max_seconds:
        raise InputError(name, f"clip is {wave.size / sr:.0f} s long, the limit is {max_seconds:.0f} s")
    notes = [str(w.message).replace(str(path), name) for w in caught]
    return wave, notes


def check_duration(path: Path, name: str, max_seconds: float) -> None:
    """Refuse an audio file longer than ``max_seconds``: first by its container header's duration, then by
    counting decoded samples (:func:`decode_capped`; a header that lies or says nothing cannot get past).

    Raises:
        InputError: naming ``name`` with the duration found.
    """
    import av
    from av.error import FFmpegError

    try:
        container = av.open(str(path))
    except FFmpegError:
        return  # not readable: load_audio says why, in its words
    with container:
        if not container.streams.audio:
            return
        stream = container.streams.audio[0]
        header = None
        if stream.duration is not None and stream.time_base is not None:
            header = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            header = container.duration / 1e6
    if header is not None and header > max_seconds:
        raise InputError(
            name, f"clip is {header:.0f} s long (container header), the limit is {max_seconds:.0f} s"
        )
    decode_capped(path, name, max_seconds)


def decode_capped(path: Path, name: str, max_seconds: float) -> float:
    """Decode the first audio stream, keeping nothing, and stop as soon as it passes ``max_seconds``.

    Returns:
        The decoded duration, seconds.

    Raises:
        InputError: naming ``name`` when the stream decodes to more than ``max_seconds``.
    """
    import av
    from av.error import FFmpegError

    seconds = 0.0
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(container.streams.audio[0]):
                seconds += frame.samples / float(frame.sample_rate or 1)
                if seconds > max_seconds:
                    raise InputError(
                        name,
                        f"clip decodes to more than {max_seconds:.0f} s, the limit is {max_seconds:.0f} s",
                    )
    except (FFmpegError, IndexError):
        pass  # unreadable or corrupt: load_audio says where
    return seconds


def _accepted() -> str:
    return "accepted: " + " ".join(AUDIO_EXTENSIONS)


def wav_bytes(wave: np.ndarray, sr: int = SAMPLE_RATE) -> bytes:
    """Mono float waveform [S] in [-1, 1] → 16-bit PCM WAV file bytes."""
    import soundfile

    buf = io.BytesIO()
    soundfile.write(buf, np.clip(wave, -1.0, 1.0), sr, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def speech_drive(
    wave: np.ndarray,
    fps: float,
    sr: int = SAMPLE_RATE,
    mode: str = "auto",
    network: str | os.PathLike | None = None,
) -> Drive:
    """The Drive for a waveform, frame j showing audio time j / fps: the learned speech network's when
    ``network`` (a safetensors path) is given, as ``nerfhead drive`` makes it, else the viseme rules'.

    ``mode`` (rules only): "auto" (phonetic with pocketsphinx when installed, else energy), "phonetic" or
    "energy".
    """
    from nerfhead.audio.speech import Speech, SpeechConfig

    return Speech(network, None, SpeechConfig(rules_mode=mode)).drive(wave, sr, fps)  # type: ignore[arg-type]


def make_clip(name: str, wave: np.ndarray, sr: int = SAMPLE_RATE) -> SpeechClip:
    """A :class:`~nerfhead.viewer.state.SpeechClip` for playback."""
    return SpeechClip(Path(name).name, wav_bytes(wave, sr), wave.size / sr)


def audio_html(clip: SpeechClip | None, offset: float | None) -> str:
    """HTML for the speech GUI element.

    Args:
        clip: the loaded clip, or None.
        offset: seconds to start playing from, or None when paused (no ``<audio>`` element: nothing plays).

    Returns:
        An HTML fragment; while playing it holds ``<audio autoplay>`` with the clip as a ``data:`` URI that seeks
        to ``offset`` once its metadata is loaded.
    """
    if clip is None:
        return '<div style="font-size:0.85em;opacity:0.7">No speech loaded.</div>'
    label = f"{html.escape(clip.name)} ({clip.duration:.1f} s)"
    if offset is None:
        return f'<div style="font-size:0.85em">Speech: {label}; press Play.</div>'
    b64 = base64.b64encode(clip.wav_bytes).decode("ascii")
    return (
        f'<div style="font-size:0.85em">Playing {label} from {offset:.2f} s</div>'
        f'<audio autoplay preload="auto" data-offset="{offset:.4f}" src="data:audio/wav;base64,{b64}" '
        'onloadedmetadata="this.currentTime=parseFloat(this.dataset.offset)" '
        "onplaying=\"this.dataset.started='1'\"></audio>"
    )
