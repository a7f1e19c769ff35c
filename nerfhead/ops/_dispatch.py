"""Backend choice shared by every op: ``backend="auto"|"cuda"|"cpu"|"torch"``.

- ``"torch"``: the pure-PyTorch twin (``nerfhead.ops._torch``), any device; also the test oracle.
- ``"cpu"``: the compiled C++ kernel; tensors must be on the CPU.
- ``"cuda"``: the compiled CUDA kernel; tensors must be on a CUDA device.
- ``"auto"``: the compiled kernel for the tensor's device if built, else the torch twin (one warning per
  process naming the install step).
"""

from __future__ import annotations

from typing import Literal

import torch

from nerfhead._backend import INSTALL_HINT, get_ext, has_cuda_kernels, warn_once

Backend = Literal["auto", "cuda", "cpu", "torch"]
BACKENDS: tuple[str, ...] = ("auto", "cuda", "cpu", "torch")


def resolve_backend(backend: str, device: torch.device, op: str) -> str:
    """Concrete backend (``"cuda"``, ``"cpu"`` or ``"torch"``) for an op on tensors living on ``device``."""
    if backend not in BACKENDS:
        raise ValueError(f"{op}: backend must be one of {BACKENDS}, got {backend!r}")
    ext = get_ext()
    if backend == "torch":
        return "torch"
    if backend == "cpu":
        if device.type != "cpu":
            raise ValueError(f"{op}: backend='cpu' needs CPU tensors, got {device}")
        if ext is None or not hasattr(ext, f"{op}_forward"):
            raise RuntimeError(f"{op}: compiled CPU kernel not available; {INSTALL_HINT}")
        return "cpu"
    if backend == "cuda":
        if device.type != "cuda":
            raise ValueError(f"{op}: backend='cuda' needs CUDA tensors, got {device}")
        if not has_cuda_kernels():
            raise RuntimeError(f"{op}: nerfhead._C was built without CUDA kernels; rebuild with nvcc present")
        return "cuda"
    # auto
    if device.type == "cuda":
        if has_cuda_kernels():
            return "cuda"
        warn_once(f"{op}:cuda", f"{op}: CUDA kernels not built, using the torch twin; {INSTALL_HINT}")
        return "torch"
    if device.type == "cpu" and ext is not None and hasattr(ext, f"{op}_forward"):
        return "cpu"
    warn_once(f"{op}:cpu", f"{op}: compiled CPU kernel not available, using the torch twin; {INSTALL_HINT}")
    return "torch"
