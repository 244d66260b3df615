#!/usr/bin/env bash
# One GPU session in one script: build the CUDA kernels, hold them to the reference on the GPU
# (values, first and second-order gradients, whole StyleGAN2 G and D), then time ops and a
# training iteration, reference vs compiled. Everything is logged to $OUT/gpu_check.log.
#
#   OUT=/tmp/gpu bash bench/gpu_check.sh
#
# Each stage has its own time limit so one slow stage cannot take the rest with it; the
# environment needs torch with CUDA, nvcc, ninja and pytest (no hydra/wandb: only the ops,
# the networks and the StyleGAN2 module are imported).
set -u
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE
export LG_CACHE_DIR=${LG_CACHE_DIR:-/tmp/lg-cache} MAX_JOBS=${MAX_JOBS:-16}
PY=${PYTHON:-python3}

stage() {  # stage NAME SECONDS CMD...: run with a limit, print its wall time and exit status
    local name=$1 limit=$2 t0=$SECONDS rc
    shift 2
    echo "=== $name (limit ${limit}s): $*"
    timeout "$limit" "$@"
    rc=$?
    echo "=== $name: rc=$rc in $((SECONDS - t0))s"
}

{
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    $PY -c "import torch, pytorch_lightning as pl; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'lightning', pl.__version__, torch.cuda.get_device_name(), torch.cuda.get_device_capability())"
    nvcc --version | tail -2
    stage build 240 $PY -m lightning_gans.ops.doctor --build
    stage kernel-tests 180 $PY -m pytest -q -x -p no:cacheprovider tests/test_ops_kernels.py -k cuda
    stage bench-ops 90 $PY bench/ops.py --device cuda
    stage train-step-64 90 $PY bench/train_step.py --device cuda --resolution 64 --batch 8 \
        --channel-base 2048 --channel-max 64 --repeats 20
    stage train-step-256 120 $PY bench/train_step.py --device cuda --resolution 256 --batch 16 \
        --channel-base 16384 --channel-max 512 --warmup 2 --repeats 5
} 2>&1 | tee "$OUT/gpu_check.log"
