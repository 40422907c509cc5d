#!/usr/bin/env bash
# Command 1: set up if needed, then serve the app on http://127.0.0.1:8501 (see .streamlit/config.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/streamlit run app.py "$@"
