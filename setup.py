"""Builds ``nerfhead._C`` from cuda_ext/ (metadata lives in pyproject.toml).

C++ CPU kernels always; CUDA kernels when torch has CUDA and nvcc is found, unless NERFHEAD_CUDA=0.
NERFHEAD_NO_EXT=1 installs the Python package alone (the Makefile then builds the kernels incrementally in build/
with ``setup.py build_ext --inplace``).
"""

import os
import sys
from pathlib import Path

from setuptools import setup

sys.path.insert(0, str(Path(__file__).resolve().parent))
from torch.utils.cpp_extension import BuildExtension

from cuda_ext.build import setuptools_extension

setup(
    ext_modules=[] if os.environ.get("NERFHEAD_NO_EXT") == "1" else [setuptools_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
