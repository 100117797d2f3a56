// ringfan.js in a real browser: headless Chromium loads it as an ES module
// from a local HTTP server, and the test drives the page over the DevTools
// protocol (as tests/python/test_chromium.py does), against the real
// broker: subscribe, publish both ways, err codes, and a broker restart.
// Skipped when `chromium` is not installed (tests/run.sh installs it).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { createServer } from "node:http";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Ringfan } from "../ringfan.js";
import { Broker, PKG, until, uid, sleep } from "./broker.js";

function which(cmd) {
  try {
    return execFileSync("sh", ["-c", `command -v ${cmd}`], { encoding: "utf8" }).trim() || null;
  } catch {
    return null;
  }
}
const CHROMIUM = which("chromium") ?? which("chromium-browser");

const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>ringfan.js</title>
<script type="module">
import { Ringfan } from "/ringfan.js";
const q = new URLSearchParams(location.hash.slice(1));
const topic = q.get("topic");
const rf = new Ringfan(q.get("url"), { reconnect: { initialMs: 50, maxMs: 300 } });
window.got = [];
window.events = [];
rf.on("state", (s) => events.push(s.state));
for (const ev of ["gap", "reset", "rebase"]) rf.on(ev, (e) => events.push(ev));
const sub = rf.subscribe(topic, (m) => got.push([m.seq, m.data, m.snapshot]));
window.ready = sub.ready.then(() => "ready", (e) => "refused " + e.code);
window.pub = (t, d) => rf.publish(t, d).then(() => "acked", (e) => e.code);
window.stats = () => rf.stats;
</script>
`;

/** A DevTools protocol session on one page. */
class Cdp {
  static async open(url) {
    const c = new Cdp();
    c.ws = new WebSocket(url);
    c.next = 1;
    c.waiting = new Map();
    c.ws.onmessage = (ev) => {
      const m = JSON.parse(ev.data);
      const w = c.waiting.get(m.id);
      if (w) {
        c.waiting.delete(m.id);
        m.error ? w.reject(new Error(JSON.stringify(m.error))) : w.resolve(m.result);
      }
    };
    await new Promise((ok, fail) => {
      c.ws.onopen = ok;
      c.ws.onerror = () => fail(new Error("devtools connection failed"));
    });
    return c;
  }

  send(method, params) {
    const id = this.next++;
    this.ws.send(JSON.stringify({ id, method, params }));
    return new Promise((resolve, reject) => this.waiting.set(id, { resolve, reject }));
  }

  /** The value of `expr` in the page, promises awaited. */
  async eval(expr) {
    const r = await this.send("Runtime.evaluate", { expression: expr, awaitPromise: true, returnByValue: true });
    if (r.exceptionDetails) throw new Error(`${expr}: ${JSON.stringify(r.exceptionDetails)}`);
    return r.result.value;
  }
}

test("in Chromium: the module loads, subscribes, publishes, and reconnects after a broker restart", { skip: CHROMIUM ? false : "chromium is not installed", timeout: 60000 }, async () => {
  const b = await Broker.start();
  const http = createServer((req, res) => {
    if (req.url === "/ringfan.js") {
      res.writeHead(200, { "content-type": "text/javascript" });
      res.end(readFileSync(join(PKG, "ringfan.js")));
    } else {
      res.writeHead(200, { "content-type": "text/html" });
      res.end(PAGE);
    }
  });
  await new Promise((ok) => http.listen(0, "127.0.0.1", ok));
  const profile = mkdtempSync(join(tmpdir(), "ringfan-chromium-"));
  const t = uid();
  const page = `http://127.0.0.1:${http.address().port}/#url=${encodeURIComponent(b.url)}&topic=${t}`;
  const chromium = spawn(
    CHROMIUM,
    ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-background-networking", "--disable-sync", "--disable-component-update", "--password-store=basic", "--use-mock-keychain", `--user-data-dir=${profile}`, "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", page],
    { stdio: "ignore", detached: true },
  );
  const node = new Ringfan(b.url, { reconnect: { initialMs: 50, maxMs: 300 } });
  let cdp;
  try {
    let port;
    await until(() => {
      try {
        port = Number(readFileSync(join(profile, "DevToolsActivePort"), "utf8").split("\n")[0]);
        return port > 0;
      } catch {
        return false;
      }
    }, 30000, "Chromium's DevTools port");
    let target;
    await until(async () => {
      const list = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
      target = list.find((x) => x.type === "page" && x.url.startsWith(page.split("#")[0]));
      return target !== undefined;
    }, 30000, "the page");
    cdp = await Cdp.open(target.webSocketDebuggerUrl);
    await until(async () => (await cdp.eval("typeof window.ready")) === "object", 10000, "the module to run");
    assert.equal(await cdp.eval("window.ready"), "ready");

    // Node publishes, the browser receives; and the other way round.
    const seen = [];
    await node.subscribe(t, (m) => seen.push(m.data)).ready;
    for (let i = 1; i <= 3; i++) await node.publish(t, { i });
    await until(async () => (await cdp.eval("got.length")) === 3, 5000, "3 messages in the browser");
    assert.deepEqual(await cdp.eval("got"), [[1, { i: 1 }, false], [2, { i: 2 }, false], [3, { i: 3 }, false]]);
    assert.equal(await cdp.eval(`pub(${JSON.stringify(t)}, "from the browser")`), "acked");
    await until(() => seen.includes("from the browser"), 5000, "the browser's publish");
    assert.equal(await cdp.eval(`pub("a.*", 1)`), "bad_topic");

    // The broker restarts: the browser's client reconnects and resubscribes.
    await b.stop();
    await b.start();
    await until(async () => (await cdp.eval("stats().reconnects")) >= 1 && (await cdp.eval("stats().inFlight")) === 0, 10000, "the browser back");
    await until(() => node.stats.reconnects >= 1 && node.state === "open", 10000, "node back");
    await node.publish(t, "after");
    await until(async () => (await cdp.eval("got.length")) === 5, 5000, "the message after the restart");
    const got = await cdp.eval("got");
    assert.deepEqual(got[4], [1, "after", false]);
    const events = await cdp.eval("events");
    assert.ok(events.includes("reconnecting") && events.includes("reset"), JSON.stringify(events));
  } finally {
    cdp?.ws.close();
    try {
      process.kill(-chromium.pid, "SIGKILL");
    } catch {
      // already gone
    }
    node.close();
    http.close();
    await b.stop();
    await sleep(100);
    rmSync(profile, { recursive: true, force: true });
  }
});
