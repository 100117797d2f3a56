"""What the client hands to its user: messages, events, options, stats."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Literal

State = Literal["idle", "connecting", "open", "reconnecting", "closed"]


@dataclass(frozen=True, slots=True)
class Gap:
    """Seqs `first`..`last` (inclusive) of `topic` never reached the
    subscription with `pattern`: the broker dropped them (slow consumer,
    overload), they were published while the connection was down, or the
    subscription's own queue was full. A resync follows (or has happened:
    a gap seen on a snapshot message is already resynced)."""

    topic: str
    first: int
    last: int
    pattern: str


@dataclass(frozen=True, slots=True)
class Reset:
    """`topic` started over at `seq`, lower than the last one seen: the
    topic was forgotten by the broker (seq 1 after a higher one) or the
    broker restarted. Take `seq` as the topic's new start."""

    topic: str
    seq: int
    pattern: str


@dataclass(frozen=True, slots=True)
class Resync:
    """The client unsubscribed and resubscribed `pattern` with a snapshot
    (after a gap), or subscribed it again with a snapshot after a
    reconnect (`reconnect` true)."""

    pattern: str
    reconnect: bool = False


@dataclass(frozen=True, slots=True)
class StateChange:
    """`state` is the new state; `attempt` counts connection attempts since
    the last stable connection; `delay` is the wait (seconds) before the
    next attempt when reconnecting; `code`/`reason` are the close frame of
    the connection that just went down (None when there was none) and
    `error` why a connection attempt failed."""

    state: State
    attempt: int = 0
    delay: float = 0.0
    code: int | None = None
    reason: str = ""
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """One `msg`, as the subscription received it. `data` is the
    publisher's JSON value, decoded. `gap` is set when seqs were missed just
    before this one, `reset` when the topic started over with it."""

    topic: str
    seq: int
    data: Any
    snapshot: bool = False
    gap: Gap | None = None
    reset: bool = False


@dataclass(slots=True)
class Stats:
    """Counters since the client was made."""

    state: State = "idle"
    messages: int = 0  # delivered to subscriptions (queued or handled)
    gaps: int = 0  # Gap events
    resets: int = 0
    reconnects: int = 0  # connections opened after the first
    resyncs: int = 0  # patterns resubscribed with a snapshot after a gap
    dropped: int = 0  # messages dropped because a subscription's queue was full
    duplicates: int = 0  # messages not delivered again (seq already delivered)
    refreshes: int = 0  # fresh tokens sent with {"op":"auth"} after "expiring"


@dataclass(frozen=True, slots=True)
class Backoff:
    """Reconnect delays: exponential with full jitter. Attempt n (from 0)
    waits a uniformly random time in [0, min(max, initial * factor**n)]
    seconds; a connection that stayed open `stable` seconds resets n."""

    initial: float = 0.25
    max: float = 30.0
    factor: float = 2.0
    stable: float = 10.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def delay(self, attempt: int) -> float:
        # min() before the power would overflow for large attempts.
        cap = self.initial * self.factor ** min(attempt, 64)
        return self.rng.uniform(0.0, min(self.max, cap))
