//! The wire messages the load generator reads and writes (protocol v1, see
//! `protocol.md`).
//!
//! Why this is hand-written rather than `serde_json::from_slice`: a
//! generator that must account several million deliveries per second on one
//! core has a budget of a few hundred nanoseconds per message for *everything*
//! (WebSocket decode, parse, latency histogram), and a serde parse of a
//! `msg` costs about as much as that on its own. The broker frames every
//! message in exactly one shape, so [`parse`] first matches that shape
//! byte for byte (fixed prefixes, a digit loop for `seq`, a word-at-a-time
//! scan of the payload that validates it as JSON), which costs tens of
//! nanoseconds.
//!
//! The fast path only answers when it is *certain* that serde_json would
//! accept the text and read the same fields out of it. Anything else —
//! another key order, whitespace, escapes in the topic, numbers with an
//! exponent (whose range serde_json checks), surrogate escapes, deep
//! nesting, malformed bytes — goes to a slow path that lets serde_json decide
//! validity and meaning, and only locates the borrowed spans itself. So
//! [`parse`] agrees with serde_json on every input by construction; the
//! property tests in `tests.rs` check exactly that.
//!
//! Nothing here panics on network input: all access is through `get`,
//! `strip_prefix` and checked arithmetic.
//!
//! The writers ([`write_payload`], [`write_pub`], [`write_sub`]) append to a
//! caller-owned buffer so the send path allocates nothing per message.
//!
//! The parts: `fast.rs` reads the broker's exact shapes, `scan.rs` is the
//! validating JSON scanner the fast path vouches with, `slow.rs` lets
//! serde_json decide everything else, and `write.rs` builds what we send.

mod fast;
mod scan;
mod slow;
#[cfg(test)]
mod tests;
mod write;

pub use fast::{delivery, stamp, Delivery};
pub use write::{payload_min_len, write_payload, write_pub, write_str, write_sub};

use fast::parse_fast;
use slow::parse_slow;
use std::fmt;

/// A message from the broker, borrowing from the frame it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server<'a> {
    /// A delivery. `data` is the publisher's bytes exactly as framed.
    Msg {
        topic: &'a str,
        seq: u64,
        snapshot: bool,
        data: &'a [u8],
    },
    /// Success of the request that carried `id`.
    Ack { id: u64 },
    /// Failure, of the request with `id` when there is one.
    Err { id: Option<u64>, code: &'a str },
    /// Valid JSON that is not a message we understand: not an object, no or
    /// an unknown `op`, or a `topic`/`code` written with escapes (which we
    /// cannot lend out unescaped; the broker never writes them).
    Other,
}

/// The text was not JSON, or a known `op` lacked a field or had one of the
/// wrong type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadMsg {
    /// What was wrong, for logs and counters.
    pub reason: &'static str,
}

impl fmt::Display for BadMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad server message: {}", self.reason)
    }
}

impl std::error::Error for BadMsg {}

const fn bad(reason: &'static str) -> BadMsg {
    BadMsg { reason }
}

/// Parses one server text frame — the receive hot path.
///
/// The broker's exact shapes take a fast path: fixed prefixes, a word-wise
/// digit parse for `seq`, and a scan that validates `data` as JSON (a
/// shortcut for compact flat objects, which is what this generator and the
/// feed simulator publish; string bytes a word at a time). Any other text
/// goes to serde_json. Either way the answer is
/// what serde_json reads from the text, and [`BadMsg`] when serde_json
/// rejects it. Never panics.
#[inline]
pub fn parse(text: &[u8]) -> Result<Server<'_>, BadMsg> {
    match parse_fast(text) {
        Some(m) => Ok(m),
        None => parse_slow(text),
    }
}
