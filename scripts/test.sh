#!/usr/bin/env bash
# Set up and run every check on a fresh machine: the tested versions in a virtual environment,
# then ruff (lint and format), mypy, and the whole pytest suite (Ray, MLflow and TensorBoard for real).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[dev,pretrained]"

# docker-compose 1.29 for the compose file's config check, in its own environment (its PyYAML
# 5.4.1 cannot share the main one and builds only with Cython < 3)
if [ ! -x .compose-venv/bin/docker-compose ]; then
    "$PYTHON" -m venv .compose-venv
    .compose-venv/bin/python -m pip install --quiet "cython<3" wheel setuptools
    .compose-venv/bin/python -m pip install --quiet --no-build-isolation "PyYAML==5.4.1"
    .compose-venv/bin/python -m pip install --quiet -c scripts/compose-constraints.txt "docker-compose==1.29.2"
fi
export SKINSEARCH_DOCKER_COMPOSE="$PWD/.compose-venv/bin/docker-compose"

.venv/bin/ruff check skinsearch tests bench
.venv/bin/ruff format --check skinsearch tests bench
.venv/bin/mypy

status=0
.venv/bin/python -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure here" >&2
    exit 1
fi
exit "$status"
