"""Lazy access to the compiled kernels in ``nerfhead._C`` (built from cuda_ext/ by setup.py).

``get_ext()`` returns the module or ``None``; it never compiles, except when ``NERFHEAD_JIT=1`` asks the
development loader (cuda_ext/build.py) to build into ``NERFHEAD_JIT_DIR``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import warnings
from functools import lru_cache
from pathlib import Path
from types import ModuleType

INSTALL_HINT = "install with `make setup` (or `pip install --no-build-isolation -e .`) to build nerfhead._C"


@lru_cache(maxsize=1)
def get_ext() -> ModuleType | None:
    """The compiled extension, or None when it is not built."""
    import torch  # noqa: F401  (the extension links against libtorch)

    if os.environ.get("NERFHEAD_JIT") != "1":
        try:
            return importlib.import_module("nerfhead._C")
        except ImportError as e:
            _load_error.append(str(e))
            return None
    else:
        build_py = Path(__file__).resolve().parents[1] / "cuda_ext" / "build.py"
        if build_py.is_file():
            spec = importlib.util.spec_from_file_location("_nerfhead_cuda_ext_build", build_py)
            assert spec and spec.loader
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            with_cuda = os.environ.get("NERFHEAD_CUDA", "0") == "1"
            return mod.jit_load(with_cuda=with_cuda, build_dir=os.environ.get("NERFHEAD_JIT_DIR"))
    return None


_load_error: list[str] = []


def load_error() -> str | None:
    """Why the extension could not be imported (None if it was, or was never tried)."""
    return _load_error[-1] if _load_error else None


def has_cpu_kernels() -> bool:
    """True when the compiled C++ CPU kernels are importable."""
    return get_ext() is not None


def has_cuda_kernels() -> bool:
    """True when the extension was compiled with its CUDA kernels (a device may still be absent)."""
    ext = get_ext()
    return bool(ext is not None and getattr(ext, "with_cuda", False))


_warned: set[str] = set()


def warn_once(key: str, message: str) -> None:
    """One warning per process per key."""
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)
