"""Structured logs (issue #15): the real binary with `--log-format json`,
events provoked by real clients, and every stderr line parsed as JSON.

The broker here is started by hand (not `start_server`), so that stderr
(the log) and stdout (the "listening on" lines) stay apart.
"""

from __future__ import annotations

import json
import signal
import socket
import struct
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jwt
import pytest

import wsraw
from conftest import REPO, ringfan_bin
from ringfan_proc import LISTENING

HS_SECRET_FILE = REPO / "tests" / "fixtures" / "jwt" / "hs.secret"
HS_SECRET = HS_SECRET_FILE.read_bytes().rstrip(b"\r\n")
STEP = 10.0  # every wait is bounded by this many seconds

# The log's rate limit (src/logs/limit.rs): lines of one kind per shard.
BURST, PER_S = 10, 5


class Broker:
    """`ringfan --log-format json` with its stderr in a file."""

    def __init__(self, tmp: Path, *extra: str, shards: int = 2):
        self.log_path = tmp / f"ringfan-{uuid.uuid4().hex[:6]}.jsonl"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(ringfan_bin()), "--listen", "127.0.0.1:0", "--shards", str(shards), "--no-pin",
             "--log-format", "json", *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._log)
        self.stdout: list[str] = []
        self.port = None
        ready = threading.Event()

        def read():
            assert self.proc.stdout is not None
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                self.stdout.append(line)
                m = LISTENING.search(line)
                if m and self.port is None:
                    self.port = int(m.group(1))
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        ready.wait(20)
        if self.port is None:
            self.stop()
            pytest.fail(f"ringfan did not start: {self.log_path.read_text()[-2000:]}")

    def lines(self) -> list[dict]:
        """Every complete stderr line so far, each parsed as JSON (a line
        that is not JSON fails the test)."""
        text = self.log_path.read_text()
        complete = text[: text.rfind("\n") + 1]
        out = []
        for line in complete.splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                pytest.fail(f"stderr line is not JSON ({e}): {line!r}")
        return out

    def events(self, name: str) -> list[dict]:
        return [l for l in self.lines() if l.get("event") == name]

    def wait_event(self, name: str, **want) -> dict:
        """The first `name` event whose fields include `want` (bounded)."""
        deadline = time.monotonic() + STEP
        while True:
            for e in self.events(name):
                if all(e.get(k) == v for k, v in want.items()):
                    return e
            if time.monotonic() > deadline:
                pytest.fail(f"no {name} event with {want}; log:\n" + self.log_path.read_text()[-4000:])
            time.sleep(0.05)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STEP)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def broker(tmp_path):
    started: list[Broker] = []

    def start(*extra: str, shards: int = 2) -> Broker:
        b = Broker(tmp_path, *extra, shards=shards)
        started.append(b)
        return b

    yield start
    for b in started:
        b.stop()


def token(user: str | None, *, exp_in: int = 300, key: bytes = HS_SECRET) -> str:
    payload = {"ringfan": {"sub": [">"], "pub": [">"]}, "exp": int(time.time()) + exp_in}
    if user is not None:
        payload["sub"] = user
    return jwt.encode(payload, key, algorithm="HS256", headers={"kid": "hs"})


def connect(port: int, rcvbuf: int | None = None) -> tuple[socket.socket, str]:
    """A TCP connection and its local address as the server sees it."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        # Small, with a small MSS: the kernel must not swallow the flood
        # that makes this subscriber slow (see test_broker.py).
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1024)
    s.settimeout(STEP)
    s.connect(("127.0.0.1", port))
    host, p = s.getsockname()
    return s, f"{host}:{p}"


def read_all(s: socket.socket) -> bytes:
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def http_status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


def upgrade(port: int, path: str, rcvbuf: int | None = None) -> tuple[socket.socket, str, int, bytes]:
    """A raw upgrade: the socket, its address, the status, and what came
    after the response head (frames, for a 101)."""
    s, addr = connect(port, rcvbuf)
    s.sendall(wsraw.handshake_request(port, path))
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        assert chunk, f"closed before a response: {buf!r}"
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    return s, addr, http_status(head), rest


def read_frame(s: socket.socket, buf: bytes = b"") -> tuple[int, bytes, bytes]:
    """One server frame: (opcode, payload, bytes after it)."""
    def need(n: int) -> None:
        nonlocal buf
        while len(buf) < n:
            chunk = s.recv(65536)
            assert chunk, "closed mid-frame"
            buf += chunk
    need(2)
    op, n = buf[0] & 0x0F, buf[1] & 0x7F
    at = 2
    if n == 126:
        need(4)
        n, at = struct.unpack("!H", buf[2:4])[0], 4
    elif n == 127:
        need(10)
        n, at = struct.unpack("!Q", buf[2:10])[0], 10
    need(at + n)
    return op, buf[at:at + n], buf[at + n:]


def send_json(s: socket.socket, **msg) -> None:
    s.sendall(wsraw.frame(wsraw.OP_TEXT, json.dumps(msg).encode()))


def close_code(s: socket.socket, rest: bytes = b"") -> int | None:
    """Read frames until the close; its code."""
    while True:
        op, payload, rest = read_frame(s, rest)
        if op == wsraw.OP_CLOSE:
            return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None


def test_json_log_lines_parse_and_carry_the_fields(broker, tmp_path):
    secret = tmp_path / "hs.secret"  # kid "hs", rewritten below
    secret.write_bytes(HS_SECRET)
    b = broker("--auth", "required", "--jwt-secret-file", str(secret),
               "--auth-timeout", "1", "--slow-consumer", "disconnect",
               "--max-queued-bytes", "16384", "--socket-send-buffer", "4096")
    run = uuid.uuid4().hex[:8]

    # Start: the process, then each listener.
    started = b.wait_event("started")
    assert started["level"] == "INFO" and started["message"] == "started"
    assert started["shards"] == 2 and started["version"]
    assert started["listeners"] == f"ws://127.0.0.1:{b.port}"
    listening = b.wait_event("listening")
    assert (listening["addr"], listening["tls"]) == (f"127.0.0.1:{b.port}", False)
    # The stdout line scripts read is still there, as it was.
    assert f"ringfan: listening on 127.0.0.1:{b.port} (2 shards)" in b.stdout

    # A plain request for a path not served: 404.
    s, addr = connect(b.port)
    s.sendall(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
    assert http_status(read_all(s)) == 404
    e = b.wait_event("handshake_refused", peer=addr)
    assert (e["level"], e["message"], e["status"]) == ("INFO", "handshake refused", 404)
    assert e["reason"] == "no such endpoint" and e["target"] == "ringfan::handshake"
    shard, key, gen = (int(x) for x in e["conn"].split(":"))
    assert 0 <= shard < 2 and key >= 0 and gen > 0

    # An upgrade without Sec-WebSocket-Key: 400.
    s, addr = connect(b.port)
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Version: 13\r\n\r\n")
    assert http_status(read_all(s)) == 400
    e = b.wait_event("handshake_refused", peer=addr)
    assert e["status"] == 400 and "Sec-WebSocket-Key" in e["reason"]

    # An expired token (its signature good, so its sub is named): 401.
    alice = f"alice-{run}"
    s, addr, status, _ = upgrade(b.port, f"/ws?token={token(alice, exp_in=-60)}")
    assert status == 401
    e = b.wait_event("auth_failed", peer=addr)
    assert (e["level"], e["message"]) == ("WARN", "authentication failed")
    assert (e["stage"], e["reason"], e["user"]) == ("handshake", "expired", alice)
    assert b.wait_event("handshake_refused", peer=addr)["status"] == 401

    # A forged token: no user named.
    s, addr, status, _ = upgrade(b.port, f"/ws?token={token('mallory', key=b'x' * 32)}")
    assert status == 401
    e = b.wait_event("auth_failed", peer=addr)
    assert e["reason"] == "bad_signature" and "user" not in e

    # No token under --auth required, and no auth op within 1 s: 4001.
    s, addr, status, rest = upgrade(b.port, "/ws")
    assert status == 101
    assert close_code(s, rest) == 4001
    e = b.wait_event("policy_close", peer=addr)
    assert (e["code"], e["reason"]) == (4001, "authentication required")
    assert "user" not in e

    # A refresh with an expired token on a connection that has a user.
    carol = f"carol-{run}"
    s, addr, status, rest = upgrade(b.port, f"/ws?token={token(carol)}")
    assert status == 101
    send_json(s, op="auth", token=token(carol, exp_in=-60), id=1)
    e = b.wait_event("auth_failed", peer=addr, stage="auth_op")
    assert (e["reason"], e["user"]) == ("expired", carol)
    s.close()

    # A subscriber that stops reading, under a flood: 1008 slow consumer.
    slow = f"slow-{run}"
    topic = f"logs.{run}"
    sub, sub_addr, status, rest = upgrade(b.port, f"/ws?token={token(slow)}", rcvbuf=4096)
    assert status == 101
    send_json(sub, op="sub", topic=topic, id=1)
    op, payload, rest = read_frame(sub, rest)
    assert json.loads(payload) == {"op": "ack", "id": 1}
    pub, _, status, _ = upgrade(b.port, f"/ws?token={token(f'pub-{run}')}")
    assert status == 101
    data = "x" * 8000
    deadline = time.monotonic() + STEP
    while not any(e.get("peer") == sub_addr for e in b.events("slow_consumer")):
        assert time.monotonic() < deadline, b.log_path.read_text()[-3000:]
        for _ in range(20):
            send_json(pub, op="pub", topic=topic, data=data)
        time.sleep(0.01)
    e = b.wait_event("slow_consumer", peer=sub_addr)
    assert (e["level"], e["message"]) == ("WARN", "slow consumer disconnected")
    assert (e["user"], e["policy"], e["code"]) == (slow, "disconnect", 1008)
    assert e["target"] == "ringfan::slow_consumer"

    # SIGHUP: keys reloaded; then a key file too short: the reload fails,
    # named, and the keys in use stay.
    b.proc.send_signal(signal.SIGHUP)
    e = b.wait_event("reloaded", what="keys")
    assert e["level"] == "INFO" and "1 key(s)" in e["detail"]
    secret.write_bytes(b"short")
    b.proc.send_signal(signal.SIGHUP)
    e = b.wait_event("reload_failed", what="keys")
    assert e["level"] == "ERROR" and str(secret) in e["error"], e

    # SIGTERM: each shard drains; the publisher, still open, is told 1001
    # and answers, so no connection is left to cut at the deadline.
    sub.close()
    s.close()
    b.proc.send_signal(signal.SIGTERM)
    assert close_code(pub) == 1001
    pub.sendall(wsraw.close_frame(1001))
    pub.close()
    assert b.proc.wait(STEP) == 0  # (a second SIGTERM would exit at once)
    began = b.events("drain_began")
    ended = b.events("drain_ended")
    assert sorted(e["shard"] for e in began) == [0, 1]
    assert sorted(e["shard"] for e in ended) == [0, 1]
    assert sum(e["connections"] for e in began) >= 1
    assert all(e["forced"] == 0 for e in ended), ended
    assert b.events("stopped")

    # Every line: JSON with a timestamp, a level, a target and a message.
    lines = b.lines()
    for l in lines:
        assert {"timestamp", "level", "target", "message"} <= l.keys(), l
        assert l["level"] in {"ERROR", "WARN", "INFO"}, l
    assert [l for l in lines if l["level"] == "ERROR"] == b.events("reload_failed")


def test_a_flood_of_refused_handshakes_is_cut_and_counted(broker):
    b = broker(shards=1)
    n = 1000
    t0 = time.monotonic()

    def refused(_):
        s, _ = connect(b.port)
        with s:
            s.sendall(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
            return http_status(read_all(s))

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(refused, range(n))) == {404}
    flood_s = time.monotonic() - t0

    # Every refusal is a line or counted in a summary; the summary of the
    # last ones comes a second after they were left out (bounded wait).
    deadline = time.monotonic() + STEP
    while True:
        lines = b.events("handshake_refused")
        summaries = [e for e in b.events("log_suppressed") if e["kind"] == "handshake_refused"]
        counted = sum(e["suppressed"] for e in summaries)
        if len(lines) + counted >= n or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(lines) + counted == n, (len(lines), counted)
    # At most the burst and the rate over the flood's (whole) seconds.
    assert BURST <= len(lines) <= BURST + PER_S * (int(flood_s) + 2), (len(lines), flood_s)
    assert summaries and all(e["level"] == "WARN" and e["shard"] == 0 for e in summaries)
    assert b.stop() == 0
