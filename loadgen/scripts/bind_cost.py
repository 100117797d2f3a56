#!/usr/bin/env python3
# Usage: unshare -rn sh -c 'ip link set lo up; python3 loadgen/scripts/bind_cost.py 17000 2000 44000'
# Explicit bind(127.0.0.2:p) + nonblocking connect, ports p walked in order.
import socket, time, sys
n = int(sys.argv[1]); bucket = int(sys.argv[2]); first = int(sys.argv[3])
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(('127.0.0.1', 9999)); srv.listen(4096); srv.setblocking(False)
dst = srv.getsockname()
clients = []; t_sum = 0.0; fails = {}
p = first
for k in range(n):
    s = socket.socket(); s.setblocking(False)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t0 = time.perf_counter()
    try:
        s.bind(('127.0.0.2', p)); e = s.connect_ex(dst)
    except OSError as x:
        e = x.errno
    t_sum += time.perf_counter() - t0
    p += 1
    if e not in (0, 115):
        fails[e] = fails.get(e, 0) + 1; s.close()
    else:
        clients.append(s)
    while True:
        try: c, _ = srv.accept(); c.close()
        except BlockingIOError: break
    if (k + 1) % bucket == 0:
        print(f"{k+1:6d} open={len(clients)} bind+connect avg {t_sum/bucket*1e6:8.1f} us fails={fails}", flush=True)
        t_sum = 0.0
