"""A rigged, animated glTF 2.0 head (``.glb``) that game engines and Blender import: ``nerfhead export gltf``.

What the file holds:

- one node ``head`` with one mesh: the avatar's parametric head (ICT-FaceKit light with the fitted identity and
  per-vertex offsets baked in, the opaque parts: skin, eyes, teeth, gums) in the head frame, which is already
  glTF's (+y up, the face looking toward +z, metres);
- the 53 expression blend shapes as morph targets (POSITION deltas, sparse accessors), named in
  ``mesh.extras.targetNames`` (read by Blender, three.js, Babylon, Unity's glTFast) by their ARKit names
  (:data:`MORPH_NAMES`: ARKit's own name for the 49 one-to-one shapes, ``browInnerUpLeft/Right`` and
  ``cheekPuffLeft/Right`` for ICT's split pairs of ARKit's browInnerUp and cheekPuff);
- the fitted appearance baked into vertex colours (``COLOR_0``): the colour of the Gaussians bound to the
  triangles around each vertex at the neutral expression, opacity-weighted; vertices without Gaussians take the
  nearest coloured vertex's colour;
- one animation, sampled at the drive's frame rate (LINEAR): the 53 morph weights, and the head node's rotation
  and translation (the drive's head-to-world pose; nerfhead's world is y-up like glTF's).
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nerfhead.data.drive import Drive
from nerfhead.data.expressions import EXPRESSION_NAMES
from nerfhead.errors import InputError


def _arkit_name(ict: str) -> str:
    for suffix, side in (("_L", "Left"), ("_R", "Right")):
        if ict.endswith(suffix):
            return ict[: -len(suffix)] + side
    return ict


MORPH_NAMES: tuple[str, ...] = tuple(_arkit_name(n) for n in EXPRESSION_NAMES)
"""Morph target names in ``EXPRESSION_NAMES`` order (ARKit naming)."""

_FLOAT, _UINT = 5126, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963


@dataclass(frozen=True)
class RiggedHead:
    """A head mesh with blend shapes (float32 numpy arrays, head frame, metres).

    Attributes:
        vertices: [V, 3] neutral positions.
        faces: [F, 3] vertex indices (counter-clockwise from outside).
        colors: [V, 3] linear colours in [0, 1].
        targets: [E, V, 3] blend-shape position deltas.
        names: E target names.
    """

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray
    targets: np.ndarray
    names: tuple[str, ...]


@torch.no_grad()
def bake_vertex_colors(model: Any) -> np.ndarray:
    """Vertex colours [V, 3] of a splat head's mesh: opacity-weighted mean colour (SH degree 0 at the neutral
    expression) of the Gaussians on each vertex's triangles; vertices without any take the nearest coloured one's
    (grey when no Gaussian has weight)."""
    from scipy.spatial import cKDTree

    from nerfhead.splats.gaussians import SH_C0

    dev = model.neutral.device
    _, opacity, sh, _ = model.gaussians(Drive.neutral(1).to(dev))
    rgb = (0.5 + SH_C0 * sh[0, :, 0]).clamp(0.0, 1.0).double().cpu()  # [N, 3]
    w = opacity.double().cpu()
    tri = model.faces[model.splats.binding].cpu()  # [N, 3] vertex ids
    V = model.neutral.shape[0]
    acc = torch.zeros(V, 3, dtype=torch.float64)
    wsum = torch.zeros(V, dtype=torch.float64)
    for k in range(3):
        acc.index_add_(0, tri[:, k], w[:, None] * rgb)
        wsum.index_add_(0, tri[:, k], w)
    seen = wsum > 1e-9
    out = torch.full((V, 3), 0.5, dtype=torch.float64)
    out[seen] = acc[seen] / wsum[seen, None]
    if bool(seen.any()) and not bool(seen.all()):
        pos = model.neutral.double().cpu().numpy()
        _, j = cKDTree(pos[seen.numpy()]).query(pos[~seen.numpy()])
        out[~seen] = out[seen][torch.as_tensor(j)]
    return out.float().numpy()


def rigged_head(model: Any) -> RiggedHead:
    """The rigged head of a splat-head avatar: its opaque ICT faces, compacted to the vertices they use.

    Raises:
        InputError: an avatar without a parametric mesh (the nerf head).
    """
    from nerfhead.models.registry import PARAMETRIC_MESH, require

    require(model, PARAMETRIC_MESH, "RUN", "parametric head mesh", hint="glTF export needs a splat head run")
    ict = model.ict
    faces = ict.faces[ict.render_face_mask].cpu().numpy()
    used, inverse = np.unique(faces, return_inverse=True)
    colors = bake_vertex_colors(model)[used]
    verts = model.neutral.detach().float().cpu().numpy()[used]
    targets = ict.expr_basis.detach().float().cpu().numpy()[:, used]
    return RiggedHead(
        vertices=np.ascontiguousarray(verts, np.float32),
        faces=inverse.reshape(-1, 3).astype(np.uint32),
        colors=np.ascontiguousarray(colors, np.float32),
        targets=np.ascontiguousarray(targets, np.float32),
        names=MORPH_NAMES,
    )


def _quat_xyzw(rotation: torch.Tensor) -> np.ndarray:
    """Axis-angle [T, 3] → unit quaternions [T, 4] (x, y, z, w), sign-continuous over time."""
    from nerfhead.geometry import axis_angle_to_matrix, matrix_to_quaternion

    q = matrix_to_quaternion(axis_angle_to_matrix(rotation.detach().cpu().double()))  # (w, x, y, z)
    q = q[:, [1, 2, 3, 0]].numpy()
    for t in range(1, len(q)):
        if np.dot(q[t], q[t - 1]) < 0:
            q[t] = -q[t]
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    return q.astype(np.float32)


class _GlbBuilder:
    def __init__(self) -> None:
        self.bin = bytearray()
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def view(self, data: bytes, target: int | None = None) -> int:
        while len(self.bin) % 4:
            self.bin.append(0)
        v: dict[str, Any] = {"buffer": 0, "byteOffset": len(self.bin), "byteLength": len(data)}
        if target is not None:
            v["target"] = target
        self.bin.extend(data)
        self.views.append(v)
        return len(self.views) - 1

    def accessor(
        self, a: np.ndarray, kind: str, comp: int = _FLOAT, target: int | None = None, bounds: bool = False
    ) -> int:
        acc: dict[str, Any] = {
            "bufferView": self.view(np.ascontiguousarray(a).tobytes(), target),
            "componentType": comp,
            "count": int(a.shape[0]),
            "type": kind,
        }
        if bounds:
            flat = a.reshape(a.shape[0], -1)
            acc["min"] = [float(x) for x in flat.min(0)]
            acc["max"] = [float(x) for x in flat.max(0)]
        self.accessors.append(acc)
        return len(self.accessors) - 1

    def sparse_vec3(self, delta: np.ndarray) -> int:
        """A VEC3 float accessor of ``len(delta)`` elements storing only the non-zero rows."""
        nz = np.flatnonzero(np.any(delta != 0, axis=1)).astype(np.uint32)
        acc: dict[str, Any] = {
            "componentType": _FLOAT,
            "count": int(delta.shape[0]),
            "type": "VEC3",
            "min": [float(x) for x in delta.min(0)],
            "max": [float(x) for x in delta.max(0)],
        }
        if len(nz):
            acc["sparse"] = {
                "count": int(len(nz)),
                "indices": {"bufferView": self.view(nz.tobytes()), "componentType": _UINT},
                "values": {"bufferView": self.view(np.ascontiguousarray(delta[nz], np.float32).tobytes())},
            }
        self.accessors.append(acc)
        return len(self.accessors) - 1

    def glb(self, doc: dict) -> bytes:
        while len(self.bin) % 4:
            self.bin.append(0)
        doc["buffers"] = [{"byteLength": len(self.bin)}]
        doc["bufferViews"] = self.views
        doc["accessors"] = self.accessors
        js = json.dumps(doc, separators=(",", ":")).encode()
        js += b" " * (-len(js) % 4)
        total = 12 + 8 + len(js) + 8 + len(self.bin)
        return b"".join(
            [
                struct.pack("<III", 0x46546C67, 2, total),
                struct.pack("<II", len(js), 0x4E4F534A),
                js,
                struct.pack("<II", len(self.bin), 0x004E4942),
                bytes(self.bin),
            ]
        )


def build_glb(head: RiggedHead, drive: Drive | None) -> bytes:
    """The ``.glb`` bytes of ``head``, animated by ``drive`` (morph weights + head pose at ``drive.fps``)."""
    b = _GlbBuilder()
    pos = b.accessor(head.vertices, "VEC3", target=_ARRAY_BUFFER, bounds=True)
    col = b.accessor(head.colors, "VEC3", target=_ARRAY_BUFFER)
    idx = b.accessor(head.faces.reshape(-1), "SCALAR", comp=_UINT, target=_ELEMENT_ARRAY_BUFFER)
    targets = [{"POSITION": b.sparse_vec3(head.targets[e])} for e in range(len(head.names))]
    E = len(head.names)
    node: dict[str, Any] = {"name": "head", "mesh": 0}
    doc: dict[str, Any] = {
        "asset": {"version": "2.0", "generator": "nerfhead export gltf"},
        "scene": 0,
        "scenes": [{"name": "nerfhead", "nodes": [0]}],
        "nodes": [node],
        "materials": [
            {
                "name": "baked_appearance",
                "pbrMetallicRoughness": {"baseColorFactor": [1, 1, 1, 1], "metallicFactor": 0.0},
                "doubleSided": False,
            }
        ],
        "meshes": [
            {
                "name": "head",
                "primitives": [
                    {
                        "attributes": {"POSITION": pos, "COLOR_0": col},
                        "indices": idx,
                        "material": 0,
                        "mode": 4,
                        "targets": targets,
                    }
                ],
                "weights": [0.0] * E,
                "extras": {"targetNames": list(head.names)},
            }
        ],
    }
    if drive is not None and len(drive) > 0:
        d = drive.to("cpu")
        T = len(d)
        times = (np.arange(T, dtype=np.float64) / d.fps).astype(np.float32)
        weights = d.expression.detach().float().numpy().reshape(-1)
        quat = _quat_xyzw(d.rotation)
        trans = d.translation.detach().float().numpy()
        node["rotation"] = [float(x) for x in quat[0]]
        node["translation"] = [float(x) for x in trans[0]]
        t_acc = b.accessor(times, "SCALAR", bounds=True)
        samplers = [
            {"input": t_acc, "output": b.accessor(weights, "SCALAR"), "interpolation": "LINEAR"},
            {"input": t_acc, "output": b.accessor(quat, "VEC4"), "interpolation": "LINEAR"},
            {"input": t_acc, "output": b.accessor(trans, "VEC3"), "interpolation": "LINEAR"},
        ]
        paths = ("weights", "rotation", "translation")
        doc["animations"] = [
            {
                "name": "drive",
                "samplers": samplers,
                "channels": [{"sampler": i, "target": {"node": 0, "path": p}} for i, p in enumerate(paths)],
                "extras": {"fps": d.fps, "frames": T},
            }
        ]
    return b.glb(doc)


def read_glb(path: str | os.PathLike) -> tuple[dict, bytes]:
    """The JSON document and binary chunk of a ``.glb``.

    Raises:
        InputError: not a glTF 2.0 binary.
    """
    data = Path(path).read_bytes()
    if len(data) < 20 or data[:4] != b"glTF":
        raise InputError(path, "not a binary glTF (.glb) file")
    _, version, _ = struct.unpack_from("<III", data, 0)
    n, kind = struct.unpack_from("<II", data, 12)
    if version != 2 or kind != 0x4E4F534A:
        raise InputError(path, "not a glTF 2.0 binary")
    doc = json.loads(data[20 : 20 + n])
    rest = data[20 + n :]
    binary = rest[8 : 8 + struct.unpack_from("<I", rest, 0)[0]] if len(rest) >= 8 else b""
    return doc, binary


def accessor_array(doc: dict, binary: bytes, i: int) -> np.ndarray:
    """Accessor ``i`` as a float32 / uint32 array [count, components] (sparse accessors applied)."""
    acc = doc["accessors"][i]
    ncomp = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}[acc["type"]]
    dt = np.float32 if acc["componentType"] == _FLOAT else np.uint32
    out = np.zeros((acc["count"], ncomp), dt)
    if "bufferView" in acc:
        v = doc["bufferViews"][acc["bufferView"]]
        start = v.get("byteOffset", 0) + acc.get("byteOffset", 0)
        out[:] = np.frombuffer(binary, dt, acc["count"] * ncomp, start).reshape(-1, ncomp)
    if "sparse" in acc:
        sp = acc["sparse"]
        iv, vv = (
            doc["bufferViews"][sp["indices"]["bufferView"]],
            doc["bufferViews"][sp["values"]["bufferView"]],
        )
        ids = np.frombuffer(binary, np.uint32, sp["count"], iv.get("byteOffset", 0))
        out[ids] = np.frombuffer(binary, dt, sp["count"] * ncomp, vv.get("byteOffset", 0)).reshape(-1, ncomp)
    return out


def export_gltf(
    run: str | os.PathLike,
    out: str | os.PathLike,
    audio: str | os.PathLike | None = None,
    drive_path: str | os.PathLike | None = None,
    fps: float = 25.0,
    driver: str = "auto",
) -> dict:
    """Write RUN's avatar as an animated ``.glb``; the animation comes from speech (``audio``) or a drive file
    (``.npz``, Live Link Face ``.csv`` or curves ``.json``). Returns a summary.

    Raises:
        InputError: both or neither of audio / drive, unreadable inputs, an avatar without a parametric mesh.
    """
    from nerfhead.atomic import atomic_write_bytes
    from nerfhead.models.avatar import load_avatar

    run = Path(run)
    out = Path(out)
    if (audio is None) == (drive_path is None):
        raise InputError("--audio/--drive", "give exactly one of --audio CLIP or --drive FILE")
    if out.suffix.lower() != ".glb":
        raise InputError("--out", f"{out.name}: the glTF export writes a binary .glb file")
    model = load_avatar(run)
    head = rigged_head(model)
    drive = speech_drive(run, Path(audio), fps, driver) if audio is not None else load_any_drive(drive_path)
    glb = build_glb(head, drive)
    atomic_write_bytes(out, glb)
    return {
        "glb": str(out),
        "vertices": int(head.vertices.shape[0]),
        "faces": int(head.faces.shape[0]),
        "morph_targets": len(head.names),
        "frames": len(drive),
        "fps": drive.fps,
        "seconds": round((len(drive) - 1) / drive.fps, 4),
    }


def load_any_drive(path: str | os.PathLike | None) -> Drive:
    """A drive from ``.npz`` (``Drive.save_npz``), a Live Link Face ``.csv`` or a curves ``.json``."""
    from nerfhead.export.curves import read_curves_csv, read_curves_json

    p = Path(str(path))
    suffix = p.suffix.lower()
    if suffix == ".csv":
        return read_curves_csv(p)
    if suffix == ".json":
        return read_curves_json(p)
    return Drive.load_npz(p)


def speech_drive(run: Path, audio: Path, fps: float, driver: str = "auto") -> Drive:
    """The drive ``nerfhead drive`` makes from speech (``nerfhead.audio.speech``, pose "hold")."""
    from nerfhead.audio.speech import SpeechConfig, check_config, speech_drive_for_run
    from nerfhead.media.audio import load_audio

    if not fps > 0:
        raise InputError("--fps", f"fps must be positive, got {fps}")
    cfg = SpeechConfig(driver=driver)  # type: ignore[arg-type]
    check_config(cfg)
    wave, sr = load_audio(audio)
    return speech_drive_for_run(run, wave, sr, fps, cfg)
