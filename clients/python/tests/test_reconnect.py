"""Reconnects: a broker restart in the middle of a stream, a connection cut
under a live broker (seqs carry on, so the gap is exact), the backoff
between attempts, and its reset after a stable connection."""

from __future__ import annotations

import asyncio

import ringfan
from support import STEP, Events, Forwarder, bounded, check_stream, client, free_port, run, until


async def publisher(c: ringfan.Client, topic: str, stop: asyncio.Event, sent: list[int],
                    hold: asyncio.Event | None = None) -> None:
    """Publish 0, 1, 2, ... on `topic` until `stop`, one at a time (none
    while `hold` is set); a publish that fails (the broker went away) is
    not retried, so each data value is published at most once."""
    i = 0
    while not stop.is_set():
        if hold is not None and hold.is_set():
            await asyncio.sleep(0.002)
            continue
        try:
            await c.publish(topic, i)
            sent.append(i)
        except ringfan.RingfanError as e:
            assert e.code in ("disconnected", "timeout"), e
        i += 1
        await asyncio.sleep(0.002)


def test_broker_restart_mid_stream(broker):
    """SIGKILL the broker while a topic streams and start it again on the
    same port: both clients reconnect, the subscription comes back with a
    snapshot, and its stream has no duplicate, stays in order, and every
    missing value is explained by a reported gap or reset."""
    b = broker()

    async def go():
        # The subscriber comes through a forwarder, held shut after the
        # restart until the publisher has published on the new broker, so
        # that the resubscription's snapshot has something to bring.
        fwd = await Forwarder(b.port).start()
        pub = client(b.url)
        sub_client = client(fwd.url)
        ev = Events(sub_client)
        sub = await bounded(sub_client.subscribe("r.*", snapshot=True))
        stop, hold = asyncio.Event(), asyncio.Event()
        sent: list[int] = []
        task = asyncio.create_task(publisher(pub, "r.x", stop, sent, hold))
        got: list[ringfan.Message] = []

        async def read(n: int) -> None:
            target = len(got) + n
            while len(got) < target:
                got.append(await bounded(anext(sub)))

        await read(40)
        fwd.refusing = True
        await asyncio.to_thread(b.restart, kill=True)
        await until(lambda: pub.state == "open", what="the publisher's reconnect")
        n = len(sent)
        await until(lambda: len(sent) >= n + 5, what="publishes on the new broker")
        # The new broker stays far below the old seqs until the subscriber
        # is back: a snapshot seq that happened to equal the last one seen
        # would look like "nothing missed" (the protocol has no broker
        # epoch, so a client cannot tell; found when one run lined up).
        hold.set()
        fwd.refusing = False
        before = len(got)
        await read(1)
        hold.clear()
        await read(39)
        stop.set()
        await bounded(task)
        await pub.close()
        await sub_client.close()

        assert sub_client.stats.reconnects == 1 and pub.stats.reconnects == 1
        assert ev.states().count("reconnecting") >= 1 and ev.states()[-1] == "closed"
        assert [r for r in ev.of("resync") if r.reconnect] == [ringfan.Resync("r.*", True)]
        data = [m.data for m in got]
        assert data == sorted(set(data)), "duplicate or out of order"
        check_stream(got)
        # Every value the stream skipped sits where the client said
        # something was lost: a gap (seqs missed) or a reset (the new
        # broker's seqs started over).
        for prev, cur in zip(got, got[1:]):
            if cur.data != prev.data + 1:
                assert cur.gap is not None or cur.reset, (prev, cur)
        # Back: first the snapshot, then the live stream. The new broker's
        # seqs started over, below the last one seen: a reset.
        back = got[before]
        assert back.snapshot and back.seq >= 5, back
        last = got[before - 1].seq
        assert back.seq < last, (back, last)
        assert back.reset and ev.of("reset") == [ringfan.Reset("r.x", back.seq, "r.*")]
        assert all(not m.snapshot for m in got[before + 1:])
        await fwd.close()

    run(go())


def test_cut_connection_resubscribes_with_snapshot_and_reports_the_exact_gap(broker):
    """The subscriber's connection drops (no close frame) and new ones are
    refused for a while; the broker keeps numbering. On reconnect the
    snapshot brings the latest value, and the gap names exactly the seqs
    published meanwhile."""
    b = broker()

    async def go():
        fwd = await Forwarder(b.port).start()
        pub = client(b.url)
        sub_client = client(fwd.url)
        ev = Events(sub_client)
        sub = await bounded(sub_client.subscribe("k.x"))
        got: list[ringfan.Message] = []
        n = 0

        async def publish(count: int) -> None:
            nonlocal n
            for _ in range(count):
                n += 1
                await bounded(pub.publish("k.x", n))

        await publish(10)
        while len(got) < 10:
            got.append(await bounded(anext(sub)))
        fwd.refusing = True
        fwd.cut()
        await until(lambda: "reconnecting" in ev.states(), what="reconnecting")
        await publish(25)  # published while the subscriber is away
        await until(lambda: fwd.accepted >= 3, what="refused attempts")
        fwd.refusing = False
        await bounded(sub_client.wait_open())
        while not got or got[-1].seq < 35:
            got.append(await bounded(anext(sub)))
        await publish(5)
        while got[-1].seq < 40:
            got.append(await bounded(anext(sub)))

        assert [m.seq for m in got] == [*range(1, 11), *range(35, 41)]
        assert all(m.data == m.seq for m in got)
        back = got[10]
        assert back.snapshot and back.gap == ringfan.Gap("k.x", 11, 34, "k.x")
        assert check_stream(got) == [(11, 34)]
        assert ev.of("gap") == [ringfan.Gap("k.x", 11, 34, "k.x")]
        assert sub_client.stats.reconnects == 1 and sub_client.stats.duplicates == 0
        # The refused attempts were reported, with their errors.
        failed = [s for s in ev.of("state") if s.state == "reconnecting" and s.error]
        assert len(failed) >= 2
        await pub.close()
        await sub_client.close()
        await fwd.close()

    run(go())


def test_backoff_grows_with_full_jitter_up_to_the_cap():
    rng_backoff = ringfan.Backoff(initial=0.1, max=1.0, factor=2.0)
    for attempt in range(12):
        caps = min(1.0, 0.1 * 2 ** attempt)
        delays = [rng_backoff.delay(attempt) for _ in range(200)]
        assert all(0 <= d <= caps for d in delays)
        assert max(delays) > caps * 0.8 and min(delays) < caps * 0.2  # full jitter
    assert ringfan.Backoff(max=5).delay(10_000) <= 5


def test_reconnect_attempts_back_off_then_succeed_when_the_broker_comes(broker):
    """Nobody listens: attempts are reported with growing caps; once a
    broker starts on the port the client opens and subscriptions come up."""
    port = free_port()

    async def go():
        c = client(f"ws://127.0.0.1:{port}/ws",
                   reconnect=ringfan.Backoff(initial=0.02, max=0.16, factor=2.0, stable=1.0))
        ev = Events(c)
        sub = c.subscribe("w.x")
        await until(lambda: len(ev.of("error")) >= 6, what="six failed attempts")
        tries = [s for s in ev.of("state") if s.state == "reconnecting"]
        assert [s.attempt for s in tries[:6]] == [1, 2, 3, 4, 5, 6]
        for s in tries:
            assert 0 <= s.delay <= min(0.16, 0.02 * 2 ** (s.attempt - 1)), s
            assert isinstance(s.error, OSError), s
        b = await asyncio.to_thread(broker, port=port)
        await bounded(sub)
        await bounded(c.publish("w.x", 1))
        assert (await bounded(anext(sub))).data == 1
        assert c.stats.reconnects == 0  # the first connection that opened
        await c.close()
        b.stop()

    run(go())


def test_backoff_resets_after_a_stable_connection(broker):
    b = broker()

    async def go():
        fwd = await Forwarder(b.port).start()
        c = client(fwd.url, reconnect=ringfan.Backoff(initial=0.02, max=0.1, stable=0.5))
        ev = Events(c)
        await bounded(c.wait_open())

        async def cut_after(seconds: float) -> ringfan.StateChange:
            await asyncio.sleep(seconds)
            n = len(ev.of("state"))
            fwd.cut()
            # The state changes are events: polling c.state could miss a
            # reconnect that takes a millisecond.
            await until(lambda: "open" in ev.states()[n:], what="reopened")
            change = ev.of("state")[n]
            assert change.state == "reconnecting", ev.of("state")[n:]
            return change

        quick1 = await cut_after(0.05)
        quick2 = await cut_after(0.05)
        stable = await cut_after(0.7)
        assert (quick1.attempt, quick2.attempt, stable.attempt) == (1, 2, 1)
        assert quick2.code is None  # dropped, no close frame
        assert c.stats.reconnects == 3
        await c.close()
        await fwd.close()

    run(go())
