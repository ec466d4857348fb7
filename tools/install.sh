#!/usr/bin/env bash
# Install amfir-mm and its pinned OpenMMLab stack into a virtual env.
#   bash tools/install.sh            -> ./.venv (idempotent: fast when done)
#   VENV=/path/to/env bash tools/install.sh
# Why each pin: README.md, "Why these pins".
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
# CPU torch first: an unpinned torch would pull GBs of CUDA packages.  A GPU
# user installs their CUDA torch into the env first; we keep any torch found.
"$VENV/bin/python" -c 'import torch' 2>/dev/null || "${PIP[@]}" torch==2.13.0
"${PIP[@]}" -r requirements/runtime.txt -r requirements/tests.txt
# opencv-python (pulled by mmcv) and opencv-contrib-python both install cv2;
# the last one installed wins.  Make sure it is contrib (cv2.optflow: TV-L1).
"$VENV/bin/python" -c 'import cv2; cv2.optflow' 2>/dev/null || \
  "${PIP[@]}" --no-deps --force-reinstall opencv-contrib-python==5.0.0.93
"${PIP[@]}" --no-deps --no-build-isolation -e .
"$VENV/bin/python" -c 'import amfir_mm, cv2; cv2.optflow; print("amfir-mm", amfir_mm.__version__, "installed in '"$VENV"'")'
