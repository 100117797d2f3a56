"""Summarize probe.py's CSV: per target, the answers' latency (p50, p99,
max) and how many took over 1 s, counting only requests made while the
broker was up (status 200 or 503)."""
import csv, sys
by = {}
for t, name, path, lat, status in csv.reader(open(sys.argv[1])):
    if int(status) in (200, 503):
        by.setdefault(name, []).append(float(lat))
for name, ls in by.items():
    ls.sort()
    q = lambda p: ls[min(len(ls) - 1, int(len(ls) * p))]
    print(f"{name:14} n={len(ls):4}  p50 {q(0.5)*1e3:7.1f} ms  p99 {q(0.99)*1e3:7.1f} ms  "
          f"max {ls[-1]*1e3:7.1f} ms  over 1 s: {sum(l > 1 for l in ls)}")
