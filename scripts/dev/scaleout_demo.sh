#!/usr/bin/env bash
# Scale-out demo: PostgreSQL, SeaweedFS (S3) and two `hotelmatch serve` replicas on
# 127.0.0.1; uploads through replica A, searches through replica B until the photo is found,
# prints the delay, then stops everything. Needs scripts/setup.sh and `cargo build --release`.
#   scripts/dev/scaleout_demo.sh [UPLOADS]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${HOTELMATCH_BIN:-$ROOT/target/release/hotelmatch}
N=${1:-8}
[ -x "$BIN" ] || { echo "build it first: cargo build --release" >&2; exit 1; }
WORK=$(mktemp -d /tmp/hm-scaleout.XXXX)
chmod 755 "$WORK" # PostgreSQL runs as its own user when we are root
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "$ROOT/scripts/services.sh" s3 stop "$WORK/s3" || true
  "$ROOT/scripts/services.sh" postgres stop "$WORK/pg" || true
  rm -rf "$WORK"
}
trap cleanup EXIT

PG=$("$ROOT/scripts/services.sh" postgres start "$WORK/pg")
S3=$("$ROOT/scripts/services.sh" s3 start "$WORK/s3" hm-demo)
echo "PostgreSQL $PG, S3 $S3"
cat > "$WORK/hotelmatch.toml" <<TOML
catalog = "$PG"
photos = "s3://hm-demo/photos"
[store.s3]
endpoint = "$S3"
allow_http = true
access_key_id = "demo"
secret_access_key = "demo"
[serve]
follow_ms = 100
TOML
hm() { "$BIN" --config "$WORK/hotelmatch.toml" "$@"; }
TOKEN=$(hm --data-dir "$WORK/a" keys create --role admin | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
hm --data-dir "$WORK/a" import --hotels "$ROOT/data-sample/hotels.csv" >/dev/null

start_replica() { # name; sets URL to its base URL
  "$BIN" --config "$WORK/hotelmatch.toml" --data-dir "$WORK/$1" serve --bind 127.0.0.1:0 >"$WORK/$1.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 600); do
    URL=$(grep -o 'serving on http://[0-9.:]*' "$WORK/$1.log" 2>/dev/null | cut -d' ' -f3 || true)
    [ -n "$URL" ] && return
    sleep 0.1
  done
  echo "replica $1 did not start; see $WORK/$1.log" >&2; exit 1
}
start_replica a; A=$URL
start_replica b; B=$URL
echo "replica A $A, replica B $B"

python3 - "$A" "$B" "$TOKEN" "$ROOT/data-sample" "$N" <<'PY'
import csv, json, sys, time, urllib.request, uuid
a, b, token, sample, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
def post(base, path, photo, fields):
    boundary = uuid.uuid4().hex
    body = b""
    for k, v in fields.items():
        body += f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n".encode()
    body += f"--{boundary}\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"p.jpg\"\r\n\r\n".encode() + photo + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(base + path, body, {"Authorization": "Bearer " + token, "Content-Type": "multipart/form-data; boundary=" + boundary})
    with urllib.request.urlopen(req) as r:
        return json.load(r)
def get(base, path):
    req = urllib.request.Request(base + path, headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req) as r:
        return json.load(r)
hotels = {h["external_id"]: h["id"] for h in get(a, "/api/v1/hotels?limit=200")}
rows = list(csv.DictReader(open(f"{sample}/images.csv")))[::max(1, 48 // n)][:n]
delays = []
for row in rows:
    photo = open(f"{sample}/{row['path']}", "rb").read()
    added = post(a, "/api/v1/photos", photo, {"hotel_id": hotels[row["hotel"]], "room": row["room"]})
    t = time.monotonic()
    while True:
        res = post(b, "/api/v1/search", photo, {})
        if any(e["image_id"] == added["image_id"] for h in res["hotels"] for e in h["evidence"]):
            break
        time.sleep(0.02)
    delays.append(time.monotonic() - t)
    print(f"  image {added['image_id']} ({row['hotel']}) uploaded via A, found via B after {delays[-1]:.3f} s")
delays.sort()
print(f"upload via A -> found via B: {len(delays)} uploads, median {delays[len(delays)//2]:.3f} s, worst {delays[-1]:.3f} s (goal: p99 <= 2 s)")
PY
