"""The admin API on its own listener (docs/operations.md, "Admin API"):
connections and topics gathered from both shards, sorting and limits, an
operator's disconnect, probes, and refusal without the token.

The real binary with 2 shards, `websockets` subscribers and raw sockets;
`http.client` for the admin requests.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import socket
import time

import pytest
from websockets.exceptions import ConnectionClosed

import wsraw
from test_auth import ENV_SECRET, ENV_VAR, key_flags, mint
from wsclient import STEP, acked, bounded, connect, recv, run, uid

TOKEN = "admin-token-0123456789abcdef"


def admin_port(s) -> int:
    line = s.wait_line("admin listening on", timeout=10)
    assert line, s.log_text()
    return int(re.search(r":(\d+)$", line).group(1))


def call(port: int, method: str, path: str, token: str | None = TOKEN, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=STEP)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        ctype = resp.getheader("Content-Type", "")
        data = json.loads(raw) if ctype == "application/json" and raw else raw
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


@pytest.fixture
def admin(start_server, tmp_path):
    tok = tmp_path / "admin.token"
    tok.write_text(TOKEN + "\n")

    def start(*extra: str):
        s = start_server("--admin-listen", "127.0.0.1:0", "--admin-token-file", str(tok), *extra)
        return s, admin_port(s)

    return start


def test_connections_are_listed_from_both_shards_sorted_and_limited(admin):
    s, port = admin()

    async def go():
        subs = []
        # Connection i holds i+1 subscriptions: a known order by count. At
        # least 8, and until SO_REUSEPORT's hash has put some on each shard
        # (8 all on one: odds 1/128; 40: 2^-39).
        shards: set[int] = set()
        for i in range(40):
            ws = await connect(s.url("/ws"))
            await acked(ws, op="sub", topics=[f"{uid()}.{k}" for k in range(i + 1)], id=1)
            subs.append(ws)
            if i >= 7:
                rows = call(port, "GET", "/admin/connections?limit=100")[2]["connections"]
                shards = {r["shard"] for r in rows}
                if shards == {0, 1}:
                    break
        assert shards == {0, 1}, f"every connection listed on one shard: {shards}"
        n = len(subs)
        status, _, body = call(port, "GET", "/admin/connections?sort=subscriptions&limit=3")
        assert status == 200, body
        assert body["total"] == n
        rows = body["connections"]
        assert [r["subscriptions"] for r in rows] == [n, n - 1, n - 2]
        # Each row's peer is the client's own address.
        mine = {f"127.0.0.1:{ws.transport.get_extra_info('sockname')[1]}": i
                for i, ws in enumerate(subs)}
        for r in call(port, "GET", "/admin/connections?limit=100")[2]["connections"]:
            assert r["peer"] in mine
            assert r["subscriptions"] == mine[r["peer"]] + 1
            assert r["age_ms"] >= 0 and r["queued_bytes"] >= 0 and r["tls"] is False
            assert re.fullmatch(r"\d+\.\d+\.\d+", r["id"])
        asc = call(port, "GET", "/admin/connections?sort=subscriptions&order=asc&limit=2")[2]
        assert [r["subscriptions"] for r in asc["connections"]] == [1, 2]
        for ws in subs:
            await ws.close()

    run(go())


def test_a_slow_subscriber_sorts_first_by_queued_bytes(admin):
    s, port = admin("--socket-send-buffer", "4096", "--max-queued-bytes", "16000000")
    topic = uid()

    async def go():
        reader, writer = await wsraw.upgrade(s.port, "/ws")
        sub = json.dumps({"op": "sub", "topics": [topic], "id": 1}).encode()
        writer.write(wsraw.frame(wsraw.OP_TEXT, sub))
        await writer.drain()
        await asyncio.wait_for(wsraw.read_frame(reader), STEP)  # its ack; then it stops reading
        quick = await connect(s.url("/ws"))
        await acked(quick, op="sub", topics=[uid()], id=1)
        pub = await connect(s.url("/ws"))
        big = "x" * 60_000
        # 1.8 MB: over 1 MB, under the 4 MiB that closes any connection.
        for i in range(30):
            await acked(pub, op="pub", topic=topic, data=big, id=i + 1)
        deadline = time.monotonic() + STEP
        while True:
            rows = call(port, "GET", "/admin/connections?sort=queued_bytes&limit=1")[2]
            top = rows["connections"][0]
            if top["queued_bytes"] > 1_000_000 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        local = f"127.0.0.1:{writer.get_extra_info('sockname')[1]}"
        assert top["peer"] == local and top["queued_bytes"] > 1_000_000, rows
        writer.close()
        await quick.close()
        await pub.close()

    run(go())


def test_topics_by_prefix_with_seq_and_subscribers_over_both_shards(admin):
    s, port = admin()
    p = uid()

    async def go():
        subs = [await connect(s.url("/ws")) for _ in range(6)]
        for i, ws in enumerate(subs):
            # Every connection on t0 (one through two patterns), half on t1.
            topics = [f"{p}.t0", f"{p}.>"] if i % 2 == 0 else [f"{p}.t0"]
            await acked(ws, op="sub", topics=topics, id=1)
        pub = await connect(s.url("/ws"))
        for k in range(5):
            await acked(pub, op="pub", topic=f"{p}.t{k % 3}", data=k, id=k + 1)
        await acked(pub, op="pub", topic=f"other.{p}", data=0, id=9)
        status, _, body = call(port, "GET", f"/admin/topics?prefix={p}.")
        assert status == 200, body
        rows = {t["topic"]: t for t in body["topics"]}
        assert set(rows) == {f"{p}.t0", f"{p}.t1", f"{p}.t2"} and body["truncated"] is False
        assert [rows[f"{p}.t{k}"]["seq"] for k in range(3)] == [2, 2, 1]
        assert [rows[f"{p}.t{k}"]["subscribers"] for k in range(3)] == [6, 3, 3]
        for t in rows.values():
            assert t["retained_bytes"] > 0 and t["idle_ms"] >= 0
        cut = call(port, "GET", f"/admin/topics?prefix={p}.&limit=2")[2]
        assert len(cut["topics"]) == 2 and cut["truncated"] is True
        for ws in subs + [pub]:
            await ws.close()

    run(go())


def test_an_operator_disconnects_a_connection(admin):
    s, port = admin()

    async def go():
        victim = await connect(s.url("/ws"))
        other = await connect(s.url("/ws"))
        await acked(victim, op="sub", topics=["a"], id=1)
        await acked(other, op="sub", topics=["b", "c"], id=1)
        rows = call(port, "GET", "/admin/connections?sort=subscriptions&order=asc")[2]
        vid = rows["connections"][0]["id"]
        status, _, body = call(port, "DELETE", f"/admin/connections/{vid}")
        assert (status, body) == (200, {"disconnected": True})
        with pytest.raises(ConnectionClosed) as e:
            await recv(victim)
        assert e.value.rcvd.code == 1008 and e.value.rcvd.reason == "disconnected by an operator"
        assert call(port, "DELETE", f"/admin/connections/{vid}")[0] == 404
        assert call(port, "DELETE", "/admin/connections/9.1.1")[0] == 404
        assert call(port, "DELETE", "/admin/connections/x")[0] == 400
        await acked(other, op="sub", topics=["d"], id=2)  # the other is untouched
        await other.close()

    run(go())


def test_probes_head_publish_and_refusals(admin):
    s, port = admin()
    for path, body in (("/healthz", b"ok\n"), ("/readyz", b"ready\n")):
        assert call(port, "GET", path, token=None)[0::2] == (200, body)
        status, headers, data = call(port, "HEAD", path, token=None)
        assert (status, data, headers["content-length"]) == (200, b"", str(len(body)))
    status, headers, data = call(port, "HEAD", "/metrics", token=None)
    assert status == 200 and data == b"" and int(headers["content-length"]) > 1000
    assert call(port, "GET", "/metrics", token=None)[2].startswith(b"# HELP")
    # Without the token, or with a wrong one: 401, and nothing listed.
    assert call(port, "GET", "/admin/connections", token=None)[0] == 401
    assert call(port, "GET", "/admin/connections", token="nope-0123456789abcdef")[0] == 401
    status, headers, _ = call(port, "HEAD", "/admin/connections")
    assert status == 200 and int(headers["content-length"]) > 0
    assert call(port, "POST", "/admin/connections")[0] == 405
    assert call(port, "GET", "/admin/nothing")[0] == 404
    # Publishing works there too, and not the WebSocket.
    status, _, data = call(port, "POST", "/publish", token=None,
                           body=json.dumps({"topic": "adm", "data": 1}))
    assert (status, data) == (200, {"seq": 1})
    with socket.create_connection(("127.0.0.1", port), timeout=STEP) as c:
        c.sendall(wsraw.handshake_request(port, "/ws"))
        assert c.recv(4096).startswith(b"HTTP/1.1 404")
    # The admin API is not on the public port.
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=STEP)
    conn.request("GET", "/admin/connections", headers={"Authorization": f"Bearer {TOKEN}"})
    assert conn.getresponse().status == 404
    conn.close()


def test_the_admin_listener_takes_no_proxy_header(admin):
    """Under --proxy-protocol the public port wants a PROXY header first,
    but probes and scrapers reach the admin listener directly (a
    Kubernetes httpGet probe sends none): it answers them as they are."""
    s, port = admin("--proxy-protocol")
    assert call(port, "GET", "/healthz", token=None)[0::2] == (200, b"ok\n")
    assert call(port, "GET", "/metrics", token=None)[2].startswith(b"# HELP")
    # The public port still closes a request without one, unanswered.
    with socket.create_connection(("127.0.0.1", s.port), timeout=STEP) as c:
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.recv(4096) == b""


def test_readyz_fails_while_draining(admin):
    s, port = admin("--drain-timeout", "5", "--close-timeout", "5")

    async def go():
        # A client that never answers the close keeps the drain going.
        reader, writer = await wsraw.upgrade(s.port, "/ws")
        s.terminate()
        deadline = time.monotonic() + STEP
        status = None
        while time.monotonic() < deadline:
            status = call(port, "GET", "/readyz", token=None)[0]
            if status == 503:
                break
            await asyncio.sleep(0.05)
        assert status == 503
        assert call(port, "GET", "/healthz", token=None)[0] == 200
        writer.close()

    run(go())


def test_without_a_token_file_the_admin_api_is_off(start_server):
    s = start_server("--admin-listen", "127.0.0.1:0")
    port = admin_port(s)
    assert call(port, "GET", "/readyz", token=None)[0] == 200
    status, _, body = call(port, "GET", "/admin/connections")
    assert status == 404 and "--admin-token-file" in body["message"]


def test_a_token_user_is_shown(admin):
    import os
    os.environ[ENV_VAR] = ENV_SECRET
    s, port = admin("--auth", "optional", *key_flags())

    async def go():
        token = mint(["x.>"], user="alice", iss=None, aud=None)
        ws = await connect(s.url(f"/ws?token={token}"))
        await acked(ws, op="sub", topics=["x.y"], id=1)
        rows = call(port, "GET", "/admin/connections")[2]["connections"]
        assert [r["user"] for r in rows] == ["alice"]
        await ws.close()

    run(go())
