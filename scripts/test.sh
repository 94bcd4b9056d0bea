#!/usr/bin/env bash
# Set up .venv (if needed) and run the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
MOTOCURATE_EXTRAS=all,test,ray bash scripts/setup.sh
# Headless Chromium for the browser test (needs root and Debian's apt); the test skips without it.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "test.sh: could not install chromium; browser tests will skip"
fi
tmp=$(mktemp -d)
export YOLO_OFFLINE=1 YOLO_AUTOINSTALL=0 YOLO_CONFIG_DIR="$tmp/yolo"
export FIFTYONE_DO_NOT_TRACK=true FIFTYONE_DATABASE_DIR="$tmp/fiftyone-db" FIFTYONE_DATABASE_VALIDATION=false
export MPLBACKEND=Agg
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
