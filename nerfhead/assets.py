"""Where the bundled assets live: ``NERFHEAD_ASSETS`` when set, else the installed package's data
(``nerfhead/_assets``, copied from scenes/assets by the wheel build, read through importlib.resources), else
``scenes/assets`` of the source checkout."""

from __future__ import annotations

import os
from pathlib import Path

REQUIRED = {
    "ict_facekit": "ict_facekit/ict_facekit_light.npz",
    "head_scan": "head_scan_leeperrysmith/LeePerrySmith.glb",
    "head_scan_albedo": "head_scan_leeperrysmith/Map-COL.jpg",
    "rigged_head": "rigged_head/rigged_head.npz",
    "speech_en": "audio/en_ljspeech_LJ050-0131.wav",
    "video_grid": "video_grid/grid_bbaf2n.mpg",
}


def repo_root() -> Path:
    """The source checkout holding this package (editable installs)."""
    return Path(__file__).resolve().parents[1]


def packaged_assets() -> Path | None:
    """``nerfhead/_assets`` of an installed wheel, or None (a source checkout has none)."""
    from importlib.resources import files

    p = files("nerfhead") / "_assets"
    return Path(str(p)) if p.is_dir() else None


def assets_root() -> Path:
    """Folder of bundled assets."""
    env = os.environ.get("NERFHEAD_ASSETS")
    if env:
        return Path(env)
    return packaged_assets() or repo_root() / "scenes" / "assets"


def cache_root() -> Path:
    """Where generated data is cached (synthetic scenes, frame stores, peers' environments):
    ``$NERFHEAD_CACHE``; else ``scenes/cache`` of a source checkout (gitignored); else, for an installed wheel,
    ``$XDG_CACHE_HOME/nerfhead`` (``~/.cache/nerfhead``), never the installed package's own folder."""
    env = os.environ.get("NERFHEAD_CACHE")
    if env:
        return Path(env)
    if packaged_assets() is None and (repo_root() / "scenes").is_dir():
        return repo_root() / "scenes" / "cache"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "nerfhead"


def asset_path(rel: str) -> Path:
    """Path of a bundled asset, relative to the assets root."""
    return assets_root() / rel


def asset_report() -> dict:
    """Root and presence of each required asset."""
    root = assets_root()
    return {"root": str(root), "files": {k: (root / v).is_file() for k, v in REQUIRED.items()}}
