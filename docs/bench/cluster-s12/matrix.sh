#!/bin/bash
cd /tmp/s12bench
L="--subscribers 1000 --topics 100 --publishers 10 --data quote --duration 10s --warmup 2s"
for r in 1 2; do
  for m in X S P; do ./one.sh r10k-$m-$r $m $L --rate 10000; sleep 2; done
done
for r in 1 2; do
  for m in X S P; do ./one.sh r2k-$m-$r $m $L --rate 2000; sleep 2; done
done
H="--subscribers 100 --topics 1 --publishers 4 --window 64 --data quote --duration 5s --warmup 1s --rate 0"
for m in X S P; do ./one.sh hot-$m-1 $m $H; sleep 2; done
echo done > matrix.done
