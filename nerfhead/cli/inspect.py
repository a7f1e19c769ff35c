"""``nerfhead inspect``: load a capture in any supported layout, check its files and summarise it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import tyro


def _audio_info(path: Path) -> dict[str, Any]:
    """Sample rate, channels and duration of an audio file (soundfile, else PyAV)."""
    from nerfhead.errors import InputError

    try:
        import soundfile

        info = soundfile.info(str(path))
        return {"sample_rate": info.samplerate, "channels": info.channels, "duration_s": info.duration}
    except Exception:
        pass
    try:
        import av

        with av.open(str(path)) as c:
            streams = [s for s in c.streams if s.type == "audio"]
            if not streams:
                raise InputError(path, "has no audio stream")
            s: Any = streams[0]
            dur = float(c.duration / 1_000_000) if c.duration else None
            return {"sample_rate": s.rate, "channels": s.channels, "duration_s": dur}
    except InputError:
        raise
    except Exception as e:
        raise InputError(path, f"not a readable audio file ({type(e).__name__})") from None


def report(capture_path: Path, decode: int = 32, allow_outside_paths: bool = False) -> dict[str, Any]:
    """Everything ``inspect`` prints, as a JSON-able dict (raises InputError on a bad capture)."""
    from nerfhead.data import detect_format, load_capture

    fmt, _ = detect_format(capture_path)
    cap = load_capture(capture_path, allow_outside_paths=allow_outside_paths)
    decoded = cap.check_files(decode=decode)
    out = {
        "path": str(capture_path),
        "format": fmt,
        **cap.summary(),
        "checked": {"headers": len(cap), "decoded": decoded},
    }
    if cap.audio_path is not None:
        out["audio"].update(_audio_info(cap.audio_path))
    return out


def main(
    capture: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="CAPTURE")],
    json_out: Annotated[bool, tyro.conf.arg(name="json")] = False,
    decode: int = 32,
    allow_outside_paths: bool = False,
) -> None:
    """Load a capture (nerfhead or nerfstudio transforms.json folder, or a NeRSemble folder; detected from the
    files), check every image/mask header against its camera, decode a sample, and print a summary.

    Args:
        capture: capture folder, transforms.json, or NeRSemble participant/sequence folder.
        json_out: print machine-readable JSON instead of a table.
        decode: frames to fully decode (spread evenly; -1 decodes all).
        allow_outside_paths: accept file_path / mask_path outside the capture folder (refused by default).
    """
    r = report(capture, decode=decode, allow_outside_paths=allow_outside_paths)
    if json_out:
        print(json.dumps(r, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{r['path']} ({r['format']})", show_header=False)
    t.add_column("item")
    t.add_column("value")
    names = r["camera_names"]
    cams = f"{r['cameras']}" + (
        f"  ({', '.join(names[:8])}{', ...' if len(names) > 8 else ''})" if names else ""
    )
    t.add_row("cameras", cams)
    t.add_row(
        "timesteps",
        f"{r['timesteps']} at {r['fps']:g} fps, {r['time_span_s'][0]:.3f}-{r['time_span_s'][1]:.3f} s",
    )
    t.add_row(
        "frames",
        f"{r['frames']} (headers checked: {r['checked']['headers']}, decoded: {r['checked']['decoded']})",
    )
    t.add_row("image sizes", ", ".join(f"{k} x{v}" for k, v in r["image_sizes"].items()))
    t.add_row(
        "focal (px)",
        f"{r['focal_px'][0]:.2f}-{r['focal_px'][1]:.2f}, distortion: {'yes' if r['distortion'] else 'no'}",
    )
    t.add_row("camera spread", f"{r['camera_spread_m']:.3f} m")
    t.add_row("masks", f"{r['masks']} / {r['frames']}")
    if r["train_cameras"] is not None or r["test_cameras"] is not None:
        t.add_row("split", f"train {r['train_cameras']}, test {r['test_cameras']}")
    d = r["drive"]
    t.add_row(
        "drive",
        "none"
        if d is None
        else f"{d['timesteps']} steps at {d['fps']:g} fps, latent {d['latent_dim']}, expression "
        f"[{d['expression_range'][0]:.3f}, {d['expression_range'][1]:.3f}], max rotation {d['max_rotation_deg']:.1f} deg",
    )
    a = r["audio"]
    if a is None:
        t.add_row("audio", "none")
    else:
        dur = f"{a['duration_s']:.2f} s" if a.get("duration_s") is not None else "unknown length"
        t.add_row(
            "audio",
            f"{a['path']} ({a['sample_rate']} Hz, {a['channels']} ch, {dur}, offset {a['offset_s']:g} s)",
        )
    Console().print(t)
