"""Where the bundled assets live (scenes/assets in the repository, or ``NERFHEAD_ASSETS``)."""

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


def assets_root() -> Path:
    """Folder of bundled assets."""
    env = os.environ.get("NERFHEAD_ASSETS")
    return Path(env) if env else repo_root() / "scenes" / "assets"


def asset_path(rel: str) -> Path:
    """Path of a bundled asset, relative to the assets root."""
    return assets_root() / rel


def asset_report() -> dict:
    """Root and presence of each required asset."""
    root = assets_root()
    return {"root": str(root), "files": {k: (root / v).is_file() for k, v in REQUIRED.items()}}
