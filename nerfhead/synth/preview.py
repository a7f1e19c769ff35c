"""A PNG contact sheet of the rigged head's expressions (``nerfhead synth --preview``): one column per
expression (neutral, jawOpen, smile, blink, brows, frown, pucker, funnel), a frontal row and a three-quarter row,
rendered exactly as the capture rig renders them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from nerfhead.data.expressions import EXPRESSION_INDEX, NUM_EXPRESSIONS
from nerfhead.data.images import save_image
from nerfhead.geometry import look_at
from nerfhead.parametric import RiggedHead, load_rigged_head
from nerfhead.synth.capture import SynthConfig, head_renderer
from nerfhead.synth.rig import RigConfig, eyes_on_sphere, intrinsics_from_fov

PREVIEW_EXPRESSIONS: tuple[tuple[str, dict[str, float]], ...] = (
    ("neutral", {}),
    ("jawOpen", {"jawOpen": 1.0}),
    ("smile", {"mouthSmile_L": 1.0, "mouthSmile_R": 1.0, "cheekSquint_L": 0.4, "cheekSquint_R": 0.4}),
    ("blink", {"eyeBlink_L": 1.0, "eyeBlink_R": 1.0}),
    ("brows", {"browInnerUp_L": 1.0, "browInnerUp_R": 1.0, "browOuterUp_L": 1.0, "browOuterUp_R": 1.0}),
    ("frown", {"browDown_L": 1.0, "browDown_R": 1.0, "mouthFrown_L": 1.0, "mouthFrown_R": 1.0}),
    ("pucker", {"mouthPucker": 1.0}),
    ("funnel", {"mouthFunnel": 1.0, "jawOpen": 0.3}),
)
"""(label, coefficients) of each column."""

PREVIEW_VIEWS: tuple[tuple[float, float], ...] = ((0.0, 0.0), (8.0, 35.0))
"""(elevation, azimuth) in degrees of each row: frontal, and three-quarter toward the subject's left."""


def expression_vector(coeffs: dict[str, float]) -> torch.Tensor:
    """[53] coefficients from a name -> value mapping."""
    e = torch.zeros(NUM_EXPRESSIONS)
    for name, v in coeffs.items():
        e[EXPRESSION_INDEX[name]] = v
    return e


def render_preview(
    path: str | Path,
    size: int = 256,
    cfg: SynthConfig | None = None,
    head: RiggedHead | None = None,
    labels: bool = True,
) -> Path:
    """Write the expression sheet as a PNG and return its path.

    Args:
        path: output PNG file.
        size: pixels per cell (square).
        cfg: look of the capture (background, light, supersampling, field of view, distance).
        head: the rigged head (default: the bundled one).
        labels: write each column's name above it.
    """
    cfg = cfg or SynthConfig()
    head = head or load_rigged_head()
    renderer = head_renderer(head, cfg)
    rig = RigConfig(width=size, height=size, fov_deg=cfg.rig.fov_deg, distance=cfg.rig.distance)
    target = torch.tensor(rig.target)
    eyes = eyes_on_sphere(PREVIEW_VIEWS, 1.0 if rig.distance is None else rig.distance, target)

    viewmat = look_at(eyes, target, torch.tensor([0.0, 1.0, 0.0]))
    K = intrinsics_from_fov(len(PREVIEW_VIEWS), size, size, 20.0 if rig.fov_deg is None else rig.fov_deg)
    E = torch.stack([expression_vector(c) for _, c in PREVIEW_EXPRESSIONS])
    zeros = torch.zeros(len(E), 3)
    cols = []
    with torch.no_grad():
        verts = head(E, zeros, zeros).vertices
        for i in range(len(E)):
            out = renderer.render(verts[i], viewmat, K, size, size)
            cols.append(torch.cat(list(out.rgb.clamp(0, 1)), 0))  # views stacked vertically
    sheet = torch.cat(cols, 1).numpy()
    if labels:
        sheet = _with_labels(sheet, [n for n, _ in PREVIEW_EXPRESSIONS], size, cfg.background)
    return save_image(Path(path), sheet)


def _with_labels(
    sheet: np.ndarray, names: list[str], cell: int, bg: tuple[float, float, float]
) -> np.ndarray:
    """Add a strip with the column names above ``sheet`` [H, W, 3]."""
    from PIL import Image, ImageDraw

    strip = Image.new("RGB", (sheet.shape[1], 18), tuple(int(round(255 * c)) for c in bg))
    draw = ImageDraw.Draw(strip)
    ink = (0, 0, 0) if sum(bg) > 1.5 else (255, 255, 255)
    for i, name in enumerate(names):
        draw.text((i * cell + 6, 3), name, fill=ink)
    return np.concatenate([np.asarray(strip, np.float32) / 255.0, sheet], 0)
