// ringfan.js: a client for the ringfan pub/sub broker (docs/protocol.md).
// One ES module, no dependencies, no build step: browsers load it as is,
// Node >= 20 runs it (Node 20 needs --experimental-websocket, or pass the
// constructor as options.WebSocket).

/** An error the broker sent (`err`), or one this client raised. */
export class RingfanError extends Error {
  /**
   * @param {string} code broker codes (bad_topic, forbidden, rate_limited, ...)
   *   or client codes (timeout, backpressure, not_connected, queue_full,
   *   disconnected, closed, unsubscribed, revoked, token, handler)
   * @param {string} message
   * @param {{sent?: boolean, pattern?: string, cause?: unknown}} [extra]
   */
  constructor(code, message, extra = {}) {
    super(message, extra.cause === undefined ? undefined : { cause: extra.cause });
    this.name = "RingfanError";
    this.code = code;
    // Whether the request reached the socket: a request never sent cannot
    // have taken effect; one sent and unanswered may have.
    this.sent = extra.sent ?? false;
    if (extra.pattern !== undefined) this.pattern = extra.pattern;
  }
}

const DEFAULTS = {
  token: undefined,
  tokenIn: "message",
  reconnect: { initialMs: 250, maxMs: 30000, factor: 2, stableMs: 10000 },
  requestTimeoutMs: 10000,
  queueWhileDisconnected: 1000,
  maxBufferedAmount: 1 << 20,
  maxSnapshotPatterns: 1000,
  resyncDelayMs: 50,
  protocols: ["ringfan.v1"],
  WebSocket: undefined,
};

/**
 * The delay before reconnect attempt `attempt` (1 = the first retry):
 * "full jitter", uniform in [0, min(maxMs, initialMs * factor^(attempt-1))).
 * Spreads a fleet of clients that lost the same broker over the whole
 * window instead of having them return in waves.
 */
export function backoffDelay(attempt, reconnect = DEFAULTS.reconnect, random = Math.random) {
  const r = { ...DEFAULTS.reconnect, ...reconnect };
  const cap = Math.min(r.maxMs, r.initialMs * Math.pow(r.factor, Math.max(0, attempt - 1)));
  return Math.floor(random() * cap);
}

/** NATS-style match: `*` is one token, a final `>` one or more. */
export function matches(pattern, topic) {
  if (pattern === topic) return true;
  const p = pattern.split(".");
  const t = topic.split(".");
  for (let i = 0; i < p.length; i++) {
    if (p[i] === ">") return i === p.length - 1 && t.length > i;
    if (i >= t.length) return false;
    if (p[i] !== "*" && p[i] !== t[i]) return false;
  }
  return p.length === t.length;
}

// Per-topic sequencing modes.
// LIVE: the next seq must be last+1; more is a gap (event + resync).
// WINDOW: a resync of a pattern matching the topic is under way on this
//   connection: seq <= last is a duplicate, a jump is the re-base onto the
//   snapshot (reported as `rebase`, no new resync: that would loop).
// FRESH: the topic's first message on a new connection. The broker may
//   have restarted (new numbering), so seq <= last is not proof of a
//   duplicate: only the same seq with the same data is.
const [LIVE, WINDOW, FRESH] = [0, 1, 2];

class Subscription {
  constructor(rf, pattern, handler) {
    this.pattern = pattern;
    this.handler = handler;
    /** False once unsubscribed, refused, revoked or the client closed. */
    this.active = true;
    /** @type {RingfanError | null} why it ended, if the broker ended it */
    this.error = null;
    this._rf = rf;
    this.ready = new Promise((resolve, reject) => {
      this._resolve = resolve;
      this._reject = reject;
    });
    // Nobody has to await ready: a refused sub is also reported as an
    // `error` event, so an unawaited rejection must not crash Node.
    this.ready.catch(() => {});
  }

  unsubscribe() {
    if (!this.active) return;
    this._end(new RingfanError("unsubscribed", "unsubscribed before the broker acknowledged"));
    this.error = null;
    this._rf._unsubscribe(this);
  }

  _end(err) {
    this.active = false;
    this.error = err;
    this._reject(err);
  }
}

export class Ringfan {
  /**
   * @param {string|string[]} url ws:// or wss:// URL of the broker's /ws,
   *   or several (a cluster's nodes): each retry goes to the next
   * @param {object} [options] see ringfan.d.ts
   */
  constructor(url, options = {}) {
    const urls = Array.isArray(url) ? [...url] : [url];
    if (urls.length === 0 || urls.some((u) => typeof u !== "string")) {
      throw new TypeError("url: a ws:// URL, or a non-empty array of them");
    }
    // Several nodes of one cluster: after a failed attempt or a drop the
    // next one is tried, so a dead node's clients move on, and resync
    // there (seq is cluster-wide).
    this.urls = urls;
    this._urlAt = 0;
    this.options = { ...DEFAULTS, ...options, reconnect: { ...DEFAULTS.reconnect, ...options.reconnect } };
    this._WS = this.options.WebSocket ?? globalThis.WebSocket;
    if (typeof this._WS !== "function") {
      throw new TypeError("no WebSocket: pass options.WebSocket (Node 20: run with --experimental-websocket)");
    }
    this._listeners = new Map();
    this._ws = null;
    this._conn = 0; // incremented per socket: stale callbacks compare it
    this._state = "idle";
    this._final = false;
    this._everOpen = false;
    this._attempt = 0;
    this._timers = { retry: null, stable: null, drain: null, lane: null, connect: null };
    this._nextId = 1;
    this._pending = new Map(); // id -> request in flight on this socket
    this._out = []; // requests not yet on the socket, in order
    this._patterns = new Map(); // pattern -> entry
    this._patternsVersion = 0;
    this._topics = new Map(); // topic -> {last, raw, mode, entries, version}
    this._lane = { queue: [], inFlight: null, retryMs: 0 };
    this._stats = { messages: 0, duplicates: 0, gaps: 0, resets: 0, rebases: 0, resyncs: 0, reconnects: 0 };
  }

  // ---- events ------------------------------------------------------------

  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return this;
  }

  off(event, fn) {
    this._listeners.get(event)?.delete(fn);
    return this;
  }

  _emit(event, value) {
    const fns = this._listeners.get(event);
    if (!fns || fns.size === 0) {
      // An error nobody listens for still has to be seen somewhere.
      if (event === "error") console.error("ringfan:", value);
      return;
    }
    for (const fn of [...fns]) {
      try {
        fn(value);
      } catch (e) {
        if (event !== "error") this._emit("error", new RingfanError("handler", `a '${event}' listener threw: ${e}`, { cause: e }));
        else console.error("ringfan: an error listener threw:", e);
      }
    }
  }

  get state() { return this._state; }

  get stats() {
    return {
      ...this._stats,
      state: this._state,
      queued: this._out.length,
      inFlight: this._pending.size,
      subscriptions: this._patterns.size,
      topics: this._topics.size,
    };
  }

  _setState(state, extra = {}) {
    this._state = state;
    this._emit("state", { state, attempt: this._attempt, ...extra });
  }

  // ---- connection --------------------------------------------------------

  connect() {
    if (this._final) throw new RingfanError("closed", "this client was closed");
    if (this._ws || this._timers.retry || this._state === "connecting") return this;
    this._open();
    return this;
  }

  async _open() {
    const conn = ++this._conn;
    this._timers.retry = null;
    this._setState("connecting");
    let token = null;
    if (this.options.token) {
      try {
        token = await this.options.token();
      } catch (e) {
        if (conn !== this._conn || this._final) return;
        this._emit("error", new RingfanError("token", `token provider failed: ${e}`, { cause: e }));
        return this._retry(conn, 0, "token provider failed");
      }
      if (conn !== this._conn || this._final) return;
    }
    let url = this.url;
    if (token && this.options.tokenIn === "query") {
      url += (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token);
    }
    let ws;
    try {
      ws = new this._WS(url, this.options.protocols);
    } catch (e) {
      this._emit("error", new RingfanError("connect", `cannot open ${this.url}: ${e}`, { cause: e }));
      return this._retry(conn, 0, String(e));
    }
    this._ws = ws;
    this._lastRx = 0;
    // A handshake that hangs (a black-holed address) counts as a failure.
    this._timers.connect = setTimeout(() => {
      if (conn === this._conn) this._dropped(conn, 0, "connect timeout");
    }, this.options.requestTimeoutMs);
    let opened = false;
    ws.onopen = () => {
      if (conn !== this._conn) return;
      opened = true;
      clearTimeout(this._timers.connect);
      if (token && this.options.tokenIn !== "query") {
        // First-message auth keeps the token out of URLs and proxy logs.
        this._request({ op: "auth", token }, "auth-first", conn);
      } else {
        this._ready(conn);
      }
    };
    ws.onmessage = (ev) => {
      if (conn !== this._conn) return;
      this._lastRx = Date.now();
      this._onText(ev.data, conn);
    };
    ws.onclose = (ev) => this._dropped(conn, ev.code, ev.reason);
    // Browsers follow an error with a close event; Node 20's WebSocket
    // does not for a failed handshake (it stays CONNECTING), and a close
    // may not come for a socket that errs while open: count it as gone.
    ws.onerror = () => {
      if (conn !== this._conn) return;
      if (!opened) return this._dropped(conn, 1006, "connection failed");
      setTimeout(() => this._dropped(conn, 1006, "connection error"), 1000);
    };
  }

  _ready(conn) {
    const again = this._everOpen;
    this._everOpen = true;
    if (again) this._stats.reconnects++;
    // The attempt counter restarts only once a connection has proved
    // stable: a broker that accepts and drops at once still backs off.
    clearTimeout(this._timers.stable);
    this._timers.stable = setTimeout(() => {
      if (conn === this._conn) this._attempt = 0;
    }, this.options.reconnect.stableMs);
    for (const t of this._topics.values()) {
      t.mode = FRESH;
      t.wantSnapshot = false; // the restore asks for every snapshot anyway
      t.snapTries = 0;
    }
    this._setState("open");
    // Every subscription is restored with a snapshot, one lane of
    // snapshot subs (the broker allows one in flight per connection).
    this._lane.queue = [];
    for (const e of this._patterns.values()) {
      e.state = "queued";
      // The first connection honours {snapshot: false}; restores do not.
      if (!e.snapshot && !e.acked) this._plainSub(e);
      else this._lane.queue.push(e);
    }
    this._pumpLane();
    this._flush();
  }

  _dropped(conn, code, reason) {
    if (conn !== this._conn) return;
    this._conn++; // every callback of the old socket is stale from here
    clearTimeout(this._timers.connect);
    clearTimeout(this._timers.stable);
    clearTimeout(this._timers.drain);
    clearTimeout(this._timers.lane);
    this._timers.drain = this._timers.lane = null;
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        if (ws.readyState < 2) ws.close();
      } catch {
        // Node 20 throws closing a socket whose handshake failed
      }
    }
    // Requests on the wire may or may not have taken effect: they are
    // failed, never resent (a resent pub could be published twice).
    for (const [id, r] of this._pending) {
      this._pending.delete(id);
      clearTimeout(r.timer);
      if (r.kind === "pub") this._fail(r, new RingfanError("disconnected", "the connection dropped before the reply", { sent: true }));
    }
    this._lane.inFlight = null;
    this._lane.queue = [];
    for (const e of this._patterns.values()) e.state = "queued";
    // What was never sent waits for the next connection, up to the bound.
    const keep = this.options.queueWhileDisconnected;
    while (this._out.length > keep) {
      const r = this._out.pop();
      this._fail(r, new RingfanError("queue_full", "disconnected, and the queue is full"));
    }
    if (this._final) return;
    this._retry(this._conn, code, reason);
  }

  /** The URL the current (or next) connection attempt uses. */
  get url() { return this.urls[this._urlAt]; }

  _retry(conn, code, reason) {
    if (conn !== this._conn || this._final) return;
    this._ws = null;
    this._urlAt = (this._urlAt + 1) % this.urls.length;
    this._attempt++;
    const delayMs = backoffDelay(this._attempt, this.options.reconnect);
    this._setState("reconnecting", { delayMs, code, reason });
    this._timers.retry = setTimeout(() => this._open(), delayMs);
  }

  /** Final: rejects everything pending; the client cannot be reused. */
  close() {
    if (this._final) return;
    this._final = true;
    for (const k of Object.keys(this._timers)) clearTimeout(this._timers[k]);
    const ws = this._ws;
    this._ws = null;
    this._conn++;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(1000);
      } catch {
        // already closing
      }
    }
    const closed = (sent) => new RingfanError("closed", "the client was closed", { sent });
    for (const r of this._pending.values()) if (r.kind === "pub") this._fail(r, closed(true));
    for (const r of this._out) this._fail(r, closed(false));
    this._pending.clear();
    this._out = [];
    for (const e of this._patterns.values()) for (const s of e.subs) s._end(closed(false));
    this._patterns.clear();
    this._topics.clear();
    this._setState("closed");
  }

  // ---- requests ----------------------------------------------------------

  /** Publishes `data` on `topic`; resolves on the broker's ack. */
  publish(topic, data) {
    if (this._final) return Promise.reject(new RingfanError("closed", "the client was closed"));
    // The id is appended when the request goes on the socket.
    const body = JSON.stringify({ op: "pub", topic, data: data === undefined ? null : data }).slice(0, -1);
    return new Promise((resolve, reject) => {
      const r = { kind: "pub", id: 0, body, resolve, reject, timer: null, done: false };
      this.connect(); // a no-op unless idle
      if (!this._open_()) {
        const bound = this.options.queueWhileDisconnected;
        if (bound <= 0) return reject(new RingfanError("not_connected", "not connected (queueWhileDisconnected is 0)"));
        if (this._out.length >= bound) return reject(new RingfanError("queue_full", `not connected, and ${bound} requests already wait`));
      }
      r.timer = setTimeout(() => this._expire(r), this.options.requestTimeoutMs);
      this._out.push(r);
      this._flush();
    });
  }

  _open_() {
    return this._state === "open" && this._ws !== null;
  }

  _expire(r) {
    if (r.done) return;
    const i = this._out.indexOf(r);
    if (i >= 0) {
      this._out.splice(i, 1);
      // Never sent: either the socket was down the whole time, or its
      // buffer never drained below maxBufferedAmount.
      const err = this._open_()
        ? new RingfanError("backpressure", `the send buffer stayed over ${this.options.maxBufferedAmount} bytes for ${this.options.requestTimeoutMs} ms`)
        : new RingfanError("not_connected", `not connected within ${this.options.requestTimeoutMs} ms`);
      return this._fail(r, err);
    }
    this._pending.delete(r.id);
    this._fail(r, new RingfanError("timeout", `no reply within ${this.options.requestTimeoutMs} ms (it may have been published)`, { sent: true }));
  }

  /** Settles a publish once: rejected with `err`, or resolved. */
  _fail(r, err) {
    if (r.done) return;
    r.done = true;
    clearTimeout(r.timer);
    err ? r.reject(err) : r.resolve();
  }

  /** Sends queued publishes while the socket's buffer has room. */
  _flush() {
    if (!this._open_()) return;
    const ws = this._ws;
    const max = this.options.maxBufferedAmount;
    while (this._out.length > 0) {
      const r = this._out[0];
      // A message always goes on an empty buffer, however large.
      if (ws.bufferedAmount > 0 && ws.bufferedAmount + r.body.length > max) {
        // WebSocket has no drain event: poll until it has drained.
        if (!this._timers.drain) {
          this._timers.drain = setTimeout(() => {
            this._timers.drain = null;
            this._flush();
          }, 5);
        }
        return;
      }
      this._out.shift();
      r.id = this._nextId++;
      this._pending.set(r.id, r);
      ws.send(`${r.body},"id":${r.id}}`);
    }
  }

  /** Sends a control request (sub, unsub, auth) at once; they are small. */
  _request(msg, kind, conn, extra = {}) {
    const id = this._nextId++;
    const r = { kind, id, conn, done: false, timer: null, ...extra };
    this._pending.set(id, r);
    this._ws.send(JSON.stringify({ ...msg, id }));
    // An unanswered control request on a silent connection means it is
    // not working: start over on a new one. A big snapshot keeps the
    // connection busy before its ack, so only silence counts.
    const limit = this.options.requestTimeoutMs;
    const check = () => {
      if (this._pending.get(id) !== r || conn !== this._conn) return;
      const quiet = Date.now() - this._lastRx;
      if (quiet < limit) return (r.timer = setTimeout(check, limit - quiet));
      this._emit("error", new RingfanError("timeout", `no reply to ${msg.op} within ${limit} ms; reconnecting`, { sent: true }));
      this._dropped(conn, 0, "request timeout");
    };
    r.timer = setTimeout(check, limit);
    return r;
  }

  // ---- subscriptions -----------------------------------------------------

  /**
   * Calls `handler` with each message of the topics `pattern` matches, per
   * topic in seq order, without duplicates; gaps are reported as events.
   */
  subscribe(pattern, handler, options = {}) {
    if (this._final) throw new RingfanError("closed", "the client was closed");
    const sub = new Subscription(this, pattern, handler);
    let e = this._patterns.get(pattern);
    if (e) {
      e.subs.add(sub);
      if (e.acked) sub._resolve();
      return sub;
    }
    e = { pattern, subs: new Set([sub]), state: "queued", acked: false, snapshot: options.snapshot ?? true };
    this._patterns.set(pattern, e);
    this._patternsVersion++;
    if (this._open_()) {
      if (e.snapshot) {
        this._lane.queue.push(e);
        this._pumpLane();
      } else {
        this._plainSub(e);
      }
    } else {
      this.connect();
    }
    return sub;
  }

  _plainSub(e) {
    e.state = "sent";
    this._request({ op: "sub", topics: [e.pattern] }, "sub", this._conn, { entries: [e], snapshot: false });
  }

  _unsubscribe(sub) {
    const e = this._patterns.get(sub.pattern);
    if (!e || !e.subs.delete(sub) || e.subs.size > 0) return;
    this._patterns.delete(e.pattern);
    this._patternsVersion++;
    e.state = "gone";
    this._lane.queue = this._lane.queue.filter((x) => x !== e);
    if (this._open_()) this._unsub([e.pattern]);
    this._forgetUnmatched();
  }

  _unsub(patterns) {
    this._request({ op: "unsub", topics: patterns }, "unsub", this._conn, { patterns });
  }

  /** An unsub refused for the connection's rate left the patterns in
   * place: ask again later for those nobody subscribed to since (a
   * resync's pattern is held again: its snapshot retry unsubs anew). */
  _unsubRefused(r) {
    const conn = this._conn;
    setTimeout(() => {
      const gone = r.patterns.filter((p) => !this._patterns.has(p));
      if (conn === this._conn && this._open_() && gone.length > 0) this._unsub(gone);
    }, 200);
  }

  /** Drops sequencing state of topics no pattern matches any more. */
  _forgetUnmatched() {
    for (const [name, t] of this._topics) {
      if (this._entriesFor(name, t).length === 0) this._topics.delete(name);
    }
  }

  _entriesFor(topic, t) {
    if (t && t.version === this._patternsVersion) return t.entries;
    const out = [];
    for (const e of this._patterns.values()) if (matches(e.pattern, topic)) out.push(e);
    if (t) {
      t.entries = out;
      t.version = this._patternsVersion;
    }
    return out;
  }

  /** Sends the next snapshot `sub` (one in flight per connection). */
  _pumpLane() {
    const lane = this._lane;
    if (!this._open_() || lane.inFlight || this._timers.lane) return;
    lane.queue = lane.queue.filter((e) => this._patterns.get(e.pattern) === e);
    if (lane.queue.length === 0) return;
    // Patterns split after a refusal go alone, so one bad pattern cannot
    // refuse the others with it.
    const n = lane.queue[0].solo ? 1 : Math.min(this.options.maxSnapshotPatterns, lane.queue.length);
    let batch = [];
    while (batch.length < n && lane.queue.length > 0 && !(batch.length > 0 && lane.queue[0].solo)) batch.push(lane.queue.shift());
    // "resync": unsub then sub; "resub": its unsub went already (the sub
    // was refused and is asked again).
    const resync = batch.filter((e) => e.state === "resync");
    const conn = this._conn;
    if (resync.length > 0) {
      // Unsub first: a sub of a pattern still held gets no snapshot.
      this._unsub(resync.map((e) => e.pattern));
      for (const [name, t] of this._topics) {
        if (t.mode === LIVE && resync.some((e) => matches(e.pattern, name))) t.mode = WINDOW;
      }
    }
    for (const e of batch) e.state = e.state === "resync" || e.state === "resub" ? "syncing" : "sent";
    lane.inFlight = this._request({ op: "sub", topics: batch.map((e) => e.pattern), snapshot: true }, "sub", conn, { entries: batch, snapshot: true });
  }

  _subAcked(r) {
    if (this._lane.inFlight === r) {
      this._lane.inFlight = null;
      this._lane.retryMs = 0;
    }
    const synced = [];
    for (const e of r.entries) {
      if (this._patterns.get(e.pattern) !== e) continue;
      if (e.state === "syncing") synced.push(e);
      e.state = "active";
      e.acked = true;
      e.solo = false;
      for (const s of e.subs) s._resolve();
    }
    // The snapshot is in: what follows on these topics is live again.
    for (const [name, t] of synced.length > 0 ? this._topics : []) {
      const entries = this._entriesFor(name, t);
      if (t.mode === WINDOW && !windowed(entries)) t.mode = LIVE;
      // A resync acked without the gap topic's snapshot: the slow-consumer
      // policy dropped it too (or the value was forgotten). Try again,
      // later each time, a few times.
      if (t.wantSnapshot && synced.some((e) => matches(e.pattern, name))) {
        t.snapTries = (t.snapTries ?? 0) + 1;
        if (t.snapTries > 5) t.wantSnapshot = false;
        else this._resync(entries, name, 100 * 2 ** t.snapTries);
      }
    }
    this._pumpLane();
  }

  _subRefused(r, err) {
    const lane = this._lane;
    if (lane.inFlight === r) lane.inFlight = null;
    const live = r.entries.filter((e) => this._patterns.get(e.pattern) === e);
    // Whatever happens next, a refused resync's unsub has gone through.
    for (const e of live) e.state = e.state === "syncing" ? "resub" : "queued";
    if (err.code === "rate_limited") {
      // Nothing was subscribed: try again after a pause that grows.
      lane.retryMs = Math.min(2000, Math.max(50, lane.retryMs * 2));
      if (!r.snapshot) {
        const conn = this._conn;
        setTimeout(() => {
          for (const e of live) {
            if (conn === this._conn && this._open_() && this._patterns.get(e.pattern) === e && e.state === "queued") this._plainSub(e);
          }
        }, lane.retryMs);
        return;
      }
      lane.queue.unshift(...live);
      this._timers.lane = setTimeout(() => {
        this._timers.lane = null;
        this._pumpLane();
      }, lane.retryMs);
      return;
    }
    if (live.length > 1) {
      // One refusal refuses the whole request: ask for each alone.
      for (const e of live) e.solo = true;
      lane.queue.unshift(...live);
    } else {
      for (const e of live) {
        this._patterns.delete(e.pattern);
        this._patternsVersion++;
        for (const s of e.subs) s._end(new RingfanError(err.code, err.message, { sent: true, pattern: e.pattern }));
        this._emit("error", new RingfanError(err.code, `subscription '${e.pattern}' refused: ${err.message}`, { sent: true, pattern: e.pattern }));
      }
      this._forgetUnmatched();
    }
    this._pumpLane();
  }

  /** Re-subscribes the patterns with a snapshot after a gap on `topic`.
   * Not at once: a gap says the broker's queue for us overflowed, and a
   * snapshot asked for while it is still full is dropped like the rest. */
  _resync(entries, topic, delayMs = this.options.resyncDelayMs) {
    const t = this._topics.get(topic);
    if (t) t.wantSnapshot = true;
    const conn = this._conn;
    for (const e of entries) {
      if (e.state !== "active") continue; // already resyncing or not yet live
      e.state = "resync";
      this._stats.resyncs++;
      this._emit("resync", { pattern: e.pattern, topic });
      setTimeout(() => {
        if (conn !== this._conn || this._patterns.get(e.pattern) !== e || e.state !== "resync") return;
        this._lane.queue.push(e);
        this._pumpLane();
      }, delayMs);
    }
  }

  // ---- input -------------------------------------------------------------

  _onText(text, conn) {
    let m;
    try {
      m = JSON.parse(text);
    } catch {
      return this._emit("error", new RingfanError("bad_json", "the broker sent something that is not JSON"));
    }
    switch (m.op) {
      case "msg":
        return this._onMsg(m, text);
      case "ack":
      case "err":
        return this._onReply(m, conn);
      case "expiring":
        return this._refreshToken(conn, m.in);
      case "revoked":
        return this._onRevoked(m.topics ?? []);
      default:
        return; // later protocol versions may add ops
    }
  }

  _onReply(m, conn) {
    const err = m.op === "err" ? new RingfanError(m.code, m.message ?? m.code, { sent: true }) : null;
    const r = m.id === undefined ? undefined : this._pending.get(m.id);
    if (!r) return err && this._emit("error", err); // e.g. bad_json: carries no id
    this._pending.delete(m.id);
    clearTimeout(r.timer);
    switch (r.kind) {
      case "pub":
        return this._fail(r, err);
      case "sub":
        return err ? this._subRefused(r, err) : this._subAcked(r);
      case "auth-first":
        // A refused first auth is followed by the broker's close (4003).
        if (err) return this._emit("error", err);
        return this._ready(conn);
      default: // auth (a refresh), unsub
        if (r.kind === "unsub" && err?.code === "rate_limited") this._unsubRefused(r);
        else if (err) this._emit("error", err);
    }
  }

  async _refreshToken(conn, inS) {
    if (!this.options.token) return;
    let token;
    try {
      token = await this.options.token();
    } catch (e) {
      return this._emit("error", new RingfanError("token", `token provider failed on expiring (${inS} s left): ${e}`, { cause: e }));
    }
    // The socket may have gone meanwhile; the next one authenticates anew.
    if (conn !== this._conn || !this._open_() || !token) return;
    this._request({ op: "auth", token }, "auth", conn);
  }

  _onRevoked(patterns) {
    const ended = [];
    for (const p of patterns) {
      const e = this._patterns.get(p);
      if (!e) continue;
      this._patterns.delete(p);
      this._patternsVersion++;
      this._lane.queue = this._lane.queue.filter((x) => x !== e);
      for (const s of e.subs) {
        s._end(new RingfanError("revoked", `the token no longer covers '${p}'`, { pattern: p }));
        ended.push(s);
      }
    }
    this._forgetUnmatched();
    this._emit("revoked", { patterns, subscriptions: ended });
  }

  _onMsg(m, raw) {
    const topic = m.topic;
    const seq = m.seq;
    let t = this._topics.get(topic);
    const entries = this._entriesFor(topic, t);
    if (entries.length === 0) return; // an unsub on its way
    if (!t) {
      // A topic's first message: a new subscription's stream has no hole
      // before it. Inside a resync window, the snapshot may still follow.
      const mode = windowed(entries) ? WINDOW : LIVE;
      t = { last: seq, raw, mode, entries, version: this._patternsVersion };
      this._topics.set(topic, t);
      return this._deliver(m, entries);
    }
    if (m.snapshot && t.wantSnapshot) t.wantSnapshot = false;
    const last = t.last;
    if (t.mode === FRESH) {
      // What the new connection sends after this first message has no
      // hole, unless a resync is under way.
      t.mode = windowed(entries) ? WINDOW : LIVE;
      if (seq === last && sameData(t.raw, raw)) return void this._stats.duplicates++;
      if (seq <= last) {
        // A new connection sees a lower (or different) seq: the broker
        // restarted (counters live in memory) or the topic was reset.
        this._stats.resets++;
        this._emit("reset", { topic, seq, previous: last, reason: "reconnect" });
      } else if (seq > last + 1) {
        this._stats.rebases++;
        this._emit("rebase", { topic, from: last + 1, to: seq - 1, reason: "reconnect" });
      }
    } else if (seq === last + 1) {
      // the normal case
    } else if (seq === 1 && last > 1) {
      this._stats.resets++;
      this._emit("reset", { topic, seq, previous: last, reason: "reset" });
    } else if (seq <= last) {
      return void this._stats.duplicates++;
    } else if (t.mode === WINDOW) {
      // The resync's snapshot (or the first live message after it) stands
      // for what was published while the pattern was re-subscribed.
      this._stats.rebases++;
      this._emit("rebase", { topic, from: last + 1, to: seq - 1, reason: "resync" });
    } else {
      this._stats.gaps++;
      this._emit("gap", { topic, from: last + 1, to: seq - 1 });
      this._resync(entries, topic);
    }
    t.last = seq;
    t.raw = raw;
    this._deliver(m, entries);
  }

  _deliver(m, entries) {
    this._stats.messages++;
    const out = { topic: m.topic, seq: m.seq, data: m.data, snapshot: m.snapshot === true };
    for (const e of entries) {
      for (const s of e.subs) {
        try {
          s.handler(out);
        } catch (err) {
          this._emit("error", new RingfanError("handler", `the handler of '${e.pattern}' threw: ${err}`, { cause: err, pattern: e.pattern }));
        }
      }
    }
  }
}

/** Whether a resync of one of these patterns is under way: its unsub has
 * gone and its snapshot `sub` has not been acknowledged. */
function windowed(entries) {
  return entries.some((e) => e.state === "syncing" || e.state === "resub");
}

/** Whether two `msg` frames carry the same data bytes (the broker passes
 * them verbatim; `data` is the last field, and no earlier field can hold
 * the text `"data":`: topics have no quotes). */
function sameData(a, b) {
  const i = a.indexOf('"data":');
  const j = b.indexOf('"data":');
  return i >= 0 && j >= 0 && a.slice(i) === b.slice(j);
}
