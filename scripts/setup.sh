#!/usr/bin/env bash
# Create .venv in the repository and install motocurate with every extra (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
EXTRAS=${MOTOCURATE_EXTRAS:-all,test}    # scripts/test.sh adds ray (the optional Ray engine)
stamp=.venv/.motocurate-installed-${EXTRAS//,/-}
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[$EXTRAS]"
  touch "$stamp"
fi
