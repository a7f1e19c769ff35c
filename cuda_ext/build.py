"""One description of the ``nerfhead._C`` extension, read by ``setup.py`` and by the development JIT loader.

The C++ CPU kernels (``csrc/*.cpp``, OpenMP) are always built. The CUDA kernels (``csrc/*.cu``) are added when
torch was built with CUDA, ``nvcc`` is found, and ``NERFHEAD_CUDA`` is not ``0``; ``WITH_CUDA`` is then defined so
the dispatchers route CUDA tensors to them.

Nothing here runs at ``import nerfhead`` time.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
CSRC = ROOT / "csrc"
EXT_NAME = "nerfhead._C"

CXX_FLAGS = ["-O3", "-fopenmp", "-DNERFHEAD_EXT"]
LINK_FLAGS = ["-fopenmp"]
NVCC_FLAGS = [
    "-O3",
    "--use_fast_math",
    "--expt-relaxed-constexpr",
    "-DNERFHEAD_EXT",
    "-Xcompiler=-fopenmp",
]
DEFAULT_ARCH_LIST = "9.0"


def cpu_sources() -> list[str]:
    """C++ sources: the binding module, per-op dispatchers and CPU kernels."""
    return sorted(str(p) for p in CSRC.glob("*.cpp"))


def cuda_sources() -> list[str]:
    """CUDA kernel sources."""
    return sorted(str(p) for p in CSRC.glob("*.cu"))


def find_nvcc() -> str | None:
    """Path of nvcc, honouring CUDA_HOME, else PATH, else /usr/local/cuda."""
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    candidates = [Path(home) / "bin" / "nvcc"] if home else []
    which = shutil.which("nvcc")
    if which:
        candidates.append(Path(which))
    candidates.append(Path("/usr/local/cuda/bin/nvcc"))
    for c in candidates:
        if c.is_file():
            return str(c)
    return None


def prepare_cuda_env() -> None:
    """Set the two variables a CUDA build needs on machines without a GPU (see docs/install.md).

    ``CUDA_HOME`` must point at a toolkit with ``lib64`` (torch's guess from nvcc's location may be ``/usr/local``),
    and ``TORCH_CUDA_ARCH_LIST`` must be explicit when no device can be queried.
    """
    if not os.environ.get("CUDA_HOME"):
        for cand in ("/usr/local/cuda",):
            if (Path(cand) / "lib64").exists() or (Path(cand) / "targets").exists():
                os.environ["CUDA_HOME"] = cand
                break
        else:
            nvcc = find_nvcc()
            if nvcc:
                os.environ["CUDA_HOME"] = str(Path(nvcc).resolve().parents[1])
    if not os.environ.get("TORCH_CUDA_ARCH_LIST"):
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability()
            os.environ["TORCH_CUDA_ARCH_LIST"] = f"{major}.{minor}"
        else:
            os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_ARCH_LIST


def extra_cuda_includes() -> list[str]:
    """pip's CUDA headers (cusparse.h etc.), needed by ATen/cuda headers when the system toolkit is minimal."""
    out: list[str] = []
    for sp in sys.path:
        for sub in ("nvidia/cu13/include", "nvidia/cuda_runtime/include", "nvidia/cusparse/include"):
            p = Path(sp) / sub
            if p.is_dir():
                out.append(str(p))
    return out


def want_cuda() -> bool:
    """Whether to build the CUDA kernels: NERFHEAD_CUDA=0/1 forces, otherwise torch has CUDA and nvcc exists."""
    flag = os.environ.get("NERFHEAD_CUDA", "auto").strip().lower()
    if flag in ("0", "false", "no", "off"):
        return False
    import torch

    has = torch.version.cuda is not None and find_nvcc() is not None
    if flag in ("1", "true", "yes", "on") and not has:
        raise RuntimeError("NERFHEAD_CUDA=1 but torch has no CUDA or nvcc was not found")
    return has


def extension_kwargs(with_cuda: bool) -> dict:
    """Keyword arguments shared by setuptools' extension classes and ``torch.utils.cpp_extension.load``."""
    sources = cpu_sources() + (cuda_sources() if with_cuda else [])
    defines = ["-DWITH_CUDA"] if with_cuda else []
    return {
        "sources": sources,
        "extra_compile_args": {"cxx": CXX_FLAGS + defines, "nvcc": NVCC_FLAGS + defines}
        if with_cuda
        else {"cxx": CXX_FLAGS},
        "extra_link_args": LINK_FLAGS,
        "include_dirs": [str(CSRC)] + (extra_cuda_includes() if with_cuda else []),
    }


def setuptools_extension(with_cuda: bool | None = None):
    """The setuptools Extension for ``nerfhead._C``."""
    if with_cuda is None:
        with_cuda = want_cuda()
    if with_cuda:
        prepare_cuda_env()
    import torch.utils.cpp_extension as cpp
    from torch.utils.cpp_extension import CppExtension, CUDAExtension

    if with_cuda and os.environ.get("CUDA_HOME"):
        cpp.CUDA_HOME = os.environ["CUDA_HOME"]
    kw = extension_kwargs(with_cuda)
    # setuptools wants source paths relative to setup.py's folder.
    kw["sources"] = [os.path.relpath(s, ROOT.parent) for s in kw["sources"]]
    return (CUDAExtension if with_cuda else CppExtension)(EXT_NAME, **kw)


def jit_load(with_cuda: bool = False, build_dir: str | os.PathLike | None = None, verbose: bool = False):
    """Compile (or reuse) the extension in ``build_dir`` and import it. Development and tests only."""
    if with_cuda:
        prepare_cuda_env()  # before cpp_extension is imported: it reads CUDA_HOME once, at import
    import torch.utils.cpp_extension as cpp

    if with_cuda and os.environ.get("CUDA_HOME"):
        cpp.CUDA_HOME = os.environ["CUDA_HOME"]  # in case it was imported earlier with a wrong guess
    load = cpp.load
    kw = extension_kwargs(with_cuda)
    flags = kw["extra_compile_args"]
    name = "nerfhead_C_cuda" if with_cuda else "nerfhead_C_cpu"
    if build_dir is not None:
        Path(build_dir).mkdir(parents=True, exist_ok=True)
    return load(
        name=name,
        sources=kw["sources"],
        extra_cflags=flags["cxx"],
        extra_cuda_cflags=flags.get("nvcc", []),
        extra_ldflags=kw["extra_link_args"],
        extra_include_paths=kw["include_dirs"],
        build_directory=str(build_dir) if build_dir is not None else None,
        with_cuda=with_cuda,
        verbose=verbose,
    )


# python cuda_ext/build.py [--cuda] BUILD_DIR  -> prints JSON about the built module
if __name__ == "__main__":
    import argparse
    import json

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("build_dir")
    ap.add_argument("--cuda", action="store_true", help="also compile the CUDA kernels (needs nvcc)")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    mod = jit_load(with_cuda=a.cuda, build_dir=a.build_dir, verbose=a.verbose)
    names = sorted(n for n in dir(mod) if not n.startswith("_"))
    print(json.dumps({"file": mod.__file__, "with_cuda": bool(mod.with_cuda), "names": names}))
