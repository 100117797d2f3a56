"""Slow consumers, both kinds: a subscriber the broker finds slow (its
--slow-consumer policy `drop` leaves seq gaps, `disconnect` closes 1008),
and an iterated subscription whose reader falls behind the client's own
bounded queue. Every time: the loss is reported as a gap naming exactly
the lost seqs, and a resync (or the reconnect's snapshot) brings the
latest value."""

from __future__ import annotations

import asyncio

import pytest
import ringfan
from support import Events, Forwarder, bounded, check_stream, client, run, until

# A subscriber that stops reading is cut off quickly: 4 KiB of kernel send
# buffer (doubled by the kernel) and 16 KiB of broker queue.
SLOW_FLAGS = ("--max-queued-bytes", "16384", "--socket-send-buffer", "4096")
N = 400  # messages of ~2 KB: 800 KB, more than every buffer on the way
PAYLOAD = "x" * 2000


def covered(msgs: list[ringfan.Message], gaps: list[tuple[int, int]], n: int) -> None:
    """Every seq 1..n was either delivered or named by a gap, once."""
    seqs = [m.seq for m in msgs] + [s for a, b in gaps for s in range(a, b + 1)]
    assert sorted(seqs) == list(range(1, n + 1))


async def stalled_stream(b, pattern: str, topic: str, **options):
    """A subscriber whose bytes stop flowing (a forwarder between it and
    the broker stops reading: the kernel's buffers fill, then the broker's
    queue for it) while another client publishes N messages. Returns
    (subscriber client, its events, what it read) once it has read seq N."""
    fwd = await Forwarder(b.port).start()
    sub_client = client(fwd.url, **options)
    pub = client(b.url)
    ev = Events(sub_client)
    sub = await bounded(sub_client.subscribe(pattern))
    fwd.stall()
    for i in range(1, N + 1):
        await bounded(pub.publish(topic, {"i": i, "pad": PAYLOAD}))
    await asyncio.sleep(0.2)  # what the broker still pushes meets the full queue
    fwd.resume()
    got: list[ringfan.Message] = []
    while not got or got[-1].seq < N:
        got.append(await bounded(anext(sub)))
    await pub.close()
    await sub_client.close()
    await fwd.close()
    return sub_client, ev, got


def test_broker_drop_policy_gap_then_resync(broker):
    b = broker("--slow-consumer", "drop", *SLOW_FLAGS)

    async def go():
        c, ev, got = await stalled_stream(b, "sd.*", "sd.x")
        assert b.metric("ringfan_dropped_total") > 0  # the broker did drop
        assert all(m.data["i"] == m.seq for m in got)
        gaps = check_stream(got)
        assert gaps, "no gap reported"
        covered(got, gaps, N)
        assert [(g.first, g.last) for g in ev.of("gap")] == gaps
        # Each gap on a live message asked for a resync: unsubscribe, then
        # subscribe with a snapshot; the snapshot brought the last value.
        assert ringfan.Resync("sd.*", reconnect=False) in ev.of("resync")
        assert c.stats.resyncs >= 1 and c.stats.reconnects == 0
        assert got[-1].seq == N

    run(go())


def test_broker_disconnect_policy_1008_then_reconnect_with_snapshot(broker):
    b = broker("--slow-consumer", "disconnect", *SLOW_FLAGS)

    async def go():
        c, ev, got = await stalled_stream(b, "sc.*", "sc.x")
        assert b.metric("ringfan_slow_disconnects_total") == 1
        closes = [s for s in ev.of("state") if s.state == "reconnecting"]
        assert [(s.code, s.reason) for s in closes] == [(1008, "slow consumer")]
        assert c.stats.reconnects == 1
        assert ringfan.Resync("sc.*", reconnect=True) in ev.of("resync")
        assert all(m.data["i"] == m.seq for m in got)
        gaps = check_stream(got)
        covered(got, gaps, N)
        # The reconnect's snapshot brought seq N, naming what was lost.
        assert got[-1].snapshot and got[-1].seq == N and got[-1].gap is not None

    run(go())


def test_broker_conflate_policy_gaps_without_resync(broker):
    """Under `conflate` gaps are by design: with `resync_on_gap=False`
    they are reported and the stream goes on to the latest value without
    unsubscribing and subscribing again."""
    b = broker("--slow-consumer", "conflate", *SLOW_FLAGS)

    async def go():
        c, ev, got = await stalled_stream(b, "sf.*", "sf.x", resync_on_gap=False)
        assert b.metric("ringfan_conflated_total") > 0
        gaps = check_stream(got)
        assert gaps and [(g.first, g.last) for g in ev.of("gap")] == gaps
        covered(got, gaps, N)
        assert ev.of("resync") == [] and c.stats.resyncs == 0 and c.stats.reconnects == 0
        assert got[-1].seq == N and not got[-1].snapshot

    run(go())


def test_iterated_subscription_queue_is_bounded_and_resyncs(broker):
    """A reader that does not keep up with `async for`: its queue holds
    max_queue messages, the rest is dropped (memory stays bounded); when the
    reader has caught up to half, the pattern is resynced and the snapshot
    carries the latest value with a gap naming what was dropped."""
    b = broker()

    async def go():
        async with client(b.url) as c:
            ev = Events(c)
            sub = await bounded(c.subscribe("lq.x", max_queue=10))
            for i in range(1, 101):
                await bounded(c.publish("lq.x", i))
            await until(lambda: c.stats.dropped == 90, what="90 dropped")
            got = [await bounded(anext(sub)) for _ in range(11)]
            assert [m.seq for m in got] == [*range(1, 11), 100]
            assert got[-1].snapshot and got[-1].gap == ringfan.Gap("lq.x", 11, 99, "lq.x")
            assert ev.of("gap") == [got[-1].gap]
            assert ev.of("resync") == [ringfan.Resync("lq.x")]
            assert c.stats.dropped == 90 and c.stats.resyncs == 1
            # After the resync the stream carries on, gapless.
            await bounded(c.publish("lq.x", 101))
            m = await bounded(anext(sub))
            assert (m.seq, m.gap, m.snapshot) == (101, None, False)

    run(go())


def test_max_queue_must_leave_room():
    async def go():
        c = client("ws://127.0.0.1:9/ws")
        with pytest.raises(ValueError):
            c.subscribe("a", max_queue=1)
        await c.close()

    run(go())
