#!/usr/bin/env bash
# Serves the web pages and the API on 127.0.0.1 over data-sample/: provisions the runtime and
# model, imports the sample into ./data when it is empty, prints an uploader and an
# investigator key for this run, then runs `hotelmatch serve` until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
cargo build --release -q
BIN=target/release/hotelmatch
DATA=${HOTELMATCH_DATA_DIR:-data}
if [ ! -f "$DATA/catalog.sqlite" ]; then
  "$BIN" --data-dir "$DATA" import --hotels data-sample/hotels.csv --images data-sample/images.csv
fi
echo "uploader key:     $("$BIN" --data-dir "$DATA" keys create --role uploader --label demo)"
echo "investigator key: $("$BIN" --data-dir "$DATA" keys create --role investigator --label demo)"
echo "open http://${BIND:-127.0.0.1:8080}/investigate (query photos and masks are in data-sample/queries/); API reference: /docs"
exec "$BIN" --data-dir "$DATA" serve --bind "${BIND:-127.0.0.1:8080}"
