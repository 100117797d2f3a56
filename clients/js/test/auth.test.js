// Tokens (docs/protocol.md, "Authentication"), with JWTs signed here by
// Node's crypto with the fixture secret, as tests/python/test_auth.py
// mints them with PyJWT.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Ringfan, RingfanError } from "../ringfan.js";
import { Broker, HS_SECRET_FILE, mint, until, sleep, uid } from "./broker.js";

let b;
before(async () => {
  // A 2 s lead and no leeway: a 4 s token hears "expiring" after 2 s and
  // is closed 4002 at 4 s unless refreshed.
  b = await Broker.start(["--auth", "required", "--jwt-secret-file", HS_SECRET_FILE, "--jwt-leeway", "0", "--expiring-lead", "2", "--auth-timeout", "2"]);
});
after(() => b.stop());

test("the token goes as the first message; refused requests reject with forbidden", async () => {
  const t = uid();
  const rf = new Ringfan(b.url, { token: () => mint({ sub: [`${t}.ok.>`], pub: [`${t}.ok.>`] }) });
  const errors = [];
  rf.on("error", (e) => errors.push(e));
  try {
    const got = [];
    await rf.subscribe(`${t}.ok.*`, (m) => got.push(m.data)).ready;
    await rf.publish(`${t}.ok.a`, 1);
    await until(() => got.length === 1);
    await assert.rejects(rf.publish(`${t}.no.a`, 1), (e) => e instanceof RingfanError && e.code === "forbidden" && e.sent);
    const refused = rf.subscribe(`${t}.no.*`, () => {});
    await assert.rejects(refused.ready, { code: "forbidden" });
    assert.equal(refused.active, false);
    assert.deepEqual(errors.map((e) => [e.code, e.pattern]), [["forbidden", `${t}.no.*`]]);
    assert.equal(rf.stats.reconnects, 0);
  } finally {
    rf.close();
  }
});

test("tokenIn query: the token rides on the URL instead", async () => {
  const t = uid();
  const rf = new Ringfan(b.url, { tokenIn: "query", token: async () => mint({ pub: [`${t}.>`] }) });
  try {
    await rf.publish(`${t}.x`, 1);
  } finally {
    rf.close();
  }
});

test("expiring: a fresh token is sent on the same connection; one no longer covering a pattern revokes it", async () => {
  const t = uid();
  const user = `u-${t}`;
  let calls = 0;
  // The first token lives 4 s and covers a.> and b.>; the next ones live
  // 5 minutes and cover only a.>.
  const token = () => (++calls === 1 ? mint({ user, sub: [`${t}.a.>`, `${t}.b.>`], expIn: 4 }) : mint({ user, sub: [`${t}.a.>`] }));
  const rf = new Ringfan(b.url, { token });
  const pub = new Ringfan(b.url, { token: () => mint({ pub: [`${t}.>`] }) });
  const states = [];
  rf.on("state", (s) => states.push(s.state));
  const revoked = [];
  rf.on("revoked", (r) => revoked.push(r));
  const errors = [];
  rf.on("error", (e) => errors.push(e));
  try {
    const a = [];
    const sa = rf.subscribe(`${t}.a.x`, (m) => a.push(m.data));
    const sb = rf.subscribe(`${t}.b.x`, () => {});
    await Promise.all([sa.ready, sb.ready]);
    const refreshes = await b.metric("ringfan_auth_refreshes_total");
    await until(() => revoked.length === 1, 5000, "the refresh");
    assert.equal(calls, 2, "the provider was asked again on expiring");
    assert.deepEqual(revoked[0].patterns, [`${t}.b.x`]);
    assert.deepEqual(revoked[0].subscriptions, [sb]);
    assert.equal(sb.active, false);
    assert.equal(sb.error.code, "revoked");
    assert.equal(sa.active, true);
    // Past the first token's exp (4 s): still the same connection.
    await sleep(2500);
    assert.deepEqual(states, ["connecting", "open"], "no reconnect");
    assert.equal(rf.stats.reconnects, 0);
    assert.equal((await b.metric("ringfan_auth_refreshes_total")) - refreshes, 1);
    assert.equal(await b.metric("ringfan_auth_expired_total"), 0);
    await pub.publish(`${t}.a.x`, "still here");
    await until(() => a.includes("still here"), 3000, "a message after exp");
    assert.deepEqual(errors, []);
  } finally {
    rf.close();
    pub.close();
  }
});

test("without a refresh the broker closes 4002, and the reconnect asks the provider again", async () => {
  const t = uid();
  let calls = 0;
  // The first token lives 3 s; the refresh on expiring fails; the one
  // after the reconnect is good.
  const token = () => {
    calls++;
    if (calls === 2) throw new Error("identity provider down");
    return mint({ sub: [`${t}.>`], expIn: calls === 1 ? 3 : 300 });
  };
  const rf = new Ringfan(b.url, { token, reconnect: { initialMs: 50 } });
  const errors = [];
  rf.on("error", (e) => errors.push(e));
  const drops = [];
  rf.on("state", (s) => s.state === "reconnecting" && drops.push(s));
  try {
    await rf.subscribe(`${t}.x`, () => {}).ready;
    await until(() => drops.length === 1, 6000, "the 4002 close");
    assert.equal(drops[0].code, 4002);
    assert.deepEqual(errors.map((e) => e.code), ["token"]);
    await until(() => rf.state === "open" && rf.stats.inFlight === 0, 3000, "back, with a fresh token");
    assert.equal(calls, 3);
  } finally {
    rf.close();
  }
});
