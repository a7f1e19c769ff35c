"""The extension: compiled CPU kernels importable, and the CUDA sources compile with nvcc.

The CUDA check compiles every cuda_ext/csrc/*.cu (plus the C++ sources, with WITH_CUDA) into build/cuda_check,
links it and imports it. It runs wherever nvcc exists (it does on these machines, GPU or not); in CI a missing
nvcc is a failure, not a skip, so a CUDA source that does not compile fails CI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from cuda_ext import build as B

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_import_never_compiles(tmp_path):
    # A fresh interpreter importing nerfhead must not invoke a compiler or load the extension.
    code = "import sys, nerfhead, nerfhead.ops, nerfhead.cli.main; print('nerfhead._C' in sys.modules)"
    env = dict(os.environ, NERFHEAD_JIT="1", NERFHEAD_JIT_DIR=str(tmp_path / "never"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "False"
    assert not (tmp_path / "never").exists()


def test_cpu_kernels_built():
    from nerfhead import _backend

    ext = _backend.get_ext()
    assert ext is not None, f"nerfhead._C not importable: {_backend.load_error()}"
    for op in ("hash_grid", "ray_march", "composite", "rasterize_mesh"):
        assert hasattr(ext, f"{op}_forward"), f"compiled CPU kernel for {op} missing"


def test_sources_listed():
    cpp = B.cpu_sources()
    assert any(s.endswith("bindings.cpp") for s in cpp)
    assert len(B.cuda_sources()) >= 1


@pytest.mark.slow
def test_cuda_sources_compile():
    if B.find_nvcc() is None:
        if os.environ.get("CI"):
            pytest.fail("nvcc not found: CI must compile the CUDA kernels")
        pytest.skip("nvcc not found")
    if torch.version.cuda is None:
        pytest.fail("torch was built without CUDA; the pinned torch==2.14.1 is a CUDA build")
    build_dir = REPO / "build" / "cuda_check"
    env = dict(os.environ, MAX_JOBS=os.environ.get("MAX_JOBS", "2"))
    proc = subprocess.run(
        [sys.executable, str(REPO / "cuda_ext" / "build.py"), "--cuda", str(build_dir)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=3000,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["with_cuda"] is True
    for op in ("hash_grid", "ray_march", "composite", "rasterize_mesh"):
        assert f"{op}_forward" in info["names"]
