"""Builds ``nerfhead._C`` from cuda_ext/ (metadata lives in pyproject.toml).

C++ CPU kernels always; CUDA kernels when torch has CUDA and nvcc is found, unless NERFHEAD_CUDA=0.
"""

import sys
from pathlib import Path

from setuptools import setup

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cuda_ext.build import setuptools_extension  # noqa: E402
from torch.utils.cpp_extension import BuildExtension  # noqa: E402

setup(
    ext_modules=[setuptools_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
