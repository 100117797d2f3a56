//! What the admin API shows of the broker (`src/server/admin.rs`): its
//! connections and topics, read on demand, never kept up to date on the
//! hot path. No per-topic or per-connection state is added for it beyond
//! a topic's last publish time.

use super::engine::Broker;
use super::host::Client;
use rustc_hash::FxHashSet;

/// One subscriber connection of this shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnView {
    pub client: Client,
    /// The token's `sub`, when it authenticated with one.
    pub user: Option<Box<str>>,
    pub subscriptions: usize,
    /// Messages dropped / replaced for it by the slow-consumer policy
    /// (since its spare state was last allocated: a subscriber that kept up
    /// for a while starts again from 0).
    pub dropped: u64,
    pub conflated: u64,
}

/// One topic this shard owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicView {
    pub topic: Box<str>,
    pub seq: u64,
    /// Since its last publish, in ms of the owner's clock.
    pub idle_ms: u64,
    /// Bytes its last value (and snapshot frame) keep.
    pub retained_bytes: usize,
}

impl Broker {
    /// Every subscriber connection of this shard.
    pub fn connections(&self) -> Vec<ConnView> {
        self.conns
            .iter()
            .enumerate()
            .filter_map(|(slot, s)| {
                let s = s.as_ref()?;
                let client = Client {
                    slot: slot as u32,
                    gen: s.gen,
                };
                let (dropped, conflated, _) = s.counters();
                Some(ConnView {
                    client,
                    user: self.auth.user(client).map(Into::into),
                    subscriptions: s.sub_count(),
                    dropped,
                    conflated,
                })
            })
            .collect()
    }

    /// Up to `limit` topics this shard owns that start with `prefix`.
    pub fn topics(&self, prefix: &str, limit: usize, now_ms: u64) -> Vec<TopicView> {
        let mut out = Vec::new();
        self.owned
            .view(prefix, limit, |topic, seq, last_ms, retained_bytes| {
                out.push(TopicView {
                    topic: topic.into(),
                    seq,
                    idle_ms: now_ms.saturating_sub(last_ms),
                    retained_bytes,
                })
            });
        out
    }

    /// How many of this shard's connections a message on `topic` would
    /// reach (each once, however many of its patterns match).
    pub fn subscribers_of(&self, topic: &str) -> usize {
        let mut seen = FxHashSet::default();
        self.subs.for_each_match(topic, |c| {
            seen.insert(c);
        });
        seen.len()
    }
}
