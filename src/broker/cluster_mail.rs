//! What a shard and the NATS bridge say to each other in cluster mode
//! (`cluster.rs`, docs/cluster.md): the broker's side of the link, plain
//! data; `server/cluster.rs` translates it to the bridge's own types.

use bytes::Bytes;

use super::host::Client;

/// What the broker asks of the NATS bridge.
#[derive(Debug, Clone)]
pub enum ClusterOut {
    /// Store `payload` (a `msg`'s JSON text with seq `rf_seq`) as the next
    /// message of `topic`, only if the stream's last one of it is
    /// `expected_last` (0: none). `msg_id` makes a resend of the same
    /// message a no-op for the stream.
    Publish {
        token: u64,
        topic: Box<str>,
        expected_last: u64,
        rf_seq: u64,
        msg_id: Box<str>,
        payload: Bytes,
        /// A bundle (`stream_message.rs`): the lengths of its `msg`s, the
        /// first numbered `rf_seq`; empty for one.
        lens: Vec<u32>,
    },
    /// This shard gained its first (or lost its last) subscriber of
    /// `pattern`: the bridge counts shards per pattern and holds one NATS
    /// subscription per pattern with any.
    Interest { pattern: Box<str>, add: bool },
    /// Every topic of `pattern` at its last message, each handed over as a
    /// copy to this shard when it owns the topic, then `ClusterIn::LastAll`
    /// (fenced, as a snapshot's `Last`).
    LastAll { token: u64, pattern: Box<str> },
    /// The stream's last message of `topic` (its stream sequence and seq).
    /// `fence`: read it only once every NATS subscription asked for before
    /// it is in force (a snapshot read, `cluster_snapshot.rs`: whatever is
    /// stored after the read then reaches this node as a copy).
    Last {
        token: u64,
        topic: Box<str>,
        fence: bool,
    },
    /// The stored messages of `topic` after stream sequence `after` and
    /// before `until`, oldest first (`cluster_fill.rs`: a copy showed this
    /// node missed them), answered by `ClusterIn::Filled`.
    Fill {
        token: u64,
        topic: Box<str>,
        after: u64,
        until: u64,
    },
}

/// How a [`ClusterOut::Publish`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishResult {
    /// Stored as stream message `stream_seq`.
    Stored { stream_seq: u64 },
    /// The topic's last message was not `expected_last`: another node
    /// published it meanwhile.
    Conflict,
    /// Not confirmed: NATS unreachable, or no answer in time.
    Unavailable,
}

/// `Stored::last_stream_seq` not known: above anything delivered, so the
/// fill gate reads from what was delivered (the bridge's value, which
/// `server/cluster.rs` passes through unchanged).
pub const UNKNOWN_PREVIOUS: u64 = u64::MAX;

/// A message the stream stored, as the bridge hands it over.
#[derive(Debug, Clone)]
pub struct Stored {
    pub topic: Box<str>,
    pub stream_seq: u64,
    /// The same topic's previous stream sequence (0: none;
    /// [`UNKNOWN_PREVIOUS`]: not known, as for catch-up's first message of
    /// a topic: a shard following the topic fills from what it delivered).
    pub last_stream_seq: u64,
    /// The seq of its (first) `msg`.
    pub rf_seq: u64,
    /// The `msg`'s JSON text (a bundle's, one after the other).
    pub payload: Bytes,
    /// A bundle's `msg` lengths; empty for one `msg`.
    pub lens: Vec<u32>,
}

/// What the bridge tells a shard.
#[derive(Debug)]
pub enum ClusterIn {
    Published {
        token: u64,
        result: PublishResult,
    },
    /// A stored message of a topic this node has interest in, to its owner
    /// shard.
    Copy(Stored),
    Last {
        token: u64,
        found: Option<Stored>,
    },
    /// The last message could not be read (NATS unreachable): unknown,
    /// not absent.
    LastFailed {
        token: u64,
    },
    Connected(bool),
    /// The stream was made anew: every topic's numbering starts again.
    StreamReset,
    /// A [`ClusterOut::LastAll`] is done: this shard's topics of it came
    /// before this, as copies.
    LastAll {
        token: u64,
    },
    /// A NATS subscription of this node was refused or ended: copies may
    /// have been missed, no local value is known current.
    Lapsed,
    /// The answer to a [`ClusterOut::Fill`]: the messages found, oldest
    /// first; `None`: they could not be read.
    Filled {
        token: u64,
        found: Option<Vec<Stored>>,
    },
}

/// Where the broker's requests to the bridge go; false: not taken (the
/// bridge's queue is full, or it is gone).
pub type ClusterSink = Box<dyn FnMut(ClusterOut) -> bool + Send>;

/// Who published, to answer once the stream stored it (or did not).
#[derive(Debug, Clone, Copy)]
pub enum Origin {
    /// A `pub` of `conn` on `shard`, with its id if it gave one.
    Conn {
        shard: usize,
        conn: Client,
        id: Option<u64>,
    },
    /// Message `index` of HTTP batch `batch` of `shard`.
    Batch {
        shard: usize,
        batch: u32,
        index: u32,
    },
}
