//! The broker's one seam to the outside: what it needs from whatever
//! carries its connections and its mail between shards. The binary's
//! `server` module implements it over the io_uring runtime; the broker's
//! unit tests implement it with plain vectors. The broker imports nothing
//! of the runtime.

use super::mail::Mail;
use crate::sendbuf::{Offered, SendBuf};
use bytes::Bytes;

/// A set of shards, one bit each: which shards hold a pattern's
/// subscribers, which owners a subscription still waits on.
pub type ShardMask = u64;

/// Most shards a broker spans: one bit each in a [`ShardMask`].
pub const MAX_SHARDS: usize = ShardMask::BITS as usize;

/// A client connection on this shard. `slot` is dense and reused by the
/// host once the connection is gone (the broker indexes a table by it);
/// `gen` tells a reused slot's new connection from the old one, so a late
/// reply to a closed connection finds nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Client {
    pub slot: u32,
    pub gen: u32,
}

/// The shard the broker runs on, as the broker sees it.
pub trait Host {
    /// This shard's index, below [`Host::shards`].
    fn shard(&self) -> usize;

    /// How many shards there are (at most [`MAX_SHARDS`]).
    fn shards(&self) -> usize;

    /// Queue a frame on a client whatever its backlog (replies, acks).
    /// False if the client is no longer open.
    fn send(&mut self, to: Client, frame: Bytes) -> bool;

    /// Queue a frame only if the client's backlog is empty or stays within
    /// `limit` bytes with it (fan-out under a slow-consumer policy).
    fn offer(&mut self, to: Client, frame: &SendBuf, limit: usize) -> Offered;

    /// Close the client with a WebSocket close code; queued data is
    /// dropped. True if this call asked for it.
    fn close(&mut self, to: Client, code: u16, reason: &'static str) -> bool;

    /// Close the client after what is already queued for it (an `err`
    /// that says why). True if this call asked for it.
    fn close_after(&mut self, to: Client, code: u16, reason: &'static str) -> bool;

    /// Bytes queued for the client and not yet taken by the kernel.
    fn backlog(&self, to: Client) -> Option<usize>;

    /// Mail for shard `to`, delivered whatever its backlog (each is bounded
    /// by one client request).
    fn post(&mut self, to: usize, mail: Mail);

    /// Mail for shard `to` only if it has room now; otherwise the mail
    /// comes back, for the broker to refuse or shed.
    fn try_post(&mut self, to: usize, mail: Mail) -> Result<(), Mail>;

    /// Monotonic milliseconds since the shard started (the runtime's loop
    /// clock: 100 ms resolution). For budgets refilled over time.
    fn now_ms(&self) -> u64;

    /// Monotonic nanoseconds (`metrics::clock`, one epoch for all shards)
    /// as of this loop turn: when a publish read in this turn arrived.
    /// Carried with the message to the send that delivers it, for the
    /// publish-to-send latency histogram.
    fn now_ns(&self) -> u64;

    /// Does mail for shard `to` wait behind a full ring (what `post` put
    /// in the backlog and the ring has not taken yet)?
    fn mail_waiting(&self, to: usize) -> bool;

    /// The client's address, for a log line (never per message). None
    /// when the host cannot tell.
    fn peer(&mut self, _to: Client) -> Option<std::net::SocketAddr> {
        None
    }

    /// The process is shutting down (its connections are about to get
    /// 1001): work that would outlive them is refused.
    fn draining(&self) -> bool {
        false
    }
}
