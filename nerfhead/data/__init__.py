"""Captures and the signals that drive a head: cameras, frames, drives, and readers/writers of capture layouts.

See docs/conventions.md for axes, units, pixel centres and time.
"""

from nerfhead.data.cameras import Cameras, pixel_centers
from nerfhead.data.capture import Capture, Frame
from nerfhead.data.drive import Drive
from nerfhead.data.expressions import EXPRESSION_INDEX, EXPRESSION_NAMES, NUM_EXPRESSIONS
from nerfhead.data.images import load_image, load_mask, read_image_size, save_image, save_mask
from nerfhead.data.loaders import detect_format, load_capture
from nerfhead.data.nerfstudio import read_transforms, save_capture, write_transforms
from nerfhead.data.nersemble import read_nersemble

__all__ = [
    "EXPRESSION_INDEX",
    "EXPRESSION_NAMES",
    "NUM_EXPRESSIONS",
    "Cameras",
    "Capture",
    "Drive",
    "Frame",
    "detect_format",
    "load_capture",
    "load_image",
    "load_mask",
    "pixel_centers",
    "read_image_size",
    "read_nersemble",
    "read_transforms",
    "save_capture",
    "save_image",
    "save_mask",
    "write_transforms",
]
