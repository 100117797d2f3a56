#!/usr/bin/env python3
"""Owner-side attacks of issue #12, each from one unauthenticated client,
against a ringfan binary: prints RSS (MiB, VmRSS) and /healthz stall (ms).

    python3 tests/attacks/owner.py BIN churn|snapshot|scan [extra flags...]

Raw sockets only (no dependencies); bounded in time; 127.0.0.1 only.
"""
import os, socket, subprocess, sys, threading, time, json
from attack import UPGRADE, frame, rss_mib as rss, start




def ws(port, drain=True):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(UPGRADE)
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    assert b" 101 " in buf.split(b"\r\n")[0], buf
    if drain:
        def sink():
            try:
                while s.recv(1 << 16):
                    pass
            except OSError:
                pass
        threading.Thread(target=sink, daemon=True).start()
    return s

def healthz_ms(port):
    t = time.monotonic()
    c = socket.create_connection(("127.0.0.1", port), timeout=30)
    c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    c.recv(4096)
    c.close()
    return (time.monotonic() - t) * 1000

def settle(pid, secs=1.0):
    time.sleep(secs)
    return rss(pid)

def metric(port, name):
    c = socket.create_connection(("127.0.0.1", port), timeout=10)
    c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    out = b""
    while True:
        d = c.recv(65536)
        if not d:
            break
        out += d
    # Summed over the per-shard series (name{shard="N"}).
    found = [int(l.split()[-1]) for l in out.decode().splitlines()
             if l.startswith(name + " ") or l.startswith(name + "{")]
    return sum(found) if found else None

def publish_all(s, topics, data):
    batch = []
    for t in topics:
        batch.append(frame('{"op":"pub","topic":"%s","data":%s}' % (t, data)))
        if len(batch) == 1000:
            s.sendall(b"".join(batch)); batch = []
    s.sendall(b"".join(batch))

def churn(bin_, flags):
    p, port = start(bin_, ["--shards", "2", *flags])
    base = settle(p.pid, 0.5)
    s = ws(port)
    import random
    publish_all(s, ("r.%016x" % random.getrandbits(64) for _ in range(200_000)), "1")
    time.sleep(2)
    s.close()
    after = settle(p.pid, 1.0)
    print(f"churn: RSS {base:.1f} -> {after:.1f} MiB after 200,000 random topics "
          f"(topics={metric(port, 'ringfan_topics')}, limited={metric(port, 'ringfan_new_topics_limited_total')})")
    p.kill()

def snapshot(bin_, flags):
    p, port = start(bin_, ["--shards", "2", *flags])
    pub = ws(port)
    publish_all(pub, (f"s.t{i}" for i in range(8000)), '"' + "x" * 1000 + '"')
    time.sleep(1.5)
    base = rss(p.pid)
    s = ws(port, drain=False)  # never reads
    s.sendall(b"".join(frame('{"op":"sub","topics":[">"],"snapshot":true}')
                       + frame('{"op":"unsub","topics":[">"]}') for _ in range(40)))
    peak = base
    for _ in range(300):
        time.sleep(0.01)
        peak = max(peak, rss(p.pid))
    print(f"snapshot: RSS {base:.1f} -> peak {peak:.1f} MiB over 3 s, 40 snapshot subs of 8 MB, reader never reads "
          f"(refused={metric(port, 'ringfan_snapshots_refused_total')}, slow_disconnects={metric(port, 'ringfan_slow_disconnects_total')})")
    p.kill()

def scan(bin_, flags):
    p, port = start(bin_, ["--shards", "1", *flags])
    pub = ws(port)
    publish_all(pub, (f"t.{i}" for i in range(200_000)), "1")
    time.sleep(3)
    idle = healthz_ms(port)
    s = ws(port)
    topics = json.dumps([f"t.{i}" for i in range(0, 200_000, 200)])
    s.sendall(frame('{"op":"sub","topics":%s,"snapshot":true,"id":1}' % topics))
    time.sleep(0.01)
    stall = healthz_ms(port)
    time.sleep(0.5)
    s2 = ws(port)
    s2.sendall(frame('{"op":"sub","topics":["t.1*"],"snapshot":true,"id":1}'.replace("t.1*", "t.*")))
    time.sleep(0.01)
    wild = healthz_ms(port)
    print(f"scan: /healthz {idle:.1f} ms idle, {stall:.1f} ms during a 1,000-exact-topic snapshot, "
          f"{wild:.1f} ms during a t.* snapshot of 200,000 topics "
          f"(topics={metric(port, 'ringfan_topics')})")
    p.kill()

if __name__ == "__main__":
    bin_, what, *flags = sys.argv[1:]
    {"churn": churn, "snapshot": snapshot, "scan": scan}[what](bin_, flags)
