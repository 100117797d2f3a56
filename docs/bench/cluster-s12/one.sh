#!/bin/bash
# one.sh NAME MODE(X|S|P) EXTRA...   -> run/NAME.json, run/NAME.cpu
cd /tmp/s12bench
name=$1; mode=$2; shift 2
A=ws://127.0.0.1:28101/ws; B=ws://127.0.0.1:28102/ws; C=ws://127.0.0.1:28103/ws; D=ws://127.0.0.1:28104/ws
case $mode in
  X) urls="--url $B,$C --publish-url $A --server-pid $(cat pid.B)";;
  S) urls="--url $A --server-pid $(cat pid.A)";;
  P) urls="--url $D --server-pid $(cat pid.D)";;
esac
cpu() { for p in nats A B C D; do pid=$(cat pid.$p); awk -v n=$p '{print n, $14+$15}' /proc/$pid/stat; done; }
cpu > run/$name.cpu0
./ringfan-loadgen fanout $urls --quiet --report-only --json run/$name.json "$@" > run/$name.txt 2>&1
echo "rc=$?" >> run/$name.txt
cpu > run/$name.cpu1
