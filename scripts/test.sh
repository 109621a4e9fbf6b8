#!/usr/bin/env bash
# The test command: provisions what the tests need (ONNX Runtime, converted models), runs the
# Rust tests, then the browser tests of the web pages (headless Chromium, installed if missing).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
scripts/setup.sh
cargo test --locked "$@"
# The debug binary that `cargo test` just built serves the pages.
scripts/browser_test.sh "${CARGO_TARGET_DIR:-target}/debug/hotelmatch"
