#!/usr/bin/env bash
# Browser tests of the web pages in real headless Chromium. Installs Debian's chromium and
# chromium-driver when missing (root, or sudo), and selenium into the project's venv.
#   scripts/dev/browser_test.sh [path-to-hotelmatch-binary]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
PY=.cache/venv/bin/python
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  for try in 1 2 3; do
    if $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; then break; fi
    [ "$try" = 3 ] && { echo "browser tests: cannot install chromium + chromium-driver" >&2; exit 1; }
    sleep 5
  done
fi
"$PY" -c 'import selenium' 2>/dev/null || "$PY" -m pip install -q --disable-pip-version-check selenium==4.51.0
BIN=${1:-target/release/hotelmatch}
[ -x "$BIN" ] || cargo build --release -q
HOTELMATCH_BIN="$BIN" "$PY" scripts/dev/browser_test.py
