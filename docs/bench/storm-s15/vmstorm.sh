#!/bin/bash
# The issue's storm scaled to this 2-core VM: the broker on core 0, the
# generator on core 1, /metrics scraped every 0.4 s and the broker's
# threads' CPU (shards vs io_uring's io-wq workers, "iou-wrk-*") sampled
# with each scrape. Usage: vmstorm.sh OUTDIR [CONNS DROP TOPICS RATE]
# Binaries from target/release (or $BIN). For storm-s17/netstorm.sh:
# LISTEN (the broker's --listen), LG_WRAP (a command the generator runs
# under, e.g. `ip netns exec NS`), LG_TARGET (its --url and source
# options); PERF_AT (seconds from the start to the 3 s perf record).
# /metrics is scraped on the admin listener (ADMIN_PORT, 18091), whose
# answers go ahead of a storm's (session 18; before, the public port's
# scrapes came 1-2 s late in the storm and its windows were uneven).
set -u
OUT=$1; CONNS=${2:-22000}; DROP=${3:-20000}; TOPICS=${4:-2000}; RATE=${5:-2000}
BIN=${BIN:-target/release}
PORT=${PORT:-18080}
ADMIN_PORT=${ADMIN_PORT:-18091}
rm -rf "$OUT/scrape"; mkdir -p "$OUT/scrape"
taskset -c 0 "$BIN/ringfan" --shards ${BROKER_SHARDS:-2} --listen ${LISTEN:-127.0.0.1:$PORT} --admin-listen 127.0.0.1:$ADMIN_PORT ${BROKER_ARGS:-} > "$OUT/broker.log" 2>&1 &
pid=$!
sleep 1
( while kill -0 $pid 2>/dev/null; do
    exec 3<>/dev/tcp/127.0.0.1/$ADMIN_PORT || break
    printf 'GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3
    cat <&3 > "$OUT/scrape/next"; exec 3>&-
    # stamped when the answer is in (a busy broker answers late), next
    # to the CPU samples below
    ts=$(date +%s.%N); mv "$OUT/scrape/next" "$OUT/scrape/$ts.txt"
    # thread name, utime, stime (clock ticks) of every broker thread
    for t in /proc/$pid/task/*; do
      echo "$(cat $t/comm 2>/dev/null) $(cut -d' ' -f14,15 $t/stat 2>/dev/null)"
    done > "$OUT/scrape/$ts.threads"
    # core 0 as a whole (user nice system idle iowait irq softirq), and
    # ksoftirqd/0, which takes loopback's receive work past softirq's
    # budget: CPU the broker's core spends outside the broker's threads
    grep '^cpu0 ' /proc/stat > "$OUT/scrape/$ts.cpu0"
    cut -d' ' -f14,15 /proc/$(pgrep -x ksoftirqd/0)/stat >> "$OUT/scrape/$ts.cpu0"
    sleep 0.4
  done ) &
spid=$!
if [ -n "${PERF:-}" ]; then
  # the storm's seconds only: connect ~1 s, warm-up 3 s, drop at 5 s
  ( sleep ${PERF_AT:-8.5}; perf record -F 1999 -g -p $pid -o "$OUT/perf.data" -- sleep 3 > /dev/null 2>&1 ) &
fi
${LG_WRAP:-} taskset -c 1 timeout 200 "$BIN/ringfan-loadgen" storm ${LG_TARGET:---url ws://127.0.0.1:$PORT/ws} \
    --connections "$CONNS" --drop "$DROP" --topics "$TOPICS" --rate "$RATE" \
    --warmup 3s --duration 20s --drop-at 5s --shards ${LG_SHARDS:-2} --cpus 1 --server-pid $pid \
    --json "$OUT/storm.json" > "$OUT/storm.log" 2>&1
echo "rc=$?"
kill $pid; wait $pid 2>/dev/null; kill $spid 2>/dev/null; wait
grep -E "held_|storm_|problem|lost|failed" "$OUT/storm.log" | head -30
python3 "$(dirname "$0")/windows.py" "$OUT/scrape"
