"""Time an operator's requests to a broker during a storm.
Usage: probe.py OUT.csv SECONDS NAME=HOST:PORT[/PATH] ...
Every 0.2 s, one GET per target on a new connection (as a scraper or a
load balancer's health check makes them); each answer's latency (connect
to the last byte) is written as: start_unix_s,name,path,latency_s,status.
A request unanswered in 10 s is written with latency 10 and status 0."""
import socket, sys, threading, time

out, seconds, targets = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
rows, lock = [], threading.Lock()

def one(name, host, port, path):
    t0 = time.time()
    status = 0
    try:
        with socket.create_connection((host, port), timeout=10) as s:
            s.settimeout(10)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            head = b""
            while True:
                b = s.recv(65536)
                if not b:
                    break
                if not head:
                    head = b[:12]
            if head.startswith(b"HTTP/1.1 "):
                status = int(head[9:12])
    except OSError:
        pass
    lat = time.time() - t0
    with lock:
        rows.append((t0, name, path, min(lat, 10.0), status))

end = time.time() + seconds
threads = []
while time.time() < end:
    for t in targets:
        name, rest = t.split("=", 1)
        addr, _, path = rest.partition("/")
        host, port = addr.rsplit(":", 1)
        th = threading.Thread(target=one, args=(name, host, int(port), "/" + path), daemon=True)
        th.start()
        threads.append(th)
    time.sleep(0.2)
for th in threads:
    th.join(11)
with open(out, "w") as f:
    for r in sorted(rows):
        f.write("%.3f,%s,%s,%.4f,%d\n" % r)
