#!/bin/bash
B=$(dirname "$0")
mkdir -p $OUT/scrape
taskset -c 0-3 $B/ringfan --shards 8 --listen 127.0.0.1:8080 > $OUT/broker.log 2>&1 &
pid=$!
sleep 1
( for i in $(seq 1 140); do
    exec 3<>/dev/tcp/127.0.0.1/8080 || break
    printf 'GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3
    ts=$(date +%s.%N); cat <&3 > $OUT/scrape/$ts.txt; exec 3>&-
    sleep 0.4
  done ) &
spid=$!
taskset -c 8-15 timeout 120 $B/ringfan-loadgen storm --connections 110000 --drop 100000 --topics 10000 --rate 10000 \
    --warmup 3s --duration 30s --drop-at 5s --shards 8 --cpus 8-15 --server-pid $pid \
    --json $OUT/storm.json > $OUT/storm.log 2>&1
echo rc=$?; grep -E "held_|storm_|problems|lost" $OUT/storm.log
kill $spid; kill $pid; wait
cd $OUT && tar czf scrape.tgz scrape && rm -rf scrape
