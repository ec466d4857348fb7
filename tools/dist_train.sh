#!/usr/bin/env bash
# Multi-process training with torchrun (MMAction2's convention):
#   bash tools/dist_train.sh CONFIG NPROC [train.py options]
# NPROC processes, one per GPU; on a machine without CUDA the processes
# talk over gloo (chosen automatically, nothing to add).
# Python: $PYTHON if set, else the project's .venv beside this folder
# (made by tools/install.sh), so the venv need not be active.
set -e
TOOLS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ $# -lt 2 ]; then
    echo "usage: bash tools/dist_train.sh CONFIG NPROC [train.py options]" >&2
    exit 2
fi
. "$TOOLS/find_python.sh"
CONFIG=$1
NPROC=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}

PYTHONPATH="$TOOLS/..":${PYTHONPATH:-} \
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$NPROC" --master_port="$PORT" \
    "$TOOLS/train.py" "$CONFIG" --launcher pytorch "${@:3}"
