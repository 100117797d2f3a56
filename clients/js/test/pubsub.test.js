// Subscribe, publish, acks and errs, snapshots, unsubscribe, and requests
// issued while disconnected, against the real broker.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { Ringfan, RingfanError, matches, backoffDelay } from "../ringfan.js";
import { Broker, until, sleep, uid, deadPort } from "./broker.js";

let broker;
const clients = [];
const client = (url, opts) => {
  const rf = new Ringfan(url ?? broker.url, opts);
  clients.push(rf);
  return rf;
};
before(async () => (broker = await Broker.start()));
after(async () => {
  for (const c of clients) c.close();
  await broker.stop("SIGTERM");
});

test("pattern matching follows the protocol's wildcards", () => {
  assert.ok(matches("md.*", "md.x"));
  assert.ok(!matches("md.*", "md.x.y"));
  assert.ok(matches("md.>", "md.x.y"));
  assert.ok(!matches("md.>", "md"));
  assert.ok(matches(">", "a"));
  assert.ok(!matches("a.b", "a.c"));
  assert.ok(backoffDelay(1, { initialMs: 100 }, () => 0.999) < 100);
});

test("publish resolves on ack; the subscriber gets snapshot then live, in seq order", async () => {
  const t = uid();
  const pub = client();
  await pub.publish(`${t}.a`, { v: 0 });
  await pub.publish(`${t}.b`, "b0");
  const got = [];
  const sub = client().subscribe(`${t}.*`, (m) => got.push(m), { snapshot: true });
  await sub.ready;
  // The ack comes after every snapshot message.
  assert.deepEqual(got.map((m) => [m.topic, m.seq, m.snapshot]).sort(), [[`${t}.a`, 1, true], [`${t}.b`, 1, true]]);
  for (let i = 1; i <= 50; i++) await pub.publish(`${t}.a`, { v: i });
  await until(() => got.length === 52, 5000, "50 live messages");
  const a = got.filter((m) => m.topic === `${t}.a`);
  assert.deepEqual(a.map((m) => m.seq), Array.from({ length: 51 }, (_, i) => i + 1));
  assert.deepEqual(a.map((m) => m.data.v), Array.from({ length: 51 }, (_, i) => i));
  assert.ok(a.slice(1).every((m) => !m.snapshot));
});

test("snapshot: false skips the last value; unsubscribe stops delivery", async () => {
  const t = uid();
  const pub = client();
  await pub.publish(t, "old");
  const rf = client();
  const got = [];
  const sub = rf.subscribe(t, (m) => got.push(m.data), { snapshot: false });
  await sub.ready;
  await pub.publish(t, "new");
  await until(() => got.length === 1);
  assert.deepEqual(got, ["new"]);
  sub.unsubscribe();
  assert.equal(sub.active, false);
  await until(() => rf.stats.inFlight === 0, 2000, "the unsub's ack");
  await pub.publish(t, "after");
  // Another subscriber proves "after" was delivered somewhere by now.
  const other = [];
  await client().subscribe(t, (m) => other.push(m.data)).ready;
  assert.deepEqual(other, ["after"]);
  assert.deepEqual(got, ["new"]);
  assert.equal(rf.stats.topics, 0, "sequencing state of an unsubscribed topic is dropped");
});

test("two patterns over one topic: each handler sees it once", async () => {
  const t = uid();
  const rf = client();
  const x = [];
  const y = [];
  await rf.subscribe(`${t}.*`, (m) => x.push(m.seq)).ready;
  await rf.subscribe(`${t}.>`, (m) => y.push(m.seq)).ready;
  const pub = client();
  for (let i = 0; i < 5; i++) await pub.publish(`${t}.k`, i);
  await until(() => x.length === 5 && y.length === 5);
  assert.deepEqual(x, [1, 2, 3, 4, 5]);
  assert.deepEqual(y, [1, 2, 3, 4, 5]);
  assert.equal(rf.stats.duplicates, 0);
});

test("err replies reject with the broker's code", async () => {
  const rf = client();
  await assert.rejects(rf.publish("md.*", 1), (e) => e instanceof RingfanError && e.code === "bad_topic" && e.sent === true && /wildcard/.test(e.message));
  await assert.rejects(rf.publish("a..b", 1), { code: "bad_topic" });
  const errors = [];
  rf.on("error", (e) => errors.push(e));
  const sub = rf.subscribe("bad..pattern", () => {});
  await assert.rejects(sub.ready, { code: "bad_topic" });
  assert.equal(sub.active, false);
  assert.deepEqual(errors.map((e) => [e.code, e.pattern]), [["bad_topic", "bad..pattern"]]);
  // The connection stays usable.
  await rf.publish(`${uid()}.ok`, 1);
});

test("while disconnected: queueWhileDisconnected 0 rejects at once", async () => {
  const rf = client(`ws://127.0.0.1:${await deadPort()}/ws`, { queueWhileDisconnected: 0, reconnect: { initialMs: 50, maxMs: 100 } });
  rf.on("error", () => {});
  const t0 = Date.now();
  await assert.rejects(rf.publish("a.b", 1), (e) => e.code === "not_connected" && e.sent === false);
  assert.ok(Date.now() - t0 < 100);
  assert.notEqual(rf.state, "idle", "the publish started a connection all the same");
});

test("while disconnected: requests queue up to the bound, then go out in order on connect", async () => {
  const port = await deadPort();
  const rf = client(`ws://127.0.0.1:${port}/ws`, { queueWhileDisconnected: 3, reconnect: { initialMs: 20, maxMs: 50 } });
  const t = uid();
  const queued = [1, 2, 3].map((i) => rf.publish(t, i));
  await assert.rejects(rf.publish(t, 4), (e) => e.code === "queue_full" && e.sent === false);
  assert.equal(rf.stats.queued, 3);
  await sleep(200); // a few failed attempts: the queue survives them
  assert.equal(rf.stats.queued, 3);
  const b = new Broker();
  b.port = port;
  await b.start();
  try {
    await Promise.all(queued);
    const got = [];
    await client(b.url).subscribe(t, (m) => got.push([m.seq, m.data])).ready;
    assert.deepEqual(got, [[3, 3]], "published in order: the last value is the third");
  } finally {
    rf.close();
    await b.stop();
  }
});

test("while disconnected: a queued request past its deadline rejects, never sent", async () => {
  const rf = client(`ws://127.0.0.1:${await deadPort()}/ws`, { requestTimeoutMs: 300, reconnect: { initialMs: 20, maxMs: 50 } });
  const t0 = Date.now();
  await assert.rejects(rf.publish("a.b", 1), (e) => e.code === "not_connected" && e.sent === false);
  const took = Date.now() - t0;
  assert.ok(took >= 290 && took < 1500, `took ${took} ms`);
  assert.equal(rf.stats.queued, 0);
});

test("close() rejects what is pending and ends subscriptions", async () => {
  const rf = new Ringfan(`ws://127.0.0.1:${await deadPort()}/ws`, { reconnect: { initialMs: 1000 } });
  const p = rf.publish("a.b", 1);
  const sub = rf.subscribe("a.b", () => {});
  const states = [];
  rf.on("state", (s) => states.push(s.state));
  rf.close();
  await assert.rejects(p, { code: "closed" });
  await assert.rejects(sub.ready, { code: "closed" });
  assert.equal(sub.active, false);
  assert.deepEqual(states, ["closed"]);
  await assert.rejects(rf.publish("a.b", 1), { code: "closed" });
});
