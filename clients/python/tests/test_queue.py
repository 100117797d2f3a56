"""Requests while there is no connection: held (in order, up to
`queue_while_disconnected`) and sent when one opens, refused past the
bound or at once with 0, and given up after `request_timeout` without
being sent later."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
import ringfan
from support import STEP, Events, Forwarder, bounded, client, free_port, run, until


def stopped(pid: int, tid: str) -> bool:
    try:
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            stat = f.read()
    except FileNotFoundError:
        return True  # the thread is gone
    return stat.rsplit(")", 1)[1].split()[0] in ("T", "t")


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
        pid = b.proc.proc.pid
        os.kill(pid, signal.SIGSTOP)  # the broker stops answering
        try:
            # Stopping is asynchronous: wait until every thread is stopped.
            await until(lambda: all(stopped(pid, t) for t in os.listdir(f"/proc/{pid}/task")),
                        what="the broker stopped")
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


def test_outgoing_queue_is_bounded_while_the_broker_does_not_read(broker):
    """The path to the broker stalls: the socket's buffer fills to
    `max_buffered`, at most `max_outgoing` publishes wait to be sent, and
    further callers wait for room instead of growing a queue; when the path
    flows again every publish is acknowledged, in order."""
    b = broker()

    async def go():
        fwd = await Forwarder(b.port).start()
        c = client(fwd.url, max_outgoing=4, max_buffered=64 * 1024, request_timeout=3 * STEP)
        await bounded(c.wait_open())
        fwd.stall(downstream=False)
        big = "y" * 100_000  # 100 x 100 kB: past every kernel buffer on the way
        tasks = [asyncio.create_task(c.publish("ob.x", {"i": i, "pad": big})) for i in range(100)]
        most = 0
        for _ in range(50):
            await asyncio.sleep(0.01)
            most = max(most, c.queued)
            assert c.queued <= 4
        assert most == 4  # full: the rest of the callers wait for room
        assert sum(t.done() for t in tasks) < 100
        fwd.resume()
        await bounded(asyncio.gather(*tasks), 3 * STEP)
        m = await last_value(b.url, "ob.x")
        assert m is not None and (m.seq, m.data["i"]) == (100, 99)
        await c.close()
        await fwd.close()

    run(go())
