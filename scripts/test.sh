#!/usr/bin/env bash
# The test command: provisions what the tests need (ONNX Runtime, converted models), then runs them.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
scripts/setup.sh
cargo test --locked "$@"
