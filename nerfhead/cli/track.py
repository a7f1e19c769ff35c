"""``nerfhead track``: a monocular video or a calibrated capture -> a capture with a tracked Drive per timestep."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import tyro

from nerfhead.track.fit import TrackFitConfig
from nerfhead.track.landmarks import LandmarkConfig
from nerfhead.track.masks import MaskConfig
from nerfhead.track.photometric import PhotometricConfig
from nerfhead.track.video import VideoConfig


class _RichReporter:
    """Adapts :class:`nerfhead.track.pipeline.Reporter` to one rich progress bar per stage."""

    def __init__(self, progress) -> None:
        self.progress = progress
        self.task = None
        self.total = 0

    def stage(self, name: str, total: int) -> None:
        if self.task is not None:  # a finished stage shows as complete
            self.progress.update(self.task, completed=self.total)
        self.total = max(total, 1)
        self.task = self.progress.add_task(name, total=self.total)

    def advance(self, n: int = 1) -> None:
        if self.task is not None:
            self.progress.advance(self.task, n)


def main(
    input: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="INPUT")],
    out: Annotated[Path, tyro.conf.arg(metavar="DIR")],
    video: VideoConfig = VideoConfig(),
    landmarks: LandmarkConfig = LandmarkConfig(),
    fit: TrackFitConfig = TrackFitConfig(),
    photometric: PhotometricConfig = PhotometricConfig(),
    masks: MaskConfig = MaskConfig(),
    write_masks: bool = True,
    overlay: bool = True,
    focal: float | None = None,
    cameras: tuple[str, ...] | None = None,
    overlay_camera: str | None = None,
    backend: str = "auto",
    quiet: bool = False,
) -> None:
    """Track a face with the ICT-FaceKit head: head pose + 53 expression coefficients per timestep.

    INPUT is a video file (mp4, mov, mpg, webm, mkv, avi; its soundtrack is kept as audio.wav) or a calibrated
    capture (a nerfhead/nerfstudio transforms.json folder or a NeRSemble folder). --out DIR becomes a nerfhead
    capture folder: transforms.json, drive.npz, images (video input), masks, landmarks.npz, track.json and
    overlay.mp4.

    Args:
        input: video file or capture folder.
        out: output folder (created).
        video: frame range, stride, crop and scale of a video input.
        landmarks: MediaPipe Face Mesh options.
        fit: optimisation schedule and loss weights.
        photometric: optional photometric refinement after the landmark fit (``--photometric.iters 400``:
            sharper blinks and mouth shapes and a better monocular pose, about 1 s per 10 steps at 256 px).
        masks: foreground masks (mesh silhouette + person segmentation; see nerfhead.track.masks).
        write_masks: write foreground masks (a capture that has masks keeps its own).
        overlay: write overlay.mp4.
        focal: video input: focal length guess in pixels (default 1.4 x the longer side; refined by the fit).
        cameras: capture input: cameras to track (names or indices).
        overlay_camera: capture input: camera of overlay.mp4 (default: the one seeing the largest face).
        backend: rasterizer backend for masks and the overlay: auto, cuda, cpu or torch.
        quiet: no progress bar or summary.
    """
    from nerfhead.cli.checks import check_not_run_folder, check_out_dir
    from nerfhead.track.pipeline import TrackConfig, summary_line, track

    check_out_dir(out, "--out")
    check_not_run_folder(out, "--out")
    config = TrackConfig(
        video=video,
        landmarks=landmarks,
        fit=fit,
        photometric=photometric,
        masks=masks,
        make_masks=write_masks,
        overlay=overlay,
        focal=focal,
        cameras=cameras,
        overlay_camera=overlay_camera,
        backend=backend,
    )
    if quiet:
        track(input, out, config)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description:<14}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        result = track(input, out, config, _RichReporter(progress))
    console.print(summary_line(result))
    console.print(throughput_line(result.metrics))


def throughput_line(metrics: dict) -> str:
    """``stage N/s, ...; end to end F frames/s`` from a tracking's metrics."""
    parts = [f"{k} {v['per_second']:.1f}/s" for k, v in metrics.get("stages", {}).items() if v.get("items")]
    fps = metrics.get("frames_per_second")
    return "throughput: " + ", ".join(parts) + (f"; end to end {fps:.2f} frames/s" if fps else "")
