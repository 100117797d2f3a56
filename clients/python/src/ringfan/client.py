"""The ringfan client: one WebSocket to the broker, kept up.

One task (`_run`) owns the connection: it connects (with a fresh token),
and while a connection is open runs three tasks on it: the reader (replies
and messages), the writer (publishes, in order, from a bounded queue) and
the syncer (subscribe/unsubscribe/resync requests, one at a time, because
the broker allows one snapshot `sub` in flight per connection). When the
connection goes down it waits a backoff delay and connects again; the new
connection resubscribes every held pattern with a snapshot, and each
subscription's per-topic seq tracking (`_subscription.py`) turns the
snapshot into "no duplicate, gaps reported".
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, overload

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State as WsState
from websockets.typing import Subprotocol

from ._errors import RingfanError
from ._patterns import matches, overlap
from ._subscription import Handler, Subscription
from ._types import Backoff, Gap, Reset, Resync, State, StateChange, Stats

log = logging.getLogger("ringfan")

TokenProvider = Callable[[], "Awaitable[str] | str"]
Event = Literal["state", "gap", "reset", "resync", "error"]

# The broker's default --max-snapshot-patterns: one `sub` with `snapshot`
# may list at most this many patterns.
SNAPSHOT_PATTERNS_PER_REQUEST = 1000


@dataclass(eq=False, slots=True)
class _Pattern:
    """A pattern the user holds, through one or more subscriptions."""

    subs: list[Subscription] = field(default_factory=list)
    synced: bool = False  # acked on some connection: later ones restore it with a snapshot


@dataclass(eq=False, slots=True)
class _Pub:
    head: str  # the request up to its id
    future: asyncio.Future[None]

    def text(self, id_: int) -> str:
        return f"{self.head}{id_}}}"


class Client:
    """A ringfan connection that stays up.

    `url`: the broker's `ws://…/ws`, or a list of them (the nodes of a
    cluster, `--cluster`): after a failed attempt or a dropped connection
    the next one is tried, so clients of a node that died move to another
    and resubscribe with snapshots there (seq is cluster-wide).

    `token`: an optional callable returning the JWT (a coroutine function or
    a plain one), called before each connection attempt (the token goes in
    `Authorization: Bearer`) and when the broker says `expiring` (the fresh
    token is sent as `{"op":"auth"}` on the open connection).

    `reconnect`: the `Backoff` between attempts. `request_timeout`: seconds
    a `publish` (or a subscription request) waits for its reply.
    `queue_while_disconnected`: publishes held while there is no connection
    (sent when one opens); past it `publish` raises `RingfanError`
    `queue_full`, and with 0 it raises `disconnected` at once.
    `max_outgoing`: publishes waiting to be sent on an open connection; past
    it `publish` waits for room (within its timeout). `max_buffered`: bytes
    the socket's write buffer may hold before sending waits (websockets'
    `write_limit`). `max_queue`: default queue bound of iterated
    subscriptions. `resync_on_gap`: resync a pattern when one of its
    subscriptions sees a gap (False suits a broker run with
    `--slow-consumer conflate`, where gaps are by design and the next
    message is the latest value anyway; gaps are still reported).
    `websocket_options`: passed on to `websockets`' connect (`proxy`,
    `ssl`, `ping_interval`, ...).
    """

    def __init__(self, url: str | Sequence[str], *, token: TokenProvider | None = None,
                 reconnect: Backoff | None = None, request_timeout: float = 10.0,
                 queue_while_disconnected: int = 1000, max_outgoing: int = 1000,
                 max_buffered: int = 1 << 20, max_queue: int = 1000,
                 open_timeout: float = 10.0, resync_on_gap: bool = True,
                 websocket_options: Mapping[str, Any] | None = None) -> None:
        if queue_while_disconnected < 0 or max_outgoing < 1:
            raise ValueError("queue_while_disconnected >= 0 and max_outgoing >= 1")
        urls = [url] if isinstance(url, str) else list(url)
        if not urls or not all(isinstance(u, str) for u in urls):
            raise ValueError("url: a ws:// URL, or a non-empty list of them")
        # Several nodes of one cluster (docs/cluster.md): each attempt after
        # a failure or a drop goes to the next, so a dead node's clients
        # move on; seq is cluster-wide, so resync works across them.
        self.urls: list[str] = urls
        self._url_at = 0
        self._token = token
        self._backoff = reconnect or Backoff()
        self._request_timeout = request_timeout
        self._queue_while_down = queue_while_disconnected
        self._max_outgoing = max_outgoing
        self._max_buffered = max_buffered
        self._max_queue = max_queue
        self._open_timeout = open_timeout
        self._resync_on_gap = resync_on_gap
        self._ws_options = dict(websocket_options or {})
        self._stats = Stats()
        self._listeners: dict[str, list[Callable[[Any], Any]]] = {}
        self._closed = False
        self._runner: asyncio.Task[None] | None = None
        self._ws: ClientConnection | None = None
        self._opened = asyncio.Event()
        self._ever_opened = False
        self._generation = 0  # connections opened so far
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._outgoing: deque[_Pub] = deque()
        self._out_ready = asyncio.Event()
        self._out_room = asyncio.Event()
        self._side_tasks: set[asyncio.Task[None]] = set()
        # Subscription bookkeeping (see _sync_step).
        self._patterns: dict[str, _Pattern] = {}
        self._live: set[str] = set()  # subscribed on this connection (sent)
        self._acked: set[str] = set()  # ... and acknowledged
        self._want: dict[str, bool] = {}  # to subscribe on this connection -> with snapshot
        self._unwant: set[str] = set()  # to unsubscribe (nobody holds them any more)
        self._gap_resyncs: set[str] = set()  # in _want because of a gap
        self._sync_wake = asyncio.Event()

    # --- events -------------------------------------------------------------

    def on(self, event: Event, fn: Callable[[Any], Any]) -> None:
        """Call `fn(payload)` on `event`: "state" (`StateChange`), "gap"
        (`Gap`), "reset" (`Reset`), "resync" (`Resync`), "error" (an
        exception: a `RingfanError` the broker sent unasked, a failed
        connection attempt, a handler's exception)."""
        self._listeners.setdefault(event, []).append(fn)

    def off(self, event: Event, fn: Callable[[Any], Any]) -> None:
        fns = self._listeners.get(event, [])
        if fn in fns:
            fns.remove(fn)

    def _emit(self, event: str, payload: Any) -> None:
        for fn in list(self._listeners.get(event, ())):
            try:
                result = fn(payload)
                if inspect.isawaitable(result):
                    self._spawn(_awaited(result))
            except Exception:  # noqa: BLE001 - a listener's bug is the listener's
                log.exception("ringfan %s listener failed", event)
        if event == "error" and not self._listeners.get("error"):
            log.debug("ringfan: %r", payload)

    # --- state --------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._stats.state

    @property
    def stats(self) -> Stats:
        """Live counters (a snapshot copy would go stale: read fields)."""
        return self._stats

    @property
    def queued(self) -> int:
        """Publishes waiting to be sent (at most `max_outgoing` while
        connected; `queue_while_disconnected` more may not be added while
        not)."""
        return len(self._outgoing)

    def _set_state(self, change: StateChange) -> None:
        self._stats.state = change.state
        if change.state == "open":
            self._opened.set()
        else:
            self._opened.clear()
        self._emit("state", change)

    async def wait_open(self, timeout: float | None = None) -> None:
        """Wait until a connection is open (connecting if not yet)."""
        self.connect()
        async with asyncio.timeout(timeout):
            await self._opened.wait()

    def connect(self) -> None:
        """Start connecting (in the running event loop); `subscribe` and
        `publish` call it too. Idempotent."""
        if self._closed:
            raise RingfanError("closed", "the client is closed")
        if self._runner is None:
            self._runner = asyncio.get_running_loop().create_task(self._run())

    async def __aenter__(self) -> Client:
        self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Final: closes the connection, fails queued and unanswered
        requests with `RingfanError` `closed`, and ends every subscription
        (iteration stops after what is already queued)."""
        if self._closed:
            return
        self._closed = True
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        for t in list(self._side_tasks):
            t.cancel()
        await asyncio.gather(*self._side_tasks, return_exceptions=True)
        self._fail_pending(RingfanError("closed", "the client is closed"))
        while self._outgoing:
            _reject(self._outgoing.popleft().future, RingfanError("closed", "the client is closed"))
        self._out_room.set()
        for pat in self._patterns.values():
            for sub in pat.subs:
                sub._end()
        self._patterns.clear()
        self._set_state(StateChange("closed"))

    # --- subscribing ----------------------------------------------------------

    @overload
    def subscribe(self, pattern: str, *, snapshot: bool = ...,
                  max_queue: int | None = ...) -> Subscription: ...
    @overload
    def subscribe(self, pattern: str, handler: Handler, *, snapshot: bool = ...,
                  max_queue: int | None = ...) -> Subscription: ...

    def subscribe(self, pattern: str, handler: Handler | None = None, *,
                  snapshot: bool = False, max_queue: int | None = None) -> Subscription:
        """Subscribe to `pattern` (`*`, `>` wildcards). With `snapshot`,
        first each matching topic's last value. Without `handler` iterate
        the result (`async for msg in sub`); with one, it is called (and
        awaited, if it returns an awaitable) for each message, in order,
        from the subscription's own task. `await sub` (or `await
        sub.ready()`) waits for the broker's ack. `max_queue` bounds the
        messages not yet taken (see `Subscription`)."""
        self.connect()
        sub = Subscription(self, pattern, handler, snapshot, max_queue or self._max_queue)
        pat = self._patterns.get(pattern)
        if pat is None:
            pat = self._patterns[pattern] = _Pattern()
            self._want[pattern] = snapshot or self._want.get(pattern, False)
        elif snapshot:
            # The broker sends no second snapshot for a pattern the
            # connection holds: take it down and up again (a resync).
            self._want[pattern] = True
        elif pattern in self._acked and pattern not in self._want:
            sub._settle(None)
        pat.subs.append(sub)
        self._unwant.discard(pattern)
        self._sync_wake.set()
        return sub

    def _drop(self, sub: Subscription) -> None:
        pat = self._patterns.get(sub.pattern)
        if pat is None or sub not in pat.subs:
            return
        pat.subs.remove(sub)
        if not pat.subs:
            del self._patterns[sub.pattern]
            self._want.pop(sub.pattern, None)
            self._unwant.add(sub.pattern)
            self._sync_wake.set()

    def _request_resync(self, pattern: str) -> None:
        # Without a connection there is nothing to do: the next one
        # restores every pattern with a snapshot anyway.
        if pattern in self._patterns and self._ws is not None:
            self._want[pattern] = True
            self._gap_resyncs.add(pattern)
            self._sync_wake.set()

    def _gap(self, gap: Gap, resynced: bool) -> None:
        self._stats.gaps += 1
        self._emit("gap", gap)
        if not resynced and self._resync_on_gap:
            self._request_resync(gap.pattern)

    def _reset(self, reset: Reset) -> None:
        self._stats.resets += 1
        self._emit("reset", reset)

    async def _syncer(self, ws: ClientConnection) -> None:
        while True:
            await self._sync_wake.wait()
            self._sync_wake.clear()
            while self._want or any(p in self._live for p in self._unwant):
                await self._sync_step(ws)
            self._unwant.clear()

    async def _sync_step(self, ws: ClientConnection) -> None:
        gone = [p for p in self._unwant if p not in self._patterns and p in self._live]
        self._unwant.clear()
        if gone and not await self._unsubscribe(ws, gone):
            self._unwant.update(gone)
            return
        plain = [p for p, snap in self._want.items() if not snap]
        if plain:
            for p in plain:
                del self._want[p]
            await self._subscribe(ws, plain, snapshot=False)
        wanted = [p for p, snap in self._want.items() if snap]
        if not wanted:
            return
        # A snapshot is not sent for a topic another held pattern streams,
        # so every live pattern that can share a topic with one of these
        # goes down and up with them (docs/protocol.md "For client authors").
        group = list(wanted)
        for p in group:
            for q in self._live:
                if q not in group and overlap(p, q):
                    group.append(q)
        for p in group:
            self._want.pop(p, None)
        held = [p for p in group if p in self._live]
        if held and not await self._unsubscribe(ws, held):
            for p in wanted:
                self._want[p] = True
            return
        for p in group:
            pat = self._patterns.get(p)
            if pat is not None and pat.synced:
                # Held before: a restore after a reconnect, or a resync.
                if p in held:
                    self._stats.resyncs += 1
                self._emit("resync", Resync(p, reconnect=p not in held))
            self._gap_resyncs.discard(p)
        await self._subscribe(ws, group, snapshot=True)

    async def _unsubscribe(self, ws: ClientConnection, patterns: list[str]) -> bool:
        """Unsubscribe `patterns`; False if the broker said `rate_limited`
        (nothing changed; the caller asks again after a pause)."""
        self._live.difference_update(patterns)
        self._acked.difference_update(patterns)
        try:
            await self._control(ws, {"op": "unsub", "topics": patterns})
        except RingfanError as e:
            if e.code in ("timeout", "disconnected"):
                raise
            self._live.update(patterns)
            self._acked.update(patterns)
            if e.code != "rate_limited":
                self._emit("error", e)
                return True  # another refusal: asking again would not help
            await self._pause()
            return False
        return True

    async def _pause(self) -> None:
        # After `rate_limited`: the broker's buckets refill within a second.
        await asyncio.sleep(0.2 + self._backoff.rng.random() * 0.3)

    async def _subscribe(self, ws: ClientConnection, patterns: list[str], snapshot: bool) -> None:
        for i in range(0, len(patterns), SNAPSHOT_PATTERNS_PER_REQUEST):
            chunk = [p for p in patterns[i:i + SNAPSHOT_PATTERNS_PER_REQUEST]
                     if p in self._patterns]
            if chunk:
                await self._subscribe_chunk(ws, chunk, snapshot)

    async def _subscribe_chunk(self, ws: ClientConnection, chunk: list[str],
                               snapshot: bool) -> None:
        self._live.update(chunk)
        req: dict[str, Any] = {"op": "sub", "topics": chunk}
        if snapshot:
            req["snapshot"] = True
        try:
            await self._control(ws, req)
        except RingfanError as e:
            self._live.difference_update(chunk)
            if e.code == "rate_limited":
                # Nothing was subscribed; ask again after a pause.
                for p in chunk:
                    self._want[p] = self._want.get(p, False) or snapshot
                await self._pause()
                return
            if e.code in ("timeout", "disconnected"):
                raise
            if len(chunk) > 1:
                # One bad pattern refuses the whole request: find it.
                for p in chunk:
                    await self._subscribe_chunk(ws, [p], snapshot)
                return
            self._refuse(chunk[0], e)
            return
        self._acked.update(chunk)
        for p in chunk:
            pat = self._patterns.get(p)
            if pat is None:
                self._unwant.add(p)  # unsubscribed while the request was out
                self._sync_wake.set()
                continue
            pat.synced = True
            for sub in pat.subs:
                sub._settle(None)

    def _refuse(self, pattern: str, error: RingfanError) -> None:
        pat = self._patterns.pop(pattern, None)
        self._want.pop(pattern, None)
        if pat is None:
            return
        if pat.synced:
            # Held before (a restore or resync refused, e.g. a new token
            # no longer allows it): nobody is awaiting ready() for it.
            self._emit("error", error)
        for sub in pat.subs:
            sub._fail(error)

    def _revoke(self, patterns: Iterable[str]) -> None:
        for p in patterns:
            self._live.discard(p)
            self._acked.discard(p)
            self._refuse(p, RingfanError(
                "revoked", f"the token no longer allows subscribing to '{p}'"))

    # --- publishing ------------------------------------------------------------

    async def publish(self, topic: str, data: Any) -> None:
        """Publish `data` (any JSON-serialisable value) on `topic`; returns
        when the broker acknowledged it (it is numbered; delivery is not
        awaited). Raises `RingfanError` with the broker's code on `err`, or
        `timeout`, `queue_full`, `disconnected` (sent, and the connection
        went down before the reply: it may or may not have been published),
        `closed`. Raises ValueError for data JSON cannot encode (NaN too)."""
        self.connect()
        body = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        pub = _Pub(f'{{"op":"pub","topic":{json.dumps(topic)},"data":{body},"id":',
                   asyncio.get_running_loop().create_future())
        try:
            async with asyncio.timeout(self._request_timeout):
                await self._enqueue(pub)
                await pub.future
        except TimeoutError:
            raise RingfanError(
                "timeout", f"no reply to pub on '{topic}' within {self._request_timeout} s"
            ) from None
        finally:
            if not pub.future.done():
                pub.future.cancel()  # the writer skips it; a late ack is ignored
                try:
                    self._outgoing.remove(pub)
                except ValueError:
                    pass

    async def _enqueue(self, pub: _Pub) -> None:
        while True:
            if self._closed:
                raise RingfanError("closed", "the client is closed")
            if self._ws is None:
                if self._queue_while_down == 0:
                    raise RingfanError("disconnected", "not connected (queue_while_disconnected=0)")
                if len(self._outgoing) >= self._queue_while_down:
                    raise RingfanError(
                        "queue_full",
                        f"{len(self._outgoing)} publishes already wait for a connection")
                break
            if len(self._outgoing) < self._max_outgoing:
                break
            self._out_room.clear()
            await self._out_room.wait()
        self._outgoing.append(pub)
        self._out_ready.set()

    async def _writer(self, ws: ClientConnection) -> None:
        while True:
            while not self._outgoing:
                self._out_ready.clear()
                await self._out_ready.wait()
            if ws.state is not WsState.OPEN:
                return  # keep the queue for the next connection
            pub = self._outgoing.popleft()
            self._out_room.set()
            if pub.future.done():
                continue
            id_ = self._new_id()
            self._pending[id_] = pub.future
            # Waits while the socket's buffer is over `max_buffered`.
            await ws.send(pub.text(id_))

    # --- requests and replies ----------------------------------------------------

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    async def _control(self, ws: ClientConnection, req: dict[str, Any]) -> None:
        """Send a request with an id and wait for its ack."""
        id_ = self._new_id()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[id_] = fut
        try:
            await ws.send(json.dumps({**req, "id": id_}, separators=(",", ":")))
            async with asyncio.timeout(self._request_timeout):
                await fut
        except TimeoutError:
            raise RingfanError(
                "timeout", f"no reply to {req['op']} within {self._request_timeout} s") from None
        except ConnectionClosed:
            raise RingfanError("disconnected", "the connection went down") from None
        finally:
            self._pending.pop(id_, None)

    def _fail_pending(self, error: RingfanError) -> None:
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            _reject(fut, error)

    async def _reader(self, ws: ClientConnection) -> None:
        async for raw in ws:
            if not isinstance(raw, str):
                continue  # the protocol has no binary frames
            try:
                m = json.loads(raw)
                op = m["op"]
            except (ValueError, TypeError, KeyError):
                self._emit("error", RingfanError("bad_json", f"unreadable frame: {raw[:100]!r}"))
                continue
            if op == "msg":
                self._dispatch(m["topic"], m["seq"], m.get("data"), m.get("snapshot", False))
            elif op == "ack":
                fut = self._pending.pop(m.get("id"), None)
                if fut is not None and not fut.done():
                    fut.set_result(None)
            elif op == "err":
                err = RingfanError(m.get("code", "internal"), m.get("message", ""))
                fut = self._pending.pop(m.get("id"), None) if "id" in m else None
                if fut is None:
                    self._emit("error", err)
                elif not fut.done():
                    fut.set_exception(err)
            elif op == "expiring":
                self._spawn(self._refresh(ws, m.get("in")))
            elif op == "revoked":
                self._revoke(m.get("topics", []))

    def _dispatch(self, topic: str, seq: int, data: Any, snapshot: bool) -> None:
        for pattern, pat in list(self._patterns.items()):
            if matches(pattern, topic):
                for sub in list(pat.subs):
                    sub._offer(topic, seq, data, snapshot)

    async def _refresh(self, ws: ClientConnection, seconds: Any) -> None:
        """The token expires in `seconds`: send a fresh one on this
        connection (no reconnect). Without a provider the broker closes
        the connection 4002 at expiry, and the reconnect cannot help."""
        if self._token is None:
            self._emit("error", RingfanError("expiring", f"token expires in {seconds} s "
                                             "and the client has no token provider"))
            return
        try:
            token = await _call(self._token)
            await self._control(ws, {"op": "auth", "token": token})
            self._stats.refreshes += 1
        except Exception as e:  # noqa: BLE001 - reported; the connection carries on
            self._emit("error", e)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    # --- the connection -----------------------------------------------------------

    async def _open(self) -> ClientConnection:
        headers = {}
        if self._token is not None:
            async with asyncio.timeout(self._open_timeout):
                headers["Authorization"] = f"Bearer {await _call(self._token)}"
        options: dict[str, Any] = {
            "additional_headers": headers,
            "subprotocols": [Subprotocol("ringfan.v1")],
            "open_timeout": self._open_timeout,
            "write_limit": self._max_buffered,
            "compression": None,  # the broker negotiates none
            "max_size": 1 << 24,
        }
        options.update(self._ws_options)
        return await connect(self.url, **options)

    @property
    def url(self) -> str:
        """The URL the current (or next) connection attempt uses."""
        return self.urls[self._url_at]

    def _next_url(self) -> None:
        self._url_at = (self._url_at + 1) % len(self.urls)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        attempt = 0  # attempts since the last stable connection
        change = StateChange("connecting")
        while not self._closed:
            self._set_state(change)
            if change.state == "reconnecting":
                await asyncio.sleep(change.delay)
            try:
                ws = await self._open()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - refused, unreachable, bad token: retry
                self._emit("error", e)
                self._next_url()
                delay = self._backoff.delay(attempt)
                attempt += 1
                change = StateChange("reconnecting", attempt, delay, error=e)
                continue
            opened_at = loop.time()
            if self._ever_opened:
                self._stats.reconnects += 1
            self._ever_opened = True
            self._start_connection(ws)
            self._set_state(StateChange("open", attempt))
            try:
                await self._session(ws)
            finally:
                self._ws = None
                self._fail_pending(RingfanError(
                    "disconnected", "the connection went down before the reply"))
            if loop.time() - opened_at >= self._backoff.stable:
                attempt = 0
            self._next_url()
            delay = self._backoff.delay(attempt)
            attempt += 1
            rcvd = ws.protocol.close_rcvd  # the broker's close frame, if it sent one
            change = StateChange("reconnecting", attempt, delay,
                                 code=rcvd.code if rcvd else None,
                                 reason=rcvd.reason if rcvd else "")

    def _start_connection(self, ws: ClientConnection) -> None:
        """A new connection holds nothing: every held pattern is to be
        subscribed, with a snapshot if an earlier connection had it."""
        self._ws = ws
        self._generation += 1
        self._live.clear()
        self._acked.clear()
        self._unwant.clear()
        self._gap_resyncs.clear()
        want = {}
        for p, pat in self._patterns.items():
            want[p] = pat.synced or self._want.get(p, False)
        self._want = want
        self._sync_wake.set()

    async def _session(self, ws: ClientConnection) -> None:
        tasks = [asyncio.ensure_future(t) for t in
                 (self._reader(ws), self._writer(ws), self._syncer(ws))]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                e = t.exception()
                if e is None or isinstance(e, ConnectionClosed):
                    continue
                if not (isinstance(e, RingfanError) and e.code == "disconnected"):
                    # A subscription request unanswered in time: the
                    # connection is stuck; a new one restores everything.
                    self._emit("error", e)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.shield(ws.close())


def _reject(fut: asyncio.Future[None], error: RingfanError) -> None:
    if not fut.done():
        fut.set_exception(error)
        fut.exception()  # retrieved: the awaiting caller still gets it


async def _call(provider: TokenProvider) -> str:
    result = provider()
    if inspect.isawaitable(result):
        result = await result
    if not isinstance(result, str):
        raise TypeError("the token provider must return a str")
    return result


async def _awaited(aw: Awaitable[Any]) -> None:
    await aw
