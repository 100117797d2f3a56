"""`POST /publish` (docs/protocol.md, "HTTP publish API"): backends publish
over HTTP, with keep-alive, and get each message's seq back; WebSocket
subscribers on every shard receive exactly what a WebSocket `pub` would have
sent them.

Real parts only: the real binary with 2 shards, Python's `http.client` (a
keep-alive HTTP/1.1 client), raw sockets for pipelining and malformed
requests, and `websockets` subscribers.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import time

import pytest

from test_auth import ENV_SECRET, ENV_VAR, key_flags, mint
from wsclient import STEP, acked, bounded, connect, nothing_more, recv, run, uid

KEY_MD = "k-md-0123456789abcdef"
KEY_ALL = "k-all-0123456789abcdef"


def post(server, body, *, key: str | None = None, conn=None, headers=None):
    """POST /publish; returns (status, headers, parsed JSON body)."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=STEP)
    h = {"Content-Type": "application/json"}
    if key is not None:
        h["Authorization"] = f"Bearer {key}"
    h.update(headers or {})
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    try:
        conn.request("POST", "/publish", body=data, headers=h)
        resp = conn.getresponse()
        raw = resp.read()
        headers = {k.lower(): v for k, v in resp.getheaders()}
        assert headers["content-type"] == "application/json", (resp.status, raw)
        return resp.status, headers, json.loads(raw)
    finally:
        if own:
            conn.close()


async def subscribers(server, n: int, pattern: str) -> list:
    subs = list(await bounded(asyncio.gather(*(connect(server.url("/ws")) for _ in range(n)))))
    for i, ws in enumerate(subs):
        await acked(ws, op="sub", topics=[pattern], id=i + 1)
    return subs


async def messages(ws, n: int) -> list[dict]:
    return [json.loads(await recv(ws)) for _ in range(n)]


def test_single_and_batch_reach_subscribers_on_every_shard_with_their_seqs(start_server):
    """16 subscribers (both shards hold some: SO_REUSEPORT spreads them,
    all 16 on one shard has odds of 2^-15) and 12 topics (owned by both
    shards, odds of one owner 2^-11): each subscriber sees every message,
    in order per topic, with the seq the HTTP answer gave."""
    s = start_server()
    p = uid()

    async def go():
        subs = await subscribers(s, 16, f"{p}.>")
        mail0 = s.metric("ringfan_mail_received_total")
        status, _, one = post(s, {"topic": f"{p}.t0", "data": {"px": 1.5}})
        assert (status, one) == (200, {"seq": 1})
        batch = [{"topic": f"{p}.t{i % 12}", "data": {"i": i}} for i in range(36)]
        status, _, many = post(s, {"messages": batch})
        assert status == 200, many
        # Per topic: 3 messages each, seq counting on from what came before.
        want = [(i % 12 == 0) + i // 12 + 1 for i in range(36)]
        assert many == {"seqs": want}
        sent = [(f"{p}.t0", 1, {"px": 1.5})] + [
            (m["topic"], seq, m["data"]) for m, seq in zip(batch, want)]
        for ws in subs:
            got = await messages(ws, len(sent))
            by_topic: dict[str, list] = {}
            for m in got:
                assert m["op"] == "msg"
                by_topic.setdefault(m["topic"], []).append((m["topic"], m["seq"], m["data"]))
            for topic, items in by_topic.items():
                assert items == [x for x in sent if x[0] == topic]
            await nothing_more(ws)
        # The other shard's topics went through the mailboxes and back.
        assert s.metric("ringfan_mail_received_total") > mail0
        assert s.metric("ringfan_publishes_total") == 37
        assert s.metric("ringfan_frames_built_total") == 37
        for ws in subs:
            await ws.close()

    run(go())


def test_keep_alive_serves_many_requests_on_one_connection(start_server):
    s = start_server()
    accepted = s.metric("ringfan_connections_accepted_total")
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=STEP)
    topic = uid()
    try:
        conn.connect()
        sock = conn.sock
        for i in range(1, 51):
            status, headers, body = post(s, {"topic": topic, "data": i}, conn=conn)
            assert (status, body) == (200, {"seq": i})
            assert headers.get("connection") != "close"
            assert conn.sock is sock, "the client had to reconnect"
        # A bad request keeps the connection too: its framing was whole.
        status, _, body = post(s, {"topic": topic}, conn=conn)
        assert (status, body["error"]) == (400, "bad_json")
        assert post(s, {"topic": topic, "data": 51}, conn=conn)[2] == {"seq": 51}
        assert conn.sock is sock
    finally:
        conn.close()
    # This test's connection and the /metrics reads, one connection each.
    assert s.metric("ringfan_connections_accepted_total") - accepted <= 3


def test_pipelined_requests_are_answered_in_order(start_server):
    """Requests sent back to back in one write: each answer waits for the
    one before (a topic on the other shard answers later than a local one,
    yet comes first)."""
    s = start_server()
    topics = [f"{uid()}.{i}" for i in range(8)]
    reqs = b""
    for t in topics:
        body = json.dumps({"topic": t, "data": [t]}).encode()
        reqs += (b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    # Then one that closes, so the reading below ends.
    last = json.dumps({"topic": topics[0], "data": 0}).encode()
    reqs += (b"POST /publish HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
             b"Content-Length: %d\r\n\r\n%s" % (len(last), last))
    with socket.create_connection(("127.0.0.1", s.port), timeout=STEP) as c:
        c.sendall(reqs)
        raw = b""
        deadline = time.monotonic() + STEP
        while time.monotonic() < deadline:
            chunk = c.recv(65536)
            if not chunk:
                break
            raw += chunk
    bodies = [json.loads(part.split(b"\r\n\r\n", 1)[1]) for part in
              raw.split(b"HTTP/1.1 ")[1:]]
    assert bodies == [{"seq": 1}] * 8 + [{"seq": 2}], raw
    assert raw.count(b"HTTP/1.1 200 OK") == 9
    assert raw.rstrip().endswith(b'{"seq":2}')


@pytest.mark.parametrize("body,error,index", [
    (b"not json", "bad_json", None),
    ({"topic": "a.b"}, "bad_json", None),
    ({"data": 1}, "bad_json", None),
    ({"topic": "a.b", "data": 1, "extra": 2}, "bad_json", None),
    ({"messages": []}, "bad_json", None),
    ({"messages": [{"topic": "a", "data": 1}], "topic": "b", "data": 2}, "bad_json", None),
    ({"topic": "a..b", "data": 1}, "bad_topic", None),
    ({"topic": "a.*", "data": 1}, "bad_topic", None),
    ({"messages": [{"topic": "ok", "data": 1}, {"topic": "", "data": 2}]}, "bad_topic", 1),
    ({"topic": "a.b", "data": "[" * 100 + "]" * 100}, None, None),
    ({"topic": "deep", "data": json.loads("[" * 70 + "]" * 70)}, "bad_json", None),
])
def test_bad_requests_get_400_naming_what_was_wrong(server, body, error, index):
    status, headers, reply = post(server, body)
    if error is None:  # a string of brackets is just a string
        assert status == 200, reply
        return
    assert status == 400, reply
    assert headers["content-type"] == "application/json"
    assert reply["error"] == error and reply["message"]
    assert reply.get("index") == index
    # Nothing of a refused batch was published.
    if index is not None:
        assert post(server, {"topic": "ok", "data": 0})[0] == 200


def test_method_length_and_size_errors(start_server):
    s = start_server("--max-request-body", "1000", "--max-message", "300")
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=STEP)
    conn.request("GET", "/publish")
    resp = conn.getresponse()
    assert (resp.status, resp.getheader("Allow")) == (405, "POST")
    assert json.loads(resp.read())["error"] == "bad_op"
    conn.close()
    # Over --max-request-body: refused before the body is read, closed.
    status, headers, reply = post(s, {"topic": "a", "data": "x" * 2000})
    assert status == 413 and headers.get("connection") == "close"
    # One message over what a subscriber may be sent: 413 naming it.
    status, _, reply = post(s, {"messages": [{"topic": "a", "data": 1},
                                             {"topic": "a", "data": "y" * 400}]})
    assert (status, reply["error"], reply["index"]) == (413, "too_large", 1)
    # Chunked bodies are not read: 411.
    with socket.create_connection(("127.0.0.1", s.port), timeout=STEP) as c:
        c.sendall(b"POST /publish HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"5\r\nhello\r\n0\r\n\r\n")
        assert c.recv(4096).startswith(b"HTTP/1.1 411 Length Required")
    # A bad Content-Length: 400.
    with socket.create_connection(("127.0.0.1", s.port), timeout=STEP) as c:
        c.sendall(b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n")
        assert c.recv(4096).startswith(b"HTTP/1.1 400 Bad Request")


def test_api_keys_401_403_and_reload(start_server, tmp_path):
    keys = tmp_path / "publish.keys"
    keys.write_text(f"# backends\n{KEY_MD} md.>\n{KEY_ALL}\n")
    s = start_server("--publish-key-file", str(keys))
    status, headers, reply = post(s, {"topic": "md.x", "data": 1})
    assert (status, reply["error"]) == (401, "unauthorized")
    assert headers["www-authenticate"] == "Bearer" and headers.get("connection") == "close"
    assert post(s, {"topic": "md.x", "data": 1}, key="k-wrong-0123456789abcdef")[0] == 401
    assert post(s, {"topic": "md.x", "data": 1}, key=KEY_MD)[2] == {"seq": 1}
    status, _, reply = post(s, {"messages": [{"topic": "md.y", "data": 1},
                                             {"topic": "news.z", "data": 2}]}, key=KEY_MD)
    assert (status, reply["error"], reply["index"]) == (403, "forbidden", 1)
    assert "news.z" in reply["message"]
    assert post(s, {"topic": "news.z", "data": 1}, key=KEY_ALL)[2] == {"seq": 1}
    # SIGHUP: the new file's keys replace the old ones.
    keys.write_text(f"{KEY_ALL}-new\n")
    s.proc.send_signal(1)
    assert s.wait_line("reloaded 1 publish key(s)", timeout=5)
    assert post(s, {"topic": "news.z", "data": 2}, key=KEY_ALL)[0] == 401
    assert post(s, {"topic": "news.z", "data": 2}, key=f"{KEY_ALL}-new")[2] == {"seq": 2}


def test_jwt_with_pub_permissions_may_publish(start_server):
    import os
    os.environ[ENV_VAR] = ENV_SECRET
    s = start_server("--auth", "required", *key_flags())
    token = mint(pub_perms=["md.>"], iss=None, aud=None)
    assert post(s, {"topic": "md.a", "data": 1}, key=token)[2] == {"seq": 1}
    status, _, reply = post(s, {"topic": "fx.a", "data": 1}, key=token)
    assert (status, reply["error"]) == (403, "forbidden")
    status, _, reply = post(s, {"topic": "md.a", "data": 1}, key=token + "x")
    assert (status, reply["error"]) == (401, "unauthorized")
    assert "invalid token" in reply["message"]
    assert post(s, {"topic": "md.a", "data": 1})[0] == 401


def test_overload_answers_429_with_the_seqs_that_were_given(start_server):
    """A mailbox of 1 slot: most of a batch for the other shard's topics
    cannot be posted. Those get null (not numbered: no gap, retry them),
    the rest their seqs; retrying the nulls one by one fills them in."""
    s = start_server("--mailbox-capacity", "1")
    p = uid()
    batch = [{"topic": f"{p}.{i}", "data": i} for i in range(64)]
    status, headers, reply = post(s, {"messages": batch})
    assert status == 429, reply
    assert headers["retry-after"] == "1"
    assert reply["error"] == "rate_limited"
    seqs = reply["seqs"]
    assert None in seqs and any(x == 1 for x in seqs)
    for m, seq in zip(batch, seqs):
        if seq is None:
            deadline = time.monotonic() + STEP
            while True:
                status, _, again = post(s, m)
                if status == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            assert again == {"seq": 1}, again


def test_websocket_and_http_publishes_share_one_seq(server):
    topic = uid()

    async def go():
        sub = (await subscribers(server, 1, topic))[0]
        pub = await connect(server.url("/ws"))
        await acked(pub, op="pub", topic=topic, data={"via": "ws"}, id=1)
        assert post(server, {"topic": topic, "data": {"via": "http"}})[2] == {"seq": 2}
        got = await messages(sub, 2)
        assert [(m["seq"], m["data"]["via"]) for m in got] == [(1, "ws"), (2, "http")]
        await pub.close()
        await sub.close()

    run(go())


def test_idle_keep_alive_connection_is_closed_after_the_timeout(start_server):
    s = start_server("--http-keepalive-timeout", "1")
    with socket.create_connection(("127.0.0.1", s.port), timeout=STEP) as c:
        body = b'{"topic":"idle","data":1}'
        c.sendall(b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                  % (len(body), body))
        assert c.recv(4096).startswith(b"HTTP/1.1 200 OK")
        t0 = time.monotonic()
        assert c.recv(4096) == b""  # EOF, after about a second
        assert 0.5 < time.monotonic() - t0 < STEP
