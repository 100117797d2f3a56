#!/usr/bin/env python3
"""Per-window view of a storm run from vmstorm.sh's scrapes: the broker's
own publish_to_send histogram (bucket deltas between scrapes, all shards
summed: p50/p99/p99.9 as the bucket bound reached), loop turns over 10 ms,
and the CPU of shard threads vs io_uring's io-wq workers in the window."""
import glob, os, re, sys

d = sys.argv[1]
HZ = os.sysconf("SC_CLK_TCK")
LINE = re.compile(r'^(ringfan_\w+)_bucket\{([^}]*)\} (\S+)')


def hist(text, name):
    b = {}
    for line in text.splitlines():
        m = LINE.match(line)
        if not m or m.group(1) != name:
            continue
        le = re.search(r'le="([^"]+)"', m.group(2)).group(1)
        le = float("inf") if le == "+Inf" else float(le)
        b[le] = b.get(le, 0) + float(m.group(3))
    return b


def threads(path):
    shard = wrk = other = 0
    n = 0
    try:
        for line in open(path):
            p = line.split()
            if len(p) < 3:
                continue
            t = int(p[-2]) + int(p[-1])
            if p[0].startswith("iou-wrk"):
                wrk += t
                n += 1
            elif p[0].startswith("iou-sqp"):
                other += t
            else:
                shard += t
    except OSError:
        pass
    return shard, wrk, n


def cpu0(path):
    """core 0's busy, softirq and ksoftirqd/0 ticks (None if not sampled)"""
    try:
        lines = open(path).read().split("\n")
        v = [int(x) for x in lines[0].split()[1:8]]
        ksoft = sum(int(x) for x in lines[1].split())
        return (sum(v) - v[3] - v[4], v[6], ksoft, sum(v))
    except (OSError, IndexError, ValueError):
        return None


def q(delta, frac):
    total = delta.get(float("inf"), 0)
    if total <= 0:
        return None
    for le in sorted(delta):
        if delta[le] >= frac * total:
            return le
    return None


files = sorted(glob.glob(os.path.join(d, "*.txt")), key=lambda f: float(os.path.basename(f)[:-4]))
prev = None
t0 = None
fmt = lambda v: "-" if v is None else ("inf" if v == float("inf") else f"{v*1000:g}")
print("t(s)   sends  p50  p99  p99.9 (ms, bucket bounds)  turns>10ms  shardCPU  iowqCPU  iowq-threads  core0-busy softirq ksoftirqd")
for f in files:
    ts = float(os.path.basename(f)[:-4])
    text = open(f, errors="replace").read()
    h = hist(text, "ringfan_publish_to_send_seconds")
    lt = hist(text, "ringfan_loop_turn_seconds")
    cpu = threads(f[:-4] + ".threads")
    core = cpu0(f[:-4] + ".cpu0")
    if prev is not None and h:
        pts, ph, plt, pcpu, pcore = prev
        dh = {k: h[k] - ph.get(k, 0) for k in h}
        dl = {k: lt[k] - plt.get(k, 0) for k in lt}
        long_turns = dl.get(float("inf"), 0) - max((v for k, v in dl.items() if k <= 0.010), default=0)
        dt = ts - pts
        print(f"{ts - t0:5.1f} {int(dh.get(float('inf'), 0)):7d} {fmt(q(dh, .5)):>4} {fmt(q(dh, .99)):>4} {fmt(q(dh, .999)):>6}"
              f" {int(long_turns):27d} {(cpu[0]-pcpu[0])/HZ/dt:9.2f} {(cpu[1]-pcpu[1])/HZ/dt:8.2f} {cpu[2]:6d}", end="")
        if core and pcore:
            print(f"  {(core[0]-pcore[0])/HZ/dt:10.2f} {(core[1]-pcore[1])/HZ/dt:7.2f} {(core[2]-pcore[2])/HZ/dt:9.2f}", end="")
        print()
    if t0 is None:
        t0 = ts
    prev = (ts, h, lt, cpu, core)
