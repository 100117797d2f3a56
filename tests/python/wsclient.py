"""What the websockets-based tests share: bounded waits, a client without
proxies, compression or keepalive pings, and the protocol's frames as
protocol.md writes them."""

from __future__ import annotations

import asyncio
import json
import uuid

from websockets.asyncio.client import connect as ws_connect

TIMEOUT = 25  # seconds, per test
STEP = 5  # seconds, per await


def run(coro, timeout: float = TIMEOUT):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def bounded(aw, timeout: float = STEP):
    return await asyncio.wait_for(aw, timeout)


def connect(url: str, **kw):
    """websockets' client, without proxies, compression or keepalive pings."""
    kw.setdefault("proxy", None)
    kw.setdefault("compression", None)
    kw.setdefault("open_timeout", STEP)
    kw.setdefault("close_timeout", STEP)
    kw.setdefault("ping_interval", None)
    kw.setdefault("max_size", None)
    return ws_connect(url, **kw)


def uid() -> str:
    """A fresh topic token, so tests on a shared server never meet."""
    return "u" + uuid.uuid4().hex[:12]


def j(**kw) -> str:
    return json.dumps(kw, separators=(",", ":"))


def ack(id_: int) -> str:
    return '{"op":"ack","id":%d}' % id_


def msg(topic: str, seq: int, data: str, snapshot: bool = False) -> str:
    """A msg exactly as protocol.md writes it, `data` being the publisher's bytes."""
    snap = '"snapshot":true,' if snapshot else ""
    return f'{{"op":"msg","topic":"{topic}","seq":{seq},{snap}"data":{data}}}'


async def send(ws, text: str | bytes) -> None:
    await bounded(ws.send(text))


async def recv(ws, timeout: float = STEP) -> str:
    got = await bounded(ws.recv(), timeout)
    assert isinstance(got, str), f"binary frame from the broker: {got!r}"
    return got


async def nothing_more(ws, wait: float = 0.2) -> None:
    """Nothing arrives within `wait` seconds."""
    try:
        got = await asyncio.wait_for(ws.recv(), wait)
    except TimeoutError:
        return
    raise AssertionError(f"unexpected message: {got!r}")


async def request(ws, **req) -> str:
    """Send a request with an id and return the very next message."""
    await send(ws, j(**req))
    return await recv(ws)


async def acked(ws, **req) -> None:
    assert "id" in req
    got = await request(ws, **req)
    assert got == ack(req["id"]), (req, got)


async def metric(server, name: str) -> int:
    return await bounded(asyncio.to_thread(server.metric, name))
