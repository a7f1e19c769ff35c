"""The ICT-FaceKit light parametric head in torch: identity + 53 expressions + pose -> vertices, landmarks.

Canonical frame (the frame ``ICTHead.neutral`` and the blend shapes live in):

* units: metres (the npz stores centimetres; converted once on load);
* axes: ICT's own, which are already ours: +y up, the face looks toward +z, +x is the subject's left
  (``*_L`` shapes and the "left" eye sit at +x);
* origin: ICT's native origin sits at nose height, 2 cm behind the head centre. We move it to the head
  centre: ``canonical = ict_native_cm / 100 - CANONICAL_ORIGIN``, with ``CANONICAL_ORIGIN`` =
  (0, 3.5, 2.0) cm, the middle of the head's chin-to-crown (-7.6 .. 14.5 cm) and back-to-nose
  (-8.7 .. 13.1 cm) extents. The neck continues below, down to y = -0.228 m.

Pose: ``v_world = scale * R @ v_canonical + t`` with ``R = axis_angle_to_matrix(rotation)`` (head to world).

Mesh parts: ICT's light model is one mesh of 17 parts with contiguous vertex ranges (ICT-FaceKit README,
"Face Model Topology"; the ranges were checked against the data: every part's polygons index only its own
range plus, for the head/neck, mouth socket and eye sockets, the face's border vertices). ``ICT_PARTS``
lists them; ``ICTHead.vertex_part`` [V] holds the part id of each vertex; ``skin_mask`` marks the outer skin
(face + head and neck), ``face_mask`` the face part (with ears), ``narrow_face_mask`` ICT's "narrow face
area" (vertices 0..6705: the front of the face without ears and forehead sides).

UVs are UDIM-style: u's integer part is the tile (0 face, 1 head/neck + mouth and eye sockets, 2 gums and
tongue, 3 teeth, 4/5 lacrimal fluid, 6 eyelashes; eyeballs, eye blend and eye occlusion reuse tile 0).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from nerfhead.errors import InputError
from nerfhead.geometry import axis_angle_to_matrix

CANONICAL_ORIGIN_CM = (0.0, 3.5, 2.0)
"""Head centre in ICT's native frame (cm); subtracted (in metres) from every vertex on load."""

ICT_PARTS: tuple[tuple[str, int, int], ...] = (
    ("face", 0, 9409),
    ("head_and_neck", 9409, 11248),
    ("mouth_socket", 11248, 13294),
    ("eye_socket_left", 13294, 13678),
    ("eye_socket_right", 13678, 14062),
    ("gums_and_tongue", 14062, 17039),
    ("teeth", 17039, 21451),
    ("eyeball_left", 21451, 23021),
    ("eyeball_right", 23021, 24591),
    ("lacrimal_fluid_left", 24591, 24795),
    ("lacrimal_fluid_right", 24795, 24999),
    ("eye_blend_left", 24999, 25023),
    ("eye_blend_right", 25023, 25047),
    ("eye_occlusion_left", 25047, 25199),
    ("eye_occlusion_right", 25199, 25351),
    ("eyelashes_left", 25351, 26035),
    ("eyelashes_right", 26035, 26719),
)
"""(name, first vertex, end vertex) of each part, in vertex order (ICT-FaceKit README)."""

PART_ID = {name: i for i, (name, _, _) in enumerate(ICT_PARTS)}
HELPER_PARTS = (
    "lacrimal_fluid_left",
    "lacrimal_fluid_right",
    "eye_blend_left",
    "eye_blend_right",
    "eye_occlusion_left",
    "eye_occlusion_right",
)
"""Unreal-style see-through shading aids lying over the eyes (the eye occlusion shell covers the whole eye)."""
NON_OPAQUE_PARTS = (*HELPER_PARTS, "eyelashes_left", "eyelashes_right")
"""Parts ``ICTHead.render_face_mask`` leaves out: the helpers, and the eyelash cards (alpha-textured in ICT's
intended shading; drawn opaque they read as thick black rims around the eyes)."""
NARROW_FACE_END = 6706
"""Vertices [0, 6706) form ICT's "narrow face area"."""
IRIS_RANGES = ((22221, 23021), (23791, 24591))
"""Iris vertices of the left and right eyeball (the rest of each eyeball is sclera)."""


@dataclass(frozen=True)
class ICTOutput:
    """Posed ICT head.

    Attributes:
        vertices: [B, V, 3] world positions in metres.
        landmarks: [B, 68, 3] the Multi-PIE 68 landmark vertices (rows of ``vertices``).
    """

    vertices: Tensor
    landmarks: Tensor


def triangulate_quads(quads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split quads (a, b, c, d) into (a, b, c), (a, c, d); rows with d == -1 are triangles already.

    Args:
        quads: [Q, 4] integer indices, -1 in the last column for a triangle.

    Returns:
        faces [F, 3] int64 with F = 2 Q - (number of triangles), and source [F] int64: the row of ``quads``
        each face came from. Faces keep the quad order; a quad's two triangles are adjacent.
    """
    quads = np.asarray(quads, dtype=np.int64)
    if quads.ndim != 2 or quads.shape[1] != 4:
        raise ValueError(f"quads must be [Q, 4], got {quads.shape}")
    is_quad = quads[:, 3] >= 0
    first = quads[:, [0, 1, 2]]
    second = quads[:, [0, 2, 3]]
    both = np.stack([first, second], 1)  # [Q, 2, 3]
    keep = np.stack([np.ones_like(is_quad), is_quad], 1)  # [Q, 2]
    faces = both[keep]
    source = np.repeat(np.arange(len(quads)), keep.sum(1))
    return faces, source


def _load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    keys = ("neutral", "faces_quad", "uv", "faces_quad_uv", "expr_names", "expr_delta", "id_delta")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in keys if k not in z.files]
            if missing:
                raise InputError(path, f"not an ICT-FaceKit npz: missing {', '.join(missing)}")
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise InputError(
            path, "ICT-FaceKit npz not found", hint="run `nerfhead doctor` to locate assets"
        ) from None
    except (OSError, ValueError) as e:
        raise InputError(path, f"cannot read the ICT-FaceKit npz: {e}") from None


class ICTHead(nn.Module):
    """ICT-FaceKit light as a batched linear blend-shape model (CPU or CUDA; move it with ``.to``).

    All buffers are non-persistent: they come from the npz, so checkpoints of modules holding an ``ICTHead``
    stay small. Rebuild the head (and re-apply :meth:`bake_`) when loading such a checkpoint.

    Args:
        path: the ICT-FaceKit light npz; default ``asset_path("ict_facekit/ict_facekit_light.npz")``.

    Buffers:
        neutral [V, 3] metres, canonical frame (see module docstring); ``expr_basis`` [53, V, 3] and
        ``id_basis`` [10, V, 3] offsets in metres; ``faces`` / ``faces_uv`` [F, 3] int64; ``uv`` [Vt, 2];
        ``landmark_idx`` [68] int64; ``vertex_part`` [V] int64 (index into ``ICT_PARTS``); ``skin_mask``,
        ``face_mask``, ``narrow_face_mask`` [V] bool; ``face_part`` [F] int64 (part of each triangle);
        ``render_face_mask`` [F] bool (False on ``NON_OPAQUE_PARTS``: draw ``faces[render_face_mask]`` when
        rendering opaque surfaces).

    Example:
        >>> head = ICTHead()
        >>> out = head(torch.zeros(2, 53), torch.zeros(2, 3), torch.zeros(2, 3))
        >>> tuple(out.vertices.shape), tuple(out.landmarks.shape)
        ((2, 26719, 3), (2, 68, 3))
    """

    neutral: Tensor
    expr_basis: Tensor
    id_basis: Tensor
    faces: Tensor
    faces_uv: Tensor
    uv: Tensor
    landmark_idx: Tensor
    vertex_part: Tensor
    face_part: Tensor
    skin_mask: Tensor
    face_mask: Tensor
    narrow_face_mask: Tensor
    render_face_mask: Tensor

    def __init__(self, path: str | os.PathLike | None = None):
        super().__init__()
        if path is None:
            from nerfhead.assets import asset_path

            path = asset_path("ict_facekit/ict_facekit_light.npz")
        d = _load_npz(path)
        origin = np.asarray(CANONICAL_ORIGIN_CM, np.float32)
        neutral = (d["neutral"].astype(np.float32) - origin) / 100.0
        V = neutral.shape[0]
        faces, source = triangulate_quads(d["faces_quad"])
        faces_uv, _ = triangulate_quads(d["faces_quad_uv"])
        if faces.max() >= V or faces_uv.max() >= len(d["uv"]):
            raise InputError(path, "face indices out of range")

        vertex_part = np.zeros(V, np.int64)
        quad_part = np.zeros(len(d["faces_quad"]), np.int64)
        first_vertex = np.array([lo for _, lo, _ in ICT_PARTS])
        for i, (_, lo, hi) in enumerate(ICT_PARTS):
            vertex_part[lo:hi] = i
        # a polygon belongs to the part of its highest vertex (parts share only the face's border vertices)
        quad_part[:] = np.searchsorted(first_vertex, d["faces_quad"].max(1), side="right") - 1

        self.expression_names: tuple[str, ...] = tuple(str(s) for s in d["expr_names"])
        self.identity_names: tuple[str, ...] = tuple(str(s) for s in d.get("id_names", []))
        self.num_identity = int(d["id_delta"].shape[0])
        self.parts = ICT_PARTS
        self._register("neutral", torch.from_numpy(neutral))
        self._register("expr_basis", torch.from_numpy(d["expr_delta"].astype(np.float32) / 100.0))
        self._register("id_basis", torch.from_numpy(d["id_delta"].astype(np.float32) / 100.0))
        self._register("faces", torch.from_numpy(faces))
        self._register("faces_uv", torch.from_numpy(faces_uv))
        self._register("uv", torch.from_numpy(d["uv"].astype(np.float32)))
        self._register("landmark_idx", torch.from_numpy(d["landmarks68_vertex_idx"].astype(np.int64)))
        self._register("vertex_part", torch.from_numpy(vertex_part))
        face_part = quad_part[source]
        self._register("face_part", torch.from_numpy(face_part))
        hidden = np.isin(face_part, [PART_ID[n] for n in NON_OPAQUE_PARTS])
        self._register("render_face_mask", torch.from_numpy(~hidden))
        skin = vertex_part <= PART_ID["head_and_neck"]
        self._register("skin_mask", torch.from_numpy(skin))
        self._register("face_mask", torch.from_numpy(vertex_part == PART_ID["face"]))
        self._register("narrow_face_mask", torch.from_numpy(np.arange(V) < NARROW_FACE_END))

    def _register(self, name: str, t: Tensor) -> None:
        self.register_buffer(name, t.contiguous(), persistent=False)

    @property
    def num_vertices(self) -> int:
        return int(self.neutral.shape[0])

    @property
    def num_expressions(self) -> int:
        return int(self.expr_basis.shape[0])

    def part_slice(self, name: str) -> slice:
        """Vertex range of a part by name (see ``ICT_PARTS``)."""
        _, lo, hi = ICT_PARTS[PART_ID[name]]
        return slice(lo, hi)

    @torch.no_grad()
    def bake_(self, identity: Tensor | None = None, offsets: Tensor | None = None) -> ICTHead:
        """Fold identity coefficients [10] and per-vertex offsets [V, 3] (metres) into ``neutral``, in place.

        Afterwards ``forward(..., identity=None, offsets=None)`` gives the baked person. Returns ``self``.
        """
        self.neutral.copy_(self.canonical(None, identity, offsets)[0])
        return self

    def canonical(
        self, expression: Tensor | None = None, identity: Tensor | None = None, offsets: Tensor | None = None
    ) -> Tensor:
        """Unposed vertices in the canonical frame (metres).

        Args:
            expression: [B, 53] blend-shape weights, or None for the neutral expression.
            identity: [B, 10] or [10] identity coefficients, or None.
            offsets: [V, 3] or [B, V, 3] per-vertex offsets in metres, or None.

        Returns:
            [B, V, 3] (B = 1 when nothing is batched).
        """
        V = self.num_vertices
        v = self.neutral[None]  # [1, V, 3]
        if expression is not None:
            if expression.ndim != 2 or expression.shape[1] != self.num_expressions:
                raise ValueError(
                    f"expression must be [B, {self.num_expressions}], got {tuple(expression.shape)}"
                )
            e = expression.to(self.expr_basis.dtype)
            v = v + (e @ self.expr_basis.reshape(self.num_expressions, V * 3)).view(-1, V, 3)
        if identity is not None:
            ident = identity.to(self.id_basis.dtype)
            ident = ident[None] if ident.ndim == 1 else ident
            if ident.shape[-1] != self.num_identity:
                raise ValueError(f"identity must be [B, {self.num_identity}], got {tuple(identity.shape)}")
            v = v + (ident @ self.id_basis.reshape(self.num_identity, V * 3)).view(-1, V, 3)
        if offsets is not None:
            v = v + (offsets[None] if offsets.ndim == 2 else offsets).to(v.dtype)
        return v.clone() if v.data_ptr() == self.neutral.data_ptr() else v

    def forward(
        self,
        expression: Tensor,
        rotation: Tensor,
        translation: Tensor,
        scale: Tensor | float = 1.0,
        identity: Tensor | None = None,
        offsets: Tensor | None = None,
    ) -> ICTOutput:
        """Posed vertices and landmarks, ``v = scale * R(rotation) @ v_canonical + translation``.

        Args:
            expression: [B, 53] blend-shape weights (ICT/ARKit order, ``self.expression_names``).
            rotation: [B, 3] axis-angle, head to world.
            translation: [B, 3] metres.
            scale: [B] tensor or a float.
            identity: [B, 10] (or [10]) identity coefficients, or None.
            offsets: [V, 3] per-vertex canonical offsets in metres, or None.

        Returns:
            ICTOutput with vertices [B, V, 3] and landmarks [B, 68, 3].
        """
        v = self.canonical(expression, identity, offsets)  # [B, V, 3]
        R = axis_angle_to_matrix(rotation.to(v.dtype))  # [B, 3, 3]
        if isinstance(scale, Tensor):
            s = scale.to(v.dtype).reshape(-1, 1, 1)
            v = s * (v @ R.transpose(1, 2))
        else:
            v = (v @ R.transpose(1, 2)) * float(scale)
        v = v + translation.to(v.dtype)[:, None, :]
        return ICTOutput(vertices=v, landmarks=v[:, self.landmark_idx])
