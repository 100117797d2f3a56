"""Requests while there is no connection: held (in order, up to
`queue_while_disconnected`) and sent when one opens, refused past the
bound or at once with 0, and given up after `request_timeout` without
being sent later."""

from __future__ import annotations

import asyncio

import pytest
import ringfan
from support import STEP, Events, bounded, client, free_port, run, until


async def last_value(url: str, topic: str) -> ringfan.Message | None:
    """The broker's snapshot of `topic`, through a fresh client; None if
    it holds no value."""
    async with client(url) as c:
        sub = await bounded(c.subscribe(topic, snapshot=True))
        try:
            return await asyncio.wait_for(anext(sub), 0.3)
        except TimeoutError:
            return None


def test_publishes_queue_while_down_and_go_out_in_order(broker):
    port = free_port()

    async def go():
        c = client(f"ws://127.0.0.1:{port}/ws", queue_while_disconnected=5)
        ev = Events(c)
        sends = [asyncio.create_task(c.publish("q.x", i)) for i in range(1, 6)]
        await until(lambda: len(ev.of("error")) >= 1, what="a failed attempt")
        with pytest.raises(ringfan.RingfanError) as e:
            await c.publish("q.x", 6)  # the queue holds 5
        assert e.value.code == "queue_full"
        assert not any(t.done() for t in sends)
        b = await asyncio.to_thread(broker, port=port)
        await bounded(asyncio.gather(*sends))
        # All five were published, in order: seq 5 carries the 5th.
        m = await last_value(b.url, "q.x")
        assert m is not None and (m.seq, m.data) == (5, 5)
        await c.close()

    run(go())


def test_zero_queue_rejects_at_once_while_down(broker):
    port = free_port()

    async def go():
        c = client(f"ws://127.0.0.1:{port}/ws", queue_while_disconnected=0)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(ringfan.RingfanError) as e:
            await c.publish("z.x", 1)
        assert e.value.code == "disconnected" and loop.time() - t0 < 0.5
        b = await asyncio.to_thread(broker, port=port)
        await bounded(c.wait_open())
        await bounded(c.publish("z.x", 2))  # connected: goes through
        m = await last_value(b.url, "z.x")
        assert m is not None and (m.seq, m.data) == (1, 2)
        await c.close()

    run(go())


def test_timed_out_publish_is_never_sent_later(broker):
    port = free_port()

    async def go():
        c = client(f"ws://127.0.0.1:{port}/ws", request_timeout=0.3)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(ringfan.RingfanError) as e:
            await c.publish("to.x", "late")
        assert e.value.code == "timeout" and 0.25 < loop.time() - t0 < 2
        b = await asyncio.to_thread(broker, port=port)
        await bounded(c.wait_open())
        await bounded(c.publish("to.x", "now"))
        m = await last_value(b.url, "to.x")
        assert m is not None and (m.seq, m.data) == (1, "now")  # "late" never went
        await c.close()

    run(go())


def test_publish_in_flight_when_the_connection_drops_fails_disconnected(broker):
    """Sent but not acknowledged when the broker vanished: the client
    cannot know whether it was published, says so, and does not resend."""
    b = broker()

    async def go():
        c = client(b.url, request_timeout=STEP)
        await bounded(c.wait_open())
        b.proc.proc.send_signal(19)  # SIGSTOP: the broker stops answering
        try:
            pending = asyncio.create_task(c.publish("d.x", 1))
            await asyncio.sleep(0.2)
            assert not pending.done()
            b.stop(kill=True)
            with pytest.raises(ringfan.RingfanError) as e:
                await bounded(pending)
            assert e.value.code == "disconnected"
        finally:
            b.stop(kill=True)
        await c.close()

    run(go())
