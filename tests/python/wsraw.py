"""A minimal raw WebSocket client over asyncio streams, for what a real client
library will not send: bad versions, invalid UTF-8, half frames."""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from dataclasses import dataclass

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    head: bytes


async def open_raw(port: int, host: str = "127.0.0.1", ssl=None):
    """A TCP connection, or a TLS one when `ssl` is a client SSLContext."""
    return await asyncio.open_connection(host, port, ssl=ssl)


def handshake_request(port: int, path: str = "/echo", version: str = "13",
                      extra: list[tuple[str, str]] | None = None) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        f"Sec-WebSocket-Version: {version}",
    ]
    lines += [f"{k}: {v}" for k, v in extra or []]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def read_response(reader: asyncio.StreamReader) -> Response:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return Response(status, headers, head)


async def upgrade(port: int, path: str = "/echo", ssl=None):
    """A raw socket (TLS with `ssl`) past a successful upgrade: (reader, writer)."""
    reader, writer = await open_raw(port, ssl=ssl)
    writer.write(handshake_request(port, path))
    await writer.drain()
    resp = await read_response(reader)
    assert resp.status == 101, resp.head
    return reader, writer


def frame(opcode: int, payload: bytes, fin: bool = True, length: int | None = None) -> bytes:
    """A masked client frame. `length` overrides the declared payload length
    (to announce more than is sent)."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | opcode
    if n < 126:
        head = struct.pack("!BB", b0, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", b0, 0x80 | 127, n)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def close_frame(code: int, reason: bytes = b"") -> bytes:
    return frame(OP_CLOSE, struct.pack("!H", code) + reason)


async def read_raw_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One server frame (unmasked): (its first header byte, payload)."""
    b0, b1 = await reader.readexactly(2)
    assert not b1 & 0x80, "server frames must not be masked"
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    return b0, await reader.readexactly(n)


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bool, bytes]:
    """One server frame (unmasked): (opcode, fin, payload)."""
    b0, payload = await read_raw_frame(reader)
    return b0 & 0x0F, bool(b0 & 0x80), payload


async def read_close(reader: asyncio.StreamReader) -> tuple[int | None, bytes]:
    """Skip frames up to the server's close frame: (code, reason)."""
    while True:
        op, _, payload = await read_frame(reader)
        if op == OP_CLOSE:
            if len(payload) >= 2:
                return struct.unpack("!H", payload[:2])[0], payload[2:]
            return None, payload
