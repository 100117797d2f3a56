"""JWT entitlements (issue #13, /work/auth-spec.md) seen by the `websockets`
client, with real tokens minted by PyJWT from tests/fixtures/jwt.

Brokers whose flags several tests share are module-scoped (`opt_server`:
`--auth optional` with every kind of key, an issuer and an audience;
`req_server`: `--auth required` with a 1 s auth timeout, no leeway and a
2 s expiring lead). Tests that read exact counters, send SIGHUP or need a
per-user cap start their own (`start_server`). Topic names and `sub`
claims carry a fresh token per test so tests on a shared broker never meet.

Plain sync tests driving a coroutine with `asyncio.run`; every await is
bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from websockets.exceptions import ConnectionClosed, InvalidStatus

import wsclient
from conftest import REPO, Ringfan
from ringfan_proc import metric_sum
from wsclient import (STEP, ack, acked, bounded, j, metric, msg, nothing_more, recv, request,
                      run, send, uid)


FIX = REPO / "tests" / "fixtures" / "jwt"
HS_SECRET = (FIX / "hs.secret").read_bytes().rstrip(b"\r\n")
ENV_VAR = "RINGFAN_TEST_HS_ENV"
ENV_SECRET = secrets.token_hex(32)  # 64 bytes, a key of its own
ISSUER = "https://issuer.test"
AUDIENCE = "ringfan-test"

# kid -> (signing key, algorithm family)
SIGNERS = {
    "hs": HS_SECRET,
    ENV_VAR: ENV_SECRET.encode(),
    "rsa": (FIX / "rsa.key.pem").read_bytes(),
    "rsa-jwks": (FIX / "rsa.key.pem").read_bytes(),
    "ec": (FIX / "ec.key.pem").read_bytes(),
    "ec-jwks": (FIX / "ec.key.pem").read_bytes(),
    "ed": (FIX / "ed.key.pem").read_bytes(),
}
DEFAULT_ALG = {"hs": "HS256", ENV_VAR: "HS256", "rsa": "RS256", "rsa-jwks": "RS256",
               "ec": "ES256", "ec-jwks": "ES256", "ed": "EdDSA"}

UNSET = object()


def mint(sub_perms=(), pub_perms=(), *, user: str | None | object = UNSET, kid: str = "hs",
         alg: str | None = None, key=None, exp: float | None | object = UNSET,
         iss: str | None = ISSUER, aud: str | None = AUDIENCE, **claims) -> str:
    """A token signed with the fixture key of `kid` (or `key`), granting
    `sub_perms`/`pub_perms`; expires in 5 minutes unless `exp` says."""
    payload: dict = {"ringfan": {"sub": list(sub_perms), "pub": list(pub_perms)}}
    payload["sub"] = "u-" + uuid.uuid4().hex[:10] if user is UNSET else user
    if payload["sub"] is None:
        del payload["sub"]
    if exp is UNSET:
        exp = int(time.time()) + 300
    if exp is not None:
        payload["exp"] = exp
    if iss is not None:
        payload["iss"] = iss
    if aud is not None:
        payload["aud"] = aud
    payload.update(claims)
    return jwt.encode(payload, SIGNERS[kid] if key is None else key,
                      algorithm=alg or DEFAULT_ALG[kid], headers={"kid": kid})


# --- helpers ----------------------------------------------------------------


def connect(url: str, token: str | None = None, bearer: str | None = None, **kw):
    """websockets' client, without proxies, compression or keepalive pings;
    `token` goes in `?token=`, `bearer` in `Authorization: Bearer`."""
    if token is not None:
        url += "?token=" + token
    if bearer is not None:
        kw["additional_headers"] = {"Authorization": f"Bearer {bearer}"}
    return wsclient.connect(url, **kw)


async def refused(ws, code: str, **req) -> dict:
    """Send `req`; the reply is err `code` carrying the request's id."""
    text = await request(ws, **req)
    err = json.loads(text)
    assert err["op"] == "err" and err["code"] == code, (req, text)
    if "id" in req:
        assert err["id"] == req["id"], (req, text)
    return err


async def forbidden_sub(ws, pattern: str, id_: int, topics=None) -> None:
    req = {"topics": topics} if topics else {"topic": pattern}
    err = await refused(ws, "forbidden", op="sub", id=id_, **req)
    assert err["message"] == f"not allowed to subscribe to '{pattern}'", err


async def forbidden_pub(ws, topic: str, id_: int) -> None:
    err = await refused(ws, "forbidden", op="pub", topic=topic, data=1, id=id_)
    assert err["message"] == f"not allowed to publish to '{topic}'", err


async def closed(ws, timeout: float = STEP) -> tuple[int, str, list[str]]:
    """Wait for the server's close: (code, reason, messages before it)."""
    got: list[str] = []

    async def drain():
        try:
            while True:
                got.append(await ws.recv())
        except ConnectionClosed as e:
            assert e.rcvd is not None, f"closed without a close frame from the server: {e!r}"
            return e.rcvd.code, e.rcvd.reason

    code, reason = await bounded(drain(), timeout)
    return code, reason, got


async def refused_handshake(url: str, **kw) -> tuple[int, dict, str]:
    """The handshake fails: (status, headers, body)."""
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, **kw):
            pass
    r = info.value.response
    return r.status_code, r.headers, r.body.decode(errors="replace")


async def invalid_token(url: str, reason: str, **kw) -> None:
    status, headers, body = await refused_handshake(url, **kw)
    assert status == 401, (status, body)
    assert headers.get("WWW-Authenticate") == 'Bearer error="invalid_token"', headers
    assert body.startswith(f"invalid token: {reason}"), body


def auth_total(result: str) -> str:
    return f'ringfan_auth_total{{result="{result}"}}'


# --- brokers ------------------------------------------------------------------


def key_flags() -> list[str]:
    return ["--jwt-secret-file", str(FIX / "hs.secret"), "--jwt-secret-env", ENV_VAR,
            "--jwt-public-key", str(FIX / "rsa.pub.pem"),
            "--jwt-public-key", str(FIX / "ec.pub.pem"),
            "--jwt-public-key", str(FIX / "ed.pub.pem"),
            "--jwks-file", str(FIX / "jwks.json")]


def started(*flags: str, log_dir) -> Ringfan:
    os.environ[ENV_VAR] = ENV_SECRET
    return Ringfan(*flags, log_dir=log_dir)


def stopped(s: Ringfan) -> None:
    crashed = s.crashed()
    status, _ = s.stop()
    assert not crashed, f"ringfan exited during the tests (status {status}); see {s.log_path}"


@pytest.fixture(scope="module")
def opt_server(tmp_path_factory):
    """--auth optional, every kind of key, an issuer and an audience, and
    anonymous connections may subscribe to public.>."""
    s = started("--auth", "optional", *key_flags(), "--jwt-issuer", ISSUER,
                "--jwt-audience", AUDIENCE, "--anonymous-sub", "public.>",
                log_dir=tmp_path_factory.mktemp("ringfan-opt"))
    yield s
    stopped(s)


@pytest.fixture(scope="module")
def req_server(tmp_path_factory):
    """--auth required, the HS key, 1 s to authenticate, no leeway, and
    `expiring` 2 s before exp. Tokens for it carry no iss/aud."""
    s = started("--auth", "required", "--jwt-secret-file", str(FIX / "hs.secret"),
                "--auth-timeout", "1", "--jwt-leeway", "0", "--expiring-lead", "2",
                log_dir=tmp_path_factory.mktemp("ringfan-req"))
    yield s
    stopped(s)


def rtok(*a, **kw) -> str:
    """A token for req_server (no iss, no aud)."""
    return mint(*a, iss=None, aud=None, **kw)


# --- every algorithm, every key source ------------------------------------------


@pytest.mark.parametrize("kid,alg", [
    ("hs", "HS256"), ("hs", "HS384"), ("hs", "HS512"),
    (ENV_VAR, "HS256"), (ENV_VAR, "HS384"), (ENV_VAR, "HS512"),
    ("rsa", "RS256"), ("rsa-jwks", "RS256"),
    ("ec", "ES256"), ("ec-jwks", "ES256"),
    ("ed", "EdDSA"),
])
def test_each_algorithm_and_key_source_is_accepted(opt_server, kid, alg):
    async def go():
        b = uid()
        tok = mint([f"{b}.>"], [f"{b}.x"], kid=kid, alg=alg)
        assert jwt.get_unverified_header(tok) == {"alg": alg, "kid": kid, "typ": "JWT"}
        async with connect(opt_server.url("/ws"), token=tok) as ws:
            # The token's permissions, not the anonymous ones, hold.
            await acked(ws, op="sub", topic=f"{b}.x", id=1)
            await acked(ws, op="pub", topic=f"{b}.x", data=7, id=2)
            assert await recv(ws) == msg(f"{b}.x", 1, "7")
            await forbidden_sub(ws, "public.x", 3)
            await forbidden_pub(ws, f"{b}.y", 4)

    run(go())


# --- invalid tokens at the handshake ----------------------------------------------


def test_invalid_tokens_get_401_with_the_reason(opt_server):
    now = int(time.time())
    other_rsa = rsa.generate_private_key(65537, 2048)
    cases = [
        ("expired", mint(["a.>"], exp=now - 60)),
        ("not_yet_valid", mint(["a.>"], nbf=now + 60)),
        # Signed with another secret / another RSA key under a known kid.
        ("bad_signature", mint(["a.>"], key=secrets.token_bytes(32))),
        ("bad_signature", mint(["a.>"], kid="rsa", key=other_rsa)),
        ("unknown_kid", jwt.encode({"sub": "x", "iss": ISSUER, "aud": AUDIENCE}, HS_SECRET,
                                   algorithm="HS256", headers={"kid": "nope"})),
        ("wrong_audience", mint(["a.>"], aud="some-other-service")),
        ("wrong_audience", mint(["a.>"], aud=None)),  # an audience is configured
        ("wrong_issuer", mint(["a.>"], iss="https://evil.test")),
        ("wrong_issuer", mint(["a.>"], iss=None)),  # an issuer is configured
        ("algorithm_not_allowed", mint(["a.>"], kid="rsa", alg="RS384")),
    ]

    async def go():
        url = opt_server.url("/ws")
        for reason, tok in cases:
            await invalid_token(url, reason, token=tok)
            await invalid_token(url, reason, bearer=tok)

    run(go())


# --- token sources -----------------------------------------------------------------


@pytest.mark.parametrize("source", ["query", "bearer"])
def test_token_at_the_handshake_under_required(req_server, source):
    async def go():
        b = uid()
        tok = rtok([f"{b}.>"], [f"{b}.>"])
        kw = {"token": tok} if source == "query" else {"bearer": tok}
        async with connect(req_server.url("/ws"), **kw) as ws:
            # No auth op needed: requests are served at once.
            await acked(ws, op="sub", topic=f"{b}.t", id=1)
            await acked(ws, op="pub", topic=f"{b}.t", data="hi", id=2)
            assert await recv(ws) == msg(f"{b}.t", 1, '"hi"')
            await forbidden_sub(ws, "other.t", 3)
            # Still open past --auth-timeout.
            await asyncio.sleep(1.3)
            await acked(ws, op="sub", topic=f"{b}.u", id=4)

    run(go())


def test_query_token_is_taken_before_the_bearer_one(req_server):
    async def go():
        good = rtok(["q.>"])
        bad = rtok(["q.>"], exp=int(time.time()) - 60)
        async with connect(req_server.url("/ws"), token=good, bearer=bad) as ws:
            await acked(ws, op="sub", topic="q.x", id=1)
        await invalid_token(req_server.url("/ws"), "expired", token=bad, bearer=good)

    run(go())


def test_first_message_auth_under_required(req_server):
    async def go():
        b = uid()
        async with connect(req_server.url("/ws")) as ws:
            await acked(ws, op="auth", token=rtok([f"{b}.>"], [f"{b}.>"]), id=5)
            await acked(ws, op="sub", topic=f"{b}.t", id=6)
            await acked(ws, op="pub", topic=f"{b}.t", data=1, id=7)
            assert await recv(ws) == msg(f"{b}.t", 1, "1")
            await forbidden_pub(ws, "elsewhere", 8)
            await asyncio.sleep(1.3)  # past --auth-timeout: authenticated, stays
            await acked(ws, op="sub", topic=f"{b}.u", id=9)

    run(go())


def test_bad_first_message_token_closes_4003(req_server):
    async def go():
        async with connect(req_server.url("/ws")) as ws:
            tok = rtok(["a.>"], exp=int(time.time()) - 60)
            err = await refused(ws, "unauthorized", op="auth", token=tok, id=3)
            assert err["message"] == "invalid token: expired", err
            code, reason, rest = await closed(ws)
            assert (code, reason, rest) == (4003, "invalid token", [])
        async with connect(req_server.url("/ws")) as ws:
            await send(ws, j(op="auth", token="not-a-jwt", id=4))
            err = json.loads(await recv(ws))
            assert err["code"] == "unauthorized" and err["id"] == 4, err
            assert err["message"].startswith("invalid token: malformed"), err
            assert (await closed(ws))[:2] == (4003, "invalid token")

    run(go())


def test_no_auth_within_the_timeout_closes_4001(req_server):
    async def go():
        async with connect(req_server.url("/ws")) as ws:
            t0 = time.monotonic()
            code, reason, rest = await closed(ws, 4)
            waited = time.monotonic() - t0
            assert (code, reason, rest) == (4001, "authentication required", [])
            assert 0.8 <= waited <= 2.0, waited

    run(go())


def test_another_op_first_closes_4001(req_server):
    async def go():
        async with connect(req_server.url("/ws")) as ws:
            err = await refused(ws, "unauthorized", op="sub", topic="a.b", id=11)
            assert err["message"] == "authenticate first", err
            assert (await closed(ws)) == (4001, "authentication required", [])

    run(go())


def test_a_binary_frame_first_closes_4001(req_server):
    # Anything but `auth` first, binary frames too (review finding).
    async def go():
        async with connect(req_server.url("/ws")) as ws:
            await ws.send(b"\x00\x01")
            err = json.loads(await recv(ws))
            assert err["op"] == "err" and err["code"] == "unauthorized", err
            assert (await closed(ws)) == (4001, "authentication required", [])

    run(go())


def test_auth_is_charged_to_the_subscribe_rate(start_server):
    # A token check costs signature checks: a client may not send them
    # at will (review finding: a CPU flood from one connection).
    s = start_server("--auth", "optional", "--jwt-secret-file", str(FIX / "hs.secret"),
                     "--max-sub-rate", "1", "--sub-burst", "2")

    async def go():
        async with connect(s.url("/ws")) as ws:
            codes = []
            for i in range(4):
                await send(ws, j(op="auth", token="x.y.z", id=i))
                codes.append(json.loads(await recv(ws))["code"])
            assert codes[:2] == ["unauthorized", "unauthorized"], codes
            assert "rate_limited" in codes[2:], codes

    run(go())


# --- forbidden -------------------------------------------------------------------


def test_forbidden_subscribe_subscribes_nothing(opt_server):
    async def go():
        b = uid()
        url = opt_server.url("/ws")
        sub_tok = mint([f"{b}.ok.>"])
        pub_tok = mint([], [f"{b}.>"])
        async with connect(url, token=sub_tok) as sub, connect(url, bearer=pub_tok) as pub:
            # One allowed and one forbidden pattern in one request.
            await forbidden_sub(sub, f"{b}.no.*", 42, topics=[f"{b}.ok.x", f"{b}.no.*"])
            await forbidden_sub(sub, f"{b}.no.x", 43)
            await acked(pub, op="pub", topic=f"{b}.no.x", data=1, id=1)
            await acked(pub, op="pub", topic=f"{b}.ok.x", data=2, id=2)
            await nothing_more(sub)  # neither was subscribed
            # The subscriber may not publish (no pub permission).
            await forbidden_pub(sub, f"{b}.ok.x", 44)
            await forbidden_sub(pub, f"{b}.ok.x", 45)
            await acked(sub, op="sub", topic=f"{b}.ok.x", id=46)
            await acked(pub, op="pub", topic=f"{b}.ok.x", data=3, id=3)
            assert await recv(sub) == msg(f"{b}.ok.x", 2, "3")
            await nothing_more(sub)

    run(go())


def test_forbidden_publish_delivers_nothing(opt_server):
    async def go():
        b = uid()
        url = opt_server.url("/ws")
        async with connect(url, token=mint([f"{b}.>"])) as sub, \
                connect(url, token=mint([], [f"{b}.chat.room1"])) as pub:
            await acked(sub, op="sub", topic=f"{b}.>", id=1)
            await forbidden_pub(pub, f"{b}.chat.room2", 7)
            await send(pub, j(op="pub", topic=f"{b}.chat.room2", data=1))  # no id
            err = json.loads(await recv(pub))
            assert err["code"] == "forbidden" and "id" not in err, err
            await acked(pub, op="pub", topic=f"{b}.chat.room1", data=2, id=8)
            assert await recv(sub) == msg(f"{b}.chat.room1", 1, "2")
            await nothing_more(sub)

    run(go())


def test_wildcard_containment(opt_server):
    async def go():
        url = opt_server.url("/ws")
        async with connect(url, token=mint(["md.>"])) as wide, \
                connect(url, token=mint(["md.*.AAPL"])) as narrow, \
                connect(url, token=mint([], ["md.>"])) as pub:
            await acked(wide, op="sub", topic="md.*.AAPL", id=1)
            await acked(narrow, op="sub", topic="md.NASDAQ.AAPL", id=2)
            await acked(narrow, op="sub", topic="md.*.AAPL", id=3)
            await forbidden_sub(narrow, "md.>", 4)
            await forbidden_sub(narrow, "md.*.*", 5)
            await forbidden_sub(narrow, "md.NASDAQ.MSFT", 6)
            await forbidden_sub(narrow, ">", 7)
            tag = uid()
            await acked(pub, op="pub", topic="md.NASDAQ.AAPL", data=tag, id=8)
            for ws in (wide, narrow):
                got = json.loads(await recv(ws))
                assert (got["topic"], got["data"]) == ("md.NASDAQ.AAPL", tag), got
                await nothing_more(ws, 0.1)

    run(go())


# --- refresh ----------------------------------------------------------------------


def test_refresh_that_narrows_revokes(opt_server):
    async def go():
        b = uid()
        url = opt_server.url("/ws")
        user = "alice-" + b
        async with connect(url, token=mint([f"{b}.a.>", f"{b}.b.>"], user=user)) as ws, \
                connect(url, token=mint([], [f"{b}.>"])) as pub:
            await acked(ws, op="sub", topics=[f"{b}.a.*", f"{b}.b.*"], id=1)
            await send(ws, j(op="auth", token=mint([f"{b}.a.>"], user=user), id=2))
            revoked = json.loads(await recv(ws))
            assert revoked == {"op": "revoked", "topics": [f"{b}.b.*"]}, revoked
            assert await recv(ws) == ack(2)
            await acked(pub, op="pub", topic=f"{b}.b.1", data=1, id=3)
            await acked(pub, op="pub", topic=f"{b}.a.1", data=2, id=4)
            assert await recv(ws) == msg(f"{b}.a.1", 1, "2")
            await nothing_more(ws)
            await forbidden_sub(ws, f"{b}.b.*", 5)

    run(go())


def test_refresh_that_widens_allows(opt_server):
    async def go():
        b = uid()
        url = opt_server.url("/ws")
        user = "bob-" + b
        async with connect(url, bearer=mint([f"{b}.a.>"], user=user)) as ws, \
                connect(url, token=mint([], [f"{b}.>"])) as pub:
            await acked(ws, op="sub", topic=f"{b}.a.1", id=1)
            await forbidden_sub(ws, f"{b}.b.1", 2)
            await acked(ws, op="auth", token=mint([f"{b}.a.>", f"{b}.b.>"], user=user), id=3)
            await acked(ws, op="sub", topic=f"{b}.b.1", id=4)
            await acked(pub, op="pub", topic=f"{b}.b.1", data=1, id=5)
            await acked(pub, op="pub", topic=f"{b}.a.1", data=2, id=6)
            assert await recv(ws) == msg(f"{b}.b.1", 1, "1")
            assert await recv(ws) == msg(f"{b}.a.1", 1, "2")  # kept across the refresh

    run(go())


def test_refresh_for_another_user_is_refused(opt_server):
    async def go():
        b = uid()
        url = opt_server.url("/ws")
        async with connect(url, token=mint([f"{b}.a.>"], user="carol-" + b)) as ws:
            await acked(ws, op="sub", topic=f"{b}.a.1", id=1)
            err = await refused(ws, "unauthorized", op="auth", id=2,
                                token=mint([">"], user="mallory-" + b))
            assert err["message"] == "token is for another user", err
            # Still open, with its old permissions.
            await forbidden_sub(ws, f"{b}.b.1", 3)
            await acked(ws, op="sub", topic=f"{b}.a.2", id=4)
            # A bad token on an authenticated connection keeps it too.
            bad = mint([">"], user="carol-" + b, exp=int(time.time()) - 60)
            err = await refused(ws, "unauthorized", op="auth", token=bad, id=5)
            assert err["message"] == "invalid token: expired", err
            await acked(ws, op="sub", topic=f"{b}.a.3", id=6)
            await forbidden_sub(ws, f"{b}.b.1", 7)

    run(go())


# --- expiry -------------------------------------------------------------------------


def test_expiring_then_close_4002(req_server):
    async def go():
        exp = int(time.time()) + 3
        async with connect(req_server.url("/ws"), token=rtok(["e.>"], exp=exp)) as ws:
            await acked(ws, op="sub", topic="e.x", id=1)
            warn = json.loads(await recv(ws, 4))
            assert warn["op"] == "expiring" and set(warn) == {"op", "in"}, warn
            assert 1 <= warn["in"] <= 2, warn
            assert time.time() >= exp - 2.2
            code, reason, rest = await closed(ws, 5)
            now = time.time()
            assert (code, reason, rest) == (4002, "token expired", [])
            assert exp - 0.05 <= now <= exp + 1.0, (now, exp)

    run(go())


def test_refresh_before_exp_keeps_the_connection(req_server):
    async def go():
        exp = int(time.time()) + 3
        user = "dave-" + uid()
        async with connect(req_server.url("/ws"), token=rtok(["e.>"], exp=exp, user=user)) as ws:
            warn = json.loads(await recv(ws, 4))
            assert warn["op"] == "expiring", warn
            await acked(ws, op="auth", token=rtok(["e.>"], user=user,
                                                  exp=int(time.time()) + 60), id=2)
            await asyncio.sleep(max(0.0, exp + 1.2 - time.time()))
            await acked(ws, op="sub", topic="e.y", id=3)
            await nothing_more(ws, 0.2)

    run(go())


# --- denylist ----------------------------------------------------------------------


def test_denylist_reload_closes_4004_and_refuses(start_server, tmp_path):
    deny = tmp_path / "denied.txt"
    deny.write_text("# nobody yet\n")
    s = start_server("--auth", "optional", "--jwt-secret-file", str(FIX / "hs.secret"),
                     "--jti-denylist", str(deny))

    async def go():
        url = s.url("/ws")
        tok = mint(["d.>"], iss=None, aud=None, jti="abc")
        other = mint(["d.>"], iss=None, aud=None, jti="xyz")
        async with connect(url, token=tok) as ws, connect(url, token=other) as kept:
            await acked(ws, op="sub", topic="d.x", id=1)
            deny.write_text("# revoked\nabc\n")
            t0 = time.monotonic()
            s.proc.send_signal(signal.SIGHUP)
            code, reason, _ = await closed(ws, 3)
            assert (code, reason) == (4004, "token revoked")
            assert time.monotonic() - t0 <= 1.5
            await acked(kept, op="sub", topic="d.y", id=2)
        await invalid_token(url, "denied_jti", token=tok)
        assert await metric(s, auth_total("denied_jti")) == 1

    run(go())


# --- anonymous ---------------------------------------------------------------------


def test_anonymous_permissions_under_optional(opt_server):
    async def go():
        url = opt_server.url("/ws")
        b = uid()
        async with connect(url) as anon, connect(url, token=mint([f"md.{b}"])) as tokened:
            await acked(anon, op="sub", topic="public.x", id=1)
            await forbidden_sub(anon, "md.x", 2)
            await forbidden_pub(anon, "public.x", 3)  # no --anonymous-pub
            await acked(tokened, op="sub", topic=f"md.{b}", id=4)
            await forbidden_sub(tokened, "public.x", 5)  # the token's, not anonymous'
            # An anonymous connection may authenticate later: the token's
            # permissions replace the anonymous ones (public.x is revoked).
            await send(anon, j(op="auth", token=mint(["md.>"]), id=6))
            assert json.loads(await recv(anon)) == {"op": "revoked", "topics": ["public.x"]}
            assert await recv(anon) == ack(6)
            await acked(anon, op="sub", topic="md.x", id=7)
            await forbidden_sub(anon, "public.y", 8)

    run(go())


# --- per-user cap --------------------------------------------------------------------


def test_max_connections_per_user(start_server):
    s = start_server("--auth", "required", "--jwt-secret-file", str(FIX / "hs.secret"),
                     "--max-connections-per-user", "1")

    async def go():
        url = s.url("/ws")
        tok = rtok(["p.>"], user="erin")
        first = await bounded(connect(url, token=tok))
        try:
            await acked(first, op="sub", topic="p.x", id=1)
            status, headers, body = await refused_handshake(url, bearer=tok)
            assert (status, body.strip()) == (429, "too many connections for this user"), body
            # Another user is not affected.
            async with connect(url, token=rtok(["p.>"], user="frank")) as other:
                await acked(other, op="sub", topic="p.y", id=2)
            # Over the cap by the first-message auth: err, then 4008.
            async with connect(url) as late:
                err = await refused(late, "unauthorized", op="auth", token=tok, id=3)
                assert err["message"] == "too many connections for this user", err
                assert (await closed(late))[:2] == (4008, "too many connections for this user")
        finally:
            await bounded(first.close())
        # Once the first has closed, erin is admitted again.
        deadline = time.monotonic() + 2
        while True:
            try:
                async with connect(url, token=tok) as again:
                    await acked(again, op="sub", topic="p.x", id=4)
                break
            except InvalidStatus as e:
                assert e.response.status_code == 429
                assert time.monotonic() < deadline, "still refused 2 s after the close"
                await asyncio.sleep(0.05)

    run(go())


# --- metrics ------------------------------------------------------------------------


def test_metrics_count_results_and_forbidden(start_server):
    s = start_server("--auth", "optional", "--jwt-secret-file", str(FIX / "hs.secret"))

    async def go():
        url = s.url("/ws")
        async with connect(url, token=mint(["m.>"], iss=None, aud=None, user="mu")) as ws:
            await forbidden_sub(ws, "x.y", 1)
            await forbidden_pub(ws, "m.x", 2)
            await acked(ws, op="auth", token=mint(["m.>"], iss=None, aud=None, user="mu"), id=3)
        await invalid_token(url, "expired", token=mint([], iss=None, aud=None,
                                                       exp=int(time.time()) - 60))
        await invalid_token(url, "wrong_audience", token=mint([], iss=None))
        assert await metric(s, auth_total("ok")) == 2
        assert await metric(s, auth_total("expired")) == 1
        assert await metric(s, auth_total("wrong_audience")) == 1
        assert await metric(s, auth_total("bad_signature")) == 0
        assert await metric(s, "ringfan_forbidden_total") == 2
        assert await metric(s, "ringfan_auth_refreshes_total") == 1

    run(go())


# --- auth off -----------------------------------------------------------------------


def test_auth_off_refuses_the_op_and_ignores_tokens(start_server):
    s = start_server()

    async def go():
        url = s.url("/ws")
        b = uid()
        expired = mint([], exp=int(time.time()) - 60)
        async with connect(url, token="garbage") as ws, connect(url, bearer=expired) as ws2:
            err = await refused(ws, "bad_op", op="auth", token=mint([">"]), id=1)
            assert err["message"] == "auth is not enabled on this server", err
            # Everything is allowed, whatever the token said.
            await acked(ws, op="sub", topic=f"{b}.>", id=2)
            await acked(ws2, op="pub", topic=f"{b}.x", data=1, id=3)
            assert await recv(ws) == msg(f"{b}.x", 1, "1")

    run(go())


def test_metric_names_follow_the_protocol(start_server):
    # The names docs/protocol.md lists under Metrics.
    s = start_server("--auth", "optional", "--jwt-secret-file", str(FIX / "hs.secret"))
    status, _, body = s.get("/metrics")
    assert status == 200
    text = body.decode()
    for name in ["ringfan_auth_refreshes_total", "ringfan_auth_revoked_total",
                 "ringfan_auth_expired_total", "ringfan_auth_denied_total",
                 "ringfan_forbidden_total", "ringfan_auth_user_limited_total"]:
        assert metric_sum(text, name) is not None, f"{name} not in /metrics"
