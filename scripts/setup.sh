#!/usr/bin/env bash
# Shared set-up for scripts/app.sh and scripts/test.sh: makes .venv, installs the project, builds
# the embedded demo ladder. Each step is skipped when its result already exists, so a second run
# takes seconds. The first run builds llama.cpp from source (pip caches the wheel): minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS="${1:-}"
PYTHON="${PYTHON:-python3}"

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.installed-$( (cat pyproject.toml; echo "$EXTRAS") | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "==> installing quant-workbench${EXTRAS:+[$EXTRAS]} into .venv"
  echo "    (the first time this builds llama.cpp from source: about 5-10 minutes on 2 cores)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".${EXTRAS:+[$EXTRAS]}"
  touch "$stamp"
fi
.venv/bin/workbench demo > /dev/null
