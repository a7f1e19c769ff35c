"""The package as a user installs it: the sdist and the wheel carry everything read at run time (the assets as
package data, the C++ extension built by the wheel build), and the wheel, installed into a fresh venv outside the
checkout, runs ``nerfhead doctor --json`` and a tiny ``synth`` + ``fit --steps`` + ``drive`` there.

The fresh venv reuses the pinned torch and the other dependencies of the running interpreter (a ``.pth`` naming its
site-packages folders; nothing is downloaded) and gets the wheel with ``pip install --no-deps``.

Cost: the wheel build compiles nothing when the in-tree build (``make build``, ``setup.py build_ext --inplace``)
has already compiled the kernels: setuptools' build_temp is the same ``build/temp.*`` folder, so ninja only links
(with the same ``NERFHEAD_CUDA``; the test defaults it to 0). Measured on the 2-core dev machine, unlocked: 33 s at
load 2.5, 69-139 s at load 5-7; compiling the 12 C++ objects from nothing took about 20 minutes at load 7-11.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from nerfhead.assets import REQUIRED

REPO = Path(__file__).resolve().parents[1]
RUN_TIME_ASSETS = (
    *REQUIRED.values(),
    "audio_prior/prior.safetensors",
    "tracking/mediapipe_to_ict.npz",
    "rigged_head/albedo.png",
)


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.mark.slow
def test_sdist_and_wheel_install_and_run_outside_the_checkout(tmp_path):
    env = {
        k: v for k, v in os.environ.items() if k not in ("NERFHEAD_ASSETS", "PYTHONPATH", "NERFHEAD_CACHE")
    }
    env.setdefault("MAX_JOBS", "2")
    env.setdefault("NERFHEAD_CUDA", "0")  # as the Makefile exports on GPU-less machines: the C++ kernels only
    dist = tmp_path / "dist"
    # sdist (PEP 517 hook of the project's backend): sources, kernels' sources and assets
    code = f"from setuptools import build_meta as b; print(b.build_sdist({str(dist)!r}))"
    sdist = dist / _run([sys.executable, "-c", code], REPO, env).stdout.strip().splitlines()[-1]
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    for rel in (
        "setup.py",
        "pyproject.toml",
        "cuda_ext/csrc/bindings.cpp",
        "cuda_ext/build.py",
        "nerfhead/assets.py",
    ):
        assert rel in names, f"sdist lacks {rel}"
    for rel in RUN_TIME_ASSETS:
        assert f"scenes/assets/{rel}" in names, f"sdist lacks scenes/assets/{rel}"
    assert not any(n.endswith((".so", ".o")) for n in names)

    # wheel: the extension compiled (or linked from build/temp.*) and the assets as package data
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-build-isolation",
            "--no-deps",
            "-q",
            "-w",
            str(dist),
            ".",
        ],
        REPO,
        env,
        900,
    )
    wheel = next(dist.glob("nerfhead-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        members = set(zf.namelist())
    assert any(m.startswith("nerfhead/_C") and m.endswith(".so") for m in members)
    for rel in RUN_TIME_ASSETS:
        assert f"nerfhead/_assets/{rel}" in members, f"wheel lacks {rel}"

    # a fresh venv outside the checkout, reusing this interpreter's site-packages (torch etc.)
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    py = venv / "bin" / "python"
    purelib = Path(
        _run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path, env
        ).stdout.strip()
    )
    deps = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (purelib / "zz_reuse_deps.pth").write_text("\n".join(deps) + "\n")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            str(wheel),
        ],
        tmp_path,
        env,
    )
    work = tmp_path / "work"
    work.mkdir()
    where = _run(
        [str(py), "-c", "import torch, nerfhead, nerfhead._C; print(nerfhead.__file__)"], work, env
    ).stdout
    assert Path(where.strip()).is_relative_to(venv), where

    nh = str(venv / "bin" / "nerfhead")
    doctor = json.loads(_run([nh, "doctor", "--json"], work, env).stdout)
    text = json.dumps(doctor)
    assert str(REPO) not in text, "the installed package still reads the checkout"
    assets = doctor["assets"] if "assets" in doctor else doctor
    assert Path(assets["root"]).is_relative_to(venv) and all(assets["files"].values()), assets
    _run(
        [nh, "synth", "--rig", "mono", "--frames", "4", "--res", "32", "--supersample", "1", "--out", "cap"],
        work,
        env,
    )
    _run(
        [
            nh,
            "fit",
            "cap",
            "--out",
            "run",
            "--preset",
            "fast",
            "--steps",
            "2",
            "--no-evaluate",
            "--threads",
            "1",
        ],
        work,
        env,
    )
    clip = purelib / "nerfhead" / "_assets" / REQUIRED["speech_en"]
    out = _run(
        [nh, "drive", "run", "--audio", str(clip), "--out", "talk.mp4", "--res", "32"], work, env
    ).stdout
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["frames"] > 10 and (work / "talk.mp4").stat().st_size > 1000
    assert "prior.safetensors" in summary["driver"] and Path(summary["driver"]).is_relative_to(venv)
