"""What a model's renders are compared with: a capture's images over its background colour.

Real captures may show a backdrop; with masks, training and evaluation composite the image over the capture's
background colour (``img * m + bg * (1 - m)``), the colour the avatar renders over. Synthetic captures are
already rendered over their background, so their (anti-aliased) masks are not applied a second time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from nerfhead.data.capture import Capture


def synth_metadata(capture: Capture) -> Mapping[str, Any]:
    """``metadata["synth"]`` of a synthetic capture, else an empty mapping."""
    synth = capture.metadata.get("synth")
    return synth if isinstance(synth, Mapping) else {}


def capture_background(capture: Capture) -> list[float]:
    """The capture's background colour: ``metadata["background"]`` or the synth config's, else white."""
    synth_cfg = synth_metadata(capture).get("config", {})
    bg = capture.metadata.get("background", synth_cfg.get("background", [1.0, 1.0, 1.0]))
    if isinstance(bg, (int, float)):
        bg = [float(bg)] * 3
    return [float(x) for x in bg][:3]


def images_over_background(capture: Capture) -> bool:
    """True when the images already show the subject over :func:`capture_background` (synthetic captures, or
    ``metadata["images_over_background"]``), so masks must not be composited again."""
    flag = capture.metadata.get("images_over_background")
    return bool(flag) if flag is not None else bool(synth_metadata(capture))


def target_image(
    capture: Capture, frame: int, background: Tensor, composite: bool = True
) -> tuple[Tensor, Tensor | None]:
    """Frame ``frame``'s image over ``background`` [3] and its mask: ([H, W, 3], [H, W, 1] or None), on the CPU.

    ``composite=False`` returns the full frame as it is (a model that renders the backdrop itself)."""
    return composite_target(capture, capture.image(frame), capture.mask(frame), background, composite)


def composite_target(
    capture: Capture, img: Tensor, m: Tensor | None, background: Tensor, composite: bool = True
) -> tuple[Tensor, Tensor | None]:
    """:func:`target_image` from a decoded image [H, W, 3] and mask [H, W] (e.g. from a frame store)."""
    if m is None:
        return img, None
    m = m[..., None]
    if composite and not images_over_background(capture):
        img = img * m + background.to(img) * (1 - m)
    return img, m
