"""Stateless ops over plain tensors. Each has a compiled kernel (cuda_ext/) and a pure-PyTorch twin
(``nerfhead.ops._torch``), chosen with ``backend="auto"|"cuda"|"cpu"|"torch"``."""

from nerfhead.ops._dispatch import BACKENDS, Backend, resolve_backend

__all__ = ["BACKENDS", "Backend", "resolve_backend"]
