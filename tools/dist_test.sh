#!/usr/bin/env bash
# Multi-process meta-test with torchrun (MMAction2's convention):
#   bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py options]
# Episodes are split across processes and gathered: the metric equals the
# single-process one.  CPU (gloo): --cfg-options env_cfg.dist_cfg.backend=gloo
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}

PYTHONPATH="$(dirname "$0")/..":${PYTHONPATH:-} \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" --master_port="$PORT" \
    "$(dirname "$0")/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch \
    "${@:4}"
