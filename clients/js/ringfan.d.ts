// Types of ringfan.js (checked by `npx tsc --noEmit` against test/types.ts).

/** Client-side codes, besides the broker's `err` codes. */
export type ClientErrorCode =
  | "timeout" // sent, no reply within requestTimeoutMs: it may have taken effect
  | "backpressure" // never sent: the socket's buffer stayed over maxBufferedAmount
  | "not_connected" // never sent: disconnected (queueWhileDisconnected 0, or the deadline passed)
  | "queue_full" // never sent: disconnected with queueWhileDisconnected requests waiting
  | "disconnected" // sent, the connection dropped before the reply: it may have taken effect
  | "closed" // close() was called
  | "unsubscribed" // Subscription.ready of a subscription ended before its ack
  | "revoked" // a fresh token no longer covers the subscription
  | "token" // the token provider threw
  | "connect" // the WebSocket constructor threw
  | "handler" // a message handler or event listener threw
  | "bad_json"; // the broker sent text that is not JSON

/** The broker's `err` codes (docs/protocol.md, "Error codes"). */
export type BrokerErrorCode =
  | "bad_json"
  | "bad_op"
  | "bad_topic"
  | "forbidden"
  | "too_large"
  | "rate_limited"
  | "unauthorized"
  | "internal";

export class RingfanError extends Error {
  constructor(code: string, message: string, extra?: { sent?: boolean; pattern?: string; cause?: unknown });
  readonly name: "RingfanError";
  /** A BrokerErrorCode or a ClientErrorCode (or a code of a later broker). */
  readonly code: BrokerErrorCode | ClientErrorCode | (string & {});
  /** Whether the request reached the socket (only then can it have taken effect). */
  readonly sent: boolean;
  /** The pattern of a refused or revoked subscription. */
  readonly pattern?: string;
}

export interface ReconnectOptions {
  /** Cap of the first retry's delay (ms). Default 250. */
  initialMs?: number;
  /** Largest cap (ms). Default 30000. */
  maxMs?: number;
  /** Growth of the cap per failed attempt. Default 2. */
  factor?: number;
  /** A connection open this long resets the attempt counter (ms). Default 10000. */
  stableMs?: number;
}

/** The WebSocket constructor the client uses (a browser's, Node's, or a compatible one). */
export interface WebSocketConstructor {
  new (url: string, protocols?: string | string[]): WebSocketLike;
}

/** What the client needs of a WebSocket. */
export interface WebSocketLike {
  readonly readyState: number;
  readonly bufferedAmount: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: any) => any) | null;
  onmessage: ((ev: any) => any) | null;
  onclose: ((ev: any) => any) | null;
  onerror: ((ev: any) => any) | null;
}

export interface RingfanOptions {
  /** Called before each connect and on the broker's `expiring`; null/undefined: no token. */
  token?: () => string | null | undefined | Promise<string | null | undefined>;
  /** "message" (default): sent as the first `auth` request; "query": as ?token= on the URL. */
  tokenIn?: "message" | "query";
  reconnect?: ReconnectOptions;
  /** Deadline of a publish from its call, and of each sub/unsub/auth reply. Default 10000. */
  requestTimeoutMs?: number;
  /** Publishes held while disconnected; 0 = reject at once. Default 1000. */
  queueWhileDisconnected?: number;
  /** Publishes wait while the socket's bufferedAmount is over this. Default 1 MiB. */
  maxBufferedAmount?: number;
  /** Patterns per snapshot `sub` request (the broker's --max-snapshot-patterns). Default 1000. */
  maxSnapshotPatterns?: number;
  /** Wait after a gap before the resync (the broker's queue for a slow
   * consumer is still full right after one). Default 50. */
  resyncDelayMs?: number;
  /** Subprotocols offered. Default ["ringfan.v1"]. */
  protocols?: string | string[];
  /** A WebSocket constructor; default globalThis.WebSocket. */
  WebSocket?: WebSocketConstructor;
}

export type ConnectionState = "idle" | "connecting" | "open" | "reconnecting" | "closed";

export interface StateEvent {
  state: ConnectionState;
  /** Consecutive failed attempts (0 after a stable connection). */
  attempt: number;
  /** With "reconnecting": the delay before the next attempt. */
  delayMs?: number;
  /** With "reconnecting": the close code and reason (0 when none). */
  code?: number;
  reason?: string;
}

/** Seqs from..to (inclusive) were missed on a live connection; a resync follows. */
export interface GapEvent {
  topic: string;
  from: number;
  to: number;
}

/** A seq at or below the last one: the topic was reset (seq 1), or, on a
 * new connection, the broker restarted. The stream starts over from `seq`. */
export interface ResetEvent {
  topic: string;
  seq: number;
  previous: number;
  reason: "reset" | "reconnect";
}

/** After a reconnect or a resync, the topic's first message (its snapshot,
 * the latest value) skipped seqs from..to: what was published meanwhile. */
export interface RebaseEvent {
  topic: string;
  from: number;
  to: number;
  reason: "reconnect" | "resync";
}

export interface ResyncEvent {
  pattern: string;
  topic: string;
}

export interface RevokedEvent {
  patterns: string[];
  subscriptions: Subscription[];
}

export interface RingfanEvents {
  state: StateEvent;
  gap: GapEvent;
  reset: ResetEvent;
  rebase: RebaseEvent;
  resync: ResyncEvent;
  revoked: RevokedEvent;
  error: RingfanError;
}

export interface Message<T = unknown> {
  topic: string;
  seq: number;
  data: T;
  /** True for a snapshot (the topic's last value, sent on subscribe). */
  snapshot: boolean;
}

export interface SubscribeOptions {
  /** Ask for each topic's last value first. Default true. Restores after a
   * reconnect always ask for it. */
  snapshot?: boolean;
}

export interface Subscription {
  readonly pattern: string;
  /** False once unsubscribed, refused, revoked, or the client closed. */
  readonly active: boolean;
  /** Why the broker ended it (refused, revoked), if it did. */
  readonly error: RingfanError | null;
  /** Resolves on the broker's first ack of the pattern; rejects if refused. */
  readonly ready: Promise<void>;
  unsubscribe(): void;
}

export interface Stats {
  messages: number;
  duplicates: number;
  gaps: number;
  resets: number;
  rebases: number;
  resyncs: number;
  reconnects: number;
  state: ConnectionState;
  queued: number;
  inFlight: number;
  subscriptions: number;
  topics: number;
}

export class Ringfan {
  /** One broker URL, or several (the nodes of a cluster): each retry goes to the next. */
  constructor(url: string | string[], options?: RingfanOptions);
  /** The URL the current (or next) connection attempt uses. */
  readonly url: string;
  readonly urls: readonly string[];
  readonly state: ConnectionState;
  readonly stats: Stats;
  on<K extends keyof RingfanEvents>(event: K, fn: (value: RingfanEvents[K]) => void): this;
  off<K extends keyof RingfanEvents>(event: K, fn: (value: RingfanEvents[K]) => void): this;
  connect(): this;
  subscribe<T = unknown>(pattern: string, handler: (m: Message<T>) => void, options?: SubscribeOptions): Subscription;
  publish(topic: string, data: unknown): Promise<void>;
  close(): void;
}

/** The delay before retry `attempt` (1 = first): uniform in [0, min(maxMs, initialMs * factor^(attempt-1))). */
export function backoffDelay(attempt: number, reconnect?: ReconnectOptions, random?: () => number): number;

/** Whether `pattern` (with `*` and a final `>`) matches `topic`. */
export function matches(pattern: string, topic: string): boolean;
