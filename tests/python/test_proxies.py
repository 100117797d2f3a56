"""ringfan behind real proxies: nginx (HTTP, `X-Forwarded-For`, ringfan
with `--trusted-proxy 127.0.0.1/32`) and HAProxy (layer 4, PROXY protocol
v2, ringfan with `--proxy-protocol`), each run from the very config file
docs/operations.md shows (packaging/nginx.conf, packaging/haproxy.cfg),
as the current user, in the foreground, on loopback.

For each: the upgrade and pub/sub go through; the real client address
reaches ringfan (with `--max-connections-per-ip 1`, clients bound to
127.0.0.2 and 127.0.0.3 both get in while a second connection from
127.0.0.2 gets 429: all three reach ringfan from the proxy's 127.0.0.1);
a subscription silent for twice the proxy's idle timeout still gets its
message thanks to ringfan's pings (and without them the proxy cuts it, so
the timeout is real); a proxy restart ends the client's connection at
once, the client reconnects, and ringfan's connection gauge comes back to
what is open (nothing leaked).

tests/run.sh installs nginx and haproxy (Debian packages) when missing;
elsewhere the tests skip, except under CI, where a missing proxy fails.
Every wait is bounded; every process is killed at the end, also on failure.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ports import free_port
from ringfan_proc import metric_sum
from wsclient import STEP, ack, bounded, connect, j, msg, recv, run, uid

REPO = Path(__file__).resolve().parents[2]
IDLE = 2  # the proxies' idle timeout, seconds
OPEN = "ringfan_connections_open"


def find(name: str) -> str | None:
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None)


class Proxy:
    """nginx or HAProxy in the foreground, from packaging/'s config with its
    @NAME@ placeholders filled in; in its own session so that `kill` ends
    every process it started."""

    def __init__(self, kind: str, ringfan_port: int, tmp: Path, idle: int = IDLE):
        binary = find(kind)
        if binary is None:
            if os.environ.get("CI"):
                pytest.fail(f"{kind} is not installed (tests/run.sh installs it)")
            pytest.skip(f"{kind} is not installed (apt-get install {kind})")
        self.kind = kind
        self.port = free_port()
        self.dir = tmp / f"{kind}-{self.port}"
        self.dir.mkdir()
        template = REPO / "packaging" / ("nginx.conf" if kind == "nginx" else "haproxy.cfg")
        conf = template.read_text()
        for name, value in {"LISTEN": f"127.0.0.1:{self.port}",
                            "RINGFAN": f"127.0.0.1:{ringfan_port}",
                            "IDLE": str(idle), "PREFIX": str(self.dir)}.items():
            conf = conf.replace(f"@{name}@", value)
        assert "@" not in re.sub(r"#.*", "", conf), conf
        self.conf = self.dir / template.name
        self.conf.write_text(conf)
        if kind == "nginx":
            # As root, nginx's workers would drop to `nobody`; they stay us.
            globals_ = "daemon off;" + (" user root;" if os.geteuid() == 0 else "")
            self.args = [binary, "-p", str(self.dir), "-c", str(self.conf), "-g", globals_]
        else:
            self.args = [binary, "-f", str(self.conf), "-db"]
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.log = open(self.dir / "stderr.log", "ab")
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log, start_new_session=True)
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.kind} exited ({self.proc.returncode}): {self.output()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert time.monotonic() < deadline, f"{self.kind} not listening: {self.output()}"
                time.sleep(0.05)

    def output(self) -> str:
        text = (self.dir / "stderr.log").read_text(errors="replace")
        err = self.dir / "error.log"
        if err.exists():
            text += err.read_text(errors="replace")
        return text[-3000:]

    def stop(self) -> None:
        """SIGTERM (both stop at once, closing every connection), then
        SIGKILL for the whole session after 5 s."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(5)
        self.proc = None
        self.log.close()

    def url(self, path: str = "/ws") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"


@pytest.fixture
def proxies(tmp_path):
    started: list[Proxy] = []

    def start(kind: str, ringfan_port: int, idle: int = IDLE) -> Proxy:
        p = Proxy(kind, ringfan_port, tmp_path, idle)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def ringfan_flags(kind: str) -> list[str]:
    """How ringfan learns the client behind each proxy."""
    if kind == "nginx":
        return ["--trusted-proxy", "127.0.0.1/32"]
    return ["--proxy-protocol"]


def metric(server, kind: str, name: str) -> int:
    """A metric, straight from ringfan (not through the proxy). Behind
    HAProxy ringfan needs a PROXY header on every connection: `PROXY
    UNKNOWN` says "use the socket's address" (127.0.0.1). Under
    `--max-connections-per-ip 1` the previous request's connection may
    still be counted for a moment after its answer: a 429 is retried."""
    deadline = time.monotonic() + STEP
    while True:
        with socket.create_connection(("127.0.0.1", server.port), timeout=STEP) as s:
            if kind == "haproxy":
                s.sendall(b"PROXY UNKNOWN\r\n")
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
            body = b""
            while chunk := s.recv(65536):
                body += chunk
        text = body.decode(errors="replace")
        if text.startswith("HTTP/1.1 429") and time.monotonic() < deadline:
            time.sleep(0.05)
            continue
        assert text.startswith("HTTP/1.1 200"), text[:300]
        value = metric_sum(text, name)  # a total over the shard label
        assert value is not None, f"{name} not in /metrics"
        return value


def wait_metric(server, kind: str, name: str, want: int, timeout: float = 10) -> int:
    deadline = time.monotonic() + timeout
    while True:
        v = metric(server, kind, name)
        if v == want or time.monotonic() > deadline:
            return v
        time.sleep(0.05)


def from_(ip: str) -> dict:
    """websockets' connect() arguments for a client bound to `ip`."""
    return {"local_addr": (ip, 0)}


KINDS = ["nginx", "haproxy"]


def test_the_configs_in_the_docs_are_the_ones_tested():
    doc = (REPO / "docs" / "operations.md").read_text()
    for name in ("nginx.conf", "haproxy.cfg"):
        assert (REPO / "packaging" / name).read_text() in doc, f"docs/operations.md lacks {name}"


@pytest.mark.parametrize("kind", KINDS)
def test_upgrade_pubsub_and_the_real_client_address(kind, start_server, proxies):
    server = start_server(*ringfan_flags(kind), "--max-connections-per-ip", "1")
    proxy = proxies(kind, server.port)
    topic = uid()

    async def main():
        async with connect(proxy.url(), **from_("127.0.0.2")) as sub, \
                connect(proxy.url(), **from_("127.0.0.3")) as pub:
            await sub.send(j(op="sub", topics=[topic], id=1))
            assert await recv(sub) == ack(1)
            await pub.send(j(op="pub", topic=topic, data={"x": 1}))
            assert await recv(sub) == msg(topic, 1, '{"x":1}')
            # 127.0.0.2 has its one connection: a second is refused, by
            # ringfan, although it too comes from the proxy's 127.0.0.1.
            with pytest.raises(InvalidStatus) as refused:
                async with connect(proxy.url(), **from_("127.0.0.2")):
                    pass
            assert refused.value.response.status_code == 429
            assert metric(server, kind, "ringfan_peer_connections_refused_total") == 1
            # 127.0.0.2, 127.0.0.3, and this /metrics request's 127.0.0.1.
            assert metric(server, kind, "ringfan_peer_addresses_tracked") == 3

    run(main())


@pytest.mark.parametrize("kind", KINDS)
def test_a_silent_subscription_outlives_the_proxy_idle_timeout(kind, start_server, proxies):
    pinged = start_server(*ringfan_flags(kind), "--idle-ping", "1")
    silent = start_server(*ringfan_flags(kind), "--idle-ping", "60")
    via_pinged = proxies(kind, pinged.port)
    via_silent = proxies(kind, silent.port)
    topic = uid()

    async def main():
        async with connect(via_pinged.url()) as sub, connect(via_silent.url()) as control:
            await sub.send(j(op="sub", topics=[topic], id=1))
            assert await recv(sub) == ack(1)
            await control.send(j(op="sub", topics=[topic], id=1))
            assert await recv(control) == ack(1)
            # Twice the proxy's idle timeout without a message.
            await asyncio.sleep(2 * IDLE)
            async with connect(via_pinged.url()) as pub:
                await pub.send(j(op="pub", topic=topic, data=1))
            assert await recv(sub) == msg(topic, 1, "1")
            # Without pings the proxy did cut it: the timeout is real.
            with pytest.raises(ConnectionClosed):
                await bounded(control.recv(), STEP)

    run(main())


@pytest.mark.parametrize("kind", KINDS)
def test_a_proxy_restart_ends_connections_and_clients_come_back(kind, start_server, proxies):
    server = start_server(*ringfan_flags(kind))
    proxy = proxies(kind, server.port)
    topic = uid()

    async def subscribe():
        ws = await bounded(connect(proxy.url()))
        await ws.send(j(op="sub", topics=[topic], id=1))
        assert await recv(ws) == ack(1)
        return ws

    async def main():
        subs = [await subscribe() for _ in range(3)]
        # 3 subscribers and this /metrics request.
        assert wait_metric(server, kind, OPEN, 4) == 4
        proxy.stop()
        # Every client hears of it at once (not at a timeout).
        for ws in subs:
            with pytest.raises(ConnectionClosed):
                await bounded(ws.recv(), STEP)
        # ringfan saw each proxied connection end: only /metrics is open.
        assert wait_metric(server, kind, OPEN, 1) == 1
        proxy.start()
        again = [await subscribe() for _ in range(2)]
        async with connect(proxy.url()) as pub:
            await pub.send(j(op="pub", topic=topic, data=2))
        for ws in again:
            assert await recv(ws) == msg(topic, 1, "2")
        assert wait_metric(server, kind, OPEN, 3) == 3
        for ws in again:
            await bounded(ws.close())
        assert wait_metric(server, kind, OPEN, 1) == 1

    run(main(), timeout=60)
