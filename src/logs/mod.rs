//! The connection events the library logs (issue #15), through `tracing`:
//! refused handshakes, authentication failures, slow-consumer disconnects,
//! other policy closes, and each shard's drain. The binary picks the
//! subscriber (`src/bin/ringfan/logging.rs`: text or JSON on stderr, a
//! level filter); without one (the load generator, tests) every call here
//! returns after one check of a cached "disabled".
//!
//! Each line names its connection with the same fields: `conn` (shard,
//! slot and generation, `0:17:3`: stable for the connection's life, and
//! never the same for two connections of a shard), `peer` (the client's
//! address) and `user` (the token's `sub`) where known. Who decides an
//! event knows different halves: the runtime knows peers, the broker
//! knows users; the broker asks its host for the peer (a table lookup)
//! only when it logs, so nothing here runs per message.
//!
//! Lines of each kind are rate-limited per shard ([`limit`]); what is
//! left out is counted in a `log_suppressed` line. Strings that a client
//! may have chosen (reasons quoting a token's header, a `sub`) are
//! recorded as strings, which both formats escape: no forged lines.

pub mod limit;

use limit::{Kind, Verdict};
use std::fmt;
use std::net::SocketAddr;

/// The targets events go to, for filters such as
/// `--log-level info,ringfan::handshake=warn`.
pub mod target {
    pub const HANDSHAKE: &str = "ringfan::handshake";
    pub const AUTH: &str = "ringfan::auth";
    pub const SLOW_CONSUMER: &str = "ringfan::slow_consumer";
    pub const CLOSE: &str = "ringfan::close";
    pub const DRAIN: &str = "ringfan::drain";
    /// The `log_suppressed` summaries.
    pub const LOG: &str = "ringfan::log";
}

/// A connection as the log names it: `shard:slot:generation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLabel {
    pub shard: usize,
    pub key: u32,
    pub gen: u32,
}

impl fmt::Display for ConnLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.shard, self.key, self.gen)
    }
}

/// Who an event is about: whatever of it the caller knows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Who<'a> {
    pub conn: Option<ConnLabel>,
    pub peer: Option<SocketAddr>,
    pub user: Option<&'a str>,
}

impl Who<'_> {
    fn shard(&self) -> Option<usize> {
        self.conn.map(|c| c.shard)
    }
}

/// Pass an event of `kind` through this shard's limiter, writing the
/// summary of what it left out before it. False: leave the event out.
fn admit(kind: Kind, shard: Option<usize>) -> bool {
    match limit::check(kind) {
        Verdict::Skip => false,
        Verdict::Write { suppressed } => {
            if suppressed > 0 {
                suppressed_line(kind, suppressed, shard);
            }
            true
        }
    }
}

#[cold]
fn suppressed_line(kind: Kind, n: u64, shard: Option<usize>) {
    tracing::warn!(
        target: target::LOG,
        event = "log_suppressed",
        kind = kind.event(),
        suppressed = n,
        shard,
        "log lines left out by the rate limit"
    );
}

/// Write the summaries that are due (a storm that stopped). Called on
/// each shard's tick (every 100 ms): one thread-local read when nothing
/// was left out.
pub fn tick(shard: usize) {
    limit::due(|kind, n| suppressed_line(kind, n, Some(shard)));
}

/// The reason in an HTTP error response's body (its first line, at most
/// 200 bytes): what the client was told.
pub fn response_reason(response: &[u8]) -> String {
    let body = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(&[][..], |i| &response[i + 4..]);
    let line = body.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = &line[..line.len().min(200)];
    String::from_utf8_lossy(line).trim().to_string()
}

/// A handshake (or plain HTTP request) answered with an error `status`.
#[cold]
#[inline(never)]
pub fn handshake_refused(who: &Who<'_>, status: u16, response: &[u8]) {
    if !tracing::enabled!(target: target::HANDSHAKE, tracing::Level::INFO)
        || !admit(Kind::HandshakeRefused, who.shard())
    {
        return;
    }
    let reason = response_reason(response);
    tracing::info!(
        target: target::HANDSHAKE,
        event = Kind::HandshakeRefused.event(),
        conn = who.conn.map(tracing::field::display),
        peer = who.peer.map(tracing::field::display),
        status,
        reason = reason.as_str(),
        "handshake refused"
    );
}

/// A token refused, or a valid one whose user is over its cap. `stage`:
/// `handshake` or `auth_op`; `reason`: the stable label
/// (`ringfan_auth_total`'s, or `user_limit`, `other_user`).
#[cold]
#[inline(never)]
pub fn auth_failed(who: &Who<'_>, stage: &'static str, reason: &str, detail: &str) {
    if !tracing::enabled!(target: target::AUTH, tracing::Level::WARN)
        || !admit(Kind::AuthFailed, who.shard())
    {
        return;
    }
    tracing::warn!(
        target: target::AUTH,
        event = Kind::AuthFailed.event(),
        conn = who.conn.map(tracing::field::display),
        peer = who.peer.map(tracing::field::display),
        user = who.user,
        stage,
        reason,
        detail,
        "authentication failed"
    );
}

/// A subscriber closed 1008 under `--slow-consumer` `policy`, with
/// `queued` bytes still waiting for it.
#[cold]
#[inline(never)]
pub fn slow_consumer(who: &Who<'_>, policy: &'static str, queued: Option<usize>) {
    if !tracing::enabled!(target: target::SLOW_CONSUMER, tracing::Level::WARN)
        || !admit(Kind::SlowConsumer, who.shard())
    {
        return;
    }
    tracing::warn!(
        target: target::SLOW_CONSUMER,
        event = Kind::SlowConsumer.event(),
        conn = who.conn.map(tracing::field::display),
        peer = who.peer.map(tracing::field::display),
        user = who.user,
        policy,
        queued,
        code = 1008u16,
        "slow consumer disconnected"
    );
}

/// A connection the server closes with `code` (1008, 4xxx) for `reason`.
#[cold]
#[inline(never)]
pub fn policy_close(who: &Who<'_>, code: u16, reason: &str) {
    if !tracing::enabled!(target: target::CLOSE, tracing::Level::INFO)
        || !admit(Kind::PolicyClose, who.shard())
    {
        return;
    }
    tracing::info!(
        target: target::CLOSE,
        event = Kind::PolicyClose.event(),
        conn = who.conn.map(tracing::field::display),
        peer = who.peer.map(tracing::field::display),
        user = who.user,
        code,
        reason,
        "connection closed by the server"
    );
}

/// This shard's drain, between its first and last line.
#[derive(Debug, Clone, Copy)]
struct Drain {
    began_ms: u64,
    connections: usize,
    forced: Option<usize>,
}

thread_local! {
    static DRAIN: std::cell::Cell<Option<Drain>> = const { std::cell::Cell::new(None) };
}

/// A shard began draining: `connections` open WebSockets told 1001.
pub fn drain_began(shard: usize, connections: usize) {
    DRAIN.set(Some(Drain {
        began_ms: limit::now_ms(),
        connections,
        forced: None,
    }));
    tracing::info!(
        target: target::DRAIN,
        event = "drain_began",
        shard,
        connections,
        "draining"
    );
}

/// The drain deadline passed with `n` connections still there: they are
/// cut (counted the first time only; later ticks cut the same ones).
pub fn drain_forced(n: usize) {
    if let Some(mut d) = DRAIN.get() {
        d.forced.get_or_insert(n);
        DRAIN.set(Some(d));
    }
}

/// The shard's loop ended; after a drain, say how it went: of the
/// `connections` told 1001, `forced` were still open at the deadline
/// (0: every one closed in time), after `ms`.
pub fn drain_ended(shard: usize) {
    let Some(d) = DRAIN.take() else {
        return;
    };
    let forced = d.forced.unwrap_or(0);
    tracing::info!(
        target: target::DRAIN,
        event = "drain_ended",
        shard,
        connections = d.connections,
        forced,
        ms = limit::now_ms().saturating_sub(d.began_ms),
        "drained"
    );
    // What the limiter still holds (a storm during the drain).
    limit::flush(|kind, n| suppressed_line(kind, n, Some(shard)));
}

#[cfg(test)]
mod tests;
