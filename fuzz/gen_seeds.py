#!/usr/bin/env python3
"""Write a small seed corpus for the fuzz targets into fuzz/seeds/<target>/.

Run from anywhere: python3 fuzz/gen_seeds.py. Deterministic; the files are
small enough to keep in git. Pass the seed dir after the (ignored, growing)
corpus dir: cargo +nightly fuzz run frames fuzz/corpus/frames fuzz/seeds/frames
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "seeds", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- handshake ---------------------------------------------------------------

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's sample key


def req(path="/ws", extra="", method="GET", version="1.1", key=KEY):
    return (
        f"{method} {path} HTTP/{version}\r\nHost: localhost:8080\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


hs = {
    "upgrade": req(),
    "upgrade_then_frame": req() + b"\x81\x85abcd" + bytes(c ^ b"abcd"[i % 4] for i, c in enumerate(b"hello")),
    "subprotocol": req(extra="Sec-WebSocket-Protocol: chat, ringfan.v1\r\n"),
    "origin_ok": req(extra="Origin: https://example.com\r\n"),
    "origin_bad": req(extra="Origin: https://evil.example\r\n"),
    "echo": req(path="/echo"),
    "token_query": req(path="/ws?a=1&token=abc"),
    "bearer": req(extra="Authorization: Bearer xyz\r\n"),
    "healthz": b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    "metrics_post": b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
    "http10": req(version="1.0"),
    "bad_key": req(key="short"),
    "post_ws": req(method="POST"),
    "partial": req()[:40],
    "client_ok": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n\x81\x02hi",
    "client_ok_proto": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n"
    b"Sec-WebSocket-Protocol: ringfan.v1\r\n\r\n",
    "client_403": b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
    # Over MAX_HEAD (8 KiB): unfinished, and finished (431 either way).
    # Needs -max_len above their size (the docs use 9000).
    "huge_partial": b"GET /ws HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 8300,
    "huge_complete": req(extra="X-Pad: " + "a" * 8300 + "\r\n"),
}
for name, data in hs.items():
    write("handshake", name, data)

# --- frames ------------------------------------------------------------------

MASK = b"\x37\xfa\x21\x3d"


def frame(opcode, payload, fin=True, masked=True, rsv=0):
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    m = 0x80 if masked else 0
    n = len(payload)
    if n <= 125:
        h = bytes([b0, m | n])
    elif n <= 0xFFFF:
        h = bytes([b0, m | 126]) + struct.pack(">H", n)
    else:
        h = bytes([b0, m | 127]) + struct.pack(">Q", n)
    if masked:
        return h + MASK + bytes(c ^ MASK[i % 4] for i, c in enumerate(payload))
    return h + payload


def seed(stream, client=False, close_first=False, max_msg=1024, splits=()):
    """The frames target's input: flags, max size, split points, stream."""
    flags = (1 if client else 0) | (2 if close_first else 0)
    head = bytes([flags]) + struct.pack("<H", max_msg - 64) + bytes([len(splits)])
    return head + b"".join(struct.pack("<H", s) for s in splits) + stream


def streams(masked):
    f = lambda *a, **k: frame(*a, masked=masked, **k)  # noqa: E731
    euro = "€".encode()  # 3 bytes, split across fragments below
    return {
        "text": f(1, b"hello"),
        "binary_16bit": f(2, bytes(range(256)) * 2),
        "fragmented_text": f(1, b"a" + euro[:1], fin=False)
        + f(9, b"ping!")
        + f(0, euro[1:], fin=False)
        + f(0, b"z"),
        "ping_pong_close": f(9, b"") + f(10, b"pong") + f(8, b"\x03\xe8bye") + f(1, b"late"),
        "close_empty": f(8, b""),
        "too_big": f(2, b"x" * 100) + f(2, b"y" * 2000),
        "too_big_fragments": f(2, b"x" * 60, fin=False) + f(0, b"y" * 60),
        "bad_utf8": f(1, b"ok\xed\xa0\x80"),
        "bad_utf8_split": f(1, b"\xf0\x9f", fin=False) + f(0, b"\x28"),
        "truncated_utf8": f(1, b"ab\xe2\x82"),
        "len64": f(2, b"q" * 70000)[:14] + b"q" * 64,
        "bad_close_code": f(8, b"\x03\xed"),
        "close_bad_reason": f(8, b"\x03\xe8\xff"),
        "rsv": f(1, b"x", rsv=4),
        "continuation_first": f(0, b"x"),
        "new_inside_fragmented": f(1, b"a", fin=False) + f(2, b"b"),
        "long_ping": f(9, b"p" * 126),
    }


for name, s in streams(masked=True).items():
    write("frames", f"server_{name}", seed(s, max_msg=1024, splits=(3, 1, 7)))
    write("frames", f"server_closing_{name}", seed(s, close_first=True, max_msg=128))
for name, s in streams(masked=False).items():
    write("frames", f"client_{name}", seed(s, client=True, max_msg=64, splits=(1, 1, 1, 1, 2)))
# The wrong side's masking.
write("frames", "server_unmasked", seed(frame(1, b"hi", masked=False)))
write("frames", "client_masked", seed(frame(1, b"hi"), client=True))

# The broker's request parser: every op and field of docs/protocol.md, and
# the bad inputs its errors name.
wire = {
    "sub": b'{"op":"sub","topics":["md.NASDAQ.AAPL","md.*.MSFT"],"id":1,"snapshot":true}',
    "sub_topic": b'{"op":"sub","topic":"md.>","id":2}',
    "unsub": b'{"op":"unsub","topics":["md.NASDAQ.AAPL"],"id":3}',
    "pub": b'{"op":"pub","topic":"md.NASDAQ.AAPL","data":{"bid":189.2,"ask":189.3},"id":4}',
    "pub_null": b'{"op":"pub","topic":"a","data":null}',
    "pub_string": b'{"op":"pub","topic":"a.b","data":"x\\"y\\u00e9\\ud83d\\ude00"}',
    "pub_nested": b'{"op":"pub","topic":"a","data":' + b"[" * 40 + b"]" * 40 + b"}",
    "pub_number": b'{"data":-1.5e300,"topic":"a","op":"pub"}',
    "unknown_fields": b'{"op":"sub","topic":"a","future":[1,{"x":2}],"id":5}',
    "bad_json": b'{"op":"sub","topic":',
    "bad_op": b'{"op":"nope","id":6}',
    "no_op": b'{"topic":"a"}',
    "id_negative": b'{"op":"sub","topic":"a","id":-1}',
    "id_string": b'{"op":"sub","topic":"a","id":"7"}',
    "both_topic_and_topics": b'{"op":"sub","topic":"a","topics":["b"]}',
    "empty_topics": b'{"op":"sub","topics":[],"id":8}',
    "pub_two_topics": b'{"op":"pub","topics":["a","b"],"data":1}',
    "pub_no_data": b'{"op":"pub","topic":"a","id":9}',
    "array": b'["sub","a.b"]',
    "not_object": b"42",
    "duplicate_field": b'{"op":"sub","op":"pub","topic":"a"}',
    "escaped_topic": b'{"op":"pub","topic":"a\\u002eb","data":1}',
    # Errors quote a 64-byte prefix, cut at a character boundary (issue #12).
    "op_long": b'{"op":"' + "é".encode() * 300 + b'","id":10}',
    "snapshot_long_string": b'{"op":"sub","topic":"a","snapshot":"' + b"y" * 400 + b'"}',
    "bad_topic_of_several": b'{"op":"sub","topics":["ok.a","a..b"],"id":11}',
    "pub_too_deep": b'{"op":"pub","topic":"a","data":' + b"[" * 200 + b"]" * 200 + b"}",
}
for name, data in wire.items():
    write("wire", name, data)

# Broker request sequences (fuzz-checks/src/broker.rs): byte 0 the shard
# count, then ops (low 3 bits; bit 3 of a sub = snapshot) with arguments.
CONNECT, SUB, UNSUB, PUB, STEP, DRAIN, CLOSE, SETTLE = range(8)
SNAP = 8
def ops(*xs):
    return bytes(xs)
broker = {
    # 2 shards: a publisher and a subscriber, snapshot then live.
    "snapshot_then_live": ops(1, CONNECT, 1, CONNECT, 0, PUB, 0, 0, PUB, 0, 0, SETTLE,
                              SUB | SNAP, 1, 0, SETTLE, PUB, 0, 0, SETTLE),
    # The corner case of #10: a wildcard's snapshot pending while the
    # exact subscription it overlaps is dropped.
    # (Subscriber on shard 0, then on shard 1: one of them has a.b's
    # owner on the other shard, which is what makes the snapshot wait.)
    "unsub_overlap_pending_0": ops(1, CONNECT, 1, CONNECT, 0, SUB, 1, 0, SETTLE, PUB, 0, 0,
                                   SETTLE, SUB | SNAP, 1, 4, UNSUB, 1, 0, SETTLE, PUB, 0, 0, SETTLE),
    "unsub_overlap_pending_1": ops(1, CONNECT, 0, CONNECT, 1, SUB, 1, 0, SETTLE, PUB, 0, 0,
                                   SETTLE, SUB | SNAP, 1, 4, UNSUB, 1, 0, SETTLE, PUB, 0, 0, SETTLE),
    # Mail delivered one message at a time between chosen shards.
    "interleaved": ops(2, CONNECT, 0, CONNECT, 1, CONNECT, 2, SUB | SNAP, 0, 7, PUB, 1, 0,
                       STEP, 1, 0, SUB, 2, 5, PUB, 2, 2, STEP, 0, 1, DRAIN, 2, UNSUB, 0, 7,
                       PUB, 1, 3, CLOSE, 2, SETTLE),
}
for name, data in broker.items():
    write("broker", name, data)

# The runtime's inbound glue (fuzz-checks/src/inbound.rs): byte 0 flags
# (bits 0-1 the read backlog bound 512/2048/16384/2 MiB, bit 2 draining,
# bit 3 table full), byte 1 the max message (64 + 32 * it), byte 2 the
# split count, the chunk lengths, then what a client sends: a request head
# and frames in one stream.
def inbound_seed(stream, flags=0, max_byte=62, splits=()):
    head = bytes([flags, max_byte, len(splits)])
    return head + b"".join(struct.pack("<H", s) for s in splits) + stream


def cframe(opcode, payload, fin=True):
    return frame(opcode, payload, fin=fin, masked=True)


HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
inbound = {
    # Handshake and masked frames in one buffer, cut inside the head, at
    # its end, and inside frames.
    "echo_frames": inbound_seed(
        req(path="/echo") + cframe(1, b"hello") + cframe(2, bytes(range(40)))
        + cframe(9, b"ping") + cframe(1, b"frag", fin=False) + cframe(0, b"ment")
        + cframe(8, b"\x03\xe8bye") + cframe(1, b"after close"),
        splits=(30, len(req(path="/echo")) - 30, 3, 9)),
    "ws_sub_pub": inbound_seed(
        req(extra="Sec-WebSocket-Protocol: ringfan.v1\r\n")
        + cframe(1, b'{"op":"sub","topic":"a.b","id":1,"snapshot":true}')
        + cframe(1, b'{"op":"pub","topic":"a.b","data":{"x":1},"id":2}')
        + cframe(1, b'{"op":"nope"}') + cframe(2, b"bin"),
        splits=(1, 1, 200, 17)),
    "healthz": inbound_seed(HEALTHZ, splits=(5,)),
    "healthz_draining": inbound_seed(HEALTHZ, flags=4),
    "metrics": inbound_seed(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
    "garbage": inbound_seed(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n"),
    # A second request behind the first: answered once, then closing.
    "pipelined": inbound_seed(HEALTHZ + b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", splits=(40,)),
    "pipelined_upgrade": inbound_seed(HEALTHZ + req(path="/echo") + cframe(1, b"x")),
    "upgrade_draining": inbound_seed(req(path="/echo") + cframe(1, b"x"), flags=4),
    "upgrade_full": inbound_seed(req(), flags=8),
    "upgrade_404": inbound_seed(req(path="/nope") + cframe(1, b"x")),
    "upgrade_healthz": inbound_seed(req(path="/healthz")),
    "partial_head": inbound_seed(req()[:60], splits=(10, 10)),
    # Many pings under the smallest read bound: reading pauses, resumes.
    "ping_flood": inbound_seed(req(path="/echo") + cframe(9, b"p" * 20) * 150,
                               splits=(300, 1000, 7)),
    "echo_flood": inbound_seed(req(path="/echo") + cframe(1, b"e" * 100) * 40, flags=1,
                               splits=(250, 2)),
    # Failures: unmasked, too big (1009), bad UTF-8; then more frames.
    "unmasked": inbound_seed(req(path="/echo") + frame(1, b"hi", masked=False) + cframe(1, b"x")),
    "too_big": inbound_seed(req(path="/echo") + cframe(2, b"z" * 200) + cframe(1, b"x"),
                            max_byte=1, splits=(200, 40)),
    "bad_utf8": inbound_seed(req(path="/echo") + cframe(1, b"ok\xed\xa0\x80") + cframe(9, b"")),
    "close_empty": inbound_seed(req(path="/echo") + cframe(8, b"") + cframe(9, b"")),
    "long_frame_split": inbound_seed(req(path="/echo") + cframe(2, b"L" * 1500),
                                     max_byte=62, splits=(len(req(path="/echo")) + 3, 700)),
}
for name, data in inbound.items():
    write("inbound", name, data)
