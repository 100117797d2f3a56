"""Subscribe, publish and their replies against a real broker: acks,
errors with the broker's codes, snapshots, handlers, unsubscribing."""

from __future__ import annotations

import asyncio

import pytest
import ringfan
from support import STEP, Events, bounded, check_stream, client, run, until


def test_publish_is_acked_and_reaches_an_iterated_subscription(broker):
    b = broker()

    async def go():
        async with client(b.url) as c:
            sub = await bounded(c.subscribe("t.*"))
            assert sub.active and c.state == "open"
            for i in range(1, 21):
                await bounded(c.publish("t.a", {"i": i}))
            got = []
            async for m in sub:
                got.append(m)
                if len(got) == 20:
                    break
            assert [(m.topic, m.seq, m.data, m.snapshot) for m in got] == [
                ("t.a", i, {"i": i}, False) for i in range(1, 21)]
            assert check_stream(got) == []
            assert c.stats.messages == 20 and c.stats.gaps == 0

    run(go())


def test_snapshot_brings_the_last_value_then_the_stream_continues(broker):
    b = broker()

    async def go():
        async with client(b.url) as c:
            for i in range(1, 4):
                await bounded(c.publish("s.a", i))
            await bounded(c.publish("s.b", "x"))
            plain = await bounded(c.subscribe("s.a"))
            snap = await bounded(c.subscribe("s.*", snapshot=True))
            await bounded(c.publish("s.a", 4))
            first = [await bounded(anext(snap)) for _ in range(3)]
            assert sorted((m.topic, m.seq, m.data, m.snapshot) for m in first) == [
                ("s.a", 3, 3, True), ("s.a", 4, 4, False), ("s.b", 1, "x", True)]
            # The subscription without a snapshot got only the live one.
            assert await bounded(anext(plain)) == ringfan.Message("s.a", 4, 4)

    run(go())


def test_second_snapshot_subscription_of_a_held_pattern_gets_its_snapshot(broker):
    """The broker sends no second snapshot for a pattern a connection holds;
    the client resyncs it, and the first subscription sees no duplicate."""
    b = broker()

    async def go():
        async with client(b.url) as c:
            ev = Events(c)
            first = await bounded(c.subscribe("h.>", snapshot=True))
            await bounded(c.publish("h.a", 1))
            assert (await bounded(anext(first))).seq == 1
            second = await bounded(c.subscribe("h.>", snapshot=True))
            m = await bounded(anext(second))
            assert (m.topic, m.seq, m.snapshot) == ("h.a", 1, True)
            await bounded(c.publish("h.a", 2))
            assert (await bounded(anext(first))).seq == 2  # not 1 again
            assert (await bounded(anext(second))).seq == 2
            assert c.stats.duplicates >= 1
            assert [r.pattern for r in ev.of("resync")] == ["h.>"]

    run(go())


def test_errors_carry_the_brokers_code_and_message(broker):
    b = broker()

    async def go():
        async with client(b.url) as c:
            with pytest.raises(ringfan.RingfanError) as e:
                await bounded(c.publish("a.*", 1))
            assert e.value.code == "bad_topic"
            assert e.value.message == "bad topic 'a.*': cannot publish to a wildcard topic"
            with pytest.raises(ringfan.RingfanError) as e:
                await bounded(c.publish("", 1))
            assert e.value.code == "bad_topic"
            sub = c.subscribe("a..b")
            with pytest.raises(ringfan.RingfanError) as e:
                await bounded(sub)
            assert e.value.code == "bad_topic" and not sub.active
            with pytest.raises(ringfan.RingfanError):  # iterating it says why too
                await bounded(anext(sub))
            # A bad pattern does not take good ones down with it.
            good = c.subscribe("a.b")
            bad = c.subscribe("a.>.c")
            await bounded(good)
            with pytest.raises(ringfan.RingfanError):
                await bounded(bad)
            await bounded(c.publish("a.b", True))
            assert (await bounded(anext(good))).data is True
            with pytest.raises(ValueError):
                await c.publish("a.b", float("nan"))  # not JSON
            assert c.state == "open"

    run(go())


def test_handler_subscription_sync_and_async(broker):
    b = broker()

    async def go():
        async with client(b.url) as c:
            seen: list[tuple[str, int]] = []
            done = asyncio.Event()

            def sync_handler(m: ringfan.Message) -> None:
                seen.append(("sync", m.seq))

            async def async_handler(m: ringfan.Message) -> None:
                # Handlers run in the subscription's task, not in the
                # connection's reader: awaiting a request's reply is fine.
                await c.publish("hd-echo.x", m.seq)
                seen.append(("async", m.seq))
                if m.seq == 3:
                    done.set()

            s1 = await bounded(c.subscribe("hd.x", sync_handler))
            await bounded(c.subscribe("hd.*", async_handler))
            with pytest.raises(TypeError):
                aiter(s1)
            for i in range(3):
                await bounded(c.publish("hd.x", i))
            await bounded(done.wait())
            assert sorted(seen) == sorted([(k, s) for k in ("sync", "async") for s in (1, 2, 3)])
            # A handler's exception is reported and the stream carries on.
            ev = Events(c)
            boom = asyncio.Event()

            def failing(m: ringfan.Message) -> None:
                if m.seq == 1:
                    raise RuntimeError("handler bug")
                boom.set()

            await bounded(c.subscribe("hd.f", failing))
            await bounded(c.publish("hd.f", 1))
            await bounded(c.publish("hd.f", 2))
            await bounded(boom.wait())
            assert [str(e) for e in ev.of("error")] == ["handler bug"]

    run(go())


def test_unsubscribe_stops_delivery_and_frees_the_pattern(broker):
    b = broker()

    async def go():
        async with client(b.url) as c:
            a = await bounded(c.subscribe("u.x"))
            keep = await bounded(c.subscribe("u.*"))
            await bounded(c.publish("u.x", 1))
            assert (await bounded(anext(a))).seq == 1
            a.unsubscribe()
            assert not a.active
            await bounded(c.publish("u.x", 2))
            assert (await bounded(anext(keep))).seq == 1
            assert (await bounded(anext(keep))).seq == 2
            with pytest.raises(StopAsyncIteration):
                await bounded(anext(a))
            async with c.subscribe("u.y") as y:
                await bounded(c.publish("u.y", 1))
                assert (await bounded(anext(y))).data == 1
            assert not y.active
            keep.unsubscribe()
            # Both patterns are gone from the broker's side too.
            deadline = asyncio.get_running_loop().time() + STEP
            while b.metric("ringfan_subscriptions") != 0:
                assert asyncio.get_running_loop().time() < deadline, "still subscribed"
                await asyncio.sleep(0.02)

    run(go())


def test_close_ends_subscriptions_and_refuses_requests(broker):
    b = broker()

    async def go():
        c = client(b.url)
        ev = Events(c)
        sub = await bounded(c.subscribe("c.x"))
        await bounded(c.publish("c.x", 1))
        # The msg may come after the pub's ack (it is not a reply).
        await until(lambda: c.stats.messages == 1, what="the message")
        await bounded(c.close())
        assert c.state == "closed" and ev.states()[-1] == "closed"
        assert (await bounded(anext(sub))).seq == 1  # what was queued stays readable
        with pytest.raises(StopAsyncIteration):
            await bounded(anext(sub))
        with pytest.raises(ringfan.RingfanError) as e:
            await c.publish("c.x", 2)
        assert e.value.code == "closed"

    run(go())


def test_patterns():
    m, o = ringfan.matches, ringfan.overlap
    assert m("a.*", "a.b") and not m("a.*", "a.b.c") and not m("a.*", "a")
    assert m("a.>", "a.b.c") and not m("a.>", "a") and m(">", "x")
    assert m("a.b", "a.b") and not m("a.b", "a.c")
    assert o("a.*", "a.b") and o("a.>", "*.b.c") and o(">", "x.y")
    assert not o("a.*", "a.b.c") and not o("a.b", "a.c") and not o("a.>", "a")
    assert o("*.x", "y.*") and not o("*.x", "y.*.z")


def test_rate_limited_subscriptions_are_retried(broker):
    """`rate_limited` on a `sub` changes nothing at the broker: the client
    asks again after a pause until it goes through (docs/protocol.md "For
    client authors"). Here one pattern per second, burst one."""
    b = broker("--max-sub-rate", "1", "--sub-burst", "1")

    async def go():
        async with client(b.url) as c:
            ev = Events(c)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            subs = []
            for i in range(3):  # one request each: the 2nd and 3rd wait for a refill
                subs.append(await bounded(c.subscribe(f"rl.{i}")))
            assert loop.time() - t0 > 1.5
            assert b.metric("ringfan_requests_rate_limited_total") >= 1
            assert ev.of("error") == []
            await bounded(c.publish("rl.2", 1))
            assert (await bounded(anext(subs[2]))).data == 1
            # An `unsub` refused the same way is asked again too (the
            # bucket is empty now), without dropping the connection.
            refused = b.metric("ringfan_requests_rate_limited_total")
            for sub in subs:
                sub.unsubscribe()
            await until(lambda: b.metric("ringfan_subscriptions") == 0, timeout=3 * STEP,
                        what="the unsubscribes")
            assert b.metric("ringfan_requests_rate_limited_total") > refused
            assert c.stats.reconnects == 0 and ev.of("error") == []

    run(go())
