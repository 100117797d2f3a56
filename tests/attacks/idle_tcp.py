#!/usr/bin/env python3
"""Idle TCP connections against a small descriptor table: /healthz stall.

Usage: idle_tcp.py BINARY [N_IDLE] [EXTRA FLAGS...]
Starts BINARY on 127.0.0.1 with one shard and a 40-slot table, opens
N_IDLE (default 60) TCP connections that send nothing, then times one
GET /healthz (10 s timeout). Prints the status (or the error) and ms.
"""
import socket, sys, time
from attack import start


def main():
    binary = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 60
    extra = sys.argv[3:]
    p, port = start(binary, ["--shards", "1", "--max-connections-per-shard", "40", *extra])
    host = "127.0.0.1"
    try:
        idle = [socket.create_connection((host, int(port)), timeout=5) for _ in range(n)]
        time.sleep(0.2)
        t0 = time.time()
        try:
            h = socket.create_connection((host, int(port)), timeout=10)
            h.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            out = h.recv(4096).decode(errors="replace")
            status = out.split("\r\n", 1)[0] or "EOF without an answer"
        except OSError as e:
            status = f"error: {e!r}"
        print(f"idle={n} healthz='{status}' ms={(time.time() - t0) * 1000:.0f}")
        for s in idle:
            s.close()
    finally:
        p.kill()
        p.wait()


main()
