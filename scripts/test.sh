#!/usr/bin/env bash
# Set up and run every check on a fresh machine: the tested versions in a virtual environment,
# then ruff (lint and format), mypy, and the whole pytest suite (Ray, MLflow and TensorBoard for real).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[dev]"

.venv/bin/ruff check skinsearch tests
.venv/bin/ruff format --check skinsearch tests
.venv/bin/mypy

status=0
.venv/bin/python -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure here" >&2
    exit 1
fi
exit "$status"
