#!/usr/bin/env bash
# Quiet-machine rerun of HTTP batched ingest at 1,000 topics x 1 subscriber,
# write delay 0 vs 2 ms. Usage: bash /tmp/s8/wd.sh OUTDIR
set -u
OUT=$1; mkdir -p $OUT
cd /work/main
for wd in 0 2; do
  PORT=$((18600 + wd))
  taskset -c 0 target/release/ringfan --shards 1 --listen 127.0.0.1:$PORT --write-delay-ms $wd >/dev/null 2>&1 &
  PID=$!
  sleep 1
  for round in 1 2 3; do
    target/release/ringfan-loadgen fanout --url ws://127.0.0.1:$PORT/ws --rate 0 --publishers 1 --duration 5s --warmup 1s --cpus 1 --server-pid $PID --quiet \
      --topics 1000 --subscribers 1000 --publish-via http --batch 100 --window 16 --json $OUT/http100-wd$wd-$round.json >/dev/null 2>$OUT/http100-wd$wd-$round.err
    echo "wd $wd round $round: exit $?"
  done
  kill $PID; wait $PID 2>/dev/null
done
