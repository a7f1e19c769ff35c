"""Where generated data is cached: never inside an installed package."""

from __future__ import annotations

from pathlib import Path

import nerfhead.assets as assets


def test_cache_root_env_checkout_and_wheel(monkeypatch, tmp_path):
    monkeypatch.setenv("NERFHEAD_CACHE", str(tmp_path / "c"))
    assert assets.cache_root() == tmp_path / "c"
    monkeypatch.delenv("NERFHEAD_CACHE")
    # a source checkout: scenes/cache next to the package
    assert assets.cache_root() == assets.repo_root() / "scenes" / "cache"
    # an installed wheel (its package data present): the user's cache, not site-packages
    monkeypatch.setattr(assets, "packaged_assets", lambda: tmp_path / "site" / "nerfhead" / "_assets")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert assets.cache_root() == tmp_path / "xdg" / "nerfhead"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert assets.cache_root() == Path.home() / ".cache" / "nerfhead"
