"""One subscription: the per-topic seq tracking that keeps its stream free
of duplicates and silent gaps, and its bounded queue for `async for`."""

from __future__ import annotations

import asyncio
import inspect
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generator

from ._errors import RingfanError
from ._types import Gap, Message, Reset

if TYPE_CHECKING:
    from .client import Client

Handler = Callable[[Message], "Awaitable[None] | None"]


class Subscription:
    """Made by `Client.subscribe`. Either iterate it (`async for msg in
    sub`) or give `subscribe` a handler; not both. A handler is called by
    the subscription's own task, one message at a time, in order (and
    awaited when it returns an awaitable), never by the connection's
    reader: it may await `publish` or anything else.

    Per topic the subscription delivers messages in seq order, each once:
    a seq it already delivered (a snapshot repeating the last value after a
    resync or reconnect) is skipped; seqs it never got are reported as a
    `Gap` (on the message that follows them and as the client's "gap"
    event), and a seq lower than the last one as a reset.

    It holds at most `max_queue` messages not yet taken by the reader (or
    the handler). When a message finds the queue full the subscription
    drops it and every later one until the reader has taken the queue down
    to half; then it resyncs its pattern (unsubscribe, subscribe again with
    a snapshot), so the reader gets each topic's latest value, with a `Gap`
    naming exactly the seqs it lost. Memory stays bounded however slow the
    reader is: the queue, plus one last seq per topic the pattern matched.
    """

    def __init__(self, client: Client, pattern: str, handler: Handler | None,
                 snapshot: bool, max_queue: int) -> None:
        if max_queue < 2:
            raise ValueError("max_queue must be at least 2")
        self.pattern = pattern
        self.snapshot = snapshot
        self._client = client
        self._handler = handler
        self._max_queue = max_queue
        self._queue: deque[Message] = deque()
        self._last: dict[str, int] = {}
        self._overflowed = False
        self._waiter: asyncio.Future[None] | None = None
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._error: RingfanError | None = None
        self._active = True
        self._task: asyncio.Task[None] | None = None
        if handler is not None:
            self._task = asyncio.get_running_loop().create_task(self._run_handler(handler))
        # The connection it starts on: the open one, or else the next.
        self._born = client._generation + (client._ws is None)

    # --- the user's side --------------------------------------------------

    @property
    def active(self) -> bool:
        """Neither unsubscribed, nor ended by an error or `Client.close`."""
        return self._active

    @property
    def error(self) -> RingfanError | None:
        """Why the subscription ended, if the broker ended it."""
        return self._error

    async def ready(self) -> Subscription:
        """Wait for the broker's `ack` of this subscription (after its
        snapshot, if it asked for one). Raises `RingfanError` if it was
        refused (`bad_topic`, `forbidden`, ...)."""
        await asyncio.shield(self._ready)
        return self

    def __await__(self) -> Generator[Any, None, Subscription]:
        return self.ready().__await__()

    def unsubscribe(self) -> None:
        """Stop: the client unsubscribes the pattern when no other
        subscription holds it. Messages already queued can still be read."""
        if self._active:
            self._active = False
            self._client._drop(self)
            self._settle(RingfanError("closed", "unsubscribed"))
            self._wake()

    async def __aenter__(self) -> Subscription:
        return await self.ready()

    async def __aexit__(self, *exc: object) -> None:
        self.unsubscribe()

    def __aiter__(self) -> Subscription:
        if self._handler is not None:
            raise TypeError("this subscription has a handler; it cannot be iterated too")
        return self

    async def __anext__(self) -> Message:
        return await self._next()

    async def _next(self) -> Message:
        while True:
            if self._queue:
                msg = self._queue.popleft()
                self._maybe_resume()
                return msg
            self._maybe_resume()
            if self._error is not None:
                raise self._error
            if not self._active:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def _run_handler(self, handler: Handler) -> None:
        while True:
            try:
                msg = await self._next()
            except (StopAsyncIteration, RingfanError):
                return  # ended: unsubscribed, closed, refused or revoked
            if not self._active:
                return  # unsubscribed: what is still queued is not wanted
            try:
                result = handler(msg)
                if inspect.isawaitable(result):
                    await result
            except Exception as e:  # noqa: BLE001 - a handler's bug must not end the stream
                self._client._emit("error", e)

    # --- the client's side ------------------------------------------------

    def _maybe_resume(self) -> None:
        # The reader has caught up to half the queue: take messages again
        # and fetch the latest value of whatever was dropped meanwhile.
        if self._overflowed and len(self._queue) <= self._max_queue // 2:
            self._overflowed = False
            if self._active:
                self._client._request_resync(self.pattern)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _settle(self, error: RingfanError | None) -> None:
        """The broker acked (None) or refused the subscription."""
        if self._ready.done():
            return
        if error is None:
            self._ready.set_result(None)
        else:
            self._ready.set_exception(error)
            self._ready.exception()  # retrieved: nobody has to await ready()

    def _fail(self, error: RingfanError) -> None:
        """The broker refused or revoked the subscription: it ends."""
        self._active = False
        self._error = error
        self._settle(error)
        self._wake()

    def _end(self) -> None:
        """The client was closed: iteration ends after what is queued."""
        self._active = False
        self._settle(RingfanError("closed", "client closed"))
        self._wake()

    def _forget(self, topic: str) -> None:
        self._last.pop(topic, None)

    def _offer(self, topic: str, seq: int, data: Any, snapshot: bool) -> None:
        """One `msg` whose topic matches this subscription's pattern."""
        if not self._active:
            return
        client = self._client
        last = self._last.get(topic)
        if snapshot and last is None and not self.snapshot and self._born == client._generation:
            # A snapshot this subscription did not ask for: a resync of an
            # overlapping pattern brought it. It started on this connection
            # and missed nothing of the topic, so it keeps to live messages.
            # (On a later connection the snapshot is delivered: messages
            # published while the client was away are lost otherwise.)
            return
        gap = None
        reset = False
        if last is not None:
            if seq == last:
                # Only a snapshot repeats a seq (after a resync or a
                # reconnect): the reader already has this value.
                client._stats.duplicates += 1
                return
            if seq < last:
                # seq 1 after a higher one (the broker forgot the topic), or
                # a lower seq on a new connection (the broker restarted).
                reset = True
            elif seq > last + 1:
                gap = Gap(topic, last + 1, seq - 1, self.pattern)
        if self._overflowed or len(self._queue) >= self._max_queue:
            # Dropped without moving `last`: the next message delivered for
            # this topic reports these seqs as its gap.
            self._overflowed = True
            client._stats.dropped += 1
            return
        self._last[topic] = seq
        if reset:
            client._reset(Reset(topic, seq, self.pattern))
        if gap is not None:
            client._gap(gap, resynced=snapshot)
        client._stats.messages += 1
        self._queue.append(Message(topic, seq, data, snapshot, gap, reset))
        self._wake()
