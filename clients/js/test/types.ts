// A typed use of the public API: `npx tsc --noEmit` checks ringfan.d.ts
// against it (never run; the Node tests exercise the behaviour).
import { Ringfan, RingfanError, backoffDelay, matches, type Message, type StateEvent } from "../ringfan.js";

interface Quote {
  bid: number;
  ask: number;
}

export async function usage(): Promise<void> {
  const rf = new Ringfan("wss://example.test/ws", {
    token: async () => "eyJ...",
    reconnect: { initialMs: 250, maxMs: 30000, factor: 2, stableMs: 10000 },
    requestTimeoutMs: 10000,
    queueWhileDisconnected: 1000,
    maxBufferedAmount: 1 << 20,
  });
  rf.on("state", (s: StateEvent) => {
    const st: "idle" | "connecting" | "open" | "reconnecting" | "closed" = s.state;
    const n: number = s.attempt + (s.delayMs ?? 0);
    void st, n;
  });
  rf.on("gap", (g) => console.log(g.topic, g.from, g.to));
  rf.on("reset", (r) => console.log(r.topic, r.seq, r.previous, r.reason));
  rf.on("rebase", (r) => console.log(r.topic, r.from, r.to, r.reason));
  rf.on("resync", (r) => console.log(r.pattern));
  rf.on("revoked", (r) => r.subscriptions.forEach((s) => console.log(s.pattern, s.active)));
  const onError = (e: RingfanError) => console.log(e.code, e.message, e.sent);
  rf.on("error", onError);
  rf.off("error", onError);
  rf.connect();

  const sub = rf.subscribe<Quote>("md.NASDAQ.*", (m: Message<Quote>) => {
    const spread: number = m.data.ask - m.data.bid;
    const s: string = m.topic;
    const q: number = m.seq;
    const b: boolean = m.snapshot;
    void spread, s, q, b;
  }, { snapshot: true });
  await sub.ready;
  sub.unsubscribe();
  const active: boolean = sub.active;
  void active;

  try {
    await rf.publish("md.NASDAQ.AAPL", { bid: 1, ask: 2 });
  } catch (e) {
    if (e instanceof RingfanError && e.code === "forbidden") console.log(e.message);
  }
  const st = rf.stats;
  const total: number = st.messages + st.gaps + st.reconnects;
  void total, backoffDelay(3, { initialMs: 100 }), matches("a.*", "a.b");
  rf.close();

  // @ts-expect-error: publish takes a topic and data
  rf.publish("x");
  // @ts-expect-error: no such event
  rf.on("nope", () => {});
  // Node 20 without --experimental-websocket: pass the constructor.
  new Ringfan("ws://127.0.0.1:1/ws", { WebSocket: globalThis.WebSocket, queueWhileDisconnected: 0 });
  // A cluster's nodes: each retry goes to the next.
  const many = new Ringfan(["ws://a.test/ws", "ws://b.test/ws"]);
  const first: string = many.url;
  const all: readonly string[] = many.urls;
  void first;
  void all;
}
