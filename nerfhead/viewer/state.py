"""The viewer's shared state: the timeline drive, the current frame, hand-set offsets and playback.

Every client sees the same state. The drive rendered for the current frame is the timeline's timestep with
the expression sliders *added* (then clipped to [0, 1]) and the head-pose sliders applied in the head's own
frame (``R = R_timeline @ R_y(yaw) @ R_x(pitch) @ R_z(roll)``; translation unchanged). Listeners are called
after every change with ``interactive=True`` for changes that come in streams (slider drags, playback ticks).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from nerfhead.data.drive import Drive
from nerfhead.data.expressions import NUM_EXPRESSIONS
from nerfhead.geometry import axis_angle_to_matrix, matrix_to_axis_angle

Listener = Callable[[bool], None]


@dataclass(frozen=True)
class SpeechClip:
    """A loaded speech clip: what the browser plays while the timeline runs.

    Attributes:
        name: file name as uploaded.
        wav_bytes: 16-bit PCM WAV (mono) of the decoded audio, sample 0 at timeline time 0.
        duration: seconds.
    """

    name: str
    wav_bytes: bytes
    duration: float


def pose_offset_matrix(yaw_deg: float, pitch_deg: float, roll_deg: float) -> torch.Tensor:
    """[3, 3] rotation ``R_y(yaw) @ R_x(pitch) @ R_z(roll)`` (degrees; head frame: y up, z forward)."""
    y, p, r = (math.radians(v) for v in (yaw_deg, pitch_deg, roll_deg))
    Ry = axis_angle_to_matrix(torch.tensor([0.0, y, 0.0]))
    Rx = axis_angle_to_matrix(torch.tensor([p, 0.0, 0.0]))
    Rz = axis_angle_to_matrix(torch.tensor([0.0, 0.0, r]))
    return Ry @ Rx @ Rz


class ViewerState:
    """Thread-safe timeline, frame, slider offsets and play/pause.

    Args:
        drive: the timeline (T >= 1 timesteps).
    """

    def __init__(self, drive: Drive):
        if len(drive) < 1:
            raise ValueError("the viewer needs a drive with at least one timestep")
        self._lock = threading.RLock()
        self._base = drive.to("cpu", torch.float32)
        self._drive = self._base
        self._frame = 0
        self._expr = torch.zeros(NUM_EXPRESSIONS)
        self._pose = (0.0, 0.0, 0.0)
        self._playing = False
        self._play_t0 = 0.0
        self._play_frame0 = 0
        self.speech: SpeechClip | None = None
        self._live: Drive | None = None
        self._listeners: list[Listener] = []
        self.version = 0
        """Increments on every change."""

    # ---------------------------------------------------------------- listeners
    def add_listener(self, fn: Listener) -> None:
        """Call ``fn(interactive)`` after each change."""
        self._listeners.append(fn)

    def _changed(self, interactive: bool) -> None:
        with self._lock:
            self.version += 1
        for fn in list(self._listeners):
            fn(interactive)

    # ------------------------------------------------------------------ reading
    @property
    def drive(self) -> Drive:
        """The whole timeline."""
        return self._drive

    @property
    def fps(self) -> float:
        return self._drive.fps

    @property
    def num_frames(self) -> int:
        return len(self._drive)

    @property
    def frame(self) -> int:
        return self._frame

    @property
    def playing(self) -> bool:
        return self._playing

    @property
    def expression_offsets(self) -> torch.Tensor:
        """[53] values added to the timeline's expression."""
        return self._expr.clone()

    @property
    def pose_offsets(self) -> tuple[float, float, float]:
        """(yaw, pitch, roll) in degrees."""
        return self._pose

    @property
    def live(self) -> bool:
        """Whether a live speech stream drives the face (:meth:`set_live`)."""
        return self._live is not None

    def drive_at(self, frame: int | None = None) -> Drive:
        """One-timestep drive of ``frame`` (default: the current one, or the live speech frame while a stream
        runs) with the offsets applied."""
        with self._lock:
            f = self._frame if frame is None else frame
            d = self._drive[min(max(int(f), 0), len(self._drive) - 1)]
            if frame is None and self._live is not None:  # the live frame's expression and head pose
                lv = self._live.to("cpu", torch.float32)
                d = d.replace(expression=lv.expression, rotation=lv.rotation, translation=lv.translation)
            expr = (d.expression + self._expr[None]).clamp(0.0, 1.0)
            rot = d.rotation
            if any(self._pose):
                R = axis_angle_to_matrix(d.rotation[0]) @ pose_offset_matrix(*self._pose)
                rot = matrix_to_axis_angle(R)[None]
            return d.replace(expression=expr, rotation=rot)

    def timeline(self) -> Drive:
        """The whole timeline with the offsets applied (for video export)."""
        with self._lock:
            return Drive.concat([self.drive_at(i) for i in range(len(self._drive))])

    # ------------------------------------------------------------------ writing
    def set_frame(self, frame: int, interactive: bool = True) -> None:
        """Jump to ``frame`` (clipped to the timeline)."""
        with self._lock:
            f = min(max(int(frame), 0), len(self._drive) - 1)
            if f == self._frame:
                return
            self._frame = f
        self._changed(interactive)

    def set_expression(self, index: int, value: float, interactive: bool = True) -> None:
        """Set the offset added to expression column ``index``."""
        with self._lock:
            if float(self._expr[index]) == float(value):
                return
            self._expr[index] = float(value)
        self._changed(interactive)

    def set_pose(self, yaw: float, pitch: float, roll: float, interactive: bool = True) -> None:
        """Set the head-pose offset in degrees."""
        with self._lock:
            new = (float(yaw), float(pitch), float(roll))
            if new == self._pose:
                return
            self._pose = new
        self._changed(interactive)

    def reset_offsets(self) -> None:
        """Zero every expression and pose offset."""
        with self._lock:
            self._expr.zero_()
            self._pose = (0.0, 0.0, 0.0)
        self._changed(False)

    def set_speech(self, drive: Drive, clip: SpeechClip) -> None:
        """Replace the timeline with a speech drive (expression and head pose from ``drive``, as the speech
        policy composed them; latent held at the first timestep of the original timeline) and remember the clip
        for playback."""
        with self._lock:
            self.pause()
            T = len(drive)
            b = self._base[0]
            latent = None if b.latent is None else b.latent.expand(T, -1).clone()
            self._drive = Drive(
                drive.rotation.to("cpu", torch.float32).clone(),
                drive.translation.to("cpu", torch.float32).clone(),
                drive.expression.to("cpu", torch.float32).clamp(0, 1),
                latent,
                drive.fps,
            )
            self._frame = 0
            self.speech = clip
        self._changed(False)

    def clear_speech(self) -> None:
        """Back to the original timeline."""
        with self._lock:
            self.pause()
            self._drive, self._frame, self.speech = self._base, 0, None
        self._changed(False)

    def set_live(self, frame: Drive | None) -> None:
        """Show one live speech frame (its expression and head pose; the timeline's latent), or None to go
        back to the timeline. Calls the listeners with ``interactive=True`` (frames come in a stream)."""
        with self._lock:
            if frame is None and self._live is None:
                return
            self._live = None if frame is None else frame[0]
        self._changed(frame is not None)

    # ----------------------------------------------------------------- playback
    def play(self, now: float | None = None) -> float:
        """Start playback from the current frame (from 0 when at the end); returns the start offset, seconds."""
        with self._lock:
            if self._frame >= len(self._drive) - 1:
                self._frame = 0
            self._playing = True
            self._play_t0 = time.monotonic() if now is None else now
            self._play_frame0 = self._frame
            offset = self._frame / self.fps
        self._changed(False)
        return offset

    def pause(self) -> None:
        with self._lock:
            self._playing = False

    def tick(self, now: float | None = None) -> bool:
        """Advance playback to the frame due at ``now`` (real time); stops at the last frame.

        Returns:
            Whether playback is still running.
        """
        with self._lock:
            if not self._playing:
                return False
            now = time.monotonic() if now is None else now
            f = self._play_frame0 + int(math.floor((now - self._play_t0) * self.fps + 1e-9))
            last = len(self._drive) - 1
            if f >= last:
                f, self._playing = last, False
            unchanged = f == self._frame
        if unchanged and not self._playing:
            self._changed(False)  # stopped at the end: let listeners show it
        else:
            self.set_frame(f, interactive=self._playing)
        return self._playing
