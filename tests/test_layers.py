"""The package's layers (docs/architecture.md): a module imports only its own layer or lower ones, at top level or
inside a function. The imports that still break the rule are listed here; a new one fails."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "nerfhead"

LAYERS = {
    **dict.fromkeys(("errors", "atomic", "geometry", "assets", "_backend", "_C"), 1),
    **dict.fromkeys(("ops", "splats", "parametric", "data", "media"), 2),
    **dict.fromkeys(("components", "render"), 3),
    **dict.fromkeys(("fields", "track"), 4),
    "engine": 5,
    "audio": 6,
    **dict.fromkeys(("models", "synth"), 7),
    **dict.fromkeys(("viewer", "export"), 8),
    "cli": 9,
    "__main__": 10,
}

KNOWN: set[tuple[str, str]] = set()
"""Imports still allowed to run up a layer: none."""


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "nerfhead" else None


def upward_imports(root: Path = ROOT) -> set[tuple[str, str]]:
    """(file, module) for every import of a higher layer's module."""
    found = set()
    for path in root.rglob("*.py"):
        rel = path.relative_to(root.parent)
        mine = rel.parts[1].removesuffix(".py") if len(rel.parts) > 1 else None
        if mine not in LAYERS:
            continue  # nerfhead/__init__.py hands names on
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            else:
                continue
            for m in modules:
                other = _package(m)
                if other in LAYERS and LAYERS[other] > LAYERS[mine]:
                    found.add((rel.as_posix(), m))
    return found


def test_no_new_import_runs_up_a_layer():
    assert upward_imports() <= KNOWN, sorted(upward_imports() - KNOWN)


def test_the_check_sees_an_upward_import(tmp_path):
    pkg = tmp_path / "nerfhead"
    (pkg / "data").mkdir(parents=True)
    (pkg / "data" / "x.py").write_text("def f():\n    from nerfhead.models.registry import get\n")
    (pkg / "models").mkdir()
    (pkg / "models" / "y.py").write_text("from nerfhead.data.x import f\n")
    assert upward_imports(pkg) == {("nerfhead/data/x.py", "nerfhead.models.registry")}
