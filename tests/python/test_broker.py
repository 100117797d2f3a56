"""The `/ws` pub/sub broker of protocol.md, seen by the `websockets` client.

Every test runs against `--shards 2` (see conftest.py) and, where it matters,
uses enough connections (8 publishers and 8 subscribers) that both shards
hold some of each: SO_REUSEPORT spreads connections over the shards, and
topics are spread over owner shards by hash. Which shard a connection landed
on is told by the server's own `ringfan_mail_received_total` (see
`classify`), so the cross-shard paths are checked, not assumed.

Plain sync tests that drive a coroutine with `asyncio.run`; the whole test
and every single await are bounded with `asyncio.wait_for`. Tests whose
assertions read server-wide metrics start their own server (`start_server`)
so nothing else moves the counters.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket

import pytest
from websockets.exceptions import ConnectionClosed

import wsraw
from wsclient import (STEP, ack, acked, bounded, connect, j, metric, msg, nothing_more,
                      recv, run, send, uid)

MAIL = "ringfan_mail_received_total"
DELIVERIES = "ringfan_deliveries_total"
PUBLISHES = "ringfan_publishes_total"
DROPPED = "ringfan_dropped_total"

MSG = re.compile(
    r'\{"op":"msg","topic":"([^"]+)","seq":([0-9]+),("snapshot":true,)?"data":(.*)\}', re.S)


# --- helpers ----------------------------------------------------------------


async def open_many(server, n: int) -> list:
    return list(await bounded(asyncio.gather(*(connect(server.url("/ws")) for _ in range(n)))))


async def close_all(conns) -> None:
    await bounded(asyncio.gather(*(c.close() for c in conns), return_exceptions=True))


def parse_msg(text: str) -> tuple[str, int, bool, str]:
    """(topic, seq, snapshot, raw data) of a msg; fails on anything else."""
    m = MSG.fullmatch(text)
    assert m, f"not a msg: {text!r}"
    return m.group(1), int(m.group(2)), m.group(3) is not None, m.group(4)


async def settled(server, name: str, want: int) -> int:
    """Poll `name` until it equals `want`, then make sure it stays there."""
    got = await bounded(asyncio.to_thread(server.wait_metric, name, want, STEP), STEP + 1)
    if got == want:
        await asyncio.sleep(0.1)
        got = await metric(server, name)
    return got


async def classify(server, ref, conns) -> list[bool]:
    """For each of `conns`: is it on the same shard as `ref`?

    `ref` subscribes to a probe topic, then each connection publishes to it
    in turn while nothing else moves. The publish crosses shards once per
    hop between different shards (publisher → owner → subscriber), so the
    server's mail counter grows by 1 exactly when publisher and subscriber
    are on different shards (0 or 2 when on the same one, with two shards).
    Needs a server of its own (a quiet mail counter)."""
    topic = f"{uid()}.probe"
    # With snapshot the ack comes after the owner answered, so every mail
    # this subscribe causes has been counted by then.
    await acked(ref, op="sub", topic=topic, snapshot=True, id=1)
    # The first publish creates the topic, which sends one more mail (the
    # owner tells the publisher's shard, for its new-topic budget): create
    # it now. `ref` receives its own message behind that mail (FIFO).
    await acked(ref, op="pub", topic=topic, data=-1, id=4)
    assert parse_msg(await recv(ref))[3] == "-1"
    same = []
    for i, c in enumerate(conns):
        before = await metric(server, MAIL)
        await acked(c, op="pub", topic=topic, data=i, id=2)
        assert parse_msg(await recv(ref))[3] == str(i)
        delta = await metric(server, MAIL) - before
        assert delta in (0, 1, 2), delta
        same.append(delta != 1)
    await acked(ref, op="unsub", topic=topic, id=3)
    return same


async def collect(ws, n: int, timeout: float = STEP) -> list[str]:
    """The next `n` messages."""
    return [await recv(ws, timeout) for _ in range(n)]


# --- requests and replies ---------------------------------------------------


def test_sub_with_topics_and_topic_is_acked(server):
    async def go():
        base = uid()
        pub, sub = await open_many(server, 2)
        try:
            await acked(sub, op="sub", topics=[f"{base}.a", f"{base}.b"], id=1)
            await acked(sub, op="sub", topic=f"{base}.c", id=2)
            # ids are any unsigned integer, echoed as given
            await acked(sub, op="sub", topic=f"{base}.d", id=0)
            await acked(sub, op="sub", topic=f"{base}.d", id=2**64 - 1)
            for i, t in enumerate("abcd"):
                await acked(pub, op="pub", topic=f"{base}.{t}", data=i, id=10 + i)
            got = sorted(await collect(sub, 4))
            assert got == [msg(f"{base}.{t}", 1, str(i)) for i, t in enumerate("abcd")]
            await nothing_more(sub)
        finally:
            await close_all([pub, sub])

    run(go())


def test_success_without_id_is_silent(server):
    async def go():
        base = uid()
        pub, sub = await open_many(server, 2)
        try:
            await send(sub, j(op="sub", topic=f"{base}.x"))
            await send(sub, j(op="sub", topics=[f"{base}.y", f"{base}.z"]))
            await send(sub, j(op="unsub", topic=f"{base}.z"))
            await send(sub, j(op="unsub", topic=f"{base}.never-subscribed"))
            # The next request's ack is the very next message: nothing came
            # for the four requests without id.
            await acked(sub, op="sub", topic=f"{base}.w", id=7)
            await send(pub, j(op="pub", topic=f"{base}.x", data="x1"))
            await send(pub, j(op="pub", topic=f"{base}.y", data="y1"))
            await send(pub, j(op="pub", topic=f"{base}.z", data="z1"))
            await acked(pub, op="pub", topic=f"{base}.w", data="w1", id=8)
            got = sorted(await collect(sub, 3))
            assert got == sorted([msg(f"{base}.x", 1, '"x1"'), msg(f"{base}.y", 1, '"y1"'),
                                  msg(f"{base}.w", 1, '"w1"')])
            await nothing_more(sub)  # z was unsubscribed
        finally:
            await close_all([pub, sub])

    run(go())


BAD_JSON = ["{not json", '{"op":"sub","topic":"a"', "", "   ", '{"op":"sub"} trailing', "nul"]

BAD_OP = [
    j(op="jump", topic="a"),
    j(op="PUB", topic="a", data=1),
    j(topic="a"),  # no op
    j(op="pub", topic="a"),  # pub without data
    j(op="pub", topics=["a", "b"], data=1),
    j(op="sub"),  # no topic
    j(op="sub", topics=[]),
    j(op="sub", topic="a", topics=["b"]),
    j(op="unsub"),
    j(op="sub", topic=5),
    j(op=7, topic="a"),
    "[1,2]",
    '"sub"',
    "42",
]

BAD_TOPIC = [
    j(op="pub", topic="md.*.AAPL", data=1),  # publishing to a wildcard
    j(op="pub", topic="md.>", data=1),
    j(op="pub", topic="*", data=1),
    j(op="pub", topic=">", data=1),
    j(op="pub", topic="a..b", data=1),
    j(op="pub", topic=".a", data=1),
    j(op="pub", topic="a.", data=1),
    j(op="pub", topic="", data=1),
    j(op="pub", topic="a b", data=1),
    j(op="pub", topic="a/b", data=1),
    j(op="pub", topic="caf\u00e9", data=1),
    j(op="pub", topic="a*", data=1),
    j(op="pub", topic="x" * 65, data=1),  # token over 64 bytes
    j(op="pub", topic=".".join(["a"] * 17), data=1),  # 17 tokens
    j(op="pub", topic=".".join(["abcdefghijklmno"] * 16) + "x", data=1),  # 256 bytes
    j(op="sub", topic="a.>.b"),  # '>' not last
    j(op="sub", topic=">.a"),
    j(op="sub", topic="a.**"),
    j(op="sub", topics=["ok.topic", "a..b"]),
    j(op="sub", topic=""),
    j(op="unsub", topic="a.>.b"),
]


async def expect_err(ws, raw: str | bytes, code: str, id_: int | None) -> None:
    await send(ws, raw)
    text = await recv(ws)
    err = json.loads(text)
    assert err["op"] == "err" and err["code"] == code, (raw, text)
    assert isinstance(err["message"], str) and err["message"], text
    if id_ is None:
        assert "id" not in err, (raw, text)
        assert list(err) == ["op", "code", "message"], text
    else:
        assert err["id"] == id_, (raw, text)
        assert list(err) == ["op", "id", "code", "message"], text


def with_id(raw: str, id_: int) -> str:
    """`raw` with an id added (for JSON objects)."""
    obj = json.loads(raw)
    assert isinstance(obj, dict)
    obj["id"] = id_
    return json.dumps(obj, separators=(",", ":"))


def test_every_error_code_keeps_the_connection_usable(server):
    async def go():
        async with connect(server.url("/ws")) as ws:
            n = 100
            for raw in BAD_JSON:
                await expect_err(ws, raw, "bad_json", None)
            for raw in BAD_OP:
                await expect_err(ws, raw, "bad_op", None)
                if raw.startswith("{"):
                    n += 1
                    await expect_err(ws, with_id(raw, n), "bad_op", n)
            # A binary frame is not part of the protocol.
            await expect_err(ws, b'{"op":"sub","topic":"a","id":1}', "bad_op", None)
            await expect_err(ws, b"\x00\xff", "bad_op", None)
            for raw in BAD_TOPIC:
                await expect_err(ws, raw, "bad_topic", None)
                n += 1
                await expect_err(ws, with_id(raw, n), "bad_topic", n)
            # An id that is not an unsigned integer makes a bad request.
            await expect_err(ws, j(op="sub", topic="a", id=-1), "bad_op", None)
            await expect_err(ws, j(op="sub", topic="a", id="7"), "bad_op", None)
            await expect_err(ws, j(op="sub", topic="a", id=1.5), "bad_op", None)
            await expect_err(ws, j(op="sub", topic="a", id=2**64), "bad_op", None)
            # Still a working connection, and the errors subscribed nothing.
            t = uid()
            await acked(ws, op="sub", topic=f"{t}.ok", id=1)
            await acked(ws, op="pub", topic=f"{t}.ok", data={"fine": True}, id=2)
            assert await recv(ws) == msg(f"{t}.ok", 1, '{"fine":true}')
            await nothing_more(ws)

    run(go())


def test_unknown_fields_are_ignored(server):
    async def go():
        t = f"{uid()}.x"
        async with connect(server.url("/ws")) as ws:
            await acked(ws, op="sub", topic=t, id=1, future={"v": 2})
            await acked(ws, op="pub", topic=t, data=1, id=2, ttl=5, snapshot=True)
            assert await recv(ws) == msg(t, 1, "1")

    run(go())


def test_topics_at_the_limits_are_accepted(server):
    async def go():
        b = uid()  # 13 bytes
        longest = ".".join([b] + ["abcdefghijklmno"] * 14 + ["x" * 17])  # 255 bytes, 16 tokens
        assert len(longest) == 255 and longest.count(".") == 15
        topics = [longest, f"{b}.{'T' * 64}", f"{b}.a-Z_9:@.x"]
        pub, exact, wild = await open_many(server, 3)
        try:
            await acked(exact, op="sub", topics=topics, id=1)
            await acked(wild, op="sub", topics=[f"{b}.>", ".".join([b] + ["*"] * 15)], id=1)
            for n, t in enumerate(topics):
                await acked(pub, op="pub", topic=t, data=n, id=n)
            for ws in (exact, wild):
                assert sorted(await collect(ws, 3)) == sorted(
                    msg(t, 1, str(n)) for n, t in enumerate(topics))
        finally:
            await close_all([pub, exact, wild])

    run(go())


def pub_of_length(topic: str, id_: int, length: int) -> str:
    """A pub request of exactly `length` bytes (a string as data)."""
    head = f'{{"op":"pub","topic":"{topic}","data":"'
    tail = f'","id":{id_}}}'
    raw = head + "x" * (length - len(head) - len(tail)) + tail
    assert len(raw) == length
    return raw


def test_too_large_and_message_over_limit_closes_1009(start_server):
    s = start_server("--max-message", "2000")

    async def go():
        t = f"{uid()}.big"
        pub, sub = await open_many(s, 2)
        try:
            await acked(sub, op="sub", topic=t, id=1)
            # Fits on the way in and on the way out: delivered unchanged.
            fits = "y" * 1800
            await acked(pub, op="pub", topic=t, data=fits, id=2)
            assert await recv(sub) == msg(t, 1, f'"{fits}"')
            # A request of 1990 bytes (data 1949 bytes) is within the limit,
            # but the msg around its data would not fit a subscriber's.
            raw = pub_of_length(t, 3, 1990)
            data_len = len(json.dumps(json.loads(raw)["data"]))
            assert data_len + len(t) + 64 > 2000  # the broker's envelope allowance
            await expect_err(pub, raw, "too_large", 3)
            await expect_err(pub, pub_of_length(t, 4, 2000)[:-8] + "}", "too_large", None)
            await expect_err(pub, pub_of_length(t, 5, 2000), "too_large", 5)  # at the limit
            # The connection still works, and nothing was published.
            await acked(pub, op="pub", topic=t, data="small", id=6)
            assert await recv(sub) == msg(t, 2, '"small"')
            # One byte over the limit: closed with 1009.
            await send(pub, pub_of_length(t, 7, 2001))
            with pytest.raises(ConnectionClosed) as e:
                await recv(pub)
            assert e.value.rcvd is not None and e.value.rcvd.code == 1009, e.value
            await nothing_more(sub)
        finally:
            await close_all([pub, sub])

    run(go())


def test_announced_oversize_frame_closes_1009_at_once(start_server):
    """Closed on the frame header, before the broker buffers past the limit:
    the 10 MB the header announces are never sent."""
    s = start_server("--max-message", "2000")

    async def go():
        reader, writer = await bounded(wsraw.upgrade(s.port, "/ws"))
        try:
            writer.write(wsraw.frame(wsraw.OP_TEXT, b'{"op":"pub"', length=10_000_000))
            await bounded(writer.drain())
            code, _ = await bounded(wsraw.read_close(reader))
            assert code == 1009
        finally:
            writer.close()

    run(go())


# --- msg format -------------------------------------------------------------

ODD_DATA = [
    '{ "bid" :189.2 }',
    '{"bid":189.2,"ask":189.3}',
    "[1, 2 ,3]",
    '[ ]',
    "{}",
    "null",
    "true",
    "-0.0e+1",
    "1E400",  # valid JSON, no float could hold it
    "12345678901234567890123456789",
    '"caf\\u00e9 \\"q\\" \\\\ \\n"',
    '"héllo ✓ 𝄞"',
    '{"a" : {"b" : [true , false , null]} , "c":"}"}',
    '{\n\t"multi":\r\n  "line"\n}',
]


def test_msg_is_exactly_the_protocol_format_with_the_publishers_bytes(server):
    async def go():
        base = uid()
        pubs = await open_many(server, 4)
        subs = await open_many(server, 4)
        try:
            for i, s in enumerate(subs):
                await acked(s, op="sub", topic=f"{base}.>", id=i + 1)
            for k, data in enumerate(ODD_DATA):
                p = pubs[k % len(pubs)]
                topic = f"{base}.NASDAQ.t{k}"
                # Whitespace around the value is JSON syntax, not data.
                await send(p, f'{{"op":"pub", "topic" : "{topic}","data": {data} ,"id":{k}}}')
                assert await recv(p) == ack(k)
                want = msg(topic, 1, data)
                for s in subs:
                    got = await recv(s)
                    assert got.encode() == want.encode()
            # Fields in any order; an escaped topic is the same topic.
            topic = f"{base}.NASDAQ.AAPL"
            esc = topic.replace("A", "\\u0041")
            await send(pubs[0], f'{{"data":{{ "bid" :189.2 }},"id":99,"topic":"{esc}","op":"pub"}}')
            assert await recv(pubs[0]) == ack(99)
            for s in subs:
                assert await recv(s) == msg(topic, 1, '{ "bid" :189.2 }')
                await nothing_more(s, 0.05)
        finally:
            await close_all(pubs + subs)

    run(go())


# --- many publishers and subscribers, both shards ---------------------------


def test_fan_out_across_shards(start_server):
    """8 publishers, 8 subscribers with overlapping patterns: every
    subscriber gets exactly the messages its patterns match, once each, in
    each topic's order, with seq from 1 and no gap; the msg frames are the
    publishers' bytes. Both shards have publishers and subscribers, and
    subscribers on the other shard than a publisher get all of its
    messages."""
    s = start_server()
    npub, nsub, per_topic, shared_per_pub = 8, 8, 25, 10

    async def go():
        # Connections land on shards by the kernel's hash: open them, tell
        # the shards apart, and open more while one shard has fewer than two.
        pool = await open_many(s, npub + nsub)
        try:
            same = [True] + await classify(s, pool[0], pool[1:])
            while min(same.count(True), same.count(False)) < 2:
                assert len(pool) < 64, f"all connections on one shard: {same}"
                more = await open_many(s, 4)
                pool += more
                same += await classify(s, pool[0], more)
            # Both shards get publishers and subscribers.
            one = [i for i, x in enumerate(same) if x]
            other = [i for i, x in enumerate(same) if not x]
            first = [one[0], other[0], one[1], other[1]]
            rest = [i for i in range(len(pool)) if i not in first]
            pub_ix = first[:2] + rest[:npub - 2]
            sub_ix = first[2:] + rest[npub - 2:npub + nsub - 4]
            pubs, subs = [pool[i] for i in pub_ix], [pool[i] for i in sub_ix]
            pub_shard, sub_shard = [same[i] for i in pub_ix], [same[i] for i in sub_ix]
            assert len(set(pub_shard)) == 2 and len(set(sub_shard)) == 2

            base = uid()
            own = [[f"{base}.t{2 * p}", f"{base}.t{2 * p + 1}"] for p in range(npub)]
            shared = f"{base}.shared"
            all_topics = [t for ts in own for t in ts] + [shared]
            patterns = [
                {"topics": all_topics},
                {"topic": f"{base}.>"},
                {"topic": f"{base}.*"},
                {"topics": all_topics[:8] + [shared]},
                {"topic": shared},
                {"topics": ["*.t1", "*.t2", f"{base}.t3"]},  # a fresh server: only ours
                {"topic": ">"},
                {"topics": [f"{base}.>", f"{base}.*", f"{base}.t5", "*.t5", f"{base}.t5"]},
            ]

            def wanted(i: int) -> set[str]:
                pats = patterns[i].get("topics") or [patterns[i]["topic"]]
                return {t for t in all_topics if any(match(p, t) for p in pats)}

            for i, (sub, p) in enumerate(zip(subs, patterns)):
                if i % 2:
                    await acked(sub, op="sub", id=i, **p)
                else:  # silent, then a request whose ack is the next message
                    await send(sub, j(op="sub", **p))
                    await acked(sub, op="unsub", topic=f"{base}.none", id=i)

            mail_before = await metric(s, MAIL)
            deliveries_before = await metric(s, DELIVERIES)

            def data(p: int, topic: str, k: int) -> str:
                return f'{{ "p" :{p}, "k":{k},"t": "{topic}" }}'

            async def publish(p: int, ws) -> None:
                reqs = []
                for k in range(per_topic):
                    for t in own[p]:
                        reqs.append((t, data(p, t, k)))
                    if k < shared_per_pub:
                        reqs.append((shared, data(p, shared, k)))
                with_ids = p % 2 == 0
                for n, (t, d) in enumerate(reqs):
                    id_part = f',"id":{n}' if with_ids else ""
                    await send(ws, f'{{"op":"pub","topic":"{t}","data":{d}{id_part}}}')
                if with_ids:
                    assert await collect(ws, len(reqs)) == [ack(n) for n in range(len(reqs))]
                # Silent success: the next ack is the very next message.
                await acked(ws, op="sub", topic=f"{base}.none", id=10_000)

            counts = {t: per_topic for ts in own for t in ts}
            counts[shared] = shared_per_pub * npub

            async def receive(i: int, ws) -> dict[str, list[tuple[int, str]]]:
                want = wanted(i)
                got: dict[str, list[tuple[int, str]]] = {t: [] for t in want}
                for _ in range(sum(counts[t] for t in want)):
                    text = await recv(ws)
                    topic, seq, snap, d = parse_msg(text)
                    assert not snap and topic in want, text
                    assert text == msg(topic, seq, d)
                    got[topic].append((seq, d))
                return got

            done = await bounded(asyncio.gather(
                *(publish(p, ws) for p, ws in enumerate(pubs)),
                *(receive(i, ws) for i, ws in enumerate(subs)),
            ), 15)
            received = done[npub:]

            shared_order = None
            for i, got in enumerate(received):
                for topic, items in got.items():
                    # gapless seq from 1, once each
                    assert [q for q, _ in items] == list(range(1, counts[topic] + 1)), (i, topic)
                    if topic == shared:
                        # one order for everyone, each publisher's in its order
                        if shared_order is None:
                            shared_order = items
                        assert items == shared_order, i
                        for p in range(npub):
                            mine = [d for _, d in items if f'"p" :{p},' in d]
                            assert mine == [data(p, shared, k) for k in range(shared_per_pub)]
                    else:
                        p = next(p for p in range(npub) if topic in own[p])
                        assert [d for _, d in items] == [
                            data(p, topic, k) for k in range(per_topic)], (i, topic)

            # Exactly these deliveries (overlapping patterns deliver once),
            # some of them through the other shard.
            expected = sum(sum(counts[t] for t in wanted(i)) for i in range(nsub))
            got = await settled(s, DELIVERIES, deliveries_before + expected)
            assert got == deliveries_before + expected
            for ws in subs:
                await nothing_more(ws, 0.05)
            assert await metric(s, MAIL) > mail_before
            assert any(ps != ss for ps in pub_shard for ss in sub_shard)
        finally:
            await close_all(pool)

    run(go())


def match(pattern: str, topic: str) -> bool:
    """protocol.md's wildcards, for the tests' expectations."""
    p, t = pattern.split("."), topic.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return i == len(p) - 1 and len(t) > i
        if i >= len(t) or (tok != "*" and tok != t[i]):
            return False
    return len(p) == len(t)


def test_wildcards(start_server):
    s = start_server()

    async def go():
        b = uid()
        topics = [b, f"{b}.a", f"{b}.b", f"{b}.a.b", f"{b}.a.c", f"{b}.a.b.c", f"{b}.x.b",
                  f"{b}.ab", f"{b}a.b", "other.a"]
        patterns = {
            f"{b}.*": {f"{b}.a", f"{b}.b", f"{b}.ab"},
            f"{b}.>": set(topics[1:8]),
            f"{b}.*.b": {f"{b}.a.b", f"{b}.x.b"},
            f"{b}.a.*": {f"{b}.a.b", f"{b}.a.c"},
            f"{b}.a.>": {f"{b}.a.b", f"{b}.a.c", f"{b}.a.b.c"},
            f"{b}.*.*.*": {f"{b}.a.b.c"},
            f"*.a": {f"{b}.a", "other.a"},
            f"{b}": {b},
            f"{b}.a": {f"{b}.a"},
            "*": {b},
            ">": set(topics),
            "*.>": set(topics) - {b},
            f"{b}.*.>": {f"{b}.a.b", f"{b}.a.c", f"{b}.a.b.c", f"{b}.x.b"},
        }
        for p, want in patterns.items():
            assert {t for t in topics if match(p, t)} == want, p
        conns = await open_many(s, len(patterns) + 3)
        subs, pubs = conns[:len(patterns)], conns[len(patterns):]
        try:
            for n, (ws, p) in enumerate(zip(subs, patterns)):
                await acked(ws, op="sub", topic=p, id=n)
            before = await metric(s, DELIVERIES)
            for n, t in enumerate(topics):
                await acked(pubs[n % len(pubs)], op="pub", topic=t, data=f'"{t}"', id=n)
            total = 0
            for ws, (p, want) in zip(subs, patterns.items()):
                got = {parse_msg(x)[0] for x in await collect(ws, len(want))}
                assert got == want, p
                total += len(want)
            assert await settled(s, DELIVERIES, before + total) == before + total
            for ws in subs:
                await nothing_more(ws, 0.02)
        finally:
            await close_all(conns)

    run(go())


def test_overlapping_patterns_deliver_once(start_server):
    s = start_server()

    async def go():
        b = uid()
        conns = await open_many(s, 12)
        subs, pubs = conns[:8], conns[8:]
        try:
            # Some subscribe all at once, some one pattern at a time, some twice.
            pats = [f"{b}.x.y", f"{b}.*.y", f"{b}.x.*", f"{b}.>", f"{b}.x.>", "*.x.y", ">"]
            for n, ws in enumerate(subs):
                if n % 3 == 0:
                    await acked(ws, op="sub", topics=pats, id=1)
                elif n % 3 == 1:
                    for k, p in enumerate(pats):
                        await acked(ws, op="sub", topic=p, id=k)
                else:
                    await acked(ws, op="sub", topics=pats + pats[::-1], id=1)
                    await acked(ws, op="sub", topics=pats, id=2)
            before = await metric(s, DELIVERIES)
            n = 40
            for k in range(n):
                await send(pubs[k % 4], j(op="pub", topic=f"{b}.x.y", data=k))
            for p in pubs:
                await acked(p, op="pub", topic=f"{b}.done", data=0, id=1)
            # One publisher's messages keep their order; across publishers
            # the seq says the order.
            for ws in subs:
                got = [parse_msg(x) for x in await collect(ws, n + 4)]
                xy = [(q, d) for t, q, _, d in got if t == f"{b}.x.y"]
                assert [q for q, _ in xy] == list(range(1, n + 1))
                for p in range(4):
                    mine = [int(d) for _, d in xy if int(d) % 4 == p]
                    assert mine == list(range(p, n, 4))
                assert sorted(t for t, *_ in got if t != f"{b}.x.y") == [f"{b}.done"] * 4
            assert await settled(s, DELIVERIES, before + 8 * (n + 4)) == before + 8 * (n + 4)
            for ws in subs:
                await nothing_more(ws, 0.02)
        finally:
            await close_all(conns)

    run(go())


def test_unsubscribe_stops_delivery(start_server):
    s = start_server()

    async def go():
        b = uid()
        conns = await open_many(s, 10)
        subs, pubs, control = conns[:8], conns[8:9], conns[9]
        pub = pubs[0]
        try:
            await acked(control, op="sub", topic=f"{b}.>", id=1)
            for n, ws in enumerate(subs):
                await acked(ws, op="sub", topics=[f"{b}.a", f"{b}.>"], id=n)
            await acked(pub, op="pub", topic=f"{b}.a", data=1, id=1)
            for ws in subs:
                assert await recv(ws) == msg(f"{b}.a", 1, "1")  # once
            assert await recv(control) == msg(f"{b}.a", 1, "1")
            # Dropping one of two matching patterns keeps the other.
            for n, ws in enumerate(subs):
                if n % 2:
                    await acked(ws, op="unsub", topic=f"{b}.>", id=10)
                else:
                    await send(ws, j(op="unsub", topics=[f"{b}.>"]))
                    await acked(ws, op="sub", topic=f"{b}.a", id=11)  # already: still acked
            await acked(pub, op="pub", topic=f"{b}.b", data=2, id=2)
            await acked(pub, op="pub", topic=f"{b}.a", data=3, id=3)
            for ws in subs:
                assert await recv(ws) == msg(f"{b}.a", 2, "3")
            # (two topics, maybe two owners: no order between them)
            assert sorted(await collect(control, 2)) == [msg(f"{b}.a", 2, "3"), msg(f"{b}.b", 1, "2")]
            # Unsubscribing the last pattern stops everything.
            for n, ws in enumerate(subs):
                await acked(ws, op="unsub", topics=[f"{b}.a", f"{b}.not-subscribed"], id=12)
            before = await metric(s, DELIVERIES)
            for k in range(5):
                await acked(pub, op="pub", topic=f"{b}.a", data=10 + k, id=10 + k)
            assert await collect(control, 5) == [msg(f"{b}.a", 3 + k, str(10 + k)) for k in range(5)]
            assert await settled(s, DELIVERIES, before + 5) == before + 5  # control's only
            for ws in subs:
                await nothing_more(ws, 0.05)
            # Subscribing again resumes with the next seq: the gap is visible.
            await acked(subs[0], op="sub", topic=f"{b}.a", id=20)
            await acked(pub, op="pub", topic=f"{b}.a", data=99, id=20)
            assert await recv(subs[0]) == msg(f"{b}.a", 8, "99")
        finally:
            await close_all(conns)

    run(go())


def test_closing_a_subscriber_unsubscribes(start_server):
    s = start_server()

    async def go():
        b = uid()
        conns = await open_many(s, 10)
        try:
            for n, ws in enumerate(conns[:8]):
                await acked(ws, op="sub", topics=[f"{b}.>", f"{b}.x"], id=n)
            assert await metric(s, "ringfan_subscriptions") == 16
            await close_all(conns[:4])
            assert await settled(s, "ringfan_subscriptions", 8) == 8
            before = await metric(s, DELIVERIES)
            await acked(conns[8], op="pub", topic=f"{b}.x", data=1, id=1)
            for ws in conns[4:8]:
                assert await recv(ws) == msg(f"{b}.x", 1, "1")
            assert await settled(s, DELIVERIES, before + 4) == before + 4
        finally:
            await close_all(conns)

    run(go())


# --- snapshots --------------------------------------------------------------


def test_snapshot_of_each_matching_topic_then_live_without_gap(start_server):
    """Subscribers join with snapshot:true while the topics are being
    published: each gets, per topic, the last message flagged snapshot with
    its seq, then exactly the next seq live, never a gap or a duplicate; the
    ack comes after the snapshot messages."""
    s = start_server()
    rounds = 300

    async def go():
        b = uid()
        conns = await open_many(s, 12)
        pubs, subs = conns[:4], conns[4:]
        topics = [f"{b}.t{i}" for i in range(8)]
        try:
            def data(t: str, k: int) -> str:
                return f'{{ "t": "{t}" , "k" :{k} }}'

            # Before anyone subscribes: 3 messages on each topic, and some
            # that the pattern does not match.
            for k in range(3):
                for n, t in enumerate(topics):
                    await send(pubs[n % 4], f'{{"op":"pub","topic":"{t}","data":{data(t, k)}}}')
            await acked(pubs[0], op="pub", topic=f"{b}.t0.deeper", data=0, id=1)
            await acked(pubs[1], op="pub", topic=f"{b}x.t0", data=0, id=1)
            for p in pubs:
                await acked(p, op="sub", topic=f"{b}.nothing", id=2)  # a barrier
            assert await settled(s, PUBLISHES, 3 * len(topics) + 2) == 3 * len(topics) + 2

            # One publisher per topic, so a topic's seq says which message.
            async def publish(n: int, ws) -> None:
                mine = [t for i, t in enumerate(topics) if i % 4 == n]
                for k in range(3, 3 + rounds):
                    for t in mine:
                        await send(ws, f'{{"op":"pub","topic":"{t}","data":{data(t, k)}}}')
                    if k % 20 == 0:
                        await asyncio.sleep(0.002)
                await acked(ws, op="sub", topic=f"{b}.nothing", id=3)

            async def subscribe(i: int, ws) -> None:
                await asyncio.sleep(0.01 * i)
                if i % 2:
                    want = set(topics)
                    await send(ws, j(op="sub", topic=f"{b}.*", snapshot=True, id=i))
                else:
                    want = set(topics[i % 8: i % 8 + 3])
                    await send(ws, j(op="sub", topics=sorted(want), snapshot=True, id=i))
                last: dict[str, int] = {}
                acked_at = None
                n = 0
                while len(last) < len(want) or any(q < 3 + rounds for q in last.values()):
                    text = await recv(ws)
                    n += 1
                    if text == ack(i):
                        assert acked_at is None
                        acked_at = n
                        continue
                    topic, seq, snap, d = parse_msg(text)
                    assert topic in want, text
                    assert d == data(topic, seq - 1), text
                    assert text == msg(topic, seq, d, snap)
                    if topic not in last:
                        # first of a topic: its snapshot (it had messages)
                        assert snap, text
                        assert seq >= 3, text
                        assert acked_at is None, "ack before a snapshot"
                    else:
                        assert not snap, text
                        assert seq == last[topic] + 1, f"gap or duplicate: {last[topic]} {text}"
                    last[topic] = seq
                if acked_at is None:
                    assert await recv(ws) == ack(i)

            await bounded(asyncio.gather(
                *(publish(n, ws) for n, ws in enumerate(pubs)),
                *(subscribe(i, ws) for i, ws in enumerate(subs)),
            ), 20)
            for ws in subs:
                await nothing_more(ws, 0.05)
        finally:
            await close_all(conns)

    run(go())


def test_snapshot_details(server):
    async def go():
        b = uid()
        pub, s1, s2, s3, s4 = await open_many(server, 5)
        try:
            await acked(pub, op="pub", topic=f"{b}.a", data='{ "v" : 1 }', id=1)
            await acked(pub, op="pub", topic=f"{b}.a", data='{ "v" : 2 }', id=2)
            await send(pub, f'{{"op":"pub","topic":"{b}.b","data":[ 1 , 2 ],"id":3}}')
            assert await recv(pub) == ack(3)
            # exact topic: its last message, exactly in the protocol format
            await send(s1, j(op="sub", topic=f"{b}.a", snapshot=True, id=5))
            assert await recv(s1) == msg(f"{b}.a", 2, '"{ \\"v\\" : 2 }"', snapshot=True)
            assert await recv(s1) == ack(5)
            # pattern, without id: the snapshots, silently
            await send(s2, j(op="sub", topic=f"{b}.*", snapshot=True))
            got = sorted([await recv(s2), await recv(s2)])
            assert got == sorted([msg(f"{b}.a", 2, '"{ \\"v\\" : 2 }"', snapshot=True),
                                  msg(f"{b}.b", 1, "[ 1 , 2 ]", snapshot=True)])
            # nothing published yet on a matching topic: just the ack
            await acked(s3, op="sub", topic=f"{b}.none.>", snapshot=True, id=6)
            # snapshot false (the default) sends none
            await acked(s4, op="sub", topic=f"{b}.a", snapshot=False, id=7)
            # A topic an earlier subscription already streams needs no snapshot.
            await send(s1, j(op="sub", topic=f"{b}.*", snapshot=True, id=8))
            assert await recv(s1) == msg(f"{b}.b", 1, "[ 1 , 2 ]", snapshot=True)
            assert await recv(s1) == ack(8)
            # Subscribing to the same again: no second snapshot.
            await acked(s2, op="sub", topic=f"{b}.*", snapshot=True, id=9)
            # Then live, once each.
            await acked(pub, op="pub", topic=f"{b}.a", data=3, id=4)
            for ws in (s1, s2, s4):
                assert await recv(ws) == msg(f"{b}.a", 3, "3")
            for ws in (s1, s2, s3, s4):
                await nothing_more(ws, 0.05)
        finally:
            await close_all([pub, s1, s2, s3, s4])

    run(go())


# --- slow consumers ---------------------------------------------------------


async def stalled_subscriber(port: int, topic: str):
    """A raw subscriber that reads its ack and then nothing.

    A tiny receive buffer, and a small MSS announced in its SYN: on loopback
    (MSS 64 KiB) the server's kernel would otherwise grow that socket's send
    buffer to megabytes and swallow the whole flood."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1024)
    sock.setblocking(False)
    await bounded(asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port)))
    reader, writer = await bounded(asyncio.open_connection(sock=sock, limit=1 << 20))
    writer.write(wsraw.handshake_request(port, "/ws"))
    resp = await bounded(wsraw.read_response(reader))
    assert resp.status == 101, resp.head
    writer.write(wsraw.frame(wsraw.OP_TEXT, j(op="sub", topic=topic, id=1).encode()))
    await bounded(writer.drain())
    op, fin, payload = await bounded(wsraw.read_frame(reader))
    assert (op, fin, payload.decode()) == (wsraw.OP_TEXT, True, ack(1))
    # Stop reading: asyncio's transport would keep reading into its buffer.
    writer.transport.pause_reading()
    return reader, writer


def test_slow_consumer_drop_slows_nobody(start_server):
    s = start_server("--slow-consumer", "drop", "--max-queued-bytes", "65536")
    n = 3000

    async def go():
        t = f"{uid()}.flood"
        reader, writer = await stalled_subscriber(s.port, t)
        pub, fast = await open_many(s, 2)
        try:
            await acked(fast, op="sub", topic=t, id=1)
            payload = "z" * 1000
            received = 0
            # The normal subscriber is a client that keeps up: the publisher
            # runs at most `window` messages (~48 KiB) ahead of it, so its
            # queue on the server never nears the limit, however slow this
            # Python process is. Nothing waits for the stalled one.
            window = 48

            async def flood() -> None:
                for k in range(n):
                    while k - received > window:
                        await asyncio.sleep(0.001)
                    await send(pub, f'{{"op":"pub","topic":"{t}","data":"{k:04d}{payload}","id":{k}}}')

            async def acks() -> None:
                for k in range(n):
                    assert await recv(pub) == ack(k)

            async def receive() -> None:
                nonlocal received
                for k in range(n):
                    assert await recv(fast) == msg(t, k + 1, f'"{k:04d}{payload}"')
                    received += 1

            await bounded(asyncio.gather(flood(), acks(), receive()), 20)
            dropped = await metric(s, DROPPED)
            assert dropped > 0, "the stalled subscriber never filled its queue"
            assert await metric(s, "ringfan_slow_disconnects_total") == 0

            # The stalled one is still connected: reading again it gets what
            # was not dropped, with the gaps its seq shows.
            writer.transport.resume_reading()
            seqs = []
            while True:
                try:
                    op, _, body = await asyncio.wait_for(wsraw.read_frame(reader), 0.5)
                except TimeoutError:
                    break
                assert op == wsraw.OP_TEXT
                topic, seq, snap, d = parse_msg(body.decode())
                assert (topic, snap, d) == (t, False, f'"{seq - 1:04d}{payload}"')
                seqs.append(seq)
            assert seqs and seqs[0] == 1
            assert all(a < b for a, b in zip(seqs, seqs[1:])), "out of order"
            assert len(seqs) + dropped == n
            assert len(seqs) < n
            # Drained, it gets live messages again.
            await acked(pub, op="pub", topic=t, data="last", id=n)
            op, _, body = await bounded(wsraw.read_frame(reader))
            assert body.decode() == msg(t, n + 1, '"last"')
            assert await recv(fast) == msg(t, n + 1, '"last"')
        finally:
            writer.close()
            await close_all([pub, fast])

    run(go())
