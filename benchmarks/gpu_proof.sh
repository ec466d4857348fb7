#!/usr/bin/env bash
# The CUDA proof of issue #7, in one run on a GPU machine (repo root):
#
#   OUT=DIR bash benchmarks/gpu_proof.sh            # CUDA
#   OUT=DIR DEVICE=cpu bash benchmarks/gpu_proof.sh # plumbing check, no AMP
#
# Steps (each logged, timed, and allowed to fail without stopping the rest):
#   train_amp   tools/train.py, 1 process, --amp, on generated moving-shapes
#               data (configs/demo/amfir_shapes_1shot_r18.py)
#   test_1proc  tools/test.py of that checkpoint; saves the episode list
#   test_2proc  tools/dist_test.sh, 2 processes (gloo), same episodes; the
#               per-episode results must equal test_1proc's
#   speed       benchmarks/train_speed.py --device cuda, 224 px, AMP, for
#               $SPEED_BACKBONES (default ResNet-50, ResNet-18, EffNet-Lite0)
#   train_2proc tools/dist_train.sh, 2 processes (gloo), --amp --sync-bn
#               --channels-last
#   train_nccl  tools/dist_train.sh, 1 process, NCCL backend, --amp
#   pytest      the tests that only run where CUDA is
#   speed_fp32  ResNet-50 without AMP (FP32=0 skips it)
#
# One GPU and two processes: MMEngine's launcher calls
# torch.cuda.set_device(LOCAL_RANK), and NCCL refuses two ranks on one GPU.
# The 2-process steps therefore use gloo (which reduces CUDA tensors too)
# and a sitecustomize shim that maps every local rank to cuda:0; rank and
# world size, which the process group and the samplers use, are untouched.
# On a machine with >= 2 GPUs, set GPUS_SHARED=0 to run them unshimmed.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-work_dirs/gpu_proof}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
ITERS=${ITERS:-300}  # the demo config's full schedule
W=${WORK:-/tmp/amfir_gpu_proof}
mkdir -p "$OUT" "$W"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
CONFIG=configs/demo/amfir_shapes_1shot_r18.py
LOG="$OUT/proof.log"
SUMMARY="$OUT/summary.md"
AMP=(--amp)
[ "$DEVICE" = cuda ] || AMP=()

step() {  # step NAME TIMEOUT_S CMD...
    local name=$1 limit=$2 start rc
    shift 2
    echo "### $name: $*" | tee -a "$LOG"
    start=$(date +%s%N)
    timeout "$limit" "$@" >>"$LOG" 2>&1
    rc=$?
    printf '| %s | %s | %s | `%s` |\n' "$name" "$rc" \
        "$(awk "BEGIN{printf \"%.1f\", ($(date +%s%N) - $start) / 1e9}")" \
        "$*" | tee -a "$SUMMARY"
    return $rc
}

{
    echo "# GPU proof $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo
    echo '```'
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
    "$PY" -c 'import torch, mmengine, mmcv, mmaction, amfir_mm; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available()); print("mmengine", mmengine.__version__, "mmcv", mmcv.__version__, "mmaction2", mmaction.__version__, "amfir_mm", amfir_mm.__version__)' 2>&1
    echo "CPUs: $(nproc)"
    echo '```'
    echo
    echo '| step | rc | seconds | command |'
    echo '|---|---|---|---|'
} >"$SUMMARY"
cat "$SUMMARY"

SHIM="$W/one_gpu_shim"
mkdir -p "$SHIM"
cat >"$SHIM/sitecustomize.py" <<'EOF'
# benchmarks/gpu_proof.sh: two ranks share one GPU (see the script's header)
import os
if 'LOCAL_RANK' in os.environ and os.environ.get('RANK') is not None:
    os.environ['LOCAL_RANK'] = '0'
EOF
DIST_ENV=(env PYTHON="$PY" PORT=29611)
if [ "${GPUS_SHARED:-1}" = 1 ] && [ "$DEVICE" = cuda ]; then
    DIST_ENV+=(PYTHONPATH="$SHIM:$PYTHONPATH")
fi
GLOO=(env_cfg.dist_cfg.backend=gloo)
WORKERS=()  # DIS flow is computed in the loader: use the GPU machine's CPUs
[ "$DEVICE" = cuda ] && WORKERS=(train_dataloader.num_workers=8
    val_dataloader.num_workers=8 test_dataloader.num_workers=8)

step data 120 "$PY" tools/make_shapes_dataset.py data/shapes

step train_amp 240 "$PY" tools/train.py "$CONFIG" "${AMP[@]}" \
    --work-dir "$W/train_amp" --cfg-options "${WORKERS[@]}" \
    train_cfg.max_iters="$ITERS" \
    train_cfg.val_interval="$ITERS" default_hooks.checkpoint.interval="$ITERS"
CKPT="$W/train_amp/iter_$ITERS.pth"

step test_1proc 120 "$PY" tools/test.py "$CONFIG" "$CKPT" \
    --work-dir "$W/test1" --episodes "$W/episodes.json" \
    --cfg-options "${WORKERS[@]}" test_dataloader.dataset.num_episodes=10000
step test_2proc 120 "${DIST_ENV[@]}" bash tools/dist_test.sh "$CONFIG" \
    "$CKPT" 2 --work-dir "$W/test2" --episodes "$W/episodes.json" \
    --cfg-options "${GLOO[@]}" "${WORKERS[@]}"
step compare 60 "$PY" - "$W/test1" "$W/test2" <<'EOF'
import json, os, sys
def episodes(d):
    with open(os.path.join(d, 'fewshot_episodes.json')) as f:
        return sorted((e['episode_index'], e['accuracy']) for e in json.load(f))
one, two = (episodes(d) for d in sys.argv[1:])
assert [e for e, _ in two] == list(range(len(one))), 'duplicated/missing episodes'
assert one == two, 'gathered 2-process results differ from 1-process'
print(f'2-process gathered == 1-process on all {len(one)} episodes; '
      f'mean accuracy {100 * sum(a for _, a in one) / len(one):.2f}%')
EOF

SPEED=(--device "$DEVICE" --size 224 --warmup 4 --episodes 32
       --backbones ${SPEED_BACKBONES:-resnet50 resnet18 efficientnet_lite0})
[ "$DEVICE" = cuda ] || SPEED=(--device cpu --size 64 --warmup 1 --episodes 16 --backbones resnet18)
step speed_amp 200 "$PY" benchmarks/train_speed.py "${SPEED[@]}" "${AMP[@]}" \
    --out "$OUT/train_speed_${DEVICE}_amp.json"
step train_2proc 150 "${DIST_ENV[@]}" bash tools/dist_train.sh "$CONFIG" 2 \
    "${AMP[@]}" $([ "$DEVICE" = cuda ] && echo --sync-bn) --channels-last \
    --work-dir "$W/train_2proc" --cfg-options "${GLOO[@]}" "${WORKERS[@]}" \
    train_cfg.max_iters=20 train_cfg.val_interval=20 \
    default_hooks.checkpoint.interval=20
if [ "$DEVICE" = cuda ]; then
    step train_nccl 120 env PYTHON="$PY" PORT=29612 bash tools/dist_train.sh \
        "$CONFIG" 1 --amp --work-dir "$W/train_nccl" --cfg-options "${WORKERS[@]}" \
        train_cfg.max_iters=20 train_cfg.val_interval=20 \
        default_hooks.checkpoint.interval=20
fi

if [ "$DEVICE" = cuda ]; then
    step pytest 120 "$PY" -m pytest -q -p no:cacheprovider \
        tests/test_flow_estimators.py tests/test_train_options.py
fi
if [ "$DEVICE" = cuda ] && [ "${FP32:-1}" = 1 ]; then
    step speed_fp32 100 "$PY" benchmarks/train_speed.py "${SPEED[@]}" \
        --backbones resnet50 --out "$OUT/train_speed_cuda_fp32.json"
fi
{
    echo
    echo '```'
    grep -hE "^### |Iter\(train\) +\[ *$ITERS/|Iter\(train\) +\[ *20/|fewshot/accuracy: |gathered ==|Error|error:" \
        "$LOG" | cut -c1-600
    echo '```'
} >>"$SUMMARY"
echo "done: $SUMMARY"
