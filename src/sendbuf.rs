//! One frame to send, as the runtime's queues hold it and as the broker
//! hands it over: a plain `Bytes`, or a shard-local share of a frame many
//! connections send. A leaf module: both layers import it, neither owns it.

use bytes::{Buf, Bytes};
use std::num::NonZeroU64;
use std::rc::Rc;

/// What offering a frame to a connection's queue did (see the broker's
/// `Host::offer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    Sent,
    /// Not queued: the backlog is over the limit.
    Full,
    /// Not queued: the connection is gone or closing.
    Gone,
}

/// One frame to send: its own `Bytes`, or a shard-local share of a frame
/// that many of the shard's connections send (a fan-out).
///
/// Why both: a `Bytes` clone per subscriber is an atomic increment, and
/// its drop an atomic decrement; with a shard-local `Rc` around one
/// `Bytes` those become plain ones. Queueing, sending and dropping a frame
/// for 1,000 queues costs 34-42 ns per queue with `Bytes` against 7-8 ns
/// with the `Rc` here (`cargo bench --bench broker -- fanout_queue`); at
/// high batching the atomic was the largest single item in the shard's
/// profile. The frame itself is still built once and shared by every
/// shard; only each shard's many references to it are local.
///
/// The share also carries when the message it frames arrived (see
/// [`Shared::arrived`]), read once per delivery when its send is
/// submitted: the publish-to-send latency histogram.
#[derive(Debug, Clone)]
pub enum SendBuf {
    Own(Bytes),
    Local(Rc<Shared>),
}

/// A frame many of a shard's connections send.
#[derive(Debug)]
pub struct Shared {
    frame: Bytes,
    /// When the published message arrived, in [`crate::metrics::clock`]
    /// nanoseconds; `None` when not known.
    arrived: Option<NonZeroU64>,
}

impl SendBuf {
    /// A share of `frame` for many of this shard's connections.
    pub fn local(frame: Bytes) -> Self {
        Self::local_at(frame, 0)
    }

    /// A share of `frame`, a message that arrived at `arrived_ns`
    /// ([`crate::metrics::clock`] nanoseconds; 0: not known).
    pub fn local_at(frame: Bytes, arrived_ns: u64) -> Self {
        Self::Local(Rc::new(Shared {
            frame,
            arrived: NonZeroU64::new(arrived_ns),
        }))
    }

    /// The frame (a cheap, atomic clone of it keeps it beyond the share).
    pub fn bytes(&self) -> &Bytes {
        match self {
            Self::Own(b) => b,
            Self::Local(rc) => &rc.frame,
        }
    }

    /// When the message this frame carries arrived, if known (a fan-out
    /// share of a live publish).
    #[inline]
    pub fn arrived_ns(&self) -> Option<u64> {
        match self {
            Self::Own(_) => None,
            Self::Local(rc) => rc.arrived.map(NonZeroU64::get),
        }
    }

    pub fn len(&self) -> usize {
        self.bytes().len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes().is_empty()
    }

    /// Drop the first `n` bytes (a short write): the rare case takes its
    /// own `Bytes` view, leaving the share intact for the others.
    pub(crate) fn advance(&mut self, n: usize) {
        match self {
            Self::Own(b) => b.advance(n),
            // The rest of a frame already submitted: its latency was seen.
            Self::Local(rc) => *self = Self::Own(rc.frame.slice(n..)),
        }
    }
}

impl std::ops::Deref for SendBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.bytes()
    }
}

impl From<Bytes> for SendBuf {
    fn from(b: Bytes) -> Self {
        Self::Own(b)
    }
}
