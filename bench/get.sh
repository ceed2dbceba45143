#!/usr/bin/env bash
# bench/get.sh - kvsd GET of 1 KB values vs. Debian's stock h2o serving a
# 1 KB static file, same worker/thread count, same wrk load, same run.
# Prints both throughputs and the ratio (target: kvsd >= 0.9 x h2o).
# Absolute numbers depend on the machine; only the ratio is meaningful.
#
#   bench/get.sh [seconds] [connections]
set -eu
cd "$(dirname "$0")/.."
. scripts/deps.sh
install_deps wrk h2o
build_kvsd build

DUR=${1:-10}
CONNS=${2:-32}
THREADS=$(nproc)
KVSD_ADDR=127.0.0.30:8090
H2O_ADDR=127.0.0.31:8090
WRK_THREADS=${WRK_THREADS:-2}
tmp=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT INT TERM

wait_up() { # url
    for _ in $(seq 100); do curl -sf -o /dev/null "$1" && return 0; sleep 0.05; done
    echo "server at $1 did not come up" >&2; return 1
}

# --- kvsd, 10,000 keys of 1 KB ---
setsid ./build/kvsd --address $KVSD_ADDR --view $KVSD_ADDR --workers "$THREADS" --log-level warn 2>"$tmp/kvsd.log" &
pids+=($!)
wait_up "http://$KVSD_ADDR/health"
python3 - "$KVSD_ADDR" <<'PY'
import http.client, json, sys
host, port = sys.argv[1].split(":")
c = http.client.HTTPConnection(host, int(port))
value = json.dumps({"value": "x" * 1024})
for i in range(10000):
    c.request("PUT", "/kvs/k%d" % i, value, {"Content-Type": "application/json"})
    r = c.getresponse(); r.read()
    assert r.status in (200, 201), r.status
PY
cat > "$tmp/get.lua" <<'LUA'
request = function()
    return wrk.format("GET", "/kvs/k" .. math.random(0, 9999))
end
LUA

# --- stock h2o, a 1 KB static file ---
mkdir -p "$tmp/docroot"
head -c 1024 /dev/zero | tr '\0' x >"$tmp/docroot/file"
cat >"$tmp/h2o.conf" <<CONF
user: root
listen:
  host: ${H2O_ADDR%:*}
  port: ${H2O_ADDR#*:}
num-threads: $THREADS
hosts:
  default:
    paths:
      /:
        file.dir: $tmp/docroot
access-log: /dev/null
error-log: $tmp/h2o.err
pid-file: $tmp/h2o.pid
CONF
setsid h2o -c "$tmp/h2o.conf" >/dev/null 2>&1 &
pids+=($!)
wait_up "http://$H2O_ADDR/file"

rps() { awk '/Requests\/sec/ { print $2 }'; }
echo "wrk -t$WRK_THREADS -c$CONNS -d${DUR}s, $THREADS kvsd workers / h2o threads" >&2
kvsd_rps=$(wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DUR}s" -s "$tmp/get.lua" "http://$KVSD_ADDR" | rps)
h2o_rps=$(wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DUR}s" "http://$H2O_ADDR/file" | rps)
ratio=$(awk -v a="$kvsd_rps" -v b="$h2o_rps" 'BEGIN { printf "%.2f", a / b }')
printf "%-28s %12s\n" "kvsd GET 1KB (req/s)" "$kvsd_rps" "h2o static 1KB (req/s)" "$h2o_rps" "ratio (target >= 0.90)" "$ratio"
