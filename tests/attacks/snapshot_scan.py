#!/usr/bin/env python3
"""How long a big snapshot blocks its shard (issue #12, "Snapshot scans"):
publishes 200,000 topics `t.N`, then for a `sub` with `snapshot` of 1,000
exact topics and of `t.*`, probes `/healthz` back to back until the `ack`
arrives and prints the worst and median probe (ms), the time to the ack and
the snapshot messages received.

    python3 tests/attacks/snapshot_scan.py BIN [--shards N] [extra flags...]

Raw sockets only (no dependencies); 127.0.0.1 only. `owner.py scan` takes
one probe 10 ms after the request; this one takes them all along.
"""
import multiprocessing, socket, sys, threading, time, json
from attack import UPGRADE, frame, start
from owner import healthz_ms, publish_all


def subscriber(port):
    """A reading subscriber: counts snapshot messages, notes the ack."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(UPGRADE)
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    state = {"snaps": 0, "ack": None, "closed": False, "buf": buf.split(b"\r\n\r\n", 1)[1]}

    def read():
        data = state["buf"]
        while state["ack"] is None:
            # Frames from the server: unmasked, text. An offset, not a
            # slice per frame (200,000 frames: quadratic copying).
            at = 0
            while len(data) - at >= 2:
                n = data[at + 1] & 0x7F
                h = 2
                if n == 126:
                    if len(data) - at < 4:
                        break
                    n, h = int.from_bytes(data[at + 2:at + 4], "big"), 4
                elif n == 127:
                    if len(data) - at < 10:
                        break
                    n, h = int.from_bytes(data[at + 2:at + 10], "big"), 10
                if len(data) - at < h + n:
                    break
                msg = data[at + h:at + h + n]
                at += h + n
                if b'"snapshot":true' in msg:
                    state["snaps"] += 1
                elif b'"op":"ack"' in msg:
                    state["ack"] = time.monotonic()
                elif data[at - h - n] == 0x88:
                    state["closed"] = True
            data = data[at:]
            if state["ack"] is not None:
                return
            try:
                d = s.recv(1 << 20)
            except OSError:
                d = b""
            if not d:
                state["closed"] = True
                return
            data += d

    t = threading.Thread(target=read, daemon=True)
    return s, state, t


def subscribe(port, request, out):
    """In its own process, so that parsing 200,000 frames does not hold
    the probing process (Python's GIL) and inflate its figures."""
    s, state, reader = subscriber(port)
    out.send(time.monotonic())
    s.sendall(frame(request))
    reader.run()
    out.send((state["snaps"], state["ack"], state["closed"]))


def measure(port, what, request):
    here, there = multiprocessing.Pipe()
    child = multiprocessing.Process(target=subscribe, args=(port, request, there))
    child.start()
    t0 = here.recv()
    probes = []
    while not here.poll() and time.monotonic() - t0 < 30:
        probes.append(healthz_ms(port))
    snaps, ack, closed = here.recv() if here.poll(1) else (0, None, False)
    child.kill()
    took = ((ack or time.monotonic()) - t0) * 1000
    probes = sorted(probes) or [0.0]
    end = "ack" if ack else "closed by the server" if closed else "no ack"
    print(f"{what}: /healthz worst {probes[-1]:.1f} ms, median {probes[len(probes) // 2]:.1f} ms "
          f"over {len(probes)} probes; {end} after {took:.0f} ms, {snaps} snapshot messages")


def main():
    bin_, *flags = sys.argv[1:]
    if "--shards" not in flags:
        flags = ["--shards", "1", *flags]
    p, port = start(bin_, ["--max-new-topics-per-conn", "10000000", *flags])
    pub = socket.create_connection(("127.0.0.1", port))
    pub.sendall(UPGRADE)
    threading.Thread(target=lambda: [None for _ in iter(lambda: pub.recv(1 << 16), b"")],
                     daemon=True).start()
    publish_all(pub, (f"t.{i}" for i in range(200_000)), "1")
    time.sleep(3)
    print(f"idle: /healthz {healthz_ms(port):.1f} ms")
    topics = json.dumps([f"t.{i}" for i in range(0, 200_000, 200)])
    measure(port, "1,000 exact topics",
            '{"op":"sub","topics":%s,"snapshot":true,"id":1}' % topics)
    measure(port, "t.* over 200,000 topics",
            '{"op":"sub","topics":["t.*"],"snapshot":true,"id":1}')
    p.kill()


if __name__ == "__main__":
    main()
