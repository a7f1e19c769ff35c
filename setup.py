"""Builds ``nerfhead._C`` from cuda_ext/ and carries the bundled assets (metadata lives in pyproject.toml).

Assets: ``scenes/assets`` (the repository path everyone uses) is copied into the package as ``nerfhead/_assets`` by
``build_py``, so wheels (and wheels built from the sdist, which carries scenes/assets via MANIFEST.in) hold every
file the package reads at run time; ``nerfhead.assets`` finds them through importlib.resources.

C++ CPU kernels always; CUDA kernels when torch has CUDA and nvcc is found, unless NERFHEAD_CUDA=0.
NERFHEAD_NO_EXT=1 installs the Python package alone (the Makefile then builds the kernels incrementally in build/
with ``setup.py build_ext --inplace``).
"""

import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

sys.path.insert(0, str(Path(__file__).resolve().parent))
from torch.utils.cpp_extension import BuildExtension

from cuda_ext.build import setuptools_extension

HERE = Path(__file__).resolve().parent


class BuildPyWithAssets(build_py):
    """``build_py`` that also copies ``scenes/assets`` into ``<build_lib>/nerfhead/_assets``."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads scenes/assets in place
        src = HERE / "scenes" / "assets"
        if not src.is_dir():
            raise RuntimeError(f"{src} is missing: the package cannot be built without its assets")
        dst = Path(self.build_lib) / "nerfhead" / "_assets"
        for f in sorted(src.rglob("*")):
            if f.is_file():
                self.mkpath(str((dst / f.relative_to(src)).parent))
                self.copy_file(str(f), str(dst / f.relative_to(src)), preserve_mode=False)


setup(
    ext_modules=[] if os.environ.get("NERFHEAD_NO_EXT") == "1" else [setuptools_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True), "build_py": BuildPyWithAssets},
)
