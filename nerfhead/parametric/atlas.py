"""A single-texture atlas for ICT's UDIM-style UVs, and fixed colours for the parts a scan cannot colour.

ICT's UVs span tiles u in [0, 7) (see :mod:`nerfhead.parametric.ict`) and several parts reuse tile 0. The atlas
packs them into one square texture (v up; texel row = (1 - v) * size, column = u * size):

====================  ===========================  =================
atlas cell (u, v)      ICT tile                      parts
====================  ===========================  =================
[0, .5) x [.5, 1)      0                             face
[.5, 1) x [.5, 1)      1                             head and neck, mouth socket, eye sockets
[0, .25) x [.25, .5)   2                             gums and tongue
[.25, .5) x [.25, .5)  3                             teeth
[.5, .75) x [.25, .5)  4                             lacrimal fluid left
[.75, 1) x [.25, .5)   5                             lacrimal fluid right
[0, .25) x [0, .25)    6                             eyelashes (left and right side by side)
[.25, .5) x [0, .25)   0                             eyeballs (left and right share texels)
[.5, .75) x [0, .25)   0                             eye blend (shared)
[.75, 1) x [0, .25)    0                             eye occlusion (shared)
====================  ===========================  =================

A 1024 atlas gives the face 512 x 512 texels, about what the LeePerrySmith scan's 1024 map spends on the face.
"""

from __future__ import annotations

import numpy as np

from nerfhead.parametric.ict import ICT_PARTS, PART_ID

_CELLS: dict[str, tuple[float, float, float]] = {
    # part -> (u0, v0, size) of its cell in atlas UV units
    "face": (0.0, 0.5, 0.5),
    "head_and_neck": (0.5, 0.5, 0.5),
    "mouth_socket": (0.5, 0.5, 0.5),
    "eye_socket_left": (0.5, 0.5, 0.5),
    "eye_socket_right": (0.5, 0.5, 0.5),
    "gums_and_tongue": (0.0, 0.25, 0.25),
    "teeth": (0.25, 0.25, 0.25),
    "lacrimal_fluid_left": (0.5, 0.25, 0.25),
    "lacrimal_fluid_right": (0.75, 0.25, 0.25),
    "eyelashes_left": (0.0, 0.0, 0.25),
    "eyelashes_right": (0.0, 0.0, 0.25),
    "eyeball_left": (0.25, 0.0, 0.25),
    "eyeball_right": (0.25, 0.0, 0.25),
    "eye_blend_left": (0.5, 0.0, 0.25),
    "eye_blend_right": (0.5, 0.0, 0.25),
    "eye_occlusion_left": (0.75, 0.0, 0.25),
    "eye_occlusion_right": (0.75, 0.0, 0.25),
}

PART_COLORS: dict[str, tuple[float, float, float]] = {
    "mouth_socket": (0.35, 0.08, 0.08),
    "eye_socket_left": (0.30, 0.12, 0.11),
    "eye_socket_right": (0.30, 0.12, 0.11),
    "gums_and_tongue": (0.62, 0.25, 0.26),
    "teeth": (0.90, 0.87, 0.78),
    "eyeball_left": (0.93, 0.91, 0.88),
    "eyeball_right": (0.93, 0.91, 0.88),
    "lacrimal_fluid_left": (0.80, 0.55, 0.52),
    "lacrimal_fluid_right": (0.80, 0.55, 0.52),
    "eye_blend_left": (0.80, 0.55, 0.52),
    "eye_blend_right": (0.80, 0.55, 0.52),
    "eye_occlusion_left": (0.80, 0.55, 0.52),
    "eye_occlusion_right": (0.80, 0.55, 0.52),
    "eyelashes_left": (0.06, 0.05, 0.05),
    "eyelashes_right": (0.06, 0.05, 0.05),
}
"""Fixed linear-ish RGB for the parts a scan does not show (face and head/neck come from the scan)."""

IRIS_COLOR = (0.30, 0.20, 0.12)
PUPIL_COLOR = (0.02, 0.02, 0.02)
IRIS_RADIUS_M = 0.0058
"""Radius of the painted iris around the eye's optical axis (human irises are about 11.7 mm across)."""
PUPIL_RADIUS_M = 0.0022


def face_cells(face_part: np.ndarray) -> np.ndarray:
    """[F, 3] (u0, v0, size) atlas cell of each triangle from its part id [F]."""
    table = np.array([_CELLS[name] for name, _, _ in ICT_PARTS])
    return table[face_part]


def atlas_uv(uv: np.ndarray, faces_uv: np.ndarray, face_part: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move ICT UVs into the atlas.

    Args:
        uv: [Vt, 2] ICT UVs (u in [0, 7)).
        faces_uv: [F, 3] UV indices per triangle.
        face_part: [F] part id of each triangle.

    Returns:
        uv_atlas [Vt', 2] float32 in [0, 1] and faces_uv_atlas [F, 3] int64 (a UV vertex used by triangles of
        two cells is duplicated).
    """
    cells = face_cells(face_part)  # [F, 3]
    cell_id = np.unique(cells, axis=0, return_inverse=True)[1].reshape(-1)
    key = faces_uv.astype(np.int64) * 16 + cell_id[:, None]
    uniq, inv = np.unique(key.ravel(), return_inverse=True)
    src = uniq // 16
    first = np.zeros(len(uniq), np.int64)
    first[inv] = np.repeat(np.arange(len(faces_uv)), 3)  # any triangle using that (uv, cell) pair
    c = cells[first]
    tile = np.floor(uv[faces_uv].min(1)[:, 0])[first]  # one tile per triangle
    local = np.stack([uv[src, 0] - tile, uv[src, 1]], 1)
    out = c[:, :2] + np.clip(local, 0.0, 1.0) * c[:, 2:3]
    return out.astype(np.float32), inv.reshape(-1, 3).astype(np.int64)


def fixed_vertex_colors(neutral: np.ndarray, vertex_part: np.ndarray) -> np.ndarray:
    """[V, 3] float32 colours of the non-scan parts (rows of face and head/neck parts are left 0).

    Args:
        neutral: [V, 3] canonical positions (for the pupil: iris vertices near the eye's forward axis).
        vertex_part: [V] part ids.
    """
    out = np.zeros((len(vertex_part), 3), np.float32)
    for name, color in PART_COLORS.items():
        out[vertex_part == PART_ID[name]] = color
    for eye in ("eyeball_left", "eyeball_right"):
        # ICT's "iris" is an inner sphere textured in UE; opaque, only the outer sclera shell (with its clear
        # cornea bulge) is seen. Paint the shell's front around the optical axis: from the least-squares sphere
        # centre (the vertex centroid is biased by the dense back) through the cornea apex (the most forward
        # vertex; ICT's eyes look ahead, +z).
        ball = vertex_part == PART_ID[eye]
        p = neutral[ball].astype(np.float64)
        sol = np.linalg.lstsq(np.c_[2 * p, np.ones(len(p))], (p * p).sum(1), rcond=None)[0]
        centre = sol[:3]
        apex = p[p[:, 2].argmax()]
        axis = (apex - centre) / np.linalg.norm(apex - centre)
        rel = p - centre
        radial = np.linalg.norm(rel - (rel @ axis)[:, None] * axis, axis=1)
        front = rel @ axis > 0
        color = out[ball]
        color[front & (radial < IRIS_RADIUS_M)] = IRIS_COLOR
        color[front & (radial < PUPIL_RADIUS_M)] = PUPIL_COLOR
        out[ball] = color
    return out
