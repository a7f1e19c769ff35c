"""nerfhead: video of a person to a drivable 3D head.

Importing the package never compiles anything: compiled kernels are loaded lazily by ``nerfhead._backend``.
"""

__version__ = "0.1.0"

from nerfhead.errors import InputError

__all__ = ["InputError", "__version__"]
