"""Cluster mode (issue #18, docs/cluster.md) with a real `nats-server -js`
(Debian's; tests/run.sh installs it) on a loopback port and three real
ringfan nodes joined to it with `--cluster`.

Checked: a publish on any node reaches subscribers on every node with one
gapless seq per topic, also when all three publish one topic at once;
wildcards across nodes; a killed node loses nothing for the others; with
NATS gone publishes get `err` `unavailable` (never a silent local publish)
and everything recovers by itself when NATS is back, numbering on from the
stream's file storage.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from ports import free_port

TIMEOUT = 30


def nats_binary() -> str | None:
    # Debian installs it in /usr/sbin, which a non-root PATH lacks.
    found = shutil.which("nats-server") or next(
        (p for p in ("/usr/sbin/nats-server", "/usr/bin/nats-server") if Path(p).exists()), None)
    if found is None and os.environ.get("NATS_SERVER_REQUIRED") == "1":
        pytest.fail("nats-server is not installed (tests/run.sh installs Debian's nats-server)")
    return found


class Nats:
    """`nats-server -js` on a fixed loopback port with its own store, so a
    restart comes back where it was."""

    def __init__(self, tmp: Path):
        binary = nats_binary()
        if binary is None:
            pytest.skip("nats-server not installed")
        self.binary = binary
        self.port = free_port()
        self.store = tmp / "nats-store"
        self.log = tmp / "nats.log"
        self.proc: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store)],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"nats-server did not listen: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def nats(tmp_path):
    n = Nats(tmp_path)
    yield n
    n.stop()


def run(coro, timeout=TIMEOUT):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def recv_json(ws, timeout=10):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def acked(ws, **req):
    await ws.send(json.dumps(req))
    m = await recv_json(ws)
    assert m == {"op": "ack", "id": req["id"]}, m
    return m


async def msgs(ws, n, timeout=10):
    """The next `n` messages (`msg` only), in order."""
    out = []
    while len(out) < n:
        m = await recv_json(ws, timeout)
        if m["op"] == "msg":
            out.append(m)
    return out


def post(server, body):
    """POST /publish on `server`: (status, parsed JSON body)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    try:
        conn.request("POST", "/publish", body=json.dumps(body),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def nodes(start_server, nats, n=3, *extra):
    return [start_server("--cluster", nats.url, *extra) for _ in range(n)]


def test_a_publish_on_any_node_reaches_every_node_with_one_gapless_seq(start_server, nats):
    ns = nodes(start_server, nats)

    async def go():
        subs = [await connect(n.url("/ws")) for n in ns]
        pubs = [await connect(n.url("/ws")) for n in ns]
        try:
            for i, s in enumerate(subs):
                await acked(s, op="sub", topic="md.>", id=i)
            for n in ns:
                assert n.wait_metric("ringfan_cluster_subscriptions", 1) == 1
            # Interest reaches NATS asynchronously after the ack: give the
            # bridges' SUBs a moment (a publish before it is not lost, it
            # is just not for this node yet).
            await asyncio.sleep(0.5)
            # Each node publishes in turn, then all three at once on one
            # topic: the stream orders them, every node sees that order.
            for round_ in range(4):
                for i, p in enumerate(pubs):
                    data = {"node": i, "round": round_}
                    await p.send(json.dumps({"op": "pub", "topic": "md.X", "data": data, "id": 100 + round_}))
                for p in pubs:
                    m = await recv_json(p)
                    assert m["op"] == "ack", m
            for i, p in enumerate(pubs):
                await acked(p, op="pub", topic=f"md.N{i}", data={"only": i}, id=7)
            got = [await msgs(s, 12 + 3) for s in subs]
            for g in got:
                x = [m for m in g if m["topic"] == "md.X"]
                assert [m["seq"] for m in x] == list(range(1, 13)), x
                assert sorted((m["topic"], m["seq"]) for m in g if m["topic"] != "md.X") == \
                    [("md.N0", 1), ("md.N1", 1), ("md.N2", 1)]
            # One order everywhere, per topic.
            x = [[m for m in g if m["topic"] == "md.X"] for g in got]
            assert x[0] == x[1] == x[2]
            assert sorted((m["data"]["round"], m["data"]["node"]) for m in x[0]) == \
                [(r, n) for r in range(4) for n in range(3)]
        finally:
            for w in subs + pubs:
                await w.close()

    run(go())
    # Framed once per node: one frame per message per node, whatever the
    # number of its subscribers.
    for n in ns:
        assert n.metric("ringfan_cluster_copies_total") == 15
        assert n.metric("ringfan_frames_built_total") == 15
        # The NATS link: up, the copies it took from NATS, and the one
        # pattern's subscription given back once its subscriber left.
        assert n.metric("ringfan_cluster_connected") == 1
        assert n.wait_metric("ringfan_cluster_subscriptions", 0) == 0
        assert n.metric("ringfan_cluster_nats_copies_total") == 15


def test_http_batches_get_cluster_seqs(start_server, nats):
    a, b = nodes(start_server, nats, 2)

    async def go():
        async with connect(b.url("/ws")) as sub:
            await acked(sub, op="sub", topic="h.>", id=1)
            await asyncio.sleep(0.5)
            batch = {"messages": [{"topic": "h.A", "data": i} for i in range(3)]
                     + [{"topic": "h.B", "data": 9}]}
            status, body = await asyncio.to_thread(post, a, batch)
            assert (status, body) == (200, {"seqs": [1, 2, 3, 1]}), body
            status, body = await asyncio.to_thread(post, b, {"topic": "h.A", "data": 3})
            assert (status, body) == (200, {"seq": 4}), body
            got = await msgs(sub, 5)
            assert sorted((m["topic"], m["seq"], m["data"]) for m in got) == [
                ("h.A", 1, 0), ("h.A", 2, 1), ("h.A", 3, 2), ("h.A", 4, 3), ("h.B", 1, 9)]

    run(go())


def test_wildcards_across_nodes_and_overlapping_patterns_deliver_once(start_server, nats):
    a, b = nodes(start_server, nats, 2)

    async def go():
        async with connect(b.url("/ws")) as sub, connect(a.url("/ws")) as pub:
            await acked(sub, op="sub", topics=["q.*.AAPL", "q.>", "q.NASDAQ.AAPL"], id=1)
            await asyncio.sleep(0.5)
            for i, t in enumerate(["q.NASDAQ.AAPL", "q.ARCA.AAPL", "q.NASDAQ.MSFT", "r.NASDAQ.AAPL"]):
                await acked(pub, op="pub", topic=t, data=i, id=10 + i)
            got = await msgs(sub, 3)
            assert [(m["topic"], m["seq"], m["data"]) for m in got] == [
                ("q.NASDAQ.AAPL", 1, 0), ("q.ARCA.AAPL", 1, 1), ("q.NASDAQ.MSFT", 1, 2)]
            # Nothing more (r.* matches nothing; no duplicates).
            with pytest.raises(asyncio.TimeoutError):
                await recv_json(sub, timeout=0.5)

    run(go())
    assert b.metric("ringfan_cluster_duplicates_total") >= 2, "NATS sent one copy per matching pattern"


def test_a_killed_node_loses_nothing_for_the_others(start_server, nats):
    ns = nodes(start_server, nats)

    async def go():
        subs = [await connect(n.url("/ws")) for n in ns[:2]]
        for i, s in enumerate(subs):
            await acked(s, op="sub", topic="k", id=i)
        await asyncio.sleep(0.5)
        async with connect(ns[0].url("/ws")) as pub, connect(ns[2].url("/ws")) as doomed:
            await acked(doomed, op="pub", topic="k", data="from the doomed node", id=1)
            for i in range(50):
                await pub.send(json.dumps({"op": "pub", "topic": "k", "data": i, "id": i}))
                if i == 20:
                    ns[2].proc.kill()
                    ns[2].terminated = True
            for i in range(50):
                assert (await recv_json(pub))["op"] == "ack"
        for s in subs:
            got = await msgs(s, 51)
            assert [m["seq"] for m in got] == list(range(1, 52))
            await s.close()

    run(go())


def test_nats_down_means_unavailable_then_everything_recovers_by_itself(start_server, nats):
    a, b = nodes(start_server, nats, 2)

    async def go():
        sub = await connect(b.url("/ws"))
        pub = await connect(a.url("/ws"))
        await acked(sub, op="sub", topic="u.*", id=1)
        await asyncio.sleep(0.5)
        await acked(pub, op="pub", topic="u.A", data=1, id=1)
        assert [m["seq"] for m in await msgs(sub, 1)] == [1]
        nats.stop()
        # Without NATS a publish is refused, never published locally only
        # (that would fork the numbering).
        deadline = time.monotonic() + 15
        while True:
            await pub.send(json.dumps({"op": "pub", "topic": "u.A", "data": 2, "id": 2}))
            m = await recv_json(pub, timeout=15)
            if m.get("code") == "unavailable" or time.monotonic() > deadline:
                break
        assert m["op"] == "err" and m["code"] == "unavailable" and m["id"] == 2, m
        status, body = await asyncio.to_thread(post, a, {"topic": "u.A", "data": 9})
        assert (status, body["error"], body["seq"]) == (503, "unavailable", None), body
        nats.start()
        # Recovers by itself: reconnect, re-subscribe, publishes stored
        # again, numbering on from the stream's file storage.
        deadline = time.monotonic() + 20
        while True:
            await pub.send(json.dumps({"op": "pub", "topic": "u.A", "data": 3, "id": 3}))
            m = await recv_json(pub, timeout=15)
            if m["op"] == "ack" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert m == {"op": "ack", "id": 3}, m
        got = await msgs(sub, 1, timeout=15)
        # The refused publish left no gap: nothing was stored while NATS
        # was gone, so the first one stored after is seq 2.
        assert (got[0]["topic"], got[0]["seq"], got[0]["data"]) == ("u.A", 2, 3), got
        await sub.close()
        await pub.close()

    run(go(), timeout=60)
    assert a.metric("ringfan_cluster_unavailable_total") >= 1
    assert a.metric("ringfan_cluster_reconnects_total") >= 1
    assert a.metric("ringfan_cluster_connected") == 1


def test_a_snapshot_on_a_node_that_never_held_the_topic_is_exact_while_publishing(start_server, nats):
    """Node B holds no interest in the topic (or held it and let go) while
    node A publishes it: a snapshot on B reads the stream, and the seam is
    exact: the snapshot's seq, then exactly the next one live."""
    a, b = nodes(start_server, nats, 2)

    async def go():
        async with connect(a.url("/ws")) as pub:
            for i in range(5):
                await acked(pub, op="pub", topic="s.AAPL", data=i, id=i)
            stop = asyncio.Event()

            async def publisher():
                i = 100
                while not stop.is_set():
                    await pub.send(json.dumps({"op": "pub", "topic": "s.AAPL", "data": i, "id": i}))
                    i += 1
                    await asyncio.sleep(0.003)

            async def acks():
                while not stop.is_set():
                    try:
                        m = await recv_json(pub, timeout=0.5)
                    except asyncio.TimeoutError:
                        continue
                    assert m["op"] == "ack", m

            tasks = [asyncio.create_task(publisher()), asyncio.create_task(acks())]
            seen = []
            held = None
            for round in range(6):
                sub = await connect(b.url("/ws"))
                await sub.send(json.dumps(
                    {"op": "sub", "topic": "s.AAPL", "snapshot": True, "id": 1}))
                got = []
                while len(got) < 25:
                    m = await recv_json(sub)
                    if m["op"] == "msg":
                        got.append(m)
                first = got[0]
                assert first.get("snapshot") is True, (round, first)
                n = first["seq"]
                assert n >= 5, first
                assert [m["seq"] for m in got] == list(range(n, n + 25)), (round, got)
                assert not any(m.get("snapshot") for m in got[1:]), got
                seen.append(n)
                # Rounds 0-2: the subscriber goes (the interest lapses, the
                # next snapshot reads again); later ones keep one held, so
                # B's own value is current and serves the next.
                if round < 3:
                    await sub.close()
                    await asyncio.sleep(0.2)
                elif held is None:
                    held = sub
                else:
                    await sub.close()
            stop.set()
            await asyncio.gather(*tasks)
            assert seen == sorted(seen) and len(set(seen)) == len(seen), seen
            if held:
                await held.close()

    run(go(), timeout=60)
    reads = b.metric("ringfan_cluster_snapshot_reads_total")
    # A read per round after a lapse (rounds 0-3); while one is held, a
    # subscriber on its shard is served from the node's value, one on the
    # other shard (its first holder there) reads again.
    assert 4 <= reads <= 6, f"reads: {reads}"


def test_a_wildcard_snapshot_on_another_node_is_every_topic_then_live(start_server, nats):
    """Node A published 40 topics; one keeps going. A `ws.*` snapshot on
    node B (which never held them) has each topic once at its newest, and
    the busy one then goes on live from exactly the next seq."""
    a, b = nodes(start_server, nats, 2)

    async def go():
        async with connect(a.url("/ws")) as pub:
            for i in range(40):
                for d in range(1 + i % 3):
                    await acked(pub, op="pub", topic=f"ws.{i}", data=d, id=i)
            stop = asyncio.Event()

            async def publisher():
                i = 1000
                while not stop.is_set():
                    await pub.send(json.dumps({"op": "pub", "topic": "ws.7", "data": i, "id": i}))
                    i += 1
                    await asyncio.sleep(0.003)

            task = asyncio.create_task(publisher())
            await asyncio.sleep(0.1)
            async with connect(b.url("/ws")) as sub:
                await sub.send(json.dumps({"op": "sub", "topic": "ws.*", "snapshot": True, "id": 1}))
                snap, live = {}, []
                while len(live) < 20:
                    m = await recv_json(sub)
                    if m["op"] != "msg":
                        continue
                    if m.get("snapshot"):
                        assert m["topic"] not in snap, m
                        snap[m["topic"]] = m["seq"]
                    else:
                        assert m["topic"] == "ws.7", m
                        live.append(m["seq"])
                stop.set()
                await task
            assert sorted(snap) == sorted(f"ws.{i}" for i in range(40)), sorted(snap)
            assert all(snap[f"ws.{i}"] == 1 + i % 3 for i in range(40) if i != 7), snap
            n = snap["ws.7"]
            assert live == list(range(n + 1, n + 21)), (n, live)

    run(go(), timeout=60)
    assert b.metric("ringfan_cluster_snapshot_reads_total") >= 1


def test_the_admin_view_shows_the_stream_the_link_and_every_node(start_server, nats, tmp_path):
    from test_admin import TOKEN, admin_port, call
    tok = tmp_path / "admin.token"
    tok.write_text(TOKEN + "\n")
    ns = [start_server("--cluster", nats.url, "--admin-listen", "127.0.0.1:0",
                       "--admin-token-file", str(tok)) for _ in range(2)]
    ports = [admin_port(n) for n in ns]
    plain = start_server("--admin-listen", "127.0.0.1:0", "--admin-token-file", str(tok))
    status, _, body = call(admin_port(plain), "GET", "/admin/cluster")
    assert status == 404 and "--cluster" in body["message"], body

    async def go():
        async with connect(ns[0].url("/ws")) as pub:
            await acked(pub, op="pub", topic="adm.a", data=1, id=1)

    run(go())
    # Heartbeats every second; the stream info is read as often.
    deadline = time.monotonic() + 10
    while True:
        status, _, body = call(ports[1], "GET", "/admin/cluster")
        assert status == 200, body
        if len(body["nodes"]) == 2 and body["stream"] and body["stream"]["last_seq"] >= 1:
            break
        assert time.monotonic() < deadline, body
        time.sleep(0.2)
    assert body["connected"] is True
    assert body["stream"]["name"] == "RINGFAN"
    assert body["stream"]["history_per_topic"] == 16
    assert body["server"]["version"], body
    addrs = sorted(n["advertise"] for n in body["nodes"])
    assert addrs == sorted(f"127.0.0.1:{n.port}" for n in ns), (addrs, body)
    assert call(ports[1], "GET", "/admin/cluster", token=None)[0] == 401
    assert call(ports[1], "POST", "/admin/cluster")[0] == 405


def test_a_hot_topic_goes_to_the_stream_in_bundles_and_stays_gapless(start_server, nats):
    a, b = nodes(start_server, nats, 2)
    n = 1000  # under the 1,024 a topic may have waiting

    async def go():
        async with connect(b.url("/ws")) as sub, connect(a.url("/ws")) as pub:
            await acked(sub, op="sub", topic="hot.q", id=1)
            await asyncio.sleep(0.3)
            # All at once, no waiting for acks: they queue behind the one
            # in flight and go in bundles.
            for i in range(n):
                await pub.send(json.dumps({"op": "pub", "topic": "hot.q", "data": i, "id": i}))
            acks = [await recv_json(pub) for _ in range(n)]
            assert [m["id"] for m in acks] == list(range(n)), acks[:5]
            assert all(m["op"] == "ack" for m in acks), [m for m in acks if m["op"] != "ack"][:3]
            got = await msgs(sub, n, timeout=20)
            assert [m["seq"] for m in got] == list(range(1, n + 1))
            assert [m["data"] for m in got] == list(range(n))

    run(go(), timeout=60)
    bundled = a.metric("ringfan_cluster_bundled_total")
    sent = a.metric("ringfan_cluster_publishes_total")
    assert bundled > n // 2 and sent < n // 2, (bundled, sent)


def stop_process(pid: int) -> None:
    """SIGSTOP, and wait until every thread of `pid` is stopped: kill(2)
    returns before they are, and a publish sent in between could still be
    answered (a nats-server thread acked one in a loaded full run)."""
    os.kill(pid, signal.SIGSTOP)

    def stopped(task: Path) -> bool:
        try:
            return task.joinpath("stat").read_text().rsplit(") ", 1)[1].startswith("T")
        except (OSError, IndexError):
            return True  # the thread is gone

    deadline = time.monotonic() + 5
    while not all(stopped(t) for t in Path(f"/proc/{pid}/task").iterdir()):
        assert time.monotonic() < deadline, f"process {pid} did not stop"
        time.sleep(0.002)


def test_a_drained_node_answers_the_publishes_it_took_before_it_closes(start_server, nats):
    """SIGTERM while publishes wait for the stream (nats-server paused):
    the node keeps their connections open until the stream answers, so
    each publisher gets its ack before the 1001; new publishes meanwhile
    are refused as the node shutting down, not left in doubt."""
    (a,) = nodes(start_server, nats, 1)

    async def go():
        async with connect(a.url("/ws")) as pub:
            await acked(pub, op="pub", topic="dr.a", data=0, id=0)
            stop_process(nats.proc.pid)
            try:
                for i in range(1, 4):
                    await pub.send(json.dumps({"op": "pub", "topic": "dr.a", "data": i, "id": i}))
                await asyncio.sleep(0.3)
                a.terminate()
                await asyncio.sleep(0.5)
                await pub.send(json.dumps({"op": "pub", "topic": "dr.b", "data": 9, "id": 9}))
                late = await recv_json(pub, timeout=5)
            finally:
                nats.proc.send_signal(signal.SIGCONT)
            assert late["op"] == "err" and late["id"] == 9 and "shutting down" in late["message"], late
            got = []
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    got.append(await recv_json(pub, timeout=10))
            assert got == [{"op": "ack", "id": i} for i in range(1, 4)], got
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001, closed.value

    run(go(), timeout=60)
