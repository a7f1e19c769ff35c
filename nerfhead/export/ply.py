"""3D Gaussian splats as PLY in the Inria 3DGS layout (read by SuperSplat, antimatter15, gsplat, nerfstudio).

One binary little-endian ``vertex`` element, every property float32, in this order::

    x y z  nx ny nz  f_dc_0 f_dc_1 f_dc_2  f_rest_0 .. f_rest_{3(K-1)-1}  opacity  scale_0..2  rot_0..3

* ``nx ny nz`` are zeros (3DGS writes them, gsplat's exporter omits them);
* ``f_rest`` is channel-major: the K-1 red coefficients, then the green, then the blue;
* values are stored *before* activation: opacity as a logit, scales as logs, the rotation as an unnormalised
  quaternion (w, x, y, z); colour = 0.5 + SH_C0 * f_dc.

:func:`read_ply` reads this layout back (any property order, float32/float64, either endianness, ascii).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nerfhead.engine.checkpoint import atomic_write_bytes
from nerfhead.errors import InputError

_PLY_TYPES = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "i2",
    "int16": "i2",
    "ushort": "u2",
    "uint16": "u2",
    "int": "i4",
    "int32": "i4",
    "uint": "u4",
    "uint32": "u4",
    "float": "f4",
    "float32": "f4",
    "double": "f8",
    "float64": "f8",
}


@dataclass(frozen=True)
class PlyGaussians:
    """Gaussians as stored in a 3DGS PLY (pre-activation values, float32 numpy arrays).

    Attributes:
        means: [N, 3] positions.
        log_scales: [N, 3] log standard deviations.
        quats: [N, 4] rotations (w, x, y, z), not necessarily normalised.
        opacity_logits: [N] logits of the opacities.
        sh: [N, K, 3] SH coefficients, K = (degree + 1)^2 (``sh[:, 0]`` is ``f_dc``).
    """

    means: np.ndarray
    log_scales: np.ndarray
    quats: np.ndarray
    opacity_logits: np.ndarray
    sh: np.ndarray

    def __len__(self) -> int:
        return int(self.means.shape[0])

    @property
    def sh_degree(self) -> int:
        """SH degree from K."""
        return int(round(self.sh.shape[1] ** 0.5)) - 1


def property_names(num_sh_bases: int) -> list[str]:
    """The Inria property order for K = ``num_sh_bases`` SH coefficients per channel."""
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(3 * (num_sh_bases - 1))]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    return names


def ply_bytes(g: PlyGaussians) -> bytes:
    """The binary PLY file of ``g`` (Inria 3DGS layout)."""
    n, k = g.sh.shape[0], g.sh.shape[1]
    if k not in (1, 4, 9, 16):
        raise ValueError(f"SH must have 1, 4, 9 or 16 coefficients per channel, got {k}")
    names = property_names(k)
    cols = [
        np.asarray(g.means, np.float32).reshape(n, 3),
        np.zeros((n, 3), np.float32),
        np.asarray(g.sh[:, 0], np.float32).reshape(n, 3),
        np.asarray(g.sh[:, 1:], np.float32).transpose(0, 2, 1).reshape(n, 3 * (k - 1)),  # channel-major
        np.asarray(g.opacity_logits, np.float32).reshape(n, 1),
        np.asarray(g.log_scales, np.float32).reshape(n, 3),
        np.asarray(g.quats, np.float32).reshape(n, 4),
    ]
    data = np.concatenate(cols, axis=1).astype("<f4")
    assert data.shape[1] == len(names)
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    header += [f"property float {p}" for p in names]
    header += ["end_header"]
    return ("\n".join(header) + "\n").encode("ascii") + data.tobytes()


def write_ply(path: str | os.PathLike, g: PlyGaussians) -> Path:
    """Write ``g`` to ``path`` atomically (temp file, fsync, rename)."""
    path = Path(path)
    atomic_write_bytes(path, ply_bytes(g))
    path.chmod(0o644)  # the temp file behind the atomic write is private (0600); exports are for sharing
    return path


def _parse_header(raw: bytes, path: Path) -> tuple[str, list[tuple[str, int, list[tuple[str, str]]]], int]:
    end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or end < 0:
        raise InputError(path, "not a PLY file (no 'ply' magic or 'end_header')")
    nl = raw.find(b"\n", end)
    body = nl + 1 if nl >= 0 else len(raw)
    fmt = ""
    elements: list[tuple[str, int, list[tuple[str, str]]]] = []
    for line in raw[:end].decode("ascii", errors="replace").splitlines()[1:]:
        parts = line.split()
        if not parts or parts[0] in ("comment", "obj_info"):
            continue
        if parts[0] == "format":
            fmt = parts[1]
        elif parts[0] == "element":
            elements.append((parts[1], int(parts[2]), []))
        elif parts[0] == "property":
            if not elements:
                raise InputError(path, "PLY property before any element")
            if parts[1] == "list":
                raise InputError(
                    path, f"PLY list property {parts[-1]!r} in element {elements[-1][0]!r} is unsupported"
                )
            if parts[1] not in _PLY_TYPES:
                raise InputError(path, f"unknown PLY property type {parts[1]!r}")
            elements[-1][2].append((parts[2], _PLY_TYPES[parts[1]]))
    if fmt not in ("binary_little_endian", "binary_big_endian", "ascii"):
        raise InputError(path, f"unsupported PLY format {fmt!r}")
    return fmt, elements, body


def read_ply(path: str | os.PathLike) -> PlyGaussians:
    """Read a 3DGS PLY (the layout of :func:`ply_bytes`; properties found by name).

    Raises:
        InputError: not a PLY, no vertex element, missing 3DGS properties, or a truncated file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    raw = path.read_bytes()
    fmt, elements, body = _parse_header(raw, path)
    vertex = None
    offset = body
    for name, count, props in elements:
        if fmt == "ascii":
            if name != "vertex":
                raise InputError(path, "ascii PLY with elements other than 'vertex' is unsupported")
            text = raw[body:].decode("ascii").split()
            vals = np.asarray(text[: count * len(props)], dtype=np.float64).reshape(count, len(props))
            vertex = {p: vals[:, i] for i, (p, _) in enumerate(props)}
            break
        order = "<" if fmt == "binary_little_endian" else ">"
        dt = np.dtype([(p, order + t) for p, t in props])
        if offset + count * dt.itemsize > len(raw):
            raise InputError(path, f"truncated PLY: element {name!r} needs {count * dt.itemsize} bytes")
        arr = np.frombuffer(raw, dtype=dt, count=count, offset=offset)
        offset += count * dt.itemsize
        if name == "vertex":
            vertex = {p: arr[p] for p, _ in props}
            break
    if vertex is None:
        raise InputError(path, "PLY has no 'vertex' element")
    need = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"]
    need += [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)]
    missing = [p for p in need if p not in vertex]
    if missing:
        raise InputError(
            path, f"not a 3DGS PLY: missing propert{'y' if len(missing) == 1 else 'ies'} {missing}"
        )
    n_rest = sum(1 for p in vertex if p.startswith("f_rest_"))
    k = n_rest // 3 + 1
    if n_rest % 3 or k not in (1, 4, 9, 16):
        raise InputError(path, f"{n_rest} f_rest properties do not make a SH degree (need 0, 9, 24 or 45)")

    def stack(names: list[str]) -> np.ndarray:
        return np.stack([np.asarray(vertex[p], np.float32) for p in names], axis=1)

    n = len(vertex["x"])
    dc = stack(["f_dc_0", "f_dc_1", "f_dc_2"])
    rest = stack([f"f_rest_{i}" for i in range(n_rest)]) if n_rest else np.zeros((n, 0), np.float32)
    sh = np.concatenate([dc[:, None, :], rest.reshape(n, 3, k - 1).transpose(0, 2, 1)], axis=1)
    return PlyGaussians(
        means=stack(["x", "y", "z"]),
        log_scales=stack([f"scale_{i}" for i in range(3)]),
        quats=stack([f"rot_{i}" for i in range(4)]),
        opacity_logits=np.asarray(vertex["opacity"], np.float32).copy(),
        sh=np.ascontiguousarray(sh),
    )


def from_world_splats(splats: dict, t: int = 0) -> PlyGaussians:
    """Timestep ``t`` of a model's ``world_splats(drive)`` output (torch tensors) as :class:`PlyGaussians`."""

    def np32(x) -> np.ndarray:
        return np.ascontiguousarray(x.detach().cpu().numpy().astype(np.float32))

    return PlyGaussians(
        means=np32(splats["means"][t]),
        log_scales=np32(splats["log_scales"][t]),
        quats=np32(splats["quats"][t]),
        opacity_logits=np32(splats["opacity_logits"]),
        sh=np32(splats["sh"][t]),
    )


def export_run_ply(
    run_dir: str | os.PathLike,
    out: str | os.PathLike | None = None,
    frame: int = 0,
    sequence: bool = False,
    drive_path: str | os.PathLike | None = None,
) -> list[Path]:
    """Write the Gaussians of a run's avatar at drive frame ``frame`` (or every frame) as 3DGS PLY files.

    Args:
        run_dir: folder written by ``nerfhead fit`` (its ``drive.npz`` is the default drive).
        out: a ``.ply`` file for one frame, or a folder (default ``RUN/export``) for ``frame_{t:05d}.ply`` files.
        frame: drive timestep to export.
        sequence: export every timestep of the drive.
        drive_path: another drive (``.npz`` written by ``Drive.save_npz``).

    Returns:
        The written paths.

    Raises:
        InputError: no drive, a frame out of range, or an avatar without Gaussians.
    """
    import torch

    from nerfhead.data.drive import Drive
    from nerfhead.models.avatar import load_avatar
    from nerfhead.models.registry import GAUSSIANS, require

    run_dir = Path(run_dir)
    drive = Drive.load_npz(drive_path if drive_path is not None else run_dir / "drive.npz")
    model: Any = load_avatar(run_dir)
    require(model, GAUSSIANS, str(run_dir), "Gaussians to export", hint="PLY export needs a splat head")
    frames = list(range(len(drive))) if sequence else [frame]
    if not all(0 <= t < len(drive) for t in frames):
        raise InputError("--frame", f"frame {frame} out of range (the drive has {len(drive)} timesteps)")
    out_p = Path(out) if out is not None else run_dir / "export"
    single = out_p.suffix.lower() == ".ply" and not sequence
    written = []
    for t in frames:
        with torch.no_grad():
            g = from_world_splats(model.world_splats(drive[t]))
        path = out_p if single else out_p / f"frame_{t:05d}.ply"
        written.append(write_ply(path, g))
    return written
