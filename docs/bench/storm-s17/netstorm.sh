#!/bin/bash
# storm-s15/vmstorm.sh with the generator in its own network namespace
# behind a veth pair instead of on loopback, and RPS steering each side's
# receive work to its own core: packets for the broker are processed on
# core 0 (the broker's), packets for the generator on core 1. On loopback
# a sender runs the receiver's whole TCP receive path inline in its own
# context, so the broker's core also paid for the generator's side of
# every send and close (session 17's perf: 86 % of the broker's samples in
# the storm's first seconds were kernel, tcp_sendmsg 28 %, tcp_close 23 %).
# This is the layout of two machines, on one. Needs root.
# Usage: netstorm.sh OUTDIR [CONNS DROP TOPICS RATE], with vmstorm.sh's
# variables (BIN, BROKER_SHARDS, LG_SHARDS, BROKER_ARGS, PERF, PERF_AT);
# RPS=0 leaves the receive work where the kernel puts it (the sender's
# core, as on loopback).
set -u
PORT=${PORT:-18080}
NS=rfgen
cleanup() { ip netns del $NS 2>/dev/null; ip link del rfb0 2>/dev/null; }
cleanup
trap cleanup EXIT
ip netns add $NS
ip link add rfb0 type veth peer name rfg0
ip link set rfg0 netns $NS
# ADDRS broker addresses (2 unless said): a (source address, port) pair
# reaches each one, so --source-ports 1024-65535 gives ADDRS x 64,512
# connections. A storm needs room for the dropped ones' TIME_WAIT too:
# the issue's 110,000 with 100,000 reconnecting need ADDRS=4.
urls=""
for a in $(seq 1 ${ADDRS:-2}); do
  ip addr add 10.77.0.$a/24 dev rfb0
  urls="$urls --url ws://10.77.0.$a:$PORT/ws"
done
ip link set rfb0 up
ip netns exec $NS ip addr add 10.77.0.11/24 dev rfg0
ip netns exec $NS ip link set rfg0 up
ip netns exec $NS ip link set lo up
if [ "${RPS:-1}" = 1 ]; then
  echo 1 > /sys/class/net/rfb0/queues/rx-0/rps_cpus
  ip netns exec $NS sh -c 'echo 2 > /sys/class/net/rfg0/queues/rx-0/rps_cpus'
fi
# The broker on every address (/metrics is scraped on 127.0.0.1).
LISTEN=0.0.0.0:$PORT LG_WRAP="ip netns exec $NS" \
  LG_TARGET="$urls --source-ports 1024-65535" \
  PORT=$PORT bash "$(dirname "$0")/../storm-s15/vmstorm.sh" "$@"
