#!/bin/bash
# An operator's probes through a storm: storm-s15/vmstorm.sh (which turns
# the admin listener on, port 18091), and probe.py (on the generator's core) timing a
# GET every 0.2 s of /healthz on the public port, /healthz and /metrics
# on the admin listener. Usage: probestorm.sh OUTDIR [vmstorm.sh's
# CONNS DROP TOPICS RATE]; BIN, BROKER_SHARDS, LG_SHARDS as for it.
set -u
OUT=$1; shift
here=$(dirname "$0")
mkdir -p "$OUT"
( sleep 0.5; taskset -c 1 python3 "$here/probe.py" "$OUT/probe.csv" ${PROBE_SECONDS:-50} \
    public=127.0.0.1:18080/healthz admin=127.0.0.1:18091/healthz \
    admin-metrics=127.0.0.1:18091/metrics ) &
ppid=$!
bash "$here/../storm-s15/vmstorm.sh" "$OUT" "$@" > "$OUT/vmstorm.txt" 2>&1
wait $ppid
grep -E "rc=|opened|anomalies|held_(during|outside)_storm_p(50|99)" "$OUT/vmstorm.txt"
python3 "$here/probes.py" "$OUT/probe.csv"
