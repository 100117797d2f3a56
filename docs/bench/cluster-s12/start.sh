#!/bin/bash
# start nats + A,B,C (cluster) + D (plain); write pids
cd /tmp/s12bench
rm -rf nats-store; mkdir -p nats-store
/usr/sbin/nats-server -js -a 127.0.0.1 -p 24222 -sd /tmp/s12bench/nats-store > nats.log 2>&1 &
echo $! > pid.nats
sleep 1
for n in A:28101 B:28102 C:28103; do
  name=${n%%:*}; port=${n##*:}
  ./ringfan --shards 1 --cluster nats://127.0.0.1:24222 --listen 127.0.0.1:$port > node$name.log 2>&1 &
  echo $! > pid.$name
done
./ringfan --shards 1 --listen 127.0.0.1:28104 > nodeD.log 2>&1 &
echo $! > pid.D
sleep 2
for f in pid.*; do echo "$f $(cat $f) $(ps -o comm= -p $(cat $f))"; done
