#!/usr/bin/env python3
"""Bad input on /ws: what one client gets back, and what subscribers get.

Usage: bad_input.py BINARY [EXTRA FLAGS...]
Starts BINARY on 127.0.0.1 (two shards) and, on raw sockets, sends:
  op300k  {"op":"<300,000 x>","id":1}: the err's size in bytes;
  deep    a pub whose data is 200,000 arrays deep, with a subscriber to
          its topic: the publisher's answer and what the subscriber got;
  id      {"op":"sub","topic":"a","id":-1}: the err;
  topic   a sub of ["ok.a","a..b"]: the err;
  origin2 an upgrade with two Origin headers: the status line;
  echo    an upgrade on /echo with the flags given: the status line.
One line per probe. Standard library only; every wait is bounded (5 s).
"""
import json, socket, struct, sys
from attack import start

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def frame(payload: bytes, opcode=1) -> bytes:
    mask = b"\0\0\0\0"  # legal, and the payload goes as is
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + mask + payload


class Ws:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                       b"Connection: Upgrade\r\nSec-WebSocket-Key: " + KEY +
                       b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.s.recv(4096)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def send(self, text: str):
        self.s.sendall(frame(text.encode()))

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise EOFError
            self.buf += chunk

    def recv(self, timeout=5.0):
        """(opcode, payload) of the next frame, or None after `timeout`."""
        self.s.settimeout(timeout)
        try:
            self._need(2)
            op, n = self.buf[0] & 0x0F, self.buf[1] & 0x7F
            at = 2
            if n == 126:
                self._need(4)
                n, at = struct.unpack("!H", self.buf[2:4])[0], 4
            elif n == 127:
                self._need(10)
                n, at = struct.unpack("!Q", self.buf[2:10])[0], 10
            self._need(at + n)
            payload, self.buf = self.buf[at:at + n], self.buf[at + n:]
            return op, payload
        except (socket.timeout, EOFError):
            return None


def status(port, path, extra=b""):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Key: " + KEY +
              b"\r\nSec-WebSocket-Version: 13\r\n" + extra + b"\r\n")
    line = s.recv(4096).split(b"\r\n", 1)[0].decode()
    s.close()
    return line


def show(payload: bytes) -> str:
    t = payload.decode(errors="replace")
    return t if len(t) <= 160 else t[:120] + f"...({len(t)} chars)"


def main():
    binary, extra = sys.argv[1], sys.argv[2:]
    p, port = start(binary, ["--shards", "2", *extra])
    try:

        c = Ws(port)
        c.send(json.dumps({"op": "x" * 300_000, "id": 1}))
        r = c.recv()
        print(f"op300k: request 300,000-byte op -> err frame payload {len(r[1])} bytes: "
              f"{show(r[1])}")

        sub, pub = Ws(port), Ws(port)
        sub.send('{"op":"sub","topic":"deep.>","id":1}')
        assert sub.recv()[1] == b'{"op":"ack","id":1}'
        deep = "[" * 200_000 + "]" * 200_000
        pub.send('{"op":"pub","topic":"deep.a","id":2,"data":' + deep + "}")
        r = pub.recv()
        got = sub.recv(timeout=2)
        print(f"deep: publisher got {show(r[1]) if r else None}; subscriber got "
              f"{f'a {len(got[1])}-byte frame' if got else 'nothing within 2 s'}")

        c.send('{"op":"sub","topic":"a","id":-1}')
        print(f"id: {show(c.recv()[1])}")
        c.send('{"op":"sub","topics":["ok.a","a..b"],"id":3}')
        print(f"topic: {show(c.recv()[1])}")
        two = b"Origin: https://evil.example\r\nOrigin: https://good.example\r\n"
        print(f"origin2: {status(port, b'/ws', two)}")
        print(f"echo: {status(port, b'/echo')}")
    finally:
        p.kill()
        p.wait()


main()
