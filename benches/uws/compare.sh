#!/usr/bin/env bash
# ringfan against uWebSockets (the issue's "fastest C++ WebSocket pub/sub
# server") on the issue's fan-out: 1 topic x 1,000 subscribers x 100-byte
# data, broker pinned to core 0, the load generator on core 1, open loop at
# fixed offered rates. Runs are interleaved (ringfan, uWS, ringfan, ...) so
# that the VM's drift hits both alike; the table gives medians.
#
#   bash benches/uws/compare.sh                    # 1, 2, 3, 4 M/s, 3 runs each (~6 min)
#   RATES="1000 2000" N=5 bash benches/uws/compare.sh
#
# Results: docs/bench/vs-uws/<broker>-<publishes per s>-<run>.json and the
# median table on stdout (benches/uws/summarize.py).
set -euo pipefail
cd "$(dirname "$0")/../.."

RATES=${RATES:-"1000 2000 3000 4000"}
N=${N:-3}
DUR=${DUR:-8s}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
OUT=${OUT:-docs/bench/vs-uws}
mkdir -p "$OUT"

bash benches/uws/setup.sh
cargo build --release -q -p ringfan -p ringfan-loadgen
LG=target/release/ringfan-loadgen
SERVER_PID=

start() { # broker
    local log
    log=$(mktemp)
    case $1 in
    ringfan)
        taskset -c "$SERVER_CPU" target/release/ringfan --listen 127.0.0.1:9320 --shards 1 >"$log" 2>&1 &
        PORT=9320 ;;
    uws)
        taskset -c "$SERVER_CPU" benches/uws/venv/bin/python benches/uws/server.py --port 9321 >"$log" 2>&1 &
        PORT=9321 ;;
    esac
    SERVER_PID=$!
    for _ in $(seq 100); do
        grep -q "listening on" "$log" && return 0
        sleep 0.1
    done
    echo "benches/uws/compare.sh: $1 did not start:" >&2
    cat "$log" >&2
    exit 1
}

stop() {
    [[ -n "$SERVER_PID" ]] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}
trap stop EXIT

for i in $(seq "$N"); do
    for rate in $RATES; do
        for broker in ringfan uws; do
            start $broker
            echo "== run $i: $broker at $rate publishes/s"
            # A broker that falls over is a result, not a script failure.
            taskset -c "$CLIENT_CPU" "$LG" fanout --subscribers 1000 --topics 1 --publishers 1 \
                --rate "$rate" --payload 100 --duration "$DUR" --warmup 2s \
                --url "ws://127.0.0.1:$PORT/ws" --server-pid "$SERVER_PID" --quiet \
                --json "$OUT/$broker-$rate-$i.json" >/dev/null || true
            stop
        done
    done
done

python3 benches/uws/summarize.py "$OUT"
