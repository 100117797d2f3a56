// Reconnection: backoff bounds, the attempt counter's reset after a stable
// period, and a broker restart in the middle of a stream.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Ringfan } from "../ringfan.js";
import { Broker, TcpProxy, until, sleep, uid, deadPort } from "./broker.js";

test("backoff: full jitter under a capped, growing bound; reset only after a stable period", async () => {
  const port = await deadPort();
  const r = { initialMs: 20, maxMs: 160, factor: 2, stableMs: 400 };
  const rf = new Ringfan(`ws://127.0.0.1:${port}/ws`, { reconnect: r });
  const events = [];
  rf.on("state", (s) => events.push({ ...s, at: performance.now() }));
  const b = new Broker();
  b.port = port;
  try {
    rf.connect();
    await until(() => events.filter((e) => e.state === "reconnecting").length >= 8, 5000, "8 failed attempts");
    const waits = events.filter((e) => e.state === "reconnecting");
    waits.slice(0, 8).forEach((e, i) => {
      assert.equal(e.attempt, i + 1);
      const cap = Math.min(r.maxMs, r.initialMs * 2 ** i);
      assert.ok(e.delayMs >= 0 && e.delayMs < cap, `attempt ${e.attempt}: ${e.delayMs} ms not under ${cap}`);
    });
    // Each retry waited the delay it announced. (Node's timers count from
    // the event loop's cached clock, which may lag a loaded turn by some
    // milliseconds: a margin for that.)
    let waited = 0;
    let announced = 0;
    for (const e of waits.slice(0, 7)) {
      const next = events.find((x) => x.state === "connecting" && x.at > e.at);
      assert.ok(next.at - e.at >= e.delayMs - 20, `waited ${next.at - e.at} ms, announced ${e.delayMs}`);
      waited += next.at - e.at;
      announced += e.delayMs;
    }
    assert.ok(waited >= announced - 20, `waited ${waited} ms in all, announced ${announced}`);
    // Jitter: the delays at the cap are not all the same.
    assert.ok(new Set(waits.slice(3, 8).map((e) => e.delayMs)).size > 1);

    // A connection that drops before stableMs keeps the count going...
    await b.start();
    await until(() => rf.state === "open", 3000, "open");
    const before = rf.stats;
    const n = events.filter((e) => e.state === "reconnecting").at(-1).attempt;
    // The first "reconnecting" after event index i.
    const dropAfter = (i) => events.slice(i).find((e) => e.state === "reconnecting");
    let i = events.length;
    await b.stop();
    await until(() => dropAfter(i), 3000, "the drop");
    assert.equal(dropAfter(i).attempt, n + 1, "not reset: the connection was not stable");
    assert.equal(dropAfter(i).code, 1006);
    // ...one that stays up for stableMs resets it.
    await b.start();
    await until(() => rf.state === "open", 3000, "open again");
    await sleep(r.stableMs + 100);
    i = events.length;
    await b.stop("SIGTERM"); // drain: 1001 going away
    await until(() => dropAfter(i), 3000, "the drop");
    assert.equal(dropAfter(i).attempt, 1, "reset after a stable connection");
    assert.equal(dropAfter(i).code, 1001);
    assert.equal(rf.stats.reconnects, before.reconnects + 1);
  } finally {
    rf.close();
    await b.stop();
  }
});

test("a broker restart mid-stream: reconnect, resubscribe with snapshot, no duplicate, every discontinuity announced", async () => {
  const b = await Broker.start();
  const opts = { reconnect: { initialMs: 50, maxMs: 400, stableMs: 1000 } };
  const sub = new Ringfan(b.url, opts);
  const pub = new Ringfan(b.url, opts);
  const t = uid();
  // One log of what the handler saw and the events, in order.
  const log = [];
  const seen = [];
  for (const ev of ["gap", "reset", "rebase"]) sub.on(ev, (e) => e.topic === t && log.push({ ev, ...e }));
  const s = sub.subscribe(t, (m) => {
    log.push({ ev: "msg", seq: m.seq, k: m.data.k, snapshot: m.snapshot });
    seen.push(m.data.k);
  });
  let stop = false;
  let k = 0;
  const refused = new Map();
  const acked = [];
  const publisher = (async () => {
    // A steady stream, a few publishes in flight at a time; refusals
    // (the broker is down) are counted, never retried.
    while (!stop) {
      const batch = [];
      for (let i = 0; i < 5; i++) {
        const mine = k++;
        batch.push(pub.publish(t, { k: mine }).then(() => acked.push(mine), (e) => refused.set(e.code, (refused.get(e.code) ?? 0) + 1)));
      }
      await Promise.all(batch);
      await sleep(2);
    }
  })();
  try {
    await s.ready;
    await until(() => seen.length >= 300, 10000, "300 messages before the restart");
    await b.stop("SIGKILL");
    const killedAt = seen.length;
    await sleep(300);
    await b.start(); // same port
    const kAfter = k;
    await until(() => seen.length >= killedAt + 300 && seen.at(-1) > kAfter, 15000, "300 messages after the restart");
    stop = true;
    await publisher;

    assert.ok(sub.stats.reconnects >= 1 && pub.stats.reconnects >= 1, JSON.stringify(sub.stats));
    assert.ok(seen.length > killedAt, "messages flow after the restart");
    // No duplicate and in order: one publisher, so k only grows.
    for (let i = 1; i < seen.length; i++) assert.ok(seen[i] > seen[i - 1], `k ${seen[i]} after ${seen[i - 1]} at ${i}`);
    // Every place where the handler's seq does not follow by one is
    // announced before the message: a gap, a reset or a rebase.
    let last = null;
    let announced = false;
    let discontinuities = 0;
    for (const e of log) {
      if (e.ev !== "msg") {
        announced = true;
        continue;
      }
      if (last !== null && e.seq !== last + 1) {
        discontinuities++;
        assert.ok(announced, `seq ${e.seq} after ${last} without an event`);
      }
      announced = false;
      last = e.seq;
    }
    assert.ok(discontinuities >= 1, "the restart restarted the numbering");
    if (process.env.RINGFAN_JS_VERBOSE) console.log({ stats: sub.stats, refused, events: log.filter((e) => e.ev !== "msg"), n: seen.length });
    assert.ok(log.some((e) => e.ev === "reset" && e.reason === "reconnect") || log.some((e) => e.ev === "rebase"));
    // The publishes that failed were the ones in flight or issued while
    // the broker was down, each with a code that says whether it was sent.
    for (const code of refused.keys()) assert.ok(["disconnected", "not_connected", "queue_full"].includes(code), code);
    // Every message acked by the new broker after the subscriber was back
    // reached it: the last one acked is the last one seen.
    await until(() => seen.at(-1) === Math.max(...acked), 3000, "the last acked message");
  } finally {
    stop = true;
    sub.close();
    pub.close();
    await b.stop();
  }
});

test("a blip with the broker up: the restored snapshot is not delivered twice, and a jump is a rebase", async () => {
  const b = await Broker.start();
  const proxy = await new TcpProxy(b.port).listen();
  const rf = new Ringfan(proxy.url, { reconnect: { initialMs: 20, maxMs: 50 } });
  const pub = new Ringfan(b.url);
  const t = uid();
  const log = [];
  for (const ev of ["gap", "reset", "rebase"]) rf.on(ev, (e) => log.push({ ev, ...e }));
  try {
    for (let i = 1; i <= 5; i++) await pub.publish(t, i);
    await rf.subscribe(t, (m) => log.push({ ev: "msg", seq: m.seq, data: m.data, snapshot: m.snapshot })).ready;
    assert.deepEqual(log, [{ ev: "msg", seq: 5, data: 5, snapshot: true }]);
    // Cut: the restore's snapshot is seq 5 again, the same data.
    proxy.cut();
    await until(() => rf.stats.reconnects === 1 && rf.state === "open" && rf.stats.inFlight === 0, 3000, "restored");
    assert.equal(rf.stats.duplicates, 1);
    assert.equal(log.length, 1, "the snapshot already seen was dropped");
    // Cut, and publish while it is down: the snapshot (seq 7) jumps over
    // seq 6: announced as a rebase, then delivered.
    proxy.refusing = true;
    proxy.cut();
    await until(() => rf.state === "reconnecting");
    await pub.publish(t, 6);
    await pub.publish(t, 7);
    proxy.refusing = false;
    await until(() => log.length === 3, 3000, "the rebase and the snapshot");
    assert.deepEqual(log.slice(1), [
      { ev: "rebase", topic: t, from: 6, to: 6, reason: "reconnect" },
      { ev: "msg", seq: 7, data: 7, snapshot: true },
    ]);
    await pub.publish(t, 8);
    await until(() => log.length === 4);
    assert.deepEqual(log[3], { ev: "msg", seq: 8, data: 8, snapshot: false });
  } finally {
    rf.close();
    pub.close();
    await proxy.close();
    await b.stop();
  }
});

test("seq 1 after a higher one (the broker restarted before anything new) is a reset, not a gap", async () => {
  const b = await Broker.start();
  const rf = new Ringfan(b.url, { reconnect: { initialMs: 20, maxMs: 50 } });
  const t = uid();
  const log = [];
  for (const ev of ["gap", "reset", "rebase"]) rf.on(ev, (e) => log.push({ ev, ...e }));
  let pub = new Ringfan(b.url);
  try {
    await rf.subscribe(t, (m) => log.push({ ev: "msg", seq: m.seq, data: m.data })).ready;
    for (let i = 1; i <= 3; i++) await pub.publish(t, i);
    await until(() => log.length === 3);
    pub.close();
    await b.stop();
    await b.start();
    // Resubscribed (no snapshot: the new broker holds nothing yet).
    await until(() => rf.stats.reconnects === 1 && rf.state === "open" && rf.stats.inFlight === 0, 5000, "restored");
    pub = new Ringfan(b.url);
    await pub.publish(t, "new");
    await pub.publish(t, "newer");
    await until(() => log.length === 6, 3000, "the reset and two messages");
    assert.deepEqual(log.slice(3), [
      { ev: "reset", topic: t, seq: 1, previous: 3, reason: "reconnect" },
      { ev: "msg", seq: 1, data: "new" },
      { ev: "msg", seq: 2, data: "newer" },
    ]);
    assert.equal(rf.stats.gaps, 0);
    assert.equal(rf.stats.duplicates, 0);
  } finally {
    rf.close();
    pub.close();
    await b.stop();
  }
});

test("a silent connection (a sub unanswered for requestTimeoutMs) is replaced", async () => {
  const b = await Broker.start();
  const proxy = await new TcpProxy(b.port).listen();
  const rf = new Ringfan(proxy.url, { requestTimeoutMs: 300, reconnect: { initialMs: 20, maxMs: 50 } });
  const errors = [];
  rf.on("error", (e) => errors.push(e));
  const drops = [];
  rf.on("state", (s) => s.state === "reconnecting" && drops.push(s.reason));
  try {
    await rf.subscribe(`${uid()}.a`, () => {}).ready;
    proxy.stall(); // what the client sends goes nowhere; the broker says nothing
    const sub = rf.subscribe(`${uid()}.b`, () => {});
    await until(() => drops.length >= 1, 3000, "the silent connection dropped");
    assert.equal(drops[0], "request timeout");
    assert.equal(errors[0].code, "timeout");
    proxy.resume();
    await sub.ready; // restored on a working connection
    assert.ok(rf.stats.reconnects >= 1);
  } finally {
    rf.close();
    await proxy.close();
    await b.stop();
  }
});

test("several URLs (a cluster's nodes): a client whose node dies moves to the next and resubscribes", async () => {
  const a = await Broker.start();
  const b = await Broker.start();
  const rf = new Ringfan([a.url, b.url], { reconnect: { initialMs: 20, maxMs: 50 } });
  const t = uid();
  const got = [];
  const pub = new Ringfan(b.url);
  try {
    assert.deepEqual(rf.urls, [a.url, b.url]);
    assert.equal(rf.url, a.url);
    await rf.subscribe(t, (m) => got.push(m.data)).ready;
    await a.stop();
    await until(() => rf.stats.reconnects === 1 && rf.state === "open" && rf.stats.inFlight === 0, 5000, "on the other node");
    assert.equal(rf.url, b.url);
    await pub.publish(t, "on b");
    await until(() => got.length === 1, 3000, "a message through the other node");
    assert.deepEqual(got, ["on b"]);
    assert.throws(() => new Ringfan([]), TypeError);
  } finally {
    rf.close();
    pub.close();
    await a.stop();
    await b.stop();
  }
});
