"""nerfhead: video of a person to a drivable 3D head.

Importing the package never compiles anything: compiled kernels are loaded lazily by ``nerfhead._backend``.
"""

import os as _os

# Idle OpenMP threads spinning after each parallel region starve torch's own threads on small CPUs; our kernels
# and torch both run faster with passive waiting. Takes effect when nerfhead is imported before torch.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

from nerfhead.errors import InputError

__all__ = ["InputError", "__version__"]
