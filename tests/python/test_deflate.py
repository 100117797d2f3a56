"""permessage-deflate (RFC 7692) through the real binary: on by default,
declined with `--deflate off`, compressed frames both ways on /echo checked
byte by byte on a raw socket, a real client (`websockets`, which offers
deflate and compresses what it sends) through the broker, and a
decompression bomb answered with 1009 while another client is served.
"""

from __future__ import annotations

import asyncio
import json
import os
import zlib

from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosedError

import wsraw

TIMEOUT = 15
OFFER = ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")
ANSWER = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
TAIL = b"\x00\x00\xff\xff"


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, TIMEOUT))


def deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL)
    return out[:-4]


def inflate(data: bytes) -> bytes:
    return zlib.decompressobj(-15).decompress(data + TAIL)


def compressed_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame with RSV1 set (a compressed message)."""
    f = bytearray(wsraw.frame(opcode, payload))
    f[0] |= 0x40
    return bytes(f)


async def read_frame_rsv(reader) -> tuple[int, bool, bytes]:
    """One server frame: (opcode, rsv1, payload)."""
    b0, payload = await wsraw.read_raw_frame(reader)
    return b0 & 0x0F, bool(b0 & 0x40), payload


async def raw_upgrade(port: int, path: str, offer=OFFER):
    reader, writer = await wsraw.open_raw(port)
    writer.write(wsraw.handshake_request(port, path, extra=[offer] if offer else []))
    await writer.drain()
    resp = await wsraw.read_response(reader)
    assert resp.status == 101, resp.head
    return reader, writer, resp.headers.get("sec-websocket-extensions")


def test_on_by_default(server):
    async def go():
        reader, writer, ext = await raw_upgrade(server.port, "/echo")
        assert ext == ANSWER
        writer.close()

    run(go())


def test_off_declines_every_offer(start_server):
    s = start_server("--deflate", "off")

    async def go():
        reader, writer, ext = await raw_upgrade(s.port, "/echo")
        assert ext is None
        # RSV1 without the extension is still a protocol error.
        writer.write(compressed_frame(wsraw.OP_TEXT, deflate(b"hello")))
        await writer.drain()
        code, _ = await wsraw.read_close(reader)
        assert code == 1002
        writer.close()

    run(go())


def test_echo_compressed_both_ways(start_server):
    s = start_server("--deflate", "on")

    async def go():
        reader, writer, ext = await raw_upgrade(s.port, "/echo")
        assert ext == ANSWER
        quote = json.dumps({"bid": 189.51, "ask": 189.52, "sym": "AAPL"} | {"pad": "x" * 200})
        for payload, op in [(quote.encode(), wsraw.OP_TEXT), (os.urandom(3000), wsraw.OP_BINARY),
                            (b"", wsraw.OP_TEXT)]:
            writer.write(compressed_frame(op, deflate(payload)))
            await writer.drain()
            got_op, rsv1, body = await read_frame_rsv(reader)
            assert (got_op, rsv1) == (op, True), "echoed compressed"
            assert inflate(body) == payload
        # An uncompressed message on the same connection is still fine.
        writer.write(wsraw.frame(wsraw.OP_TEXT, b"plain"))
        await writer.drain()
        _, rsv1, body = await read_frame_rsv(reader)
        assert rsv1 and inflate(body) == b"plain"
        # RSV1 on a continuation frame is a protocol error.
        first = bytearray(wsraw.frame(wsraw.OP_TEXT, deflate(b"ab")[:1], fin=False))
        first[0] |= 0x40
        writer.write(bytes(first) + compressed_frame(0, deflate(b"ab")[1:]))
        await writer.drain()
        code, _ = await wsraw.read_close(reader)
        assert code == 1002
        writer.close()

    run(go())


def test_small_server_window_is_echoed_and_honoured(start_server):
    s = start_server("--deflate", "on")

    async def go():
        offer = ("Sec-WebSocket-Extensions", "permessage-deflate; server_max_window_bits=9")
        reader, writer, ext = await raw_upgrade(s.port, "/echo", offer)
        assert ext == ANSWER + "; server_max_window_bits=9"
        big = (b"0123456789abcdef" * 100)[:1500]
        writer.write(compressed_frame(wsraw.OP_BINARY, deflate(big)))
        await writer.drain()
        _, rsv1, body = await read_frame_rsv(reader)
        # A 512-byte window cannot have been exceeded: a decoder limited
        # to it reads the message.
        assert rsv1 and zlib.decompressobj(-9).decompress(body + TAIL) == big
        writer.close()

    run(go())


def test_a_real_client_publishes_and_subscribes_compressed(start_server):
    s = start_server("--deflate", "on")

    async def go():
        url = s.url("/ws")
        async with ws_connect(url, proxy=None) as sub, ws_connect(url, proxy=None) as pub:
            assert sub.response.headers["Sec-WebSocket-Extensions"] == ANSWER
            await sub.send(json.dumps({"op": "sub", "topic": "md.*", "id": 1}))
            assert json.loads(await sub.recv())["op"] == "ack"
            for i in range(20):
                data = {"bid": 100 + i, "ask": 101 + i, "note": "q" * 300}
                await pub.send(json.dumps({"op": "pub", "topic": "md.X", "data": data}))
                msg = json.loads(await sub.recv())
                assert (msg["op"], msg["data"]) == ("msg", data)

    run(go())


def test_a_decompression_bomb_gets_1009_and_others_are_served(start_server):
    s = start_server("--deflate", "on", "--max-message", "65536")

    async def go():
        async with ws_connect(s.url("/ws"), proxy=None, compression=None) as other:
            reader, writer, ext = await raw_upgrade(s.port, "/ws")
            assert ext == ANSWER
            # 64 MiB of zeros in ~64 KB: 1000 times the message limit.
            c = zlib.compressobj(9, zlib.DEFLATED, -15)
            bomb = c.compress(b"\0" * (64 << 20)) + c.flush(zlib.Z_SYNC_FLUSH)
            assert len(bomb) < 100_000
            writer.write(compressed_frame(wsraw.OP_TEXT, bomb[:-4]))
            await writer.drain()
            code, reason = await wsraw.read_close(reader)
            assert code == 1009, reason
            writer.close()
            await other.send(json.dumps({"op": "sub", "topic": "t", "id": 7}))
            assert json.loads(await other.recv())["id"] == 7

    before = rss_kib(s.proc.pid)
    run(go())
    # The broker never held the bomb: it stopped at the limit (64 KiB).
    grown = rss_kib(s.proc.pid) - before
    assert grown < 16 << 10, f"RSS grew by {grown} KiB"


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmRSS")).split()[1])


def test_invalid_compressed_data_is_a_protocol_error(start_server):
    s = start_server("--deflate", "on")

    async def go():
        reader, writer, _ = await raw_upgrade(s.port, "/echo")
        writer.write(compressed_frame(wsraw.OP_BINARY, b"\xff\xff\xff\xff"))
        await writer.drain()
        code, _ = await wsraw.read_close(reader)
        assert code == 1002
        writer.close()

    run(go())


def test_websockets_client_sees_no_error(start_server):
    """websockets checks every frame it receives against what it agreed."""
    s = start_server("--deflate", "on")

    async def go():
        async with ws_connect(s.url("/echo"), proxy=None, max_size=None) as ws:
            for n in [0, 10, 1000, 100_000]:
                await ws.send("é" * n)
                assert await ws.recv() == "é" * n
            await ws.send(b"\x00" * 200_000)
            assert await ws.recv() == b"\x00" * 200_000

    try:
        run(go())
    except ConnectionClosedError as e:  # pragma: no cover - the failure we test for
        raise AssertionError(f"closed: {e}") from e


def test_fan_out_compresses_once_per_publish_not_per_subscriber(start_server):
    """Five subscribers agreed to deflate, one did not: every one gets every
    message; the deflate ones as compressed frames that inflate to exactly
    what the plain one got; and the broker compressed each message at most
    once in the process (two shards), not once per shard or per subscriber."""
    s = start_server("--deflate", "on")
    publishes = 30

    async def go():
        subs = []
        for _ in range(5):
            reader, writer, ext = await raw_upgrade(s.port, "/ws")
            assert ext == ANSWER
            writer.write(wsraw.frame(wsraw.OP_TEXT, json.dumps(
                {"op": "sub", "topic": "md.*", "id": 1}).encode()))
            await writer.drain()
            _, rsv1, body = await read_frame_rsv(reader)
            assert json.loads(body)["op"] == "ack"
            subs.append((reader, writer))
        async with ws_connect(s.url("/ws"), proxy=None, compression=None) as plain, \
                ws_connect(s.url("/ws"), proxy=None, compression=None) as pub:
            await plain.send(json.dumps({"op": "sub", "topic": "md.*", "id": 1}))
            assert json.loads(await plain.recv())["op"] == "ack"
            for i in range(publishes):
                data = {"bid": 189.5 + i, "ask": 189.6 + i, "venue": "NASDAQ" * 20, "i": i}
                await pub.send(json.dumps({"op": "pub", "topic": "md.S", "data": data}))
            want = [await plain.recv() for _ in range(publishes)]
            assert [json.loads(m)["data"]["i"] for m in want] == list(range(publishes))
            for reader, writer in subs:
                for expected in want:
                    op, rsv1, body = await read_frame_rsv(reader)
                    assert op == wsraw.OP_TEXT and rsv1, "compressed"
                    assert len(body) < len(expected.encode())
                    assert inflate(body).decode() == expected
                writer.close()

    run(go())
    compressions = s.metric("ringfan_deflate_compressions_total")
    frames = s.metric("ringfan_deflate_frames_total")
    assert frames == 5 * publishes, frames
    assert compressions == publishes, compressions


def test_snapshots_go_compressed_once_per_value(start_server):
    """A snapshot frame reaches deflate subscribers compressed, made once for
    all of them (three subscribers with snapshot, two shards), and inflates
    to the same `msg` with `"snapshot":true` a plain subscriber gets."""
    s = start_server("--deflate", "on")
    data = {"bid": 189.5, "ask": 189.6, "venue": "NASDAQ" * 20}

    async def go():
        async with ws_connect(s.url("/ws"), proxy=None, compression=None) as pub:
            await pub.send(json.dumps({"op": "pub", "topic": "md.S", "data": data, "id": 1}))
            assert json.loads(await pub.recv())["op"] == "ack"
        sub = json.dumps({"op": "sub", "topic": "md.S", "id": 2, "snapshot": True})
        async with ws_connect(s.url("/ws"), proxy=None, compression=None) as plain:
            await plain.send(sub)
            got = [json.loads(await plain.recv()) for _ in range(2)]
            snap = next(m for m in got if m["op"] == "msg")
            assert snap["snapshot"] is True and snap["data"] == data
        for _ in range(3):
            reader, writer, ext = await raw_upgrade(s.port, "/ws")
            assert ext == ANSWER
            writer.write(wsraw.frame(wsraw.OP_TEXT, sub.encode()))
            await writer.drain()
            seen = []
            for _ in range(2):
                op, rsv1, body = await read_frame_rsv(reader)
                seen.append((rsv1, json.loads(inflate(body) if rsv1 else body)))
            msg = [(rsv1, m) for rsv1, m in seen if m["op"] == "msg"]
            assert len(msg) == 1 and msg[0][0], f"snapshot compressed: {seen}"
            assert msg[0][1] == snap
            writer.close()

    run(go())
    assert s.metric("ringfan_deflate_compressions_total") == 1
    assert s.metric("ringfan_deflate_frames_total") == 3


def test_load_generator_negotiates_deflate_and_loses_nothing(start_server, tmp_path):
    """`ringfan-loadgen --deflate` against `--deflate on`: every delivery
    arrives (seq checked end to end by the generator), fewer bytes cross
    the wire than without it, and the broker compressed each publish once."""
    import os
    import subprocess
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    gen = Path(os.environ.get("RINGFAN_LOADGEN", "target/release/ringfan-loadgen"))
    gen = gen if gen.is_absolute() else repo / gen
    assert gen.exists(), f"no load generator at {gen}"
    s = start_server("--deflate", "on")
    figures = {}
    for mode in ("plain", "deflate"):
        out = tmp_path / f"{mode}.json"
        cmd = [str(gen), "fanout", "--url", s.url("/ws"), "--subscribers", "50",
               "--rate", "200", "--payload", "150", "--duration", "2s", "--warmup", "0s",
               "--quiet", "--json", str(out)] + (["--deflate"] if mode == "deflate" else [])
        subprocess.run(cmd, check=True, timeout=60, capture_output=True)
        report = json.loads(out.read_text())
        assert report["counts"]["lost"] == 0 and report["counts"]["delivered"] > 0, report["problems"]
        assert report["problems"] == [], report["problems"]
        figures[mode] = report["extra"]["client_rx_bytes_per_delivery"]
    # The generator's padding compresses well: far fewer bytes with deflate.
    assert figures["deflate"] < 0.8 * figures["plain"], figures
    assert s.metric("ringfan_deflate_frames_total") > 0


def test_deflate_min_size_leaves_shorter_messages_plain(start_server):
    """`--deflate-min-size`: a message below it reaches a deflate
    subscriber uncompressed (RSV1 clear); one at or above it compressed."""
    s = start_server("--deflate", "on", "--deflate-min-size", "400")

    async def go():
        reader, writer, ext = await raw_upgrade(s.port, "/ws")
        assert ext == ANSWER
        writer.write(wsraw.frame(wsraw.OP_TEXT, json.dumps(
            {"op": "sub", "topic": "m", "id": 1}).encode()))
        await writer.drain()
        await read_frame_rsv(reader)  # ack
        async with ws_connect(s.url("/ws"), proxy=None, compression=None) as pub:
            for pad in (100, 600):  # a ~150-byte msg, then a ~650-byte one
                await pub.send(json.dumps({"op": "pub", "topic": "m", "data": "q" * pad}))
                _, rsv1, body = await read_frame_rsv(reader)
                text = inflate(body) if rsv1 else body
                assert json.loads(text)["data"] == "q" * pad
                assert rsv1 == (pad == 600), (pad, rsv1)
        writer.close()

    run(go())
    assert s.metric("ringfan_deflate_frames_total") == 1
