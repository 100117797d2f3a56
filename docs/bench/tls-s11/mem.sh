#!/bin/bash
# RSS per idle subscribed connection, plain vs TLS, fresh broker each.
set -u
# CERTS: a directory with default.pem/default.key (SAN localhost) and ca.pem,
# e.g. from tests/python/tlscerts.py standard_set; OUT: where reports go.
CERTS=${CERTS:?}; OUT=${OUT:-/tmp/mem}; mkdir -p "$OUT"
cd "$(dirname "$0")/../../.."
B=target/release/ringfan; L=target/release/ringfan-loadgen
N=${N:-50000}
for proto in ${PROTOS:-plain tls}; do
  port=$((20000 + RANDOM % 20000)); tport=$((port+1))
  $B --shards 4 --listen 127.0.0.1:$port --listen-tls 127.0.0.1:$tport --tls-cert $CERTS/default.pem --tls-key $CERTS/default.key > $OUT/broker-$proto.log 2>&1 &
  pid=$!
  sleep 1.5
  if [ $proto = plain ]; then url=ws://127.0.0.1:$port/ws; extra=""; else url=wss://localhost:$tport/ws; extra="--ca $CERTS/ca.pem"; fi
  $L conns --url $url $extra --connections $N --hold 15s --shards 4 --cpus 1 --server-pid $pid --quiet --json $OUT/$proto.json > $OUT/lg-$proto.log 2>&1
  python3 -c "import json;d=json.load(open('$OUT/$proto.json'));e=d['extra'];print('$proto', int(e['server_rss_per_conn_bytes']), 'B/conn; rate', int(e['connect_rate_per_s']), d['problems'])"
  kill $pid; wait $pid 2>/dev/null
done
