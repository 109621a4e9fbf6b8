#!/usr/bin/env bash
# The main job on the shipped sample, no server needed: provision the runtime and model,
# import data-sample/ (6 hotels, 48 room photos) into ./data, then ask which hotel two
# masked query photos were taken in, once without and once with a location filter.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
cargo build --release -q
BIN=target/release/hotelmatch
DATA=${HOTELMATCH_DATA_DIR:-data}
"$BIN" --data-dir "$DATA" import --hotels data-sample/hotels.csv --images data-sample/images.csv
echo
echo "== Which hotel? (the person in the photo is masked out)"
"$BIN" --data-dir "$DATA" search data-sample/queries/h-harbor-query.jpg --mask data-sample/queries/h-harbor-query-mask.png --top 3
echo
echo "== Another query, only hotels within 100 km of Denver"
"$BIN" --data-dir "$DATA" search data-sample/queries/h-pinecrest-query.jpg --mask data-sample/queries/h-pinecrest-query-mask.png --near 39.74,-104.99 --radius-km 100 --top 3
echo
echo "== Is this photo a copy of that one? (PDQ)"
"$BIN" hash --compare data-sample/imagenet/cat.jpg tests/fixtures/pdq/cat.webp   # a resized WebP copy: match
"$BIN" hash --compare data-sample/images/h-aurora-101-0.jpg data-sample/images/h-aurora-101-1.jpg   # same room, another view: different
