#!/usr/bin/env bash
# The test command: provisions what the tests need (ONNX Runtime, converted models), runs the
# Rust tests, then the browser tests of the web pages (headless Chromium, installed if missing).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
scripts/setup.sh
# PostgreSQL for the catalog and replica tests (tests/scale.rs), from Debian's packages.
if ! command -v pg_ctl >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing PostgreSQL (Debian package)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "test.sh: PostgreSQL is not installed; the tests that need it will say SKIPPED" >&2
  fi
fi
# libheif for HEIC/AVIF photos (loaded at run time; the HEIC tests need it), from Debian.
if ! ldconfig -p 2>/dev/null | grep -q 'libheif\.so\.1'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing libheif1 (Debian package)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libheif1 >/dev/null
  else
    echo "test.sh: libheif1 is not installed; the HEIC tests will say SKIPPED" >&2
  fi
fi
cargo test --locked "$@"
# The debug binary that `cargo test` just built serves the pages.
scripts/dev/browser_test.sh "${CARGO_TARGET_DIR:-target}/debug/hotelmatch"
