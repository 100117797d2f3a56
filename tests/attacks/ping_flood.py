#!/usr/bin/env python3
"""A client that sends empty pings and never reads: the broker's RSS.

Usage: ping_flood.py BINARY [N_PINGS] [EXTRA FLAGS...]
Starts BINARY on 127.0.0.1 (one shard), measures VmRSS before, sends
N_PINGS (default 1,000,000) empty masked pings on /ws without reading for
at most 20 s, and prints RSS (MiB) before, at the peak, and the pings the
server took. Bounded: every wait has a timeout.
"""
import socket, sys, time
from attack import UPGRADE, rss_mib, start



def main():
    binary = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
    extra = sys.argv[3:]
    p, port = start(binary, ["--shards", "1", *extra])
    host = "127.0.0.1"
    try:
        time.sleep(0.3)
        base = rss_mib(p.pid)
        s = socket.create_connection((host, int(port)), timeout=5)
        s.sendall(UPGRADE)
        s.setblocking(False)
        ping = b"\x89\x80\x01\x02\x03\x04"  # FIN|ping, masked, empty
        data = ping * n
        sent, peak = 0, base
        deadline = time.time() + 20
        while sent < len(data) and time.time() < deadline:
            try:
                sent += s.send(data[sent:sent + (1 << 20)])
            except BlockingIOError:
                time.sleep(0.01)
            peak = max(peak, rss_mib(p.pid))
        end = time.time() + 3  # let the server catch up with what it took
        while time.time() < end:
            peak = max(peak, rss_mib(p.pid))
            time.sleep(0.05)
        print(f"rss_before_mib={base:.1f} rss_peak_mib={peak:.1f} "
              f"growth_mib={peak - base:.1f} pings_written={sent // len(ping)} of {n} "
              f"alive={p.poll() is None}")
        m = socket.create_connection((host, int(port)), timeout=5)
        m.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        body = b""
        while chunk := m.recv(65536):
            body += chunk
        for l in body.decode().splitlines():
            if l.startswith("ringfan_") and any(k in l for k in (
                    "recv_paused", "enobufs", "bytes_received", "frames_sent")):
                print(l)
        s.close()
    finally:
        p.kill()
        p.wait()


main()
