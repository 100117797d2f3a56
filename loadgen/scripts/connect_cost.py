#!/usr/bin/env python3
# Usage (private netns, so the range is yours to set):
#   unshare -rn sh -c 'ip link set lo up; echo 44000 60999 > /proc/sys/net/ipv4/ip_local_port_range; python3 loadgen/scripts/connect_cost.py 17000 1000'
# Time each nonblocking connect() from one source address, by how many
# connections are already open: shows the even pass / odd pass.
import socket, time, sys, select
lo, hi = map(int, open('/proc/sys/net/ipv4/ip_local_port_range').read().split())
n = int(sys.argv[1]); bucket = int(sys.argv[2]) if len(sys.argv) > 2 else 500
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(('127.0.0.1', 0)); srv.listen(4096); srv.setblocking(False)
dst = srv.getsockname()
clients = []; t_sum = 0.0; odd = 0; fails = {}
t_bucket = time.perf_counter()
for k in range(n):
    s = socket.socket(); s.setblocking(False)
    s.setsockopt(socket.IPPROTO_IP, 24, 1)  # IP_BIND_ADDRESS_NO_PORT
    s.bind(('127.0.0.2', 0))
    t0 = time.perf_counter()
    e = s.connect_ex(dst)
    t_sum += time.perf_counter() - t0
    if e not in (0, 115):
        fails[e] = fails.get(e, 0) + 1; s.close()
    else:
        clients.append(s); odd += s.getsockname()[1] & 1
    while True:
        try: c, _ = srv.accept(); c.close()
        except BlockingIOError: break
    if (k + 1) % bucket == 0:
        print(f"{k+1:6d} open={len(clients)} odd={odd} connect() avg {t_sum/bucket*1e6:8.1f} us  fails={fails}", flush=True)
        t_sum = 0.0; odd = 0
