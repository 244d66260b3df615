#!/usr/bin/env bash
# One GPU session in one script: build the CUDA kernels, hold them to the reference on the GPU
# (values, first and second-order gradients, float16/bfloat16, whole StyleGAN2 G and D; the opt-in
# tiled upfirdn2d kernel too), then time ops (reference vs direct vs tiled upfirdn2d) and training
# iterations: reference vs compiled at 64 px, and ours vs the official
# StyleGAN2-ADA code at 64 px tiny, paper256 (batch 64, fp16 4 res) and config F at 1024 px
# (batch 4, fp16 4 res). Everything is logged to $OUT/gpu_check.log; the comparison's JSON is
# also written to $OUT/train_step.json.
#
#   OUT=/tmp/gpu OFFICIAL=~/stylegan2-ada-pytorch bash bench/gpu_check.sh
#
# OFFICIAL is a checkout of NVlabs/stylegan2-ada-pytorch you provide (not shipped here); without
# it the last stage times ours alone. Each stage has its own time limit so one slow stage cannot
# take the rest with it (all limits together: 14 min; a normal run takes well under 10 on one
# GPU). The environment needs torch with CUDA, nvcc, ninja and pytest (no hydra/wandb: only the
# ops, the networks and the StyleGAN2 module are imported).
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
    stage build 200 $PY -m lightning_gans doctor --build
    stage kernel-tests 150 $PY -m pytest -q -x -p no:cacheprovider tests/test_ops_kernels.py \
        tests/test_precision.py -k "cuda and not bf16_mixed"
    # The opt-in tiled upfirdn2d (LG_UPFIRDN2D=tiled) against the reference, then timed in bench-ops
    # beside the direct kernel (tiled column; JSON tiled_vs_direct > 1: it can become the default).
    stage tiled-tests 60 $PY -m pytest -q -x -p no:cacheprovider tests/test_ops_tiled.py
    stage bench-ops 90 $PY bench/ops.py --device cuda --upfirdn2d-impl both
    stage train-step-64-ref 60 $PY bench/train_step.py --device cuda --configs tiny64 --modes ref compiled \
        --repeats 10
    stage train-step-vs-official 300 $PY bench/train_step.py --device cuda --warmup 3 --repeats 8 \
        ${OFFICIAL:+--official "$OFFICIAL"}
} 2>&1 | tee "$OUT/gpu_check.log"
grep '^{' "$OUT/gpu_check.log" | tail -1 >"$OUT/train_step.json" || true
