// The real ringfan binary for the tests: $RINGFAN_BIN, default
// ../../target/release/ringfan relative to clients/js. Each broker listens
// on a free port (port 0, read back from its "listening on" line), can be
// killed and restarted on that same port, and is killed when the test
// process exits, whatever happens.
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { createHmac } from "node:crypto";
import { createServer, connect } from "node:net";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
export const PKG = resolve(here, "..");
export const REPO = resolve(PKG, "../..");
export const BIN = resolve(PKG, process.env.RINGFAN_BIN ?? "../../target/release/ringfan");

const live = new Set();
process.on("exit", () => {
  for (const p of live) p.kill("SIGKILL");
});

export class Broker {
  /** @param {string[]} flags extra ringfan flags */
  constructor(flags = []) {
    this.flags = flags;
    this.port = 0;
    this.proc = null;
    this.log = "";
  }

  static async start(flags = []) {
    const b = new Broker(flags);
    await b.start();
    return b;
  }

  get url() {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  /** Starts it; on its own port again after a stop. A killed broker's
   * io_uring may hold the listening socket a moment after the process
   * has gone ("already in use"): retried for up to 5 s. */
  async start() {
    for (let tries = 0; ; tries++) {
      try {
        return await this._start();
      } catch (e) {
        if (tries >= 50 || !/already in use/.test(e.message)) throw e;
        await sleep(100);
      }
    }
  }

  async _start() {
    if (!existsSync(BIN)) throw new Error(`no ringfan binary at ${BIN} (cargo build --release, or set RINGFAN_BIN)`);
    const args = ["--listen", `127.0.0.1:${this.port}`, "--shards", "2", "--no-pin", ...this.flags];
    const proc = spawn(BIN, args, { stdio: ["ignore", "pipe", "pipe"] });
    this.proc = proc;
    live.add(proc);
    proc.on("exit", () => live.delete(proc));
    proc.stderr.on("data", (d) => (this.log += d));
    this.port = await new Promise((ok, fail) => {
      const timer = setTimeout(() => fail(new Error(`ringfan did not start: ${args.join(" ")}\n${this.log}`)), 20000);
      let out = "";
      proc.stdout.on("data", (d) => {
        out += d;
        this.log += d;
        const m = /ringfan: listening on 127\.0\.0\.1:(\d+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          ok(Number(m[1]));
        }
      });
      proc.on("exit", (code) => {
        clearTimeout(timer);
        fail(new Error(`ringfan exited (${code}) before listening: ${args.join(" ")}\n${this.log}`));
      });
    });
    proc.stdout.resume();
    return this;
  }

  /** Stops it (SIGKILL by default: an abrupt death, no close frames). */
  async stop(signal = "SIGKILL") {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const gone = new Promise((ok) => proc.once("exit", ok));
    proc.kill(signal);
    const t = setTimeout(() => proc.kill("SIGKILL"), 5000);
    await gone;
    clearTimeout(t);
  }

  /** The sum of a /metrics family over its shard label. */
  async metric(name) {
    const res = await fetch(`http://127.0.0.1:${this.port}/metrics`);
    const text = await res.text();
    let total = 0;
    for (const line of text.split("\n")) {
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
      if (m && m[1] === name) total += Number(m[3]);
    }
    return total;
  }
}

/** The HS256 secret tests/fixtures/jwt/hs.secret holds (kid "hs"). */
export const HS_SECRET_FILE = resolve(REPO, "tests/fixtures/jwt/hs.secret");

/** An HS256 JWT signed with the fixture secret, as PyJWT mints them in
 * tests/python/test_auth.py: kid "hs", the permissions in claim "ringfan". */
export function mint({ sub = [], pub = [], user = "u-" + Math.random().toString(36).slice(2, 10), expIn = 300 } = {}) {
  const secret = readFileSync(HS_SECRET_FILE).toString("latin1").replace(/[\r\n]+$/, "");
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const head = b64({ alg: "HS256", typ: "JWT", kid: "hs" });
  const body = b64({ sub: user, exp: Math.floor(Date.now() / 1000) + expIn, ringfan: { sub, pub } });
  const sig = createHmac("sha256", Buffer.from(secret, "latin1")).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

/** Resolves when `cond()` holds, polling; rejects after `ms`. */
export async function until(cond, ms = 5000, what = "condition") {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
}

export const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

/** A unique topic prefix per test, so tests sharing a broker never meet. */
export const uid = () => "t" + Math.random().toString(36).slice(2, 10);

/** A port nothing listens on (bound, then released). */
export async function deadPort() {
  const s = createServer();
  await new Promise((ok) => s.listen(0, "127.0.0.1", ok));
  const { port } = s.address();
  await new Promise((ok) => s.close(ok));
  return port;
}

/** A TCP proxy in front of the broker, so a test can cut connections (a
 * network blip, the broker still up) or stop forwarding what the client
 * sends (its socket buffers fill: backpressure). */
export class TcpProxy {
  constructor(targetPort) {
    this.targetPort = targetPort;
    this.pairs = new Set();
    this.stalled = false;
    this.refusing = false;
    this.server = createServer((client) => {
      if (this.refusing) return client.resetAndDestroy();
      const upstream = connect(this.targetPort, "127.0.0.1");
      const pair = { client, upstream };
      this.pairs.add(pair);
      const drop = () => {
        this.pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      client.on("error", drop).on("close", drop);
      upstream.on("error", drop).on("close", drop);
      client.pipe(upstream);
      upstream.pipe(client);
      if (this.stalled) client.pause();
    });
  }

  async listen() {
    await new Promise((ok) => this.server.listen(0, "127.0.0.1", ok));
    this.port = this.server.address().port;
    return this;
  }

  get url() {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  /** Resets every proxied connection (both sides see it drop). */
  cut() {
    for (const { client, upstream } of this.pairs) {
      client.resetAndDestroy();
      upstream.resetAndDestroy();
    }
    this.pairs.clear();
  }

  /** Stops reading what clients send (and so forwarding it). */
  stall() {
    this.stalled = true;
    for (const { client } of this.pairs) {
      client.unpipe();
      client.pause();
    }
  }

  resume() {
    this.stalled = false;
    for (const { client, upstream } of this.pairs) {
      client.pipe(upstream);
      client.resume();
    }
  }

  async close() {
    this.cut();
    await new Promise((ok) => this.server.close(ok));
  }
}
