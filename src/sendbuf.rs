//! One frame to send, as the runtime's queues hold it and as the broker
//! hands it over: a plain `Bytes`, or a shard-local share of a frame many
//! connections send. A leaf module: both layers import it, neither owns it.

use bytes::{Buf, Bytes};
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
#[derive(Debug, Clone)]
pub enum SendBuf {
    Own(Bytes),
    Local(Rc<Bytes>),
}

impl SendBuf {
    /// A share of `frame` for many of this shard's connections.
    pub fn local(frame: Bytes) -> Self {
        Self::Local(Rc::new(frame))
    }

    /// The frame (a cheap, atomic clone of it keeps it beyond the share).
    pub fn bytes(&self) -> &Bytes {
        match self {
            Self::Own(b) => b,
            Self::Local(rc) => rc,
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
            Self::Local(rc) => *self = Self::Own(rc.slice(n..)),
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
