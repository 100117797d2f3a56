// A subscriber that stops reading behind a tiny queue (docs/protocol.md,
// "Slow consumers"), and a publisher whose socket stops draining.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Worker } from "node:worker_threads";
import { Ringfan } from "../ringfan.js";
import { Broker, TcpProxy, until, uid } from "./broker.js";

const SLOW = ["--max-queued-bytes", "16384", "--socket-send-buffer", "4096"];

/** Subscribes and receives one message (seq 1), then blocks this thread
 * (no socket is read) while a worker thread publishes `n` more (seqs 2 to
 * n + 1, `k` 0 to n - 1); returns the handler's and events' log.
 *
 * The first message makes sure the subscriber has a seq before the flood:
 * under `disconnect` the broker drops a slow consumer's backlog with the
 * connection, and when the flood's first messages arrive together (one
 * receive of 16 KiB holds 16 of them, past --max-queued-bytes 16384) the
 * cut came before anything was sent, so there was no seq to rebase from
 * (3 of 12 runs failed so, on builds with and without session 16's
 * extra enters). */
async function stallWhileFlooded(b, n, clients) {
  const t = uid();
  const rf = new Ringfan(b.url, { reconnect: { initialMs: 50, maxMs: 200 } });
  clients.push(rf);
  const log = [];
  for (const ev of ["gap", "reset", "rebase", "resync"]) rf.on(ev, (e) => log.push({ ev, ...e }));
  rf.on("state", (s) => log.push({ ev: "state", ...s }));
  const sub = rf.subscribe(t, (m) => log.push({ ev: "msg", seq: m.seq, k: m.data.k, snapshot: m.snapshot }));
  await sub.ready;
  await rf.publish(t, { k: -1 });
  await until(() => log.some((e) => e.ev === "msg" && e.seq === 1), 5000, "seq 1");
  const flag = new SharedArrayBuffer(4);
  const worker = new Worker(new URL("./flood-worker.js", import.meta.url), {
    workerData: { url: b.url, topic: t, n, size: 1000, flag },
  });
  const done = new Promise((ok, fail) => worker.once("message", ok).once("error", fail));
  clients.push({ close: () => worker.terminate() });
  // Block: nothing on this thread runs, so the subscriber reads nothing.
  const waited = Atomics.wait(new Int32Array(flag), 0, 0, 20000);
  assert.equal(waited, "ok", "the flood did not finish in 20 s");
  const { acked } = await done;
  assert.equal(acked, n);
  // The last value reaches the subscriber: live, or by the resync's or
  // the reconnect's snapshot.
  await until(() => log.some((e) => e.ev === "msg" && e.seq === n + 1), 10000, `seq ${n + 1}`).catch((e) => {
    console.log(log.filter((x) => x.ev !== "msg" || x.seq % 100 === 0 || x.snapshot), rf.stats);
    throw e;
  });
  await until(() => rf.stats.inFlight === 0, 5000, "the resync's ack");
  return { rf, log, t };
}

/** Seqs only grow, and each jump is announced by an event before it. */
function checkAnnounced(log) {
  let last = null;
  let announced = false;
  let jumps = 0;
  for (const e of log) {
    if (["gap", "reset", "rebase"].includes(e.ev)) announced = true;
    if (e.ev !== "msg") continue;
    if (last !== null) {
      assert.ok(e.seq > last, `seq ${e.seq} after ${last}: a duplicate or out of order`);
      if (e.seq !== last + 1) {
        jumps++;
        assert.ok(announced, `seq ${e.seq} after ${last} without an event`);
      }
    }
    announced = false;
    last = e.seq;
  }
  return jumps;
}

test("slow consumer, policy drop: gap events with the missing range, then a resync with snapshot", async () => {
  const b = await Broker.start(["--slow-consumer", "drop", ...SLOW]);
  const n = 3000;
  const clients = [];
  try {
    const { rf, log, t } = await stallWhileFlooded(b, n, clients);
    if (process.env.RINGFAN_JS_VERBOSE) console.log(log.filter((e) => e.ev !== "msg" || e.snapshot), rf.stats);
    assert.ok((await b.metric("ringfan_dropped_total")) > 0, "the broker dropped nothing");
    const gaps = log.filter((e) => e.ev === "gap");
    assert.ok(gaps.length >= 1, "no gap reported");
    for (const g of gaps) assert.ok(g.topic === t && g.from <= g.to, JSON.stringify(g));
    // Each gap's range is exactly what the handler did not see around it.
    for (const g of gaps) {
      const i = log.indexOf(g);
      const before = log.slice(0, i).findLast((e) => e.ev === "msg");
      const after = log.slice(i).find((e) => e.ev === "msg");
      assert.deepEqual([g.from, g.to], [before.seq + 1, after.seq - 1]);
    }
    assert.ok(log.some((e) => e.ev === "resync" && e.pattern === t), "no resync");
    assert.ok(checkAnnounced(log) >= 1);
    assert.equal(rf.stats.reconnects, 0, "policy drop keeps the connection");
    assert.equal(rf.stats.gaps, gaps.length);
    // The resync leaves it live: the next publish arrives as seq n+1.
    const pub = new Ringfan(b.url);
    clients.push(pub);
    await pub.publish(t, { k: n });
    await until(() => log.at(-1).seq === n + 2, 3000, "live again");
    assert.equal(log.filter((e) => e.ev === "gap").length, gaps.length, "no new gap after the resync");
  } finally {
    for (const c of clients) c.close();
    await b.stop();
  }
});

test("slow consumer, policy disconnect: close 1008, reconnect, snapshot restores the latest", async () => {
  // --deflate off: Node 20's built-in WebSocket (undici) reports a
  // slow-consumer close that cuts a compressed backlog as 1006, not the
  // 1008 the broker sent (reproduced with a bare script; the same bytes
  // read by a raw Python client are valid compressed frames and then
  // close 1008). The policy is what this test checks.
  const b = await Broker.start(["--slow-consumer", "disconnect", "--deflate", "off", ...SLOW]);
  const n = 3000;
  const clients = [];
  try {
    const { rf, log } = await stallWhileFlooded(b, n, clients);
    // What happened, for a failure's message.
    const story = () => JSON.stringify({ stats: rf.stats, events: log.filter((e) => e.ev !== "msg" || e.snapshot), last: log.findLast((e) => e.ev === "msg") });
    assert.ok((await b.metric("ringfan_slow_disconnects_total")) >= 1, story());
    const drop = log.find((e) => e.ev === "state" && e.state === "reconnecting");
    assert.ok(drop, `no reconnect: ${story()}`);
    assert.equal(drop.code, 1008);
    assert.equal(drop.reason, "slow consumer");
    assert.ok(rf.stats.reconnects >= 1);
    // The restored subscription's snapshot is the flood's last, seq n + 1,
    // after a jump that a rebase event announced.
    const last = log.findLast((e) => e.ev === "msg");
    assert.deepEqual([last.seq, last.k, last.snapshot], [n + 1, n - 1, true], story());
    assert.ok(checkAnnounced(log) >= 1, story());
    assert.ok(log.some((e) => e.ev === "rebase" && e.reason === "reconnect" && e.to === n), story());
  } finally {
    for (const c of clients) c.close();
    await b.stop();
  }
});

test("backpressure: bufferedAmount stays bounded; publishes that cannot go out reject, unsent", async () => {
  // The subscriber takes the stalled burst at once: room for all of it.
  const b = await Broker.start(["--max-queued-bytes", "33554432", "--max-backlog-bytes", "67108864"]);
  const proxy = await new TcpProxy(b.port).listen();
  const max = 256 * 1024;
  const size = 64 * 1024;
  const rf = new Ringfan(proxy.url, { maxBufferedAmount: max, requestTimeoutMs: 1500 });
  const t = uid();
  const seen = [];
  const sub = new Ringfan(b.url);
  try {
    await sub.subscribe(t, (m) => seen.push(m.data.k), { snapshot: false }).ready;
    await rf.publish(t, { k: -1 });
    proxy.stall();
    let peak = 0;
    const sampler = setInterval(() => (peak = Math.max(peak, rf._ws?.bufferedAmount ?? 0)), 1);
    const pad = "y".repeat(size);
    const total = 120; // 7.5 MiB: more than the kernel buffers hold
    const outcomes = await Promise.all(
      Array.from({ length: total }, (_, k) => rf.publish(t, { k, pad }).then(() => "ack", (e) => `${e.code}:${e.sent}`)),
    );
    clearInterval(sampler);
    const count = (o) => outcomes.filter((x) => x === o).length;
    const unsent = count("backpressure:false");
    const lost = count("timeout:true"); // sent, stalled in the proxy
    assert.equal(unsent + lost + count("ack"), total, JSON.stringify(outcomes));
    assert.ok(unsent > 0, "nothing waited on the buffer");
    assert.ok(peak > 0, "bufferedAmount never grew: the socket was never full");
    assert.ok(peak <= max + size + 200, `bufferedAmount reached ${peak}, over ${max} + one message`);
    // The sent ones reach the broker once the proxy forwards again; the
    // ones rejected for backpressure never do.
    proxy.resume();
    await rf.publish(t, { k: "after" });
    await until(() => seen.includes("after"), 5000, "the publish after the stall");
    assert.equal(seen.length, 1 + lost + count("ack") + 1);
    const sent = new Set(outcomes.flatMap((o, k) => (o === "backpressure:false" ? [] : [k])));
    assert.deepEqual(seen.slice(1, -1), [...sent], "exactly the sent publishes, in order");
  } finally {
    rf.close();
    sub.close();
    await proxy.close();
    await b.stop();
  }
});
