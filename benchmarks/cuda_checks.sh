#!/usr/bin/env bash
# The GPU checks of the training core (issue 9) as one run, for a session lent a GPU machine.
#
# Prints and writes to $OUT (default ./cuda_checks) one log per check:
#   env.log          GPU, driver, torch and lightning versions
#   train_fp32.log   GANModule vs the hand-written loop at the defaults (32 px, batch 64), both fp32: target >= 1.0
#   train_bf16.log   GANModule bf16-mixed + channels_last + compile vs the fp32 hand-written loop, 64 px, batch 256:
#                    target >= 1.5 on an H200
#   ddp.log          GANModule vs the hand-written two-wrapper DDP loop over NCCL, one process per GPU
#                    (2 when 2 GPUs are visible: target >= 0.97; on 1 GPU the strategy's per-step overhead only)
#   cuda_tests.log   the tests that run on CUDA only (host-device synchronisations of the augmentations)
# Each check has its own time limit, so one that hangs cannot eat the others' time. About 8 minutes on an H200.
#
#   OUT=/tmp/checks bash benchmarks/cuda_checks.sh
#   DEVICE=cpu QUICK=1 bash benchmarks/cuda_checks.sh      # a dry run of the script itself, on any machine
set -u -o pipefail
cd "$(dirname "$0")/.."
out=${OUT:-cuda_checks}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
python=${PYTHON:-python3}
device=${DEVICE:-cuda}
if [ "${QUICK:-0}" = 1 ]; then
    rounds=1 batches=3 big="--image-size 16 --batch-size 8" ddp_big="--image-size 16 --batch-size 8 --width 8"
else
    rounds=3 batches=40 big="--image-size 64 --batch-size 256" ddp_big="--image-size 64 --batch-size 256 --width 64"
fi
if [ "$device" = cuda ]; then
    gpus=$($python -c "import torch; print(torch.cuda.device_count())")
    processes=$((gpus >= 2 ? 2 : 1))
    precision=bf16-mixed
else
    processes=2 precision=32-true
fi

check() {  # check NAME SECONDS COMMAND...: run one check under its limit, log to $out/NAME.log
    local name=$1 limit=$2
    shift 2
    echo "=== $name: $*"
    timeout "$limit" "$@" 2>&1 | tee "$out/$name.log"
    echo "=== $name: exit ${PIPESTATUS[0]}"
}

check env 60 bash -c "nvidia-smi 2>/dev/null; $python -c 'import torch, lightning; print(\"torch\", torch.__version__, \"lightning\", lightning.__version__, \"cuda\", torch.cuda.is_available())'"
check train_fp32 120 $python benchmarks/train_throughput.py --device "$device" --rounds "$rounds" --batches "$batches"
check train_bf16 240 $python benchmarks/train_throughput.py --device "$device" --rounds "$rounds" --batches "$batches" \
    $big --precision "$precision" --channels-last --compile
check ddp 180 $python benchmarks/ddp_throughput.py --device "$device" --processes "$processes" --rounds "$rounds" \
    --batches "$batches" $ddp_big --precision "$precision" --channels-last
check cuda_tests 60 $python -m pytest -q -p no:cacheprovider tests/test_augment.py -k "synchron"
grep -h "ratio\|passed\|skipped\|failed" "$out"/*.log
