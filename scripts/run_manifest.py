"""One job per capture: track (videos) and fit every capture of a manifest, one after another or one per SLURM
array task.

A manifest is a text file with one capture per line, ``NAME INPUT [nerfhead fit options ...]`` (whitespace
separated, shell quoting; ``#`` starts a comment). INPUT is a video (tracked first into ``OUT/NAME/capture``) or a
capture folder with a drive. Each capture's avatar goes to ``OUT/NAME/avatar``; a capture whose ``fit.json``
exists is skipped, and one with checkpoints resumes, so the same command can be re-run after a failure.

    python scripts/run_manifest.py subjects.txt --out runs/                    # every capture, in turn
    python scripts/run_manifest.py subjects.txt --out runs/ --index 3          # the 4th (0-based) only
    sbatch --array=0-9 scripts/slurm_array.sh subjects.txt runs/               # one SLURM task each

Options after ``--`` go to every ``nerfhead fit`` (e.g. ``-- --preset quality --nproc 4``). Exit code: 0 when
every selected capture finished, 1 when one failed (the others still run), 2 for a bad manifest or index.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mpg", ".mpeg", ".webm", ".mkv", ".avi")


@dataclass(frozen=True)
class Entry:
    name: str
    input: Path
    fit_args: tuple[str, ...]


class ManifestError(Exception):
    pass


def read_manifest(path: Path) -> list[Entry]:
    """The manifest's captures (relative INPUTs are relative to the manifest's folder)."""
    try:
        text = path.read_text()
    except OSError as e:
        raise ManifestError(f"{path}: cannot read ({type(e).__name__})") from None
    out: list[Entry] = []
    for n, line in enumerate(text.splitlines(), 1):
        parts = shlex.split(line, comments=True)
        if not parts:
            continue
        if len(parts) < 2:
            raise ManifestError(f"{path}:{n}: expected NAME INPUT [fit options], got {line.strip()!r}")
        name, inp = parts[0], Path(parts[1])
        if "/" in name or name in (".", ".."):
            raise ManifestError(f"{path}:{n}: NAME {name!r} must be a plain folder name")
        if any(e.name == name for e in out):
            raise ManifestError(f"{path}:{n}: NAME {name!r} appears twice")
        out.append(Entry(name, inp if inp.is_absolute() else path.parent / inp, tuple(parts[2:])))
    if not out:
        raise ManifestError(f"{path}: no captures")
    return out


def nerfhead() -> list[str]:
    return [sys.executable, "-m", "nerfhead"]


def run_entry(e: Entry, out: Path, fit_args: list[str]) -> int:
    """Track (videos) and fit one capture; the exit code of the first step that fails, else 0."""
    dest = out / e.name
    avatar = dest / "avatar"
    if (avatar / "fit.json").is_file():
        print(f"[{e.name}] done already: {avatar}", flush=True)
        return 0
    capture = e.input
    if e.input.suffix.lower() in VIDEO_SUFFIXES:
        capture = dest / "capture"
        if not (capture / "transforms.json").is_file():
            print(f"[{e.name}] tracking {e.input}", flush=True)
            code = subprocess.call(nerfhead() + ["track", str(e.input), "--out", str(capture), "--quiet"])
            if code:
                return code
    cmd = nerfhead() + ["fit", str(capture), "--out", str(avatar), *e.fit_args, *fit_args]
    if (avatar / "checkpoints").is_dir() and any((avatar / "checkpoints").iterdir()):
        cmd.append("--resume")
    print(f"[{e.name}] {shlex.join(cmd[2:])}", flush=True)
    return subprocess.call(cmd)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("manifest", type=Path)
    ap.add_argument("--out", type=Path, required=True, help="one folder per capture under it")
    ap.add_argument(
        "--index",
        type=int,
        default=None,
        help="run only this 0-based entry (default: $SLURM_ARRAY_TASK_ID, else all)",
    )
    args = ap.parse_args(argv)
    try:
        entries = read_manifest(args.manifest)
        index = args.index
        if index is None and os.environ.get("SLURM_ARRAY_TASK_ID"):
            index = int(os.environ["SLURM_ARRAY_TASK_ID"])
        if index is not None and not 0 <= index < len(entries):
            raise ManifestError(f"{args.manifest}: index {index} is outside its {len(entries)} captures")
    except (ManifestError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    chosen = entries if index is None else [entries[index]]
    failed = []
    for e in chosen:
        code = run_entry(e, args.out, extra)
        if code:
            print(f"[{e.name}] failed with exit code {code}", file=sys.stderr, flush=True)
            failed.append(e.name)
    if failed:
        print(f"failed: {' '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
