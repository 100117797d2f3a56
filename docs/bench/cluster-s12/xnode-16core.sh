#!/bin/bash
# Cross-node fan-out through NATS on a 16-core host (issue #18): nats on cores 12-13,
# nodes A,B,C (cluster) on cores 0,1,2, plain node D on core 3, generator on 8-11.
B=$(cd "$(dirname "$0")" && pwd)
W=/tmp/xnode; rm -rf $W; mkdir -p $W/run; cd $W
ulimit -n 20000
taskset -c 12-13 $B/nats-server -js -a 127.0.0.1 -p 24222 -sd $W/store > nats.log 2>&1 & echo $! > pid.nats
sleep 1
c=0
for n in A:28101 B:28102 C:28103; do
  name=${n%%:*}; port=${n##*:}
  taskset -c $c $B/ringfan --shards 1 --cluster nats://127.0.0.1:24222 --listen 127.0.0.1:$port > node$name.log 2>&1 &
  echo $! > pid.$name; c=$((c+1))
done
taskset -c 3 $B/ringfan --shards 1 --listen 127.0.0.1:28104 > nodeD.log 2>&1 & echo $! > pid.D
sleep 2
A=ws://127.0.0.1:28101/ws; Bu=ws://127.0.0.1:28102/ws; C=ws://127.0.0.1:28103/ws; D=ws://127.0.0.1:28104/ws
cpu() { for p in nats A B C D; do awk -v n=$p '{print n, $14+$15}' /proc/$(cat pid.$p)/stat; done; }
one() { name=$1; mode=$2; shift 2
  case $mode in
    X) urls="--url $Bu,$C --publish-url $A --server-pid $(cat pid.B)";;
    S) urls="--url $A --server-pid $(cat pid.A)";;
    P) urls="--url $D --server-pid $(cat pid.D)";;
  esac
  cpu > run/$name.cpu0
  timeout 60 $B/ringfan-loadgen fanout $urls --cpus 8-11 --shards 4 --quiet --report-only --json run/$name.json "$@" > run/$name.txt 2>&1
  echo "rc=$?" >> run/$name.txt
  cpu > run/$name.cpu1
  python3 - run/$name.json <<'PY'
import json,sys
d=json.load(open(sys.argv[1])); l=d['latency']; c=d['counts']; e=d['extra']
print(sys.argv[1].split('/')[-1], 'deliv/s %.0f'%e.get('deliveries_per_s',0), 'lost',c['lost'],'dup',c['duplicated'],'gaps',c['gaps'], 'p50 %.3f p99 %.3f ms'%(l['p50_us']/1000,l['p99_us']/1000), 'srv_us/deliv', e.get('server_cpu_us_per_delivery'))
PY
}
L="--subscribers 1000 --topics 100 --publishers 10 --data quote --duration 10s --warmup 2s"
for r in 1 2; do for m in X S P; do one r10k-$m-$r $m $L --rate 10000; done; done
for m in X S P; do one r20k-$m-1 $m $L --rate 20000; done
H="--subscribers 100 --topics 1 --publishers 4 --window 64 --data quote --duration 5s --warmup 1s --rate 0"
for m in X S P; do one hot-$m-1 $m $H; done
for p in A B C D nats; do kill $(cat pid.$p); done; wait
cp -r run $OUT/; cp *.log $OUT/ 2>/dev/null
