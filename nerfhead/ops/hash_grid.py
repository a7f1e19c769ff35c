"""Multi-resolution hash-grid encoding (tiny-cuda-nn's HashGrid), with a compiled CPU/CUDA path and a torch twin.

Semantics, shared by every backend (see ``cuda_ext/csrc/hash_grid.h``): for level ``l`` with ``scale_l =
base_resolution * per_level_scale**l - 1``, the point ``x`` sits at grid position ``x * scale_l + 0.5``; the
``2**D`` surrounding vertices are looked up densely (coarse levels) or through the CoherentPrime hash (fine
levels) and blended with linear or smoothstep weights. Inputs are expected in ``[0, 1]^D``; like tiny-cuda-nn,
nothing is clamped (outside the cube, dense levels wrap around and hashed levels hash whatever vertex they meet).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch.autograd.function import once_differentiable

from nerfhead._backend import get_ext
from nerfhead.ops._dispatch import resolve_backend
from nerfhead.ops._torch.hash_grid import _hash_grid_encode

if TYPE_CHECKING:
    from nerfhead.ops.hash_grid_config import HashGridConfig

__all__ = ["hash_grid_encode"]


def _level_args(cfg: HashGridConfig) -> tuple[Any, ...]:
    lv = cfg.levels
    return (
        lv.offsets,
        lv.resolutions,
        lv.scales,
        lv.hashed,
        cfg.n_features_per_level,
        cfg.interpolation == "smoothstep",
    )


class _HashGridFunction(torch.autograd.Function):
    """Compiled forward/backward. First derivatives only: the backward is ``once_differentiable``, so asking for a
    second derivative (e.g. an eikonal loss on d features / d x) raises; use ``backend="torch"`` for that."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, table: torch.Tensor, level_args: tuple[Any, ...]) -> torch.Tensor:
        ext = get_ext()
        assert ext is not None
        ctx.save_for_backward(x, table)
        ctx.level_args = level_args
        return ext.hash_grid_forward(x, table, *level_args)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        x, table = ctx.saved_tensors
        need_x, need_table = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        ext = get_ext()
        assert ext is not None
        grad_table, grad_x = ext.hash_grid_backward(
            grad_out.to(table.dtype).contiguous(), x, table, *ctx.level_args, need_table, need_x
        )
        if grad_table is not None and grad_table.dtype != table.dtype:
            grad_table = grad_table.to(
                table.dtype
            )  # CUDA fp16 tables: accumulated in float32, stored as fp16
        return grad_x, grad_table, None


def hash_grid_encode(
    x: torch.Tensor, table: torch.Tensor, cfg: HashGridConfig, backend: str = "auto"
) -> torch.Tensor:
    """Encode points with a multi-resolution hash grid.

    Args:
        x: [..., D] positions, expected in [0, 1]^D (``D = cfg.n_input_dims``; not clamped).
        table: [cfg.n_params] flat table, level by level then entry by entry then feature. float32 everywhere;
            float16 on the CUDA kernel (gathered as half, accumulated in float32, table gradient accumulated in
            float32 and returned as float16); float64 on the CPU kernel and the torch twin.
        cfg: grid settings (``nerfhead.components.hash_grid.HashGridConfig``).
        backend: ``"auto"|"cuda"|"cpu"|"torch"`` (``nerfhead.ops._dispatch.resolve_backend``). The compiled CPU
            kernel needs ``x`` and ``table`` of one dtype (float32 or float64); the CUDA kernel needs float32 ``x``.
            ``"auto"`` uses the torch twin for dtypes its kernel does not take; ``"cpu"``/``"cuda"`` raise.

    Returns:
        [..., cfg.n_levels * cfg.n_features_per_level] features in the table's dtype, level-major.

    Gradients flow to ``table`` and to ``x`` on every backend; second derivatives only with ``backend="torch"``.
    """
    dims = cfg.n_input_dims
    if x.shape[-1] != dims:
        raise ValueError(f"hash_grid_encode: x must be [..., {dims}], got {tuple(x.shape)}")
    if table.shape != (cfg.n_params,):
        raise ValueError(f"hash_grid_encode: table must be [{cfg.n_params}], got {tuple(table.shape)}")
    lead = x.shape[:-1]
    flat = x.reshape(-1, dims)
    which = resolve_backend(backend, x.device, "hash_grid")
    if which != "torch":
        problem = _kernel_dtype_problem(which, flat.dtype, table.dtype)
        if problem and backend == "auto":
            which = "torch"  # the compiled kernel does not take these dtypes; the twin does
        elif problem:
            raise ValueError(f"hash_grid_encode: {problem}")
    if which == "torch":
        out = _hash_grid_encode(flat, table, cfg)
    else:
        out = _HashGridFunction.apply(flat.contiguous(), table.contiguous(), _level_args(cfg))
    return out.reshape(*lead, cfg.output_dim)


def _kernel_dtype_problem(which: str, x_dtype: torch.dtype, table_dtype: torch.dtype) -> str | None:
    """Why the compiled kernel cannot take these dtypes, or None."""
    if which == "cpu":
        if table_dtype not in (torch.float32, torch.float64):
            return f"the CPU kernel needs a float32 or float64 table (float16 tables are CUDA-only), got {table_dtype}"
        if x_dtype != table_dtype:
            return f"the CPU kernel needs x and table of one dtype, got {x_dtype} and {table_dtype}"
    elif which == "cuda":
        if table_dtype not in (torch.float32, torch.float16):
            return f"the CUDA kernel needs a float32 or float16 table, got {table_dtype}"
        if x_dtype != torch.float32:
            return f"the CUDA kernel needs float32 x, got {x_dtype}"
    return None
