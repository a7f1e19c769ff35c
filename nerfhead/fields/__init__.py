"""Fields of the nerf head: the expression-conditioned deformation field and the hash ensemble."""

from nerfhead.fields.deformation import DeformationConfig, ExpressionDeformation, drive_code
from nerfhead.fields.ensemble import EnsembleConfig, HashEnsemble, sh_encode

__all__ = [
    "DeformationConfig",
    "EnsembleConfig",
    "ExpressionDeformation",
    "HashEnsemble",
    "drive_code",
    "sh_encode",
]
