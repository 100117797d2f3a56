"""ringfan seen by a real client library (`websockets`) and by raw sockets.

Plain sync tests that drive their coroutine with `asyncio.run`, each bounded
by `asyncio.wait_for` (no pytest-asyncio needed).
"""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus

import wsraw

TIMEOUT = 10  # seconds, per test


def run(coro, timeout: float = TIMEOUT):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def connect(url: str, **kw):
    """websockets' client, without proxies from the environment or
    compression (ringfan does not negotiate permessage-deflate)."""
    kw.setdefault("proxy", None)
    kw.setdefault("compression", None)
    kw.setdefault("open_timeout", 5)
    kw.setdefault("close_timeout", 5)
    kw.setdefault("max_size", None)
    return ws_connect(url, **kw)


async def handshake_status(url: str, **kw) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as e:
        async with connect(url, **kw):
            pass
    return e.value


# --- echo -------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 300_000])
def test_echo_text_and_binary(server, size):
    async def go():
        async with connect(server.url()) as ws:
            text = ("héllo ✓ " * (size // 8 + 1)).encode()[:size].decode(errors="ignore")
            await ws.send(text)
            got = await ws.recv()
            assert isinstance(got, str) and got == text
            data = bytes(range(256)) * (size // 256 + 1)
            data = data[:size]
            await ws.send(data)
            got = await ws.recv()
            assert isinstance(got, bytes) and got == data

    run(go())


def test_echo_many_messages_in_order(server):
    async def go():
        async with connect(server.url()) as ws:
            msgs = [f"m{i}" for i in range(500)]
            for m in msgs:
                await ws.send(m)
            assert [await ws.recv() for _ in msgs] == msgs

    run(go())


def test_echo_fragmented_message_is_one_message(server):
    async def go():
        async with connect(server.url()) as ws:
            await ws.send(["frag1-", "frag2-", "frag3"])
            assert await ws.recv() == "frag1-frag2-frag3"
            await ws.send([b"\x00\x01", b"\x02"])
            assert await ws.recv() == b"\x00\x01\x02"

    run(go())


def test_ping_is_answered(server):
    async def go():
        async with connect(server.url()) as ws:
            pong = await ws.ping(b"are you there")
            await pong
            await ws.send("still echoing")
            assert await ws.recv() == "still echoing"

    run(go())


# --- subprotocol ------------------------------------------------------------


@pytest.mark.parametrize(
    "offer, selected",
    [(["ringfan.v1"], "ringfan.v1"), (["chat", "ringfan.v1"], "ringfan.v1"), (None, None)],
)
def test_subprotocol(server, offer, selected):
    async def go():
        async with connect(server.url(), subprotocols=offer) as ws:
            assert ws.subprotocol == selected
            await ws.send("x")
            assert await ws.recv() == "x"

    run(go())


# --- handshake errors -------------------------------------------------------


def test_unknown_path_is_404(server):
    e = run(handshake_status(server.url("/no-such-endpoint")))
    assert e.response.status_code == 404


def test_duplicate_key_is_400(server):
    # websockets sends its own key; a second one makes the request invalid.
    e = run(handshake_status(
        server.url(), additional_headers=[("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")]))
    assert e.response.status_code == 400


def test_origin_allow_list(start_server):
    s = start_server("--allow-origin", "https://good.example")

    async def go():
        e = await handshake_status(s.url(), origin="https://evil.example")
        assert e.response.status_code == 403
        e = await handshake_status(
            s.url(), additional_headers={"Origin": "https://good.example.evil"})
        assert e.response.status_code == 403
        async with connect(s.url(), origin="https://good.example") as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"
        # No Origin: a non-browser client, never refused for that.
        async with connect(s.url()) as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"

    run(go())


def test_huge_header_is_431(server):
    e = run(handshake_status(server.url(), additional_headers={"X-Filler": "a" * 64 * 1024}))
    assert e.response.status_code == 431


def test_too_many_headers_is_431(server):
    headers = [(f"X-H{i}", "v") for i in range(64)]
    e = run(handshake_status(server.url(), additional_headers=headers))
    assert e.response.status_code == 431


def test_version_8_is_426_with_version_13_header(server):
    async def go():
        reader, writer = await wsraw.open_raw(server.port)
        try:
            writer.write(wsraw.handshake_request(server.port, version="8"))
            await writer.drain()
            resp = await wsraw.read_response(reader)
        finally:
            writer.close()
        assert resp.status == 426, resp.head
        assert resp.headers.get("sec-websocket-version") == "13", resp.head

    run(go())


# --- closing ----------------------------------------------------------------


def test_close_1000_is_echoed(server):
    async def go():
        async with connect(server.url()) as ws:
            await ws.send("before close")
            assert await ws.recv() == "before close"
            await ws.close(code=1000, reason="bye")
            assert ws.close_code == 1000
            assert ws.protocol.close_sent.code == 1000
            assert ws.protocol.close_rcvd is not None
            assert ws.protocol.close_rcvd.code == 1000
            assert ws.protocol.close_rcvd_then_sent is False  # we closed first

    run(go())


def test_close_4000_is_echoed(server):
    async def go():
        async with connect(server.url()) as ws:
            await ws.close(4000)
            assert ws.close_code == 4000
            assert ws.protocol.close_rcvd.code == 4000

    run(go())


def test_message_over_limit_closes_1009(start_server):
    s = start_server("--max-message-echo", "1000")

    async def go():
        async with connect(s.url()) as ws:
            await ws.send(b"a" * 1000)  # at the limit: fine
            assert await ws.recv() == b"a" * 1000
            await ws.send(b"b" * 2000)
            with pytest.raises(ConnectionClosed) as e:
                await ws.recv()
            assert e.value.rcvd is not None, e.value
            assert e.value.rcvd.code == 1009
        async with connect(s.url()) as ws:  # and for text, fragmented
            await ws.send(["x" * 600, "y" * 600])
            with pytest.raises(ConnectionClosed) as e:
                await ws.recv()
            assert e.value.rcvd is not None and e.value.rcvd.code == 1009

    run(go())


@pytest.mark.parametrize("payload", [b"\xff", b"caf\xc3", b"\xed\xa0\x80", b"ok \xf4\x90\x80\x80"])
def test_invalid_utf8_closes_1007(server, payload):
    async def go():
        reader, writer = await wsraw.upgrade(server.port)
        try:
            writer.write(wsraw.frame(wsraw.OP_TEXT, payload))
            await writer.drain()
            code, _ = await wsraw.read_close(reader)
            assert code == 1007
            writer.write(wsraw.close_frame(1007))
            await writer.drain()
            assert await reader.read() == b""  # then the server closes the TCP connection
        finally:
            writer.close()

    run(go())


def test_invalid_utf8_via_websockets_closes_1007(server):
    async def go():
        async with connect(server.url()) as ws:
            await ws.send(b"\xc3\x28", text=True)  # bytes sent as a text frame
            with pytest.raises(ConnectionClosedError) as e:
                await ws.recv()
            assert e.value.rcvd is not None and e.value.rcvd.code == 1007

    run(go())


# --- vanishing peers --------------------------------------------------------


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_peer_vanishing_mid_frame_disturbs_nobody(start_server, how):
    s = start_server()
    open_metric = "ringfan_connections_open"

    async def go():
        # The /metrics request's own connection is counted while it is served.
        base = await asyncio.to_thread(s.wait_metric, open_metric, 1)
        async with connect(s.url()) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            for _ in range(3):
                reader, writer = await wsraw.upgrade(s.port)
                # Announce 100 payload bytes, send 10, and vanish.
                writer.write(wsraw.frame(wsraw.OP_BINARY, b"0123456789", length=100))
                await writer.drain()
                if how == "rst":
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()
                else:
                    writer.close()
                    await writer.wait_closed()
            assert await asyncio.to_thread(s.wait_metric, open_metric, base + 1) == base + 1
            await ws.send("still here")
            assert await ws.recv() == "still here"
        assert await asyncio.to_thread(s.wait_metric, open_metric, base) == base

    run(go())


def test_peer_vanishing_mid_handshake(start_server):
    s = start_server()

    async def go():
        base = await asyncio.to_thread(s.wait_metric, "ringfan_connections_open", 1)
        reader, writer = await wsraw.open_raw(s.port)
        writer.write(wsraw.handshake_request(s.port)[:40])
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        async with connect(s.url()) as ws:
            await ws.send("ok")
            assert await ws.recv() == "ok"
        got = await asyncio.to_thread(s.wait_metric, "ringfan_connections_open", base)
        assert got == base

    run(go())


def test_silent_client_is_dropped_after_handshake_timeout(start_server):
    s = start_server("--handshake-timeout", "1")

    async def go():
        reader, writer = await wsraw.open_raw(s.port)
        try:
            # Nothing sent: the server gives up after about a second.
            assert await asyncio.wait_for(reader.read(), 5) == b""
        finally:
            writer.close()
        got = await asyncio.to_thread(s.wait_metric, "ringfan_connections_open", 1)
        assert got == 1  # only the /metrics request itself

    run(go())


def test_sigterm_closes_clients_with_1001(start_server):
    s = start_server("--drain-timeout", "2")

    async def go():
        async with connect(s.url()) as ws:
            await ws.send("before")
            assert await ws.recv() == "before"
            s.terminate()  # SIGTERM
            with pytest.raises(ConnectionClosed) as e:
                await ws.recv()
            assert e.value.rcvd is not None and e.value.rcvd.code == 1001
        assert await asyncio.to_thread(s.proc.wait, 5) == 0

    run(go())


# --- plain HTTP -------------------------------------------------------------


def test_healthz_and_metrics(server):
    status, _, body = server.get("/healthz")
    assert (status, body) == (200, b"ok\n")
    status, headers, body = server.get("/metrics")
    assert status == 200
    assert headers.get("Content-Type", "").startswith("text/plain")
    assert b"\nringfan_connections_open{shard=" in b"\n" + body
