#!/bin/bash
# vmstorm.sh (storm-s15) with the generator in its own network namespace
# behind a veth pair instead of on loopback, and RPS steering each side's
# receive work to its own core: packets for the broker are processed on
# core 0 (the broker's), packets for the generator on core 1. On loopback
# a sender runs the receiver's whole TCP receive path inline in its own
# context, so the broker's core also paid for the generator's side of
# every send and close (session 17's perf: 86 % of the broker's samples in
# the storm's first seconds were kernel, tcp_sendmsg 28 %, tcp_close 23 %).
# This is the layout of two machines, on one. Needs root.
# Usage: netstorm.sh OUTDIR [CONNS DROP TOPICS RATE]; BIN, BROKER_SHARDS,
# LG_SHARDS, BROKER_ARGS, RPS=0 (to keep the receive work where the kernel
# puts it: the sender's core, as on loopback) as in vmstorm.sh.
set -u
OUT=$1; CONNS=${2:-22000}; DROP=${3:-20000}; TOPICS=${4:-2000}; RATE=${5:-2000}
BIN=${BIN:-target/release}
PORT=${PORT:-18080}
NS=rfgen
ip netns del $NS 2>/dev/null
ip link del rfb0 2>/dev/null
ip netns add $NS
ip link add rfb0 type veth peer name rfg0
ip link set rfg0 netns $NS
# two broker addresses: a (source address, port) pair reaches each one,
# so --source-ports 1024-65535 gives 2 x 64,512 connections
ip addr add 10.77.0.1/24 dev rfb0
ip addr add 10.77.0.2/24 dev rfb0
ip link set rfb0 up
ip netns exec $NS ip addr add 10.77.0.11/24 dev rfg0
ip netns exec $NS ip link set rfg0 up
ip netns exec $NS ip link set lo up
if [ "${RPS:-1}" = 1 ]; then
  echo 1 > /sys/class/net/rfb0/queues/rx-0/rps_cpus
  ip netns exec $NS sh -c 'echo 2 > /sys/class/net/rfg0/queues/rx-0/rps_cpus'
fi
# the generator's namespace starts with the kernel's defaults (somaxconn
# does not matter there: it only connects)
rm -rf "$OUT/scrape"; mkdir -p "$OUT/scrape"
taskset -c 0 "$BIN/ringfan" --shards ${BROKER_SHARDS:-2} --listen 0.0.0.0:$PORT ${BROKER_ARGS:-} > "$OUT/broker.log" 2>&1 &
pid=$!
sleep 1
( while kill -0 $pid 2>/dev/null; do
    exec 3<>/dev/tcp/127.0.0.1/$PORT || break
    printf 'GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3
    cat <&3 > "$OUT/scrape/next"; exec 3>&-
    ts=$(date +%s.%N); mv "$OUT/scrape/next" "$OUT/scrape/$ts.txt"
    for t in /proc/$pid/task/*; do
      echo "$(cat $t/comm 2>/dev/null) $(cut -d' ' -f14,15 $t/stat 2>/dev/null)"
    done > "$OUT/scrape/$ts.threads"
    grep '^cpu0 ' /proc/stat > "$OUT/scrape/$ts.cpu0"
    cut -d' ' -f14,15 /proc/$(pgrep -x ksoftirqd/0)/stat >> "$OUT/scrape/$ts.cpu0"
    sleep 0.4
  done ) &
spid=$!
if [ -n "${PERF:-}" ]; then
  ( sleep ${PERF_AT:-8.5}; perf record -F 1999 -g -p $pid -o "$OUT/perf.data" -- sleep 3 > /dev/null 2>&1 ) &
fi
ip netns exec $NS taskset -c 1 timeout 200 "$BIN/ringfan-loadgen" storm \
    --url ws://10.77.0.1:$PORT/ws --url ws://10.77.0.2:$PORT/ws --source-ports 1024-65535 \
    --connections "$CONNS" --drop "$DROP" --topics "$TOPICS" --rate "$RATE" \
    --warmup 3s --duration 20s --drop-at 5s --shards ${LG_SHARDS:-2} --cpus 1 --server-pid $pid \
    --json "$OUT/storm.json" > "$OUT/storm.log" 2>&1
echo "rc=$?"
kill $pid; wait $pid 2>/dev/null; kill $spid 2>/dev/null; wait
ip netns del $NS; ip link del rfb0 2>/dev/null
grep -E "held_|storm_|problem|lost|failed" "$OUT/storm.log" | head -30
python3 "$(dirname "$0")/../storm-s15/windows.py" "$OUT/scrape"
