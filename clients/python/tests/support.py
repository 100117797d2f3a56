"""What the client tests share: the real ringfan binary on a known port
(restartable), bounded waits, and a TCP forwarder to cut connections. The
client under test is the installed `ringfan` package (`pip install
./clients/python`), not this directory's sources.

The binary is $RINGFAN_BIN (tests/run.sh sets target/release/ringfan),
default target/release/ringfan, relative to the repository root. Process
handling is tests/python/ringfan_proc.py's, imported from there.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import ringfan

import pytest
import websockets.version

REPO = Path(__file__).resolve().parents[3]
sys.path.append(str(REPO / "tests" / "python"))
from ports import free_port  # noqa: E402
from ringfan_proc import RingfanProcess, metric_sum  # noqa: E402

TEST_TIMEOUT = 30.0  # seconds, a whole test's coroutine
STEP = 5.0  # seconds, one awaited step


def ringfan_bin() -> Path:
    path = Path(os.environ.get("RINGFAN_BIN", "target/release/ringfan"))
    return path if path.is_absolute() else REPO / path


def run(coro: Coroutine[Any, Any, Any], timeout: float = TEST_TIMEOUT) -> Any:
    """A test's coroutine, bounded as a whole."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def bounded(aw: Any, timeout: float = STEP) -> Any:
    return await asyncio.wait_for(aw, timeout)


async def until(cond: Any, timeout: float = STEP, what: str = "condition") -> None:
    """Poll `cond()` every 10 ms until it is true; fail after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class Broker:
    """One ringfan: `--listen 127.0.0.1:PORT --shards 2 --no-pin FLAGS`.
    `restart()` stops it and starts the same flags on the same port."""

    def __init__(self, flags: tuple[str, ...], log_dir: Path, port: int | None = None) -> None:
        self.flags = flags
        self.log_dir = log_dir
        self.port = port if port is not None else free_port()
        self.proc: RingfanProcess | None = None
        self.generation = 0
        self.start()

    def start(self) -> None:
        binary = ringfan_bin()
        if not binary.exists():
            pytest.fail(f"no ringfan binary at {binary} (cargo build --release, or set RINGFAN_BIN)")
        # A killed broker's sockets outlive it for a moment (io_uring tears
        # its ring down in the background), its listeners included: the new
        # one may find the port still in use, and tries again.
        deadline = time.monotonic() + 10
        while True:
            self.generation += 1
            log = self.log_dir / f"ringfan-{self.port}-{self.generation}.log"
            self.proc = RingfanProcess(binary, *self.flags, listen=f"127.0.0.1:{self.port}",
                                       log=log)
            if self.proc.wait_ready(20) == self.port:
                return
            out = log.read_text(errors="replace")
            if "already in use" not in out or time.monotonic() > deadline:
                pytest.fail(f"ringfan did not start on {self.port}: {out[-2000:]}")
            time.sleep(0.05)

    def stop(self, kill: bool = False) -> None:
        """Stop it: SIGKILL (connections just drop) or SIGTERM (drain)."""
        if self.proc is not None:
            if kill and self.proc.alive():
                self.proc.proc.kill()
            self.proc.stop(grace=5)
            self.proc = None

    def restart(self, kill: bool = True) -> None:
        self.stop(kill=kill)
        self.start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def metric(self, name: str) -> int:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=STEP)
        try:
            conn.request("GET", "/metrics")
            body = conn.getresponse().read().decode()
        finally:
            conn.close()
        value = metric_sum(body, name)
        assert value is not None, f"{name} not in /metrics"
        return value


class Forwarder:
    """A TCP forwarder between a client and the broker (real sockets both
    ways), so a test can cut the client's connection, refuse new ones, or
    stop passing the broker's bytes on (`stall`: the broker sees a client
    that does not read), while the broker and its topics' seqs carry on."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.refusing = False
        self.port = 0
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.WriteTransport] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._flowing = {True: asyncio.Event(), False: asyncio.Event()}  # downstream?
        for e in self._flowing.values():
            e.set()

    async def start(self) -> Forwarder:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def _handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._forward(r, w)
        finally:
            self._handlers.discard(task)

    async def _forward(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.refusing:
            w.transport.abort()
            return
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            w.transport.abort()
            return
        pair = (w.transport, uw.transport)
        self._transports.update(pair)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                       downstream: bool) -> None:
            try:
                while True:
                    await self._flowing[downstream].wait()
                    data = await src.read(65536)
                    if not data:
                        break
                    dst.write(data)
                    await dst.drain()
            except (OSError, ConnectionError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(r, uw, False), pipe(ur, w, True))
        self._transports.difference_update(pair)

    def stall(self, downstream: bool = True) -> None:
        """Stop reading what the broker sends (it piles up in the kernel's
        buffers, then in the broker's queue for the client), or with
        `downstream=False` what the client sends."""
        self._flowing[downstream].clear()

    def resume(self) -> None:
        for e in self._flowing.values():
            e.set()

    def cut(self) -> None:
        """Drop every forwarded connection now (RST, no close frame)."""
        for t in list(self._transports):
            t.abort()

    async def close(self) -> None:
        self.resume()
        self.cut()
        if self._server is not None:
            self._server.close()
            await asyncio.wait_for(asyncio.gather(*self._handlers, return_exceptions=True), 5)
            await self._server.wait_closed()


WS_PROXY_OPTION = int(websockets.version.version.split(".")[0]) >= 15


def client(url: str, **kw: Any) -> ringfan.Client:
    """The client under test with quick reconnects (tests restart brokers)
    and no proxy from the environment."""
    kw.setdefault("reconnect", ringfan.Backoff(initial=0.05, max=0.5, stable=1.0))
    # websockets >= 15 takes proxies from the environment; older ones
    # have no `proxy` option (and use no proxy).
    kw.setdefault("websocket_options", {"proxy": None} if WS_PROXY_OPTION else {})
    kw.setdefault("request_timeout", STEP)
    return ringfan.Client(url, **kw)


class Events:
    """Every event a client emits, in order: (name, payload)."""

    def __init__(self, c: ringfan.Client) -> None:
        self.seen: list[tuple[str, Any]] = []
        for name in ("state", "gap", "reset", "resync", "error"):
            c.on(name, lambda payload, name=name: self.seen.append((name, payload)))  # type: ignore[misc]

    def of(self, name: str) -> list[Any]:
        return [p for n, p in self.seen if n == name]

    def states(self) -> list[str]:
        return [s.state for s in self.of("state")]


def check_stream(msgs: list[ringfan.Message]) -> list[tuple[int, int]]:
    """The stream of one topic keeps the client's promise: seqs strictly
    rise (no duplicate, in order) except at a reset, and every skipped seq
    is named by the gap on the message after it. Returns the gaps."""
    gaps = []
    for prev, cur in zip(msgs, msgs[1:]):
        if cur.reset:
            assert cur.seq < prev.seq, (prev, cur)
            continue
        assert cur.seq > prev.seq, f"duplicate or out of order: {prev} then {cur}"
        if cur.seq == prev.seq + 1:
            assert cur.gap is None, cur
        else:
            assert cur.gap is not None, f"silent gap: {prev.seq} then {cur.seq}"
            assert (cur.gap.first, cur.gap.last) == (prev.seq + 1, cur.seq - 1), cur
            gaps.append((cur.gap.first, cur.gap.last))
    return gaps
