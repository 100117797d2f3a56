#!/usr/bin/env python3
"""Per-subscriber and per-request attacks of issue #12, each from one
unauthenticated client, against a ringfan binary. Prints RSS (MiB, VmRSS),
/healthz stall (ms) and the counters that tell what happened.

    python3 tests/attacks/lin.py BIN conflate|churn [extra flags...]

conflate: a subscriber to '>' under --slow-consumer conflate that never
  reads, and a publisher on 50,000 new topics (100-byte data, no ids).
  LIN_BASELINE=1 runs the same load with nobody subscribed. Since the
  new-topic budget landed, give the after binary
  --max-new-topics-per-conn 100000 (the before one has no such flag).
  Before: the held list was searched per message (O(topics)) and unbounded.
churn: one connection sends sub/unsub of a new wildcard pattern, with ids,
  as fast as it can for 5 s. Before: no limit on requests or on the
  interest mail they make between shards.

Raw sockets only (no dependencies); bounded in time; 127.0.0.1 only.
"""
import json, os, socket, subprocess, sys, threading, time
from attack import UPGRADE, frame, rss_mib as rss, start





def ws(port, rcvbuf=None):
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(30)
    s.connect(("127.0.0.1", port))
    s.sendall(UPGRADE)
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    assert b" 101 " in buf.split(b"\r\n")[0], buf
    return s, buf.split(b"\r\n\r\n", 1)[1]


def frames(s, buf, stop):
    """Yield server text payloads until `stop` is set or the stream ends."""
    while not stop.is_set():
        while len(buf) >= 2:
            n = buf[1] & 0x7F
            h = 2
            if n == 126:
                if len(buf) < 4:
                    break
                n, h = int.from_bytes(buf[2:4], "big"), 4
            elif n == 127:
                if len(buf) < 10:
                    break
                n, h = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < h + n:
                break
            op, payload, buf = buf[0] & 0x0F, buf[h:h + n], buf[h + n:]
            yield op, payload
        try:
            d = s.recv(1 << 16)
        except (socket.timeout, OSError):
            return
        if not d:
            return
        buf += d


def healthz_ms(port):
    """Time to a /healthz answer; a timeout (30 s) counts as 30,000 ms."""
    t = time.monotonic()
    try:
        c = socket.create_connection(("127.0.0.1", port), timeout=30)
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        c.recv(4096)
        c.close()
    except OSError:
        pass
    return (time.monotonic() - t) * 1000


def metric(port, name):
    """A counter's value; None if absent or /metrics is stalled (30 s)."""
    out = b""
    try:
        c = socket.create_connection(("127.0.0.1", port), timeout=30)
        c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        while True:
            d = c.recv(65536)
            if not d:
                break
            out += d
    except OSError:
        return None
    # Summed over the per-shard series (name{shard="N"}).
    found = [int(l.split()[-1]) for l in out.decode().splitlines()
             if l.startswith(name + " ") or l.startswith(name + "{")]
    return sum(found) if found else None


def probe(port, stop, worst):
    """Health checks every 20 ms; the slowest answer."""
    while not stop.is_set():
        worst[0] = max(worst[0], healthz_ms(port))
        time.sleep(0.02)


def conflate(port, pid):
    n = 50_000
    stalled, _ = ws(port, rcvbuf=4096)
    # LIN_BASELINE=1: the same load with nobody subscribed, for comparison.
    topic = "none" if os.environ.get("LIN_BASELINE") else ">"
    stalled.sendall(frame(f'{{"op":"sub","topic":"{topic}","id":1}}'))
    time.sleep(0.2)
    base = rss(pid)
    p, _ = ws(port)
    stop, worst = threading.Event(), [0.0]
    threading.Thread(target=probe, args=(port, stop, worst), daemon=True).start()
    data = json.dumps("x" * 98)
    t0 = time.monotonic()
    batch = []
    for i in range(n):
        batch.append(frame(f'{{"op":"pub","topic":"md.t{i}","data":{data}}}'))
        if len(batch) == 500:
            p.sendall(b"".join(batch))
            batch = []
    p.sendall(b"".join(batch))
    deadline = t0 + 120
    while (metric(port, "ringfan_publishes_total") or 0) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    took = time.monotonic() - t0
    done = metric(port, "ringfan_publishes_total")
    time.sleep(1)
    stop.set()
    print(f"published {done}/{n} in {took:.2f} s; RSS {base:.1f} -> {rss(pid):.1f} MiB; "
          f"worst /healthz {worst[0]:.0f} ms; conflated_total "
          f"{metric(port, 'ringfan_conflated_total')}, conflate_overflows_total "
          f"{metric(port, 'ringfan_conflate_overflows_total')}")


def churn(port, pid):
    c, rest = ws(port)
    stop, worst = threading.Event(), [0.0]
    replies = {"ack": 0, "rate_limited": 0, "other": 0}

    def reader():
        for op, payload in frames(c, rest, stop):
            if op == 0x8:
                replies["close"] = int.from_bytes(payload[:2], "big")
                replies["reason"] = payload[2:].decode(errors="replace")
                return
            v = json.loads(payload)
            if v.get("op") == "ack":
                replies["ack"] += 1
            elif v.get("code") == "rate_limited":
                replies["rate_limited"] += 1
            else:
                replies["other"] += 1

    threading.Thread(target=reader, daemon=True).start()
    threading.Thread(target=probe, args=(port, stop, worst), daemon=True).start()
    base = rss(pid)
    mail0 = metric(port, "ringfan_mail_received_total")
    t0, i, sent = time.monotonic(), 0, 0
    while time.monotonic() - t0 < 5:
        batch = []
        for _ in range(200):
            batch.append(frame(f'{{"op":"sub","topic":"c.{i}.>","id":{2 * i}}}'))
            batch.append(frame(f'{{"op":"unsub","topic":"c.{i}.>","id":{2 * i + 1}}}'))
            i += 1
        c.sendall(b"".join(batch))
        sent += 400
    time.sleep(2)
    stop.set()
    print(f"sent {sent} requests in 5 s: {replies}; interest/sub mail between shards "
          f"{(metric(port, 'ringfan_mail_received_total') or 0) - mail0}; RSS {base:.1f} -> "
          f"{rss(pid):.1f} MiB; worst /healthz {worst[0]:.0f} ms; requests_rate_limited_total "
          f"{metric(port, 'ringfan_requests_rate_limited_total')}")


def main():
    bin_, what, *flags = sys.argv[1:]
    flags = ["--shards", "2", *flags]
    if what == "conflate" and "--slow-consumer" not in flags:
        flags += ["--slow-consumer", "conflate"]
    p, port = start(bin_, flags)
    try:
        {"conflate": conflate, "churn": churn}[what](port, p.pid)
    finally:
        p.kill()
        p.wait()


if __name__ == "__main__":
    main()
