"""A client given several nodes of a cluster (docs/cluster.md) moves to
another when its node dies, resubscribes with a snapshot there, and its
stream stays exact: seq is cluster-wide, so the new node carries on the
same numbering (no reset), and anything missed meanwhile is a reported
gap, never a silent one. Needs a real `nats-server -js` (tests/run.sh
installs Debian's); without one the test skips unless
NATS_SERVER_REQUIRED=1."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import ringfan
from support import Events, bounded, check_stream, client, free_port, run, until


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("nats-server") or next(
        (p for p in ("/usr/sbin/nats-server", "/usr/bin/nats-server") if Path(p).exists()), None)
    if binary is None:
        if os.environ.get("NATS_SERVER_REQUIRED") == "1":
            pytest.fail("nats-server is not installed (tests/run.sh installs Debian's)")
        pytest.skip("nats-server not installed")
    port = free_port()
    proc = subprocess.Popen([binary, "-js", "-a", "127.0.0.1", "-p", str(port),
                             "-sd", str(tmp_path / "nats")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "nats-server did not listen"
                time.sleep(0.05)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()


def test_a_client_moves_to_another_node_when_its_node_dies(broker, nats_url):
    a = broker("--cluster", nats_url)
    b = broker("--cluster", nats_url)

    async def go():
        pub = client(b.url)
        sub_client = client([a.url, b.url])
        ev = Events(sub_client)
        sub = await bounded(sub_client.subscribe("fo.x", snapshot=True))
        stop = asyncio.Event()
        sent = 0

        async def publisher() -> None:
            nonlocal sent
            while not stop.is_set():
                sent += 1
                await bounded(pub.publish("fo.x", sent))
                await asyncio.sleep(0.003)

        task = asyncio.create_task(publisher())
        got: list[ringfan.Message] = []

        async def read(n: int) -> None:
            target = len(got) + n
            while len(got) < target:
                got.append(await bounded(anext(sub)))

        await read(30)
        await asyncio.to_thread(a.stop, kill=True)
        await until(lambda: "reconnecting" in ev.states(), what="reconnecting")
        before = len(got)
        await read(30)
        stop.set()
        await bounded(task)
        assert sub_client.url == b.url, "moved to the other node"
        assert sub_client.stats.reconnects == 1
        await pub.close()
        await sub_client.close()

        check_stream(got)
        back = got[before]
        assert back.snapshot and not back.reset, back
        assert back.seq >= got[before - 1].seq, (got[before - 1], back)
        assert not ev.of("reset"), "one numbering across nodes: no reset"
        assert all(not m.snapshot for m in got[before + 1:])
        # The snapshot is the newest value when it was taken, then live.
        assert [m.data for m in got[before:]] == [m.seq for m in got[before:]]

    run(go())
