"""Fixtures: the real ringfan binary on an ephemeral port.

The binary is $RINGFAN_BIN, default target/debug/ringfan (relative to the
repository root). Build it first: `cargo build`.
"""

from __future__ import annotations

import http.client
import os
import signal
import ssl
import time
from pathlib import Path

import pytest
import tlscerts
from ringfan_proc import RingfanProcess, metric_sum

REPO = Path(__file__).resolve().parents[2]


def ringfan_bin() -> Path:
    path = Path(os.environ.get("RINGFAN_BIN", "target/debug/ringfan"))
    if not path.is_absolute():
        path = REPO / path
    return path


class Ringfan(RingfanProcess):
    """One ringfan process: `--listen 127.0.0.1:0 --shards 2 --no-pin --echo`
    plus any extra flags, stopped with SIGTERM (then SIGKILL) on `stop()`.
    `listen="off"` for no plain listener (with `--listen-tls`)."""

    def __init__(self, *extra: str, log_dir: Path, listen: str = "127.0.0.1:0"):
        binary = ringfan_bin()
        if not binary.exists():
            pytest.fail(f"no ringfan binary at {binary} (cargo build, or set RINGFAN_BIN)")
        # /echo is off by default; most of these tests speak to it.
        super().__init__(binary, "--echo", *extra, log=log_dir / f"ringfan-{id(self):x}.log",
                         listen=listen)
        self.terminated = False
        if self.wait_ready(20) is None:
            pytest.fail(f"ringfan did not start: {self.args} (status {self.proc.returncode}); "
                        f"its output: {self.log_path.read_text(errors='replace')[-2000:]}")

    @property
    def host(self) -> str:
        return "127.0.0.1"

    def url(self, path: str = "/echo") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def wss_url(self, path: str = "/echo", host: str = "127.0.0.1") -> str:
        return f"wss://{host}:{self.tls_port}{path}"

    def https_get(self, path: str, context: ssl.SSLContext, timeout: float = 5
                  ) -> tuple[int, dict[str, str], bytes]:
        """GET over TLS on the TLS port (server name 127.0.0.1: no SNI)."""
        conn = http.client.HTTPSConnection("127.0.0.1", self.tls_port, timeout=timeout,
                                           context=context)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def log_text(self) -> str:
        """Everything it printed so far, stdout and stderr."""
        return self.log_path.read_text(errors="replace")

    def get(self, path: str, timeout: float = 5) -> tuple[int, dict[str, str], bytes]:
        """Plain HTTP GET (no proxy): status, headers, body."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def metric(self, name: str) -> int:
        """A metric's value, summed over shards (`ringfan_proc.metric_sum`).
        Note that the /metrics request's own connection is open while it is
        answered, so `ringfan_connections_open` counts it."""
        status, _, body = self.get("/metrics")
        assert status == 200, body
        value = metric_sum(body.decode(), name)
        assert value is not None, f"{name} not in /metrics:\n{body.decode()}"
        return value

    def wait_metric(self, name: str, want: int, timeout: float = 5) -> int:
        """Poll until `name` equals `want`; return the last value seen."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.metric(name)
            if value == want or time.monotonic() > deadline:
                return value
            time.sleep(0.02)

    def terminate(self) -> None:
        """SIGTERM now (drain and exit), as part of a test."""
        self.terminated = True
        self.proc.send_signal(signal.SIGTERM)

    def crashed(self) -> bool:
        """Exited without being asked to."""
        return not self.terminated and not self.alive()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """A ringfan shared by the tests that need no special flags."""
    s = Ringfan(log_dir=tmp_path_factory.mktemp("ringfan"))
    yield s
    crashed = s.crashed()
    status, _ = s.stop()
    assert not crashed, f"ringfan exited during the tests (status {status}); see {s.log_path}"


@pytest.fixture
def start_server(tmp_path):
    """Factory for a ringfan with extra flags, stopped after the test."""
    started: list[Ringfan] = []

    def start(*extra: str, listen: str = "127.0.0.1:0") -> Ringfan:
        s = Ringfan(*extra, log_dir=tmp_path, listen=listen)
        started.append(s)
        return s

    yield start
    crashed = [s for s in started if s.crashed()]
    for s in started:
        s.stop()
    assert not crashed, f"ringfan exited during the test: {[s.args for s in crashed]}"


# --- TLS (wss://) -------------------------------------------------------------


@pytest.fixture(scope="session")
def tls_certs(tmp_path_factory) -> tlscerts.CertSet:
    """A test CA and the leaves of tlscerts.standard_set, shared (read-only:
    tests that rewrite certificates make their own)."""
    return tlscerts.standard_set(tmp_path_factory.mktemp("certs"))


def tls_flags(certs: tlscerts.CertSet) -> list[str]:
    """`--listen-tls 127.0.0.1:0` and every certificate of `certs`."""
    return ["--listen-tls", "127.0.0.1:0", *certs.args()]


@pytest.fixture(scope="session")
def tls_server(tmp_path_factory, tls_certs):
    """A ringfan with a plain and a TLS listener, shared by the TLS tests
    that need no special flags."""
    s = Ringfan(*tls_flags(tls_certs), log_dir=tmp_path_factory.mktemp("ringfan-tls"))
    yield s
    crashed = s.crashed()
    status, _ = s.stop()
    assert not crashed, f"ringfan exited during the tests (status {status}); see {s.log_path}"
