#!/usr/bin/env bash
# One GPU session in one script: build the CUDA kernels, hold them to the reference on the GPU
# (values, first and second-order gradients, float16/bfloat16, whole StyleGAN2 G and D; the opt-in
# tiled upfirdn2d kernel too), then time training iterations, ours vs the official StyleGAN2-ADA
# code, at 64 px tiny (also our reference ops), paper256 (batch 64, fp16 4 res) and config F at
# 1024 px (batch 4, fp16 4 res), and the ops (reference vs direct vs tiled upfirdn2d).
#
#   OUT=/tmp/gpu OFFICIAL=~/stylegan2-ada-pytorch bash bench/gpu_check.sh
#
# OFFICIAL is a checkout of NVlabs/stylegan2-ada-pytorch you provide (nothing of it ships here);
# without it the timings are ours alone. Its CUDA ops build in the background beside ours.
#
# The whole script keeps within BUDGET seconds (default 540: one device `run` may last 600 s):
# every stage has its own limit, cut to what is left of the budget, and a stage with under 15 s
# left is skipped, so one slow stage cannot take the figures of the rest with it. The stages are
# ordered by what the figures are for: build, correctness, the training comparison, then ops.
# From a session that has a device machine (the official code carried in an ignored folder):
#   echo /.official/ >> .git/info/exclude; mkdir -p .official
#   git --git-dir=<fetch github:NVlabs/stylegan2-ada-pytorch> archive HEAD | tar -x -C .official
#   run: command="OFFICIAL=.official bash bench/gpu_check.sh", carry=[".official"], timeout_s=600
#
# What it needs there: torch with CUDA, nvcc, ninja, pytest, pytorch_lightning, numpy, scipy,
# scikit-image (no hydra, wandb, webdataset, c2pa: only the ops, the networks and the StyleGAN2
# module are imported). Written to $OUT: gpu_check.log (everything), train_step.json (one JSON
# line per configuration), bench_ops.json, official_build.log.
set -u
OUT=${OUT:-/tmp/gpu_check}
BUDGET=${BUDGET:-540} MIN_STAGE=${MIN_STAGE:-15}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 OMP_WAIT_POLICY=PASSIVE
export LG_CACHE_DIR=${LG_CACHE_DIR:-/tmp/lg-cache} MAX_JOBS=${MAX_JOBS:-16}
export TORCH_EXTENSIONS_DIR=${TORCH_EXTENSIONS_DIR:-/tmp/torch-extensions}
PY=${PYTHON:-python3}
SUMMARY=()

stage() {  # stage NAME SECONDS CMD...: run with min(SECONDS, what is left), print wall time and status
    local name=$1 limit=$2 left=$((BUDGET - SECONDS)) t0=$SECONDS rc
    shift 2
    ((limit > left)) && limit=$left
    if ((limit < MIN_STAGE)); then
        echo "=== $name: skipped (${left}s of the ${BUDGET}s budget left)"
        SUMMARY+=("$name skipped")
        return
    fi
    echo "=== $name (limit ${limit}s): $*"
    timeout "$limit" "$@"
    rc=$?
    echo "=== $name: rc=$rc in $((SECONDS - t0))s"
    SUMMARY+=("$name rc=$rc $((SECONDS - t0))s")
}

timed() {  # timed CONFIG SECONDS ARGS...: one training configuration, its JSON line kept
    local cfg=$1 limit=$2
    shift 2
    stage "train-step-$cfg" "$limit" $PY bench/train_step.py --device cuda --configs "$cfg" \
        ${OFFICIAL:+--official "$OFFICIAL"} "$@"
}

{
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    $PY -c "import torch, pytorch_lightning as pl; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'lightning', pl.__version__, torch.cuda.get_device_name(), torch.cuda.get_device_capability())"
    nvcc --version | tail -2
    if [ -n "${OFFICIAL:-}" ]; then  # the official ops compile beside ours (16 cores); timed runs load them
        # Its sources include ATen/cuda/CUDAContext.h, which wants cuSPARSE/cuBLAS headers a bare
        # toolkit lacks: torch's own nvidia/*/include has them (for this build only, not ours).
        NV_INC=$($PY -c "import os, torch; r = os.path.join(os.path.dirname(os.path.dirname(torch.__file__)), 'nvidia'); \
print(':'.join(sorted(os.path.join(r, d, 'include') for d in os.listdir(r) if os.path.isdir(os.path.join(r, d, 'include')))) \
if os.path.isdir(r) else '')" 2>/dev/null)
        CPATH=${NV_INC}${CPATH:+:$CPATH} timeout 300 $PY bench/train_step.py --device cuda --official "$OFFICIAL" \
            --official-build-only >"$OUT/official_build.log" 2>&1 &
        OFFICIAL_BUILD=$!
    fi
    stage build 200 $PY -m lightning_gans doctor --build
    stage kernel-tests 120 $PY -m pytest -q -x -p no:cacheprovider tests/test_ops_kernels.py \
        tests/test_precision.py -k "cuda and not bf16_mixed"
    # The opt-in tiled upfirdn2d (LG_UPFIRDN2D=tiled) against the reference; timed in bench-ops.
    stage tiled-tests 60 $PY -m pytest -q -x -p no:cacheprovider tests/test_ops_tiled.py
    if [ -n "${OFFICIAL_BUILD:-}" ]; then
        echo "=== official CUDA ops build: waiting"
        wait "$OFFICIAL_BUILD"
        echo "=== official CUDA ops build: rc=$? at ${SECONDS}s; $(tail -1 "$OUT/official_build.log")"
    fi
    timed tiny64 75 --modes ref compiled --warmup 3 --repeats 10
    timed paper256 100 --warmup 3 --repeats 8
    timed stylegan2 100 --warmup 3 --repeats 8
    stage bench-ops 90 $PY bench/ops.py --device cuda --upfirdn2d-impl both
    echo "=== summary (${SECONDS}s of ${BUDGET}s):"
    printf '  %s\n' "${SUMMARY[@]}"
} 2>&1 | tee "$OUT/gpu_check.log"
# every JSON line of the training comparison (one per configuration), and the ops table's
grep '^{"' "$OUT/gpu_check.log" | grep '"configs"' >"$OUT/train_step.json" || true
grep '^{"' "$OUT/gpu_check.log" | grep -v '"configs"\|"official_cuda_ops"' | tail -1 >"$OUT/bench_ops.json" || true
