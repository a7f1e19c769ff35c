"""Avatars: one interface (``Avatar.render(cameras, drive, background) -> RenderOutput``), two representations.

* :class:`~nerfhead.models.splat_head.SplatHead`: 3D Gaussians bound to the ICT head mesh (trained by
  :mod:`nerfhead.models.splat_train`).
* ``nerf_head``: deformation field + hash-grid ensemble.

:func:`load_avatar` opens a run folder written by ``nerfhead fit`` and returns the model it holds.
"""

from nerfhead.models.avatar import Avatar, RenderOutput, load_avatar, pair_indices, read_avatar_json
from nerfhead.models.splat_head import SplatHead, SplatHeadConfig

__all__ = [
    "Avatar",
    "RenderOutput",
    "SplatHead",
    "SplatHeadConfig",
    "load_avatar",
    "pair_indices",
    "read_avatar_json",
]
