// The live market board: one ringfan.js connection, one pattern
// subscription with snapshots, a row per topic.
//
// Messages update a model; the DOM is written at most once per animation
// frame (rows whose values changed) and ages four times a second, so a
// feed of thousands of updates a second costs the page a few hundred DOM
// writes, not one per message.
//
// Query parameters: ?url=ws://host:port/ws (default: this page's host,
// ws: or wss: to match http: or https:), ?filter=md.NYSE.* (the pattern).

import { Ringfan } from "./ringfan.js";

const params = new URLSearchParams(location.search);
const wsUrl = params.get("url") ||
  `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
const MAX_ROWS = 500;

const $ = (id) => document.getElementById(id);
const el = {
  state: $("state"), filter: $("filter"), form: $("filter-form"), error: $("filter-error"),
  messages: $("messages"), rate: $("rate"), gaps: $("gaps"), reconnects: $("reconnects"),
  rowCount: $("row-count"), latency: $("latency"), latencyLabel: $("latency-label"),
  rows: $("rows"), empty: $("empty"), url: $("url"),
};
el.url.textContent = wsUrl;
if (params.get("filter")) el.filter.value = params.get("filter");

const rf = new Ringfan(wsUrl, {
  reconnect: { initialMs: 250, maxMs: 5000, factor: 2, stableMs: 10000 },
});

// ---- latency ---------------------------------------------------------
// The feed stamps each payload with "t": nanoseconds on the feed
// process's own monotonic clock (ringfan-loadgen's run clock, which starts
// near 0 when the process starts), not wall time: a browser cannot read
// that clock, so it cannot subtract it directly. The board estimates the
// clock offset as the smallest (arrival - t) seen in the last 10-20 s and
// shows each message's delay above that: the one-way latency beyond the
// fastest recent message (queueing, batching, the broker's fan-out,
// rendering). When "t" is on the wall clock (within a minute of
// Date.now()), the true end-to-end latency is shown instead.
const latency = {
  samples: [], // this second's delays, ms
  minNow: Infinity, minPrev: Infinity, bucketAt: 0, absolute: null, lastT: 0,
  reset() {
    this.minNow = this.minPrev = Infinity;
    this.samples = [];
    this.absolute = null;
    this.lastT = 0;
  },
  add(tNs) {
    // The feed's clock went back a second or more: a new feed process,
    // a new epoch; the old offset means nothing.
    if (tNs < this.lastT - 1e9) this.reset();
    this.lastT = Math.max(this.lastT, tNs);
    const now = performance.timeOrigin + performance.now();
    const d = now - tNs / 1e6;
    if (this.absolute === null) this.absolute = Math.abs(d) < 60_000;
    if (this.absolute) { this.samples.push(d); return; }
    if (now - this.bucketAt > 10_000) {
      this.minPrev = this.minNow; this.minNow = Infinity; this.bucketAt = now;
    }
    this.minNow = Math.min(this.minNow, d);
    this.samples.push(d - Math.min(this.minNow, this.minPrev));
  },
  // p50 / p99 / max of the last second's samples, then clears them.
  take() {
    const s = this.samples.sort((a, b) => a - b);
    this.samples = [];
    if (!s.length) return null;
    const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
    return [q(0.5), q(0.99), s[s.length - 1]];
  },
};

// ---- the model -------------------------------------------------------
/** topic -> {tr, cells, bid, ask, last, first, updates, at, dirty: Set} */
const rows = new Map();
const dirty = new Set();
let total = 0; // messages shown by this page (snapshots included)
let perSecond = 0;
const hidden = new Set(); // topics past MAX_ROWS

function price(v) {
  return typeof v === "number" ? v.toFixed(2) : "–";
}

function makeRow(topic) {
  const tr = document.createElement("tr");
  const names = ["topic", "bid", "ask", "last", "change", "updates", "age"];
  const cells = {};
  for (const n of names) {
    const td = document.createElement("td");
    td.className = n;
    tr.append(td);
    cells[n] = td;
  }
  for (const n of ["bid", "ask", "last", "change"]) cells[n].textContent = "–";
  cells.topic.textContent = topic;
  tr.dataset.topic = topic;
  // Rows kept sorted by topic.
  let before = null;
  for (const other of el.rows.children) {
    if (other.dataset.topic > topic) { before = other; break; }
  }
  el.rows.insertBefore(tr, before);
  return { tr, cells, bid: null, ask: null, last: null, first: null, updates: 0, at: 0,
           changed: new Set(), dir: {} };
}

function onMessage(m) {
  total++;
  perSecond++;
  let data = m.data;
  if (typeof data === "string") {
    try { data = JSON.parse(data); } catch { data = null; }
  }
  if (!data || typeof data !== "object") return;
  let row = rows.get(m.topic);
  if (!row) {
    if (rows.size >= MAX_ROWS) {
      if (hidden.size < 100_000) hidden.add(m.topic);
      return;
    }
    row = makeRow(m.topic);
    rows.set(m.topic, row);
  }
  const set = (field, v) => {
    if (typeof v !== "number" || v === row[field]) return;
    row.dir[field] = row[field] === null ? 0 : Math.sign(v - row[field]);
    row[field] = v;
    row.changed.add(field);
  };
  if (data.type === "trade") {
    if (row.first === null && typeof data.px === "number") row.first = data.px;
    set("last", data.px);
    if (row.last !== null) row.changed.add("change");
  } else {
    set("bid", data.bid);
    set("ask", data.ask);
  }
  row.updates++;
  row.at = performance.now();
  row.changed.add("updates");
  // Snapshots are last values from before we came: no flash, no latency.
  row.flash = !m.snapshot;
  if (!m.snapshot && typeof data.t === "number") latency.add(data.t);
  dirty.add(row);
}

// ---- rendering -------------------------------------------------------
const FLASH = { up: "rgba(46,160,67,0.55)", down: "rgba(248,81,73,0.55)", same: "rgba(88,166,255,0.35)" };

let lastFlush = 0;

// Writes what changed since the last call to the DOM.
function flush() {
  lastFlush = performance.now();
  for (const row of dirty) {
    for (const field of row.changed) {
      const td = row.cells[field];
      if (field === "change") {
        const c = row.last - row.first;
        const pct = row.first ? (100 * c) / row.first : 0;
        td.textContent = `${c >= 0 ? "+" : ""}${c.toFixed(2)} (${pct >= 0 ? "+" : ""}${pct.toFixed(2)}%)`;
        td.classList.toggle("up", c > 0);
        td.classList.toggle("down", c < 0);
        continue;
      }
      td.textContent = field === "updates" ? String(row.updates) : price(row[field]);
      if (row.flash && field !== "updates") {
        const d = row.dir[field];
        const color = d > 0 ? FLASH.up : d < 0 ? FLASH.down : FLASH.same;
        // The Web Animations API: no class toggling, no forced reflow.
        td.animate([{ backgroundColor: color }, { backgroundColor: "transparent" }],
                   { duration: 700, easing: "ease-out" });
      }
    }
    row.changed.clear();
  }
  dirty.clear();
  el.messages.textContent = total.toLocaleString("en");
  el.empty.hidden = rows.size > 0;
}

function frame() {
  flush();
  requestAnimationFrame(frame);
}

function ages() {
  const now = performance.now();
  // Frames stop in a hidden tab (and may be rationed headless): the
  // figures still move.
  if (now - lastFlush > 500) flush();
  for (const row of rows.values()) {
    const age = (now - row.at) / 1000;
    row.cells.age.textContent = age < 60 ? `${age.toFixed(1)}s` : `${Math.floor(age / 60)}m`;
    row.tr.classList.toggle("stale", age > 10);
  }
  const s = rf.stats;
  el.gaps.textContent = String(s.gaps);
  el.reconnects.textContent = String(s.reconnects);
  el.rowCount.textContent = hidden.size ? `${rows.size} (+${hidden.size} not shown)` : String(rows.size);
}

function everySecond() {
  el.rate.textContent = perSecond.toLocaleString("en");
  perSecond = 0;
  const l = latency.take();
  el.latencyLabel.textContent = latency.absolute === false
    ? "latency above fastest p50 / p99 / max" : "latency p50 / p99 / max";
  el.latencyLabel.title = latency.absolute === false
    ? "the feed's clock is its own: delay beyond the fastest message of the last 10-20 s (board.js explains)"
    : "publish timestamp to arrival in this page";
  el.latency.textContent = l ? l.map((v) => `${v.toFixed(1)}`).join(" / ") + " ms" : "–";
}

// ---- connection and subscription -------------------------------------
let sub = null;
let current = null; // the pattern subscribed to

async function subscribe(pattern) {
  if (sub) sub.unsubscribe();
  rows.clear();
  dirty.clear();
  hidden.clear();
  el.rows.replaceChildren();
  el.error.textContent = "";
  current = pattern;
  const mine = rf.subscribe(pattern, onMessage, { snapshot: true });
  sub = mine;
  const url = new URL(location.href);
  url.searchParams.set("filter", pattern);
  history.replaceState(null, "", url);
  try {
    await mine.ready;
  } catch (e) {
    // A bad pattern, or one we may not read: say so, keep the page alive.
    if (sub === mine) el.error.textContent = `${e.code || "error"}: ${e.message}`;
  }
}

rf.on("state", (s) => {
  el.state.dataset.state = s.state;
  el.state.textContent = s.state === "reconnecting" && s.delayMs !== undefined
    ? `reconnecting (${Math.round(s.delayMs)} ms)` : s.state;
  // A new connection may reach a restarted feed on another clock.
  if (s.state === "open") latency.reset();
});
// Seq 1 after a higher one: the topic started over (a restarted broker,
// perhaps a restarted feed with new prices): change counts from anew.
rf.on("reset", (r) => {
  const row = rows.get(r.topic);
  if (row) row.first = null;
});
// Errors the client reports on its own: a refused pattern belongs by the
// filter box; connection trouble (cannot connect, a timeout) shows on the
// state badge, which the reconnects already explain.
rf.on("error", (e) => {
  const text = `${e.code || "error"}: ${e.message}`;
  if (e.pattern === undefined) el.state.title = text;
  else if (e.pattern === current) el.error.textContent = text;
});

el.form.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const pattern = el.filter.value.trim();
  if (pattern) subscribe(pattern);
});

// For tests and the curious: the board's figures, from the console.
window.board = {
  rf,
  stats: () => ({ ...rf.stats, shown: total, rows: rows.size, state: rf.stats.state }),
  subscribe,
};

subscribe(el.filter.value.trim());
requestAnimationFrame(frame);
setInterval(ages, 250);
setInterval(everySecond, 1000);
