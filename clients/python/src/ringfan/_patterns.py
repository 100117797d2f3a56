"""Topic patterns (NATS style, docs/protocol.md "Topics"): which topics a
pattern matches, and whether two patterns can match a common topic.

The broker sends a message once per connection however many of its
patterns match, so the client routes it to every local subscription itself;
and a snapshot is not sent for a topic another held pattern already streams,
so a resync has to take overlapping patterns along (see client.py)."""

from __future__ import annotations


def matches(pattern: str, topic: str) -> bool:
    """`*` matches exactly one token; `>` as the last token one or more."""
    p = pattern.split(".")
    t = topic.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(t) > i
        if i >= len(t) or (tok != "*" and tok != t[i]):
            return False
    return len(p) == len(t)


def overlap(a: str, b: str) -> bool:
    """Some topic matches both patterns."""
    return _overlap(a.split("."), b.split("."))


def _overlap(a: list[str], b: list[str]) -> bool:
    i = 0
    while True:
        if i == len(a) or i == len(b):
            return i == len(a) and i == len(b)
        x, y = a[i], b[i]
        # `>` takes one or more tokens: whatever the other side still needs
        # (at least one token, since it is not exhausted) fits.
        if x == ">" or y == ">":
            return True
        if x != "*" and y != "*" and x != y:
            return False
        i += 1
