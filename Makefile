# nerfhead developer entry points. After `git clone`:
#   make demo   # create .venv, install, build the kernels, run the main job on the bundled default scene
#   make test   # create the same .venv, install, run the whole test suite (what CI runs)
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.nerfhead-installed
# Build the CUDA kernels when a GPU is visible (override: NERFHEAD_CUDA=1 to build them anyway, 0 to skip).
NERFHEAD_CUDA ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1 || echo 0)
export NERFHEAD_CUDA

.PHONY: setup build demo test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py cuda_ext/build.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel ninja
	$(PIP) install -q "torch==2.14.1"
	NERFHEAD_NO_EXT=1 $(PIP) install -q --no-build-isolation -e ".[all,dev]"
	touch $(STAMP)

# Incremental rebuild of nerfhead._C after editing cuda_ext/ (keeps objects in build/).
build: setup
	MAX_JOBS=2 $(PY) setup.py -q build_ext --inplace
	$(PY) -c "import torch, nerfhead._C"

demo: setup build
	$(VENV)/bin/nerfhead demo

test: setup build
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/pyright
	$(VENV)/bin/clang-format --dry-run --Werror cuda_ext/csrc/*.cpp cuda_ext/csrc/*.cu cuda_ext/csrc/*.h

bench: setup build
	$(PY) scripts/bench_ops.py --json

clean:
	rm -rf build nerfhead/_C*.so
