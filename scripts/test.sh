#!/usr/bin/env bash
# Command 2: set up if needed (test extras and headless Chromium included), then run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
  echo "==> installing Debian's chromium for the browser tests"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null) \
    || echo "warning: could not install chromium; browser tests will say so"
fi
# llama.cpp threads wait for each other at every step, so on a busy 2-core CI machine (the app, a
# browser and pytest share it) one thread is much faster than two. Tests measure behaviour, not speed.
export WORKBENCH_THREADS="${WORKBENCH_THREADS:-1}"
export WORKBENCH_TEST_OUTPUT="${WORKBENCH_TEST_OUTPUT:-$PWD/test-output}"
mkdir -p "$WORKBENCH_TEST_OUTPUT"
exec .venv/bin/python -m pytest "$@"
