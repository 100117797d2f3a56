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
CLIENT_CPU=${CLIENT_CPU:-1}
OUT=${OUT:-docs/bench/vs-uws}
mkdir -p "$OUT"

bash benches/uws/setup.sh
cargo build --release -q -p ringfan -p ringfan-loadgen
LG=target/release/ringfan-loadgen
# shellcheck source=benches/brokers.sh
source benches/brokers.sh

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
