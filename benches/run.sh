#!/usr/bin/env bash
# The standard benchmark matrix: ringfan and the baseline broker (tokio +
# tokio-tungstenite) side by side, each pinned to core 0 with the load
# generator on core 1, every scenario from the same run of this script.
# Results: docs/bench/*.json and *.svg, and the table between the markers
# in docs/benchmarks.md (benches/summarize.py).
#
#   bash benches/run.sh            # the whole matrix (~5 minutes)
#   QUICK=1 bash benches/run.sh    # 3 s per scenario, for a smoke run
#   ONLY=fanout-1x1000 bash benches/run.sh
#   BROKERS=ringfan RINGFAN_BIN=old/ringfan OUT=/tmp/a bash benches/run.sh
#                                  # one broker, another binary, elsewhere
#                                  # (a before/after comparison; the table
#                                  # in docs/ is left alone)
#
# Figures on a shared 2-core VM are noisy: compare the ratios, which come
# from one run, rather than absolute numbers across runs.
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENT_CPU=${CLIENT_CPU:-1}
DUR=${DUR:-10s}
WARM=${WARM:-2s}
if [[ -n "${QUICK:-}" ]]; then DUR=3s; WARM=1s; fi
OUT=${OUT:-docs/bench}
BROKERS=${BROKERS:-ringfan baseline}
mkdir -p "$OUT"

cargo build --release -q -p ringfan -p ringfan-loadgen -p ringfan-baseline
LG=${LG:-target/release/ringfan-loadgen}

# shellcheck source=benches/brokers.sh
source benches/brokers.sh

run() { # broker name scenario args...
    local broker=$1 name=$2
    shift 2
    if [[ -n "${ONLY:-}" && "$ONLY" != "$name" ]]; then return 0; fi
    echo "== $broker $name: $*"
    taskset -c "$CLIENT_CPU" "$LG" "$@" --url "ws://127.0.0.1:$PORT/ws" \
        --server-pid "$SERVER_PID" --quiet --report-only \
        --json "$OUT/$broker-$name.json" --plot "$OUT/$broker-$name.svg" |
        sed -n '/deliveries\|latency\|problems\|per_s\|per_delivery\|cpu_share\|per_conn/p'
}

# Half of what this broker delivered at saturation, as a publish rate.
half_rate() { # json
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(max(1, round(r["extra"].get("publishes_per_s",0)/2)))' "$1"
}

for broker in $BROKERS; do
    start $broker
    run $broker fanout-1x1000 fanout --subscribers 1000 --topics 1 --publishers 1 \
        --rate 0 --window 64 --payload 100 --duration "$DUR" --warmup "$WARM"
    if [[ -z "${ONLY:-}" || "$ONLY" == fanout-1x1000-half ]]; then
        rate=$(half_rate "$OUT/$broker-fanout-1x1000.json")
        run $broker fanout-1x1000-half fanout --subscribers 1000 --topics 1 --publishers 1 \
            --rate "$rate" --payload 100 --duration "$DUR" --warmup "$WARM"
    fi
    run $broker fanout-1000x10000 fanout --subscribers 10000 --topics 1000 --publishers 10 \
        --rate 100000 --payload 100 --duration "$DUR" --warmup "$WARM"
    run $broker feed feed --symbols 1000 --rate 2000 --subscribers 1000 --publishers 4 \
        --duration "$DUR" --warmup "$WARM"
    run $broker echo echo --connections 100 --rate 0 --window 1 --payload 100 \
        --duration "$DUR" --warmup "$WARM"
    run $broker conns conns --connections 10000 --hold 2s
    stop
done

if [[ "$OUT" == docs/bench ]]; then
    python3 benches/summarize.py "$OUT" docs/benchmarks.md
fi
