#!/usr/bin/env bash
# Set up and run the main job on a fresh machine: a virtual environment with the tested versions,
# then a real ASHA search on the built-in images (about 4 minutes on 2 CPU cores from a fresh clone, install included).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[pretrained]"
exec .venv/bin/skinsearch run search_spaces/quick.yaml "$@"
