"""The parameter container of triangle-bound Gaussians.

Parameters are stored *before* activation, in the layout of the Inria 3DGS PLY (and gsplat):

=============  ==============  ====================================================================
name           shape           meaning
=============  ==============  ====================================================================
``means``      [N, 3]          mean in the bound triangle's frame, in units of the triangle scale
``quats``      [N, 4]          rotation in the triangle's frame (w, x, y, z), unnormalised
``scales``     [N, 3]          log of the scales, in units of the triangle scale
``opacities``  [N]             logit of the opacity
``sh0``        [N, 1, 3]       degree-0 SH coefficient (``rgb = 0.5 + SH_C0 * sh0``)
``shN``        [N, K - 1, 3]   higher SH coefficients, K = (degree + 1)^2
=============  ==============  ====================================================================

plus the buffer ``binding`` [N] int64, the triangle each Gaussian belongs to. The number of Gaussians changes
during training (densification); :meth:`SplatParams.load_state_dict` resizes to whatever a checkpoint holds.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

SH_C0 = 0.28209479177387814
"""Degree-0 real spherical-harmonic constant: ``rgb = 0.5 + SH_C0 * f_dc``."""

PARAM_NAMES = ("means", "quats", "scales", "opacities", "sh0", "shN")


def rgb_to_sh0(rgb: Tensor) -> Tensor:
    """Colour in [0, 1] to the degree-0 SH coefficient (any shape)."""
    return (rgb - 0.5) / SH_C0


def sh0_to_rgb(sh0: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_sh0`."""
    return sh0 * SH_C0 + 0.5


def num_sh_bases(degree: int) -> int:
    """K = (degree + 1)^2 coefficients per colour channel."""
    return (degree + 1) ** 2


def _shapes(n: int, sh_degree: int) -> dict[str, tuple[int, ...]]:
    return {
        "means": (n, 3),
        "quats": (n, 4),
        "scales": (n, 3),
        "opacities": (n,),
        "sh0": (n, 1, 3),
        "shN": (n, num_sh_bases(sh_degree) - 1, 3),
    }


class SplatParams(nn.Module):
    """Triangle-bound Gaussian parameters (see the module docstring for the layout).

    Args:
        num: number of Gaussians N.
        sh_degree: largest SH degree stored (0..3).
    """

    binding: Tensor

    def __init__(self, num: int = 0, sh_degree: int = 3):
        super().__init__()
        if not 0 <= sh_degree <= 3:
            raise ValueError(f"sh_degree must be in 0..3, got {sh_degree}")
        self.sh_degree = sh_degree
        self.params = nn.ParameterDict(
            {k: nn.Parameter(torch.zeros(s)) for k, s in _shapes(num, sh_degree).items()}
        )
        self.register_buffer("binding", torch.zeros(num, dtype=torch.int64))

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return int(self.params["means"].shape[0])

    def __getitem__(self, name: str) -> nn.Parameter:
        return self.params[name]

    @classmethod
    def on_triangles(
        cls,
        binding: Tensor,
        sh_degree: int = 3,
        scale: float = 0.5,
        normal_scale: float = 0.1,
        opacity: float = 0.1,
        rgb: float = 0.5,
    ) -> SplatParams:
        """One Gaussian at the centroid of each listed triangle, flat along the normal, grey.

        Args:
            binding: [N] triangle ids (repeat an id to put several Gaussians on one triangle).
            sh_degree: largest SH degree stored.
            scale: in-plane scale in units of the triangle scale.
            normal_scale: scale along the normal, same units.
            opacity: initial opacity in (0, 1).
            rgb: initial grey level in [0, 1].
        """
        n = int(binding.shape[0])
        sp = cls(n, sh_degree)
        with torch.no_grad():
            sp.params["quats"][:, 0] = 1.0
            sp.params["scales"][:] = torch.tensor([math.log(scale), math.log(scale), math.log(normal_scale)])
            sp.params["opacities"].fill_(math.log(opacity / (1.0 - opacity)))
            sp.params["sh0"].fill_(float(rgb_to_sh0(torch.tensor(rgb))))
        sp.binding = binding.to(torch.int64).clone()
        return sp

    def activated(self) -> dict[str, Tensor]:
        """Activated local values: opacities in (0, 1), scales > 0, unit quats; SH as [N, K, 3]."""
        p = self.params
        return {
            "means": p["means"],
            "quats": torch.nn.functional.normalize(p["quats"], dim=-1),
            "scales": torch.exp(p["scales"]),
            "opacities": torch.sigmoid(p["opacities"]),
            "sh": torch.cat([p["sh0"], p["shN"]], dim=1),
        }

    # ---------------------------------------------------------- resize on load
    def resize_(self, num: int) -> SplatParams:
        """Replace every parameter and the binding by zeros for ``num`` Gaussians (same device and dtype)."""
        dev = self.params["means"].device
        for k, s in _shapes(num, self.sh_degree).items():
            self.params[k] = nn.Parameter(torch.zeros(s, device=dev, dtype=self.params[k].dtype))
        self.binding = torch.zeros(num, dtype=torch.int64, device=dev)
        return self

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        key = prefix + "params.means"
        if key in state_dict and state_dict[key].shape[0] != len(self):
            self.resize_(int(state_dict[key].shape[0]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"num={len(self)}, sh_degree={self.sh_degree}"
