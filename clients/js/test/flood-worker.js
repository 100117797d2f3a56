// Publishes `n` messages of `size` bytes on `topic` from its own thread
// (so the test's main thread can stop reading its sockets meanwhile),
// then sets the shared flag and wakes the main thread.
import { workerData, parentPort } from "node:worker_threads";
import { Ringfan } from "../ringfan.js";

const { url, topic, n, size, flag } = workerData;
const rf = new Ringfan(url);
const pad = "x".repeat(size);
const window = 64;
let next = 0;
let acked = 0;
async function lane() {
  while (next < n) {
    const k = next++;
    await rf.publish(topic, { k, pad });
    acked++;
  }
}
try {
  await Promise.all(Array.from({ length: window }, lane));
} finally {
  rf.close();
  const i32 = new Int32Array(flag);
  Atomics.store(i32, 0, 1);
  Atomics.notify(i32, 0);
  parentPort.postMessage({ acked });
}
