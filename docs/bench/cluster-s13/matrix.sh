#!/bin/bash
# session 13: bundling. Hot topic closed loop, then the 10,000/s fan-out, X and S.
cd /tmp/s13bench
H="--subscribers 100 --topics 1 --publishers 4 --window 64 --data quote --duration 5s --warmup 1s --rate 0"
L="--subscribers 1000 --topics 100 --publishers 10 --data quote --duration 10s --warmup 2s --rate 10000"
for r in 1 2; do
  for m in X S; do ./one.sh hot-$m-$r $m $H; sleep 2; done
  for m in X S; do ./one.sh r10k-$m-$r $m $L; sleep 2; done
done
echo done > matrix.done
