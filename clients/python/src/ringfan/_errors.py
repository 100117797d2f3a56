"""The one exception the client raises for what the broker (or the
connection) said no to."""

from __future__ import annotations


class RingfanError(Exception):
    """A request the broker refused (`code` as in docs/protocol.md "Error
    codes": `bad_topic`, `forbidden`, `rate_limited`, ...), or one the client
    gave up on: `timeout` (no reply within `request_timeout`),
    `disconnected` (the connection went down after the request was sent, or
    there is none and nothing may be queued), `queue_full` (more requests
    waiting for a connection than `queue_while_disconnected`), `closed` (the
    client was closed), `revoked` (a fresh token no longer covers a
    subscription)."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
