#!/usr/bin/env python3
"""Connections that hold a large unfinished frame and trickle bytes.

Usage: trickle.py BINARY [N_CONNS] [SECONDS] [EXTRA FLAGS...]
Starts BINARY (one shard), opens N_CONNS (default 50) /ws connections,
each sends the first 512 KiB of a 1 MiB binary frame, then one byte per
second. Prints RSS (MiB) before and after SECONDS (default 15), and how
many connections the server closed.
"""
import socket, sys, time
from attack import UPGRADE, rss_mib, start



def main():
    binary = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    secs = int(sys.argv[3]) if len(sys.argv) > 3 else 15
    extra = sys.argv[4:]
    p, port = start(binary, ["--shards", "1", *extra])
    host = "127.0.0.1"
    try:
        time.sleep(0.3)
        base = rss_mib(p.pid)
        size = 1 << 20
        head = bytes([0x82, 0x80 | 127]) + size.to_bytes(8, "big") + b"\0\0\0\0"
        conns = []
        for _ in range(n):
            s = socket.create_connection((host, int(port)), timeout=5)
            s.sendall(UPGRADE)
            s.recv(4096)
            s.sendall(head + b"\0" * (512 << 10))
            conns.append(s)
        peak = base
        closed = set()
        for _ in range(secs):
            time.sleep(1)
            peak = max(peak, rss_mib(p.pid))
            for i, s in enumerate(conns):
                if i in closed:
                    continue
                try:
                    s.sendall(b"\0")
                except OSError:
                    closed.add(i)
        for i, s in enumerate(conns):
            s.setblocking(False)
            try:
                s.recv(4096)  # a close frame, or b"" at EOF: either way closed
                closed.add(i)
            except BlockingIOError:
                pass
            except OSError:
                closed.add(i)
        print(f"conns={n} rss_before_mib={base:.1f} rss_peak_mib={peak:.1f} "
              f"rss_end_mib={rss_mib(p.pid):.1f} closed_by_server={len(closed)}")
    finally:
        p.kill()
        p.wait()


main()
