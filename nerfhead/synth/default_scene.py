"""The bundled default scene: a small synthetic capture generated on first use and cached.

``default_capture()`` returns the folder of the capture for a :class:`SynthConfig` (default: ``DEFAULT_SCENE``,
the 16-camera rig at 128 x 128 for 25 frames, which demos and fitting tests use). The folder is
``<cache>/synth-<params>-<code>``, where ``params`` hashes the configuration and ``code`` hashes
``SYNTH_VERSION``, the source files that decide the pixels (synth, render, the mesh rasterizer, the parametric
head, the capture reader/writer) and the bundled head assets. It is rendered into a temporary sibling folder and
renamed into place, so a half-written capture is never seen, and reused while both hashes match; a folder of the
same configuration and an older code hash is deleted when the new one is written. ``<cache>`` is
:func:`nerfhead.assets.cache_root`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

from nerfhead.assets import asset_path, cache_root
from nerfhead.synth.capture import SYNTH_VERSION, SynthConfig, render_capture
from nerfhead.synth.rig import RigConfig

DEFAULT_SCENE = SynthConfig(rig=RigConfig(name="nersemble16", width=128, height=128), frames=25, seed=0)
"""The default test capture: 16 cameras (12 train, 4 held out), 128 x 128, 25 frames (1 s at 25 fps)."""

_CODE = ("synth", "render", "parametric", "data", "ops/rasterize_mesh.py", "ops/_torch/rasterize_mesh.py")
_ASSETS = (
    "rigged_head/rigged_head.npz",
    "rigged_head/albedo.png",
    "ict_facekit/ict_facekit_light.npz",
)


def params_key(cfg: SynthConfig) -> str:
    """Hash of the configuration."""
    return hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True, default=str).encode()).hexdigest()[:10]


def code_key() -> str:
    """Hash of ``SYNTH_VERSION``, the code and the assets that decide a capture's pixels."""
    h = hashlib.sha256(f"synth-{SYNTH_VERSION}".encode())
    pkg = Path(__file__).resolve().parents[1]
    files: list[Path] = []
    for rel in _CODE:
        p = pkg / rel
        files += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    files += [asset_path(a) for a in _ASSETS]
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes() if f.is_file() else b"<missing>")
    return h.hexdigest()[:10]


def default_capture(
    cfg: SynthConfig | None = None, cache: str | Path | None = None, progress: bool = True
) -> Path:
    """Folder of the cached capture for ``cfg`` (default ``DEFAULT_SCENE``), rendering it on first use.

    Args:
        cfg: the capture to make.
        cache: cache folder (default :func:`cache_root`).
        progress: show a progress bar while rendering.

    Returns:
        The capture folder (read it with :func:`nerfhead.data.load_capture`).
    """
    cfg = cfg or DEFAULT_SCENE
    root = Path(cache) if cache is not None else cache_root()
    prefix = f"synth-{params_key(cfg)}-"
    final = root / f"{prefix}{code_key()}"
    if (final / "transforms.json").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-synth-", dir=root))
    try:
        render_capture(tmp, cfg, progress=progress)
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished first (or a stale partial folder): keep a complete one
            if not (final / "transforms.json").is_file():
                shutil.rmtree(final, ignore_errors=True)
                os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    for old in root.glob(prefix + "*"):
        if old != final and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return final
