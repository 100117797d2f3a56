//! What a broker may do and keep: its configuration and the defaults the
//! binary's flags show (one place for each number, with why).

use crate::rate::Rate;

/// What to do when a subscriber's outgoing queue is full (protocol.md,
/// "Slow consumers").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowPolicy {
    /// Close with 1008 "slow consumer".
    Disconnect,
    /// Drop the newest messages for it; its seq shows the gap.
    Drop,
    /// Keep only the latest pending message per topic.
    Conflate,
}

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub policy: SlowPolicy,
    /// Bytes a subscriber may have queued before the policy applies.
    pub max_queued: usize,
    /// Largest `msg` payload we frame (subscribers' message limit).
    pub max_message: usize,
    /// Most subscriptions one connection may hold.
    pub max_subscriptions: usize,
    /// Bytes of last values (snapshots) an owner shard keeps; past it some
    /// are forgotten, in no particular order but never the one just
    /// published (their topics keep counting seq).
    pub max_lvc_bytes: usize,
    /// Topics an owner shard keeps. At the cap it forgets a tenth of them
    /// among those no shard is interested in; with none such, publishes
    /// to new topics are refused. Measured (tests/attacks/owner.py churn,
    /// release build): 200,000 random topics cost 86 MiB of RSS with
    /// their last values, ~430 bytes a topic (map entry and name, index
    /// leaf ~190, state and a small last value). 500,000 is thus ~215 MiB a
    /// shard at worst, the order of the 256 MiB last-value cap, and 2.5x
    /// the churn repro.
    pub max_topics: usize,
    /// New topics one connection may create per 10 s (a token bucket:
    /// this burst, refilled at a tenth of it a second). 10,000 lets a feed
    /// bring up a large universe at once; a churning client creates 1,000
    /// a second at most, 200,000 topics take it over three minutes.
    pub max_new_topics_per_conn: u64,
    /// Patterns one `sub` with `snapshot` may list: each exact one is a
    /// lookup and each wildcard a walk of the owners' topic index.
    pub max_snapshot_patterns: usize,
    /// Snapshot requests of one connection waiting on owners at once.
    pub max_snapshots_per_conn: usize,
    /// Snapshot requests of all connections of a shard waiting on owners
    /// at once: bounds the owners' replies in the (unbounded) sub-reply
    /// mail to this many times the matching topics (40 bytes an entry,
    /// the frames are shared).
    pub max_snapshots_per_shard: usize,
    /// `pub` requests per connection (off by default: see `Default`).
    pub pub_rate: Rate,
    /// Patterns listed in `sub` and `unsub` requests per connection.
    pub sub_rate: Rate,
    /// Deepest nesting of arrays/objects a `pub`'s `data` may have.
    pub max_json_depth: usize,
    /// Topics (index nodes or exact lookups) an owner visits per loop
    /// turn for one snapshot request; the rest waits for later turns.
    pub snapshot_step: usize,
    /// Connections may agree to permessage-deflate (`--deflate on`): each
    /// message carries a cell for its compressed variant, made at most
    /// once in the process (`sendbuf::Packed`).
    pub deflate: bool,
}

/// See [`BrokerConfig::snapshot_step`]: measured in docs/benchmarks.md.
pub const SNAPSHOT_STEP: usize = 4096;

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            policy: SlowPolicy::Disconnect,
            max_queued: 1 << 20,
            max_message: crate::ws::DEFAULT_MAX_MESSAGE,
            max_subscriptions: 10_000,
            max_lvc_bytes: 256 << 20,
            max_topics: 500_000,
            max_new_topics_per_conn: 10_000,
            max_snapshot_patterns: 1_000,
            max_snapshots_per_conn: 1,
            max_snapshots_per_shard: 64,
            // Publishing is already bounded without it: a publish to
            // another shard is refused once that shard is a mailbox
            // behind, and one to this shard is done before the next
            // request is read. What a per-connection cap adds is fairness
            // between publishers, and the right figure depends on the
            // application (the standard benchmark publishes ~1M/s on one
            // connection). So, as in NATS (no publish rate limit) and
            // Centrifugo (opt-in operation limits), it is off until the
            // operator sets one; protocol.md recommends 1,000/s for
            // untrusted clients. The burst applies once it is on.
            pub_rate: Rate {
                per_s: 0,
                burst: 1000,
            },
            // Every pattern costs a trie update here, one per owner shard
            // (all of them for a wildcard) and interest mail: 1,000 a
            // second, after a burst of 10,000 (a full --max-subscriptions
            // at connect), is far above what a real client re-subscribes
            // and far below what makes a shard busy (~2 µs a pattern).
            sub_rate: Rate {
                per_s: 1000,
                burst: 10_000,
            },
            // Deep enough for any real document; inside the `msg` envelope
            // (one level more) it stays well under serde_json's 128.
            max_json_depth: 64,
            snapshot_step: SNAPSHOT_STEP,
            deflate: false,
        }
    }
}
