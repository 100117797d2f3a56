"""Loopback ports for servers a test starts itself (nats-server, nginx,
HAProxy, a broker that must come back on the same port).

A port the kernel hands out for `bind(0)` is in the ephemeral range
(`net.ipv4.ip_local_port_range`, 32768-60999 on a stock kernel), the
same range every `connect()` takes its source port from. Released and
bound again later by the server, it can be taken in between: a
three-server NATS cluster's routes dial each other while they start, and
one run failed with `bind: address already in use` on n2's reserved
port (session 15). A client that keeps redialling a port nobody listens
on yet can even connect to itself (TCP simultaneous open) when the port
is in that range. So ports come from below the range when there is room
there (none after tuning/apply.sh, which starts it at 1024: then the
range itself, as before)."""

from __future__ import annotations

import random
import socket

# Below this, ports belong to well-known services and root.
LOWEST = 10_000


def ephemeral_start() -> int:
    """The first port of `net.ipv4.ip_local_port_range`."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A loopback TCP port nothing is bound to now, outside the ephemeral
    range where possible (see the module's docs)."""
    lo = ephemeral_start()
    if lo - LOWEST >= 1000:
        for _ in range(200):
            port = random.randrange(LOWEST, lo)
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
