# Sourced by tools/dist_train.sh and tools/dist_test.sh: sets PYTHON to the
# interpreter that runs the tools: $PYTHON if the caller set it, else the
# project's environment <repo>/.venv/bin/python (tools/install.sh), else
# python3 from PATH with a note (it must have the project's packages).
if [ -z "${PYTHON:-}" ]; then
    PYTHON="$TOOLS/../.venv/bin/python"
    if [ ! -x "$PYTHON" ]; then
        PYTHON=$(command -v python3 || true)
        if [ -z "$PYTHON" ]; then
            echo "error: no Python: $TOOLS/../.venv/bin/python is missing" \
                 "(run bash tools/install.sh) and python3 is not on PATH;" \
                 "or set PYTHON=/path/to/python" >&2
            exit 1
        fi
        echo "note: $TOOLS/../.venv/bin/python is missing (run bash" \
             "tools/install.sh); using $PYTHON from PATH" >&2
    fi
fi
if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
    # checked here so that torchrun does not fail once per process
    echo "error: $PYTHON cannot import torch: run bash tools/install.sh," \
         "or set PYTHON to the python of the project's environment" >&2
    exit 1
fi
