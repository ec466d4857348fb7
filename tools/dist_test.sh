#!/usr/bin/env bash
# Multi-process meta-test with torchrun (MMAction2's convention):
#   bash tools/dist_test.sh CONFIG CHECKPOINT|none NPROC [test.py options]
# Episodes are split across processes and gathered: the metric equals the
# single-process one. Without CUDA the processes talk over gloo (chosen
# automatically, nothing to add).
# Python: $PYTHON if set, else the project's .venv beside this folder
# (made by tools/install.sh), so the venv need not be active.
set -e
TOOLS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ $# -lt 3 ]; then
    echo "usage: bash tools/dist_test.sh CONFIG CHECKPOINT|none NPROC" \
         "[test.py options]" >&2
    exit 2
fi
. "$TOOLS/find_python.sh"
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}

PYTHONPATH="$TOOLS/..":${PYTHONPATH:-} \
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$NPROC" --master_port="$PORT" \
    "$TOOLS/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "${@:4}"
