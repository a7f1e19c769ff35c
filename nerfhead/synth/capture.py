"""Render a synthetic capture: the rigged real-scan head performing a drive, filmed by a camera rig.

Output folder (nerfhead's capture format, a nerfstudio ``transforms.json`` superset; read it with
:func:`nerfhead.data.load_capture`)::

    transforms.json            cameras (OpenGL c2w for nerfstudio), frames, splits, fps, metadata["synth"]
    drive.npz                  the ground-truth Drive (pose + 53 expression coefficients per timestep)
    images/<camera>/<t>.png    RGB over the background colour
    masks/<camera>/<t>.png     coverage of the head mesh (anti-aliased when supersampling)
    audio<suffix>              the audio file, copied, when one was given

Images are lit by one directional light fixed in the world (plus ambient), like studio lights.
"""

from __future__ import annotations

import math
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from nerfhead.data.capture import Capture, Frame
from nerfhead.data.drive import Drive
from nerfhead.data.images import save_image, save_mask
from nerfhead.data.nerfstudio import save_capture
from nerfhead.errors import InputError
from nerfhead.parametric import RiggedHead, load_rigged_head
from nerfhead.render import MeshRenderConfig, MeshRenderer, ShadingConfig, TexturedMesh
from nerfhead.synth.rig import Rig, RigConfig, make_rig
from nerfhead.synth.script import ScriptConfig, expressive_drive

SYNTH_VERSION = 1
"""Bumped when the rendering or the script changes what a capture looks like (part of the cache key)."""


@dataclass(frozen=True)
class SynthConfig:
    """A synthetic capture."""

    rig: RigConfig = field(default_factory=RigConfig)
    """Cameras."""
    frames: int = 50
    """Timesteps (ignored when a drive is given: the drive's length is used)."""
    seed: int = 0
    """Seed of the built-in performance and of the mono camera's motion."""
    script: ScriptConfig = field(default_factory=ScriptConfig)
    """The built-in performance (when no drive is given)."""
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """RGB behind the head, in [0, 1]."""
    supersample: int = 2
    """Anti-aliasing: render at this factor per axis and box-filter down."""
    shading: ShadingConfig = field(default_factory=lambda: ShadingConfig(ambient=0.65, diffuse=0.35))
    """Studio light."""

    def check(self) -> None:
        """Raises InputError for values a user can get wrong."""
        self.rig.check()
        if not 1 <= self.frames <= 100_000:
            raise InputError(None, f"frames {self.frames} out of range", hint="use 1 .. 100000")
        if len(self.background) != 3 or not all(
            math.isfinite(c) and 0.0 <= c <= 1.0 for c in self.background
        ):
            raise InputError(None, f"background {self.background} must be three numbers in [0, 1]")
        if not 1 <= self.supersample <= 8:
            raise InputError(None, f"supersample {self.supersample} out of range", hint="use 1 .. 8")


def head_renderer(head: RiggedHead, cfg: SynthConfig) -> MeshRenderer:
    """Mesh renderer of the rigged head's opaque parts with its texture."""
    keep = head.head.render_face_mask
    mesh = TexturedMesh(
        faces=head.faces[keep], uv=head.uv, faces_uv=head.faces_uv[keep], texture=head.texture
    )
    return MeshRenderer(
        mesh,
        MeshRenderConfig(
            background=cfg.background, shading=cfg.shading, supersample=cfg.supersample, flip_v=True
        ),
    )


def render_capture(
    out: str | Path,
    cfg: SynthConfig | None = None,
    drive: Drive | None = None,
    audio: str | Path | None = None,
    progress: bool = True,
    head: RiggedHead | None = None,
) -> Capture:
    """Render the capture into ``out`` and write ``transforms.json`` + ``drive.npz`` there.

    Args:
        out: output folder (created; existing files of the same names are overwritten).
        cfg: rig, length, seed, look.
        drive: what the head does (default: :func:`expressive_drive` of ``cfg.frames`` frames).
        audio: an audio file to copy into the capture (its time 0 = timestep 0).
        progress: show a rich progress bar.
        head: the rigged head (default: the bundled one).

    Returns:
        The written capture (as :func:`nerfhead.data.load_capture` reads it back).

    Raises:
        InputError: bad options or an unreadable audio file.
    """
    cfg = cfg or SynthConfig()
    cfg.check()
    out = Path(out)
    scripted = drive is None
    if drive is None:
        drive = expressive_drive(cfg.frames, cfg.seed, cfg.script)
    audio_path = _copy_audio(audio, out) if audio is not None else None
    T = len(drive)
    rig = make_rig(cfg.rig, T, cfg.seed, drive.fps)
    head = head or load_rigged_head()
    renderer = head_renderer(head, cfg)
    frames = _render_frames(out, rig, head, renderer, drive, progress)
    meta = {
        "synth": {
            "version": SYNTH_VERSION,
            "rig": cfg.rig.name,
            "config": _jsonable(asdict(cfg)),
            "drive": "script" if scripted else "given",
        }
    }
    capture = Capture(
        cameras=rig.cameras,
        frames=tuple(frames),
        fps=drive.fps,
        drive=drive,
        audio_path=audio_path,
        train_cameras=rig.train_cameras,
        test_cameras=rig.test_cameras,
        metadata=meta,
    )
    save_capture(capture, out)
    return capture


def _render_frames(
    out: Path, rig: Rig, head: RiggedHead, renderer: MeshRenderer, drive: Drive, progress: bool
) -> list[Frame]:
    cams = rig.cameras
    names = cams.names or tuple(str(i) for i in range(len(cams)))
    W, H = int(cams.width[0]), int(cams.height[0])
    frames: list[Frame] = []
    T = len(drive)
    with ThreadPoolExecutor(max_workers=2) as pool, _progress(progress) as bar:
        task = bar.add_task("rendering", total=T) if bar is not None else None
        pending = []
        for t in range(T):
            ids = list(rig.frame_cameras[t])
            with torch.no_grad():
                verts = head.drive(drive[t]).vertices[0]
                img = renderer.render(verts, cams.viewmat[ids], cams.K[ids], W, H)
            rgb, alpha = img.rgb.clamp(0, 1).numpy(), img.alpha[..., 0].numpy()
            for j, c in enumerate(ids):
                ip = out / "images" / names[c] / f"{t:05d}.png"
                mp = out / "masks" / names[c] / f"{t:05d}.png"
                pending.append(pool.submit(save_image, ip, rgb[j]))
                pending.append(pool.submit(save_mask, mp, alpha[j]))
                frames.append(
                    Frame(camera=c, timestep=t, timestamp=t / drive.fps, image_path=ip, mask_path=mp)
                )
            if bar is not None and task is not None:
                bar.advance(task)
        for p in pending:
            p.result()
    return frames


class _NoBar:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _progress(enabled: bool):
    if not enabled:
        return _NoBar()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=True,
    )


def _copy_audio(audio: str | Path, out: Path) -> Path:
    """Check that ``audio`` decodes, then copy it to ``out/audio<suffix>``."""
    from nerfhead.media.audio import load_audio

    src = Path(audio)
    load_audio(src, warn=False)  # InputError when missing or not decodable
    out.mkdir(parents=True, exist_ok=True)
    dst = out / f"audio{src.suffix.lower()}"
    if src.resolve() != dst.resolve():
        shutil.copyfile(src, dst)
    return dst


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x
