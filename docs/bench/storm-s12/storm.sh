#!/bin/bash
# Issue #11 storm on a 16-core host: broker on its own core(s), generator on 8 others.
B=$(dirname "$0")
uname -r; nproc; ulimit -n; ulimit -Hn; cat /proc/sys/net/ipv4/ip_local_port_range /proc/sys/net/core/somaxconn; free -g | head -2
ulimit -n 20000 2>/dev/null
run() { # broker-cpus shards name
  taskset -c $1 $B/ringfan --shards $2 --listen 127.0.0.1:8080 > $OUT/broker-$3.log 2>&1 &
  pid=$!
  sleep 1
  timeout 120 $B/ringfan-loadgen storm --connections 110000 --drop 100000 --topics 10000 --rate 10000 \
    --warmup 3s --duration 30s --drop-at 5s --shards 8 --cpus 8-15 --server-pid $pid \
    --json $OUT/storm-$3.json > $OUT/storm-$3.log 2>&1
  echo "rc=$? $3"; tail -40 $OUT/storm-$3.log
  kill $pid; wait $pid
}
run 0 8 broker1core
run 0-3 4 broker4cores
