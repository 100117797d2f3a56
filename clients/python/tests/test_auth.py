"""The client under `--auth required`: tokens from an async provider (in
`Authorization: Bearer` at each connect), `forbidden` errors, a fresh token
on `expiring` sent as `auth` on the open connection (no reconnect), and
subscriptions a fresh token no longer covers (`revoked`). Tokens are real
JWTs signed with tests/fixtures/jwt/hs.secret, as tests/python/test_auth.py
mints them."""

from __future__ import annotations

import asyncio
import time
import uuid

import jwt
import pytest
import ringfan
from support import REPO, STEP, Events, bounded, client, run, until

SECRET_FILE = REPO / "tests" / "fixtures" / "jwt" / "hs.secret"
SECRET = SECRET_FILE.read_bytes().rstrip(b"\r\n")
# Expiring 2 s before exp, no leeway: a token living 3 s is refreshed
# within a second and the old one's expiry (which would close 4002) comes
# during the test.
AUTH_FLAGS = ("--auth", "required", "--jwt-secret-file", str(SECRET_FILE),
              "--jwt-leeway", "0", "--expiring-lead", "2")


def mint(user: str, sub: list[str], pub: list[str], ttl: int = 300) -> str:
    claims = {"sub": user, "exp": int(time.time()) + ttl, "ringfan": {"sub": sub, "pub": pub}}
    return jwt.encode(claims, SECRET, algorithm="HS256", headers={"kid": "hs"})


def user() -> str:
    return "u-" + uuid.uuid4().hex[:10]


def test_forbidden_publish_and_subscribe(broker):
    b = broker(*AUTH_FLAGS)
    u = user()

    async def token() -> str:
        return mint(u, ["ok.>"], ["ok.>"])

    async def go():
        async with client(b.url, token=token) as c:
            sub = await bounded(c.subscribe("ok.*"))
            await bounded(c.publish("ok.x", 1))
            assert (await bounded(anext(sub))).data == 1
            with pytest.raises(ringfan.RingfanError) as e:
                await bounded(c.publish("no.x", 1))
            assert (e.value.code, e.value.message) == ("forbidden",
                                                       "not allowed to publish to 'no.x'")
            bad = c.subscribe("no.*")
            with pytest.raises(ringfan.RingfanError) as e:
                await bounded(bad)
            assert (e.value.code, e.value.message) == ("forbidden",
                                                       "not allowed to subscribe to 'no.*'")
            assert not bad.active and bad.error is not None and bad.error.code == "forbidden"
            assert c.state == "open" and c.stats.reconnects == 0

    run(go())


def test_expiring_token_is_refreshed_without_reconnecting(broker):
    b = broker(*AUTH_FLAGS)
    u = user()
    calls: list[float] = []

    async def token() -> str:
        calls.append(time.monotonic())
        await asyncio.sleep(0.01)  # a real provider awaits something
        return mint(u, ["e.>"], ["e.>"], ttl=3)

    async def go():
        async with client(b.url, token=token) as c:
            ev = Events(c)
            sub = await bounded(c.subscribe("e.x"))
            first_exp = int(time.time()) + 3
            await until(lambda: c.stats.refreshes >= 1, what="a refresh")
            # Past the first token's exp: the broker would have closed 4002.
            await asyncio.sleep(max(0.0, first_exp - time.time()) + 0.5)
            await bounded(c.publish("e.x", "still here"))
            assert (await bounded(anext(sub))).data == "still here"
            assert c.stats.reconnects == 0 and "reconnecting" not in ev.states()
            assert len(calls) == 1 + c.stats.refreshes
            assert b.metric("ringfan_auth_refreshes_total") == c.stats.refreshes
            assert b.metric("ringfan_auth_expired_total") == 0
            assert ev.of("error") == []

    run(go(), timeout=20)


def test_refresh_that_narrows_the_token_revokes_subscriptions(broker):
    b = broker(*AUTH_FLAGS)
    u = user()
    tokens = [mint(u, ["a.>", "b.>"], ["a.>", "b.>"], ttl=3)]

    async def token() -> str:
        # The first token covers a.> and b.>; every later one only a.>.
        return tokens.pop(0) if tokens else mint(u, ["a.>"], ["a.>", "b.>"])

    async def go():
        async with client(b.url, token=token) as c:
            ev = Events(c)
            a = await bounded(c.subscribe("a.x"))
            bsub = await bounded(c.subscribe("b.x"))
            await until(lambda: not bsub.active, timeout=STEP, what="revocation")
            assert bsub.error is not None and bsub.error.code == "revoked"
            with pytest.raises(ringfan.RingfanError) as e:
                await bounded(anext(bsub))
            assert e.value.code == "revoked"
            assert [x.code for x in ev.of("error")] == ["revoked"]
            await bounded(c.publish("a.x", 1))
            assert (await bounded(anext(a))).data == 1
            assert c.stats.reconnects == 0 and c.stats.refreshes == 1

    run(go())


def test_invalid_token_is_retried_with_a_fresh_one(broker):
    b = broker(*AUTH_FLAGS)
    u = user()
    bad = ["not-a-jwt", mint(u, ["a.>"], [], ttl=-60)]  # malformed, then expired

    async def token() -> str:
        return bad.pop(0) if bad else mint(u, ["a.>"], ["a.>"])

    async def go():
        async with client(b.url, token=token) as c:
            ev = Events(c)
            await bounded(c.wait_open())
            errors = ev.of("error")
            assert [e.response.status_code for e in errors] == [401, 401]
            assert b"malformed" in errors[0].response.body
            assert b"expired" in errors[1].response.body
            await bounded(c.publish("a.x", 1))

    run(go())
