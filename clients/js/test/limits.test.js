// The broker's request rates (docs/protocol.md, "Request rates"): a
// refused sub or unsub changes nothing, so the client asks again later.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Ringfan } from "../ringfan.js";
import { Broker, until, uid } from "./broker.js";

test("rate_limited sub and unsub are retried until the broker takes them", async () => {
  // One pattern a second, a burst of two.
  const b = await Broker.start(["--max-sub-rate", "1", "--sub-burst", "2"]);
  const rf = new Ringfan(b.url);
  const pub = new Ringfan(b.url);
  const errors = [];
  rf.on("error", (e) => errors.push(e));
  const t = uid();
  try {
    const x = rf.subscribe(`${t}.x`, () => {});
    const y = rf.subscribe(`${t}.y`, () => {});
    await Promise.all([x.ready, y.ready]);
    // The bucket is empty: this sub is refused at first, then taken.
    const got = [];
    const z = rf.subscribe(`${t}.z`, (m) => got.push(m.data));
    const t0 = Date.now();
    await z.ready;
    assert.ok(Date.now() - t0 >= 300, "acked without waiting for the rate");
    assert.ok((await b.metric("ringfan_requests_rate_limited_total")) >= 1);
    await pub.publish(`${t}.z`, "z");
    await until(() => got.length === 1);
    // Likewise an unsub: the broker ends up holding only y and z.
    const limited = await b.metric("ringfan_requests_rate_limited_total");
    x.unsubscribe();
    await until(async () => (await b.metric("ringfan_subscriptions")) === 2, 8000, "the unsub taken");
    assert.ok((await b.metric("ringfan_requests_rate_limited_total")) > limited, "the unsub was never refused");
    assert.deepEqual(errors, [], "retried, not reported");
  } finally {
    pub.close();
    rf.close();
    await b.stop();
  }
});
