//! What the broker's shards send each other. Mail between two shards is
//! FIFO: that is what keeps per-topic order and makes snapshots exact
//! (see `Broker::sub_reply`).

use super::cluster::{ClusterIn, Origin};
use super::engine::Broker;
use super::host::{Client, Host};
use super::wire::TopicAt;
use crate::sendbuf::Framed;
use bytes::{BufMut, Bytes, BytesMut};

/// Cross-shard messages.
pub enum Mail {
    /// To the owner: `buf` is the topic then the data; `from` published
    /// it (charged if it creates the topic) in the loop turn whose clock
    /// read `arrived` (`Host::now_ns`).
    Publish {
        buf: Bytes,
        topic_len: u8,
        from: Client,
        arrived: u64,
    },
    /// To the owner: as `Publish`, for a caller that wants the seq back
    /// (`batch.rs`): message `index` of this shard's batch `batch`.
    PublishFor {
        buf: Bytes,
        topic_len: u8,
        batch: u32,
        index: u32,
        arrived: u64,
    },
    /// From the owner: the seq `PublishFor` got (0: not published).
    Numbered { batch: u32, index: u32, seq: u64 },
    /// From the owner: a publish of `conn` created a topic (it counts
    /// against the connection's new-topic budget).
    Created { conn: Client },
    /// From the owner: a framed message for this shard's subscribers,
    /// published at `arrived` (`Host::now_ns` on the publisher's shard).
    Deliver {
        frame: Framed,
        at: TopicAt,
        arrived: u64,
    },
    /// A shard gained (or lost) its first (last) subscriber of a pattern.
    Interest { pattern: Box<str>, add: bool },
    /// Behind any `Interest` on the same ring: the owner answers once it
    /// knows of the subscription (so an ack means later publishes reach
    /// it), with the matching last messages when a snapshot was asked for.
    SubRequest {
        conn: Client,
        req: u32,
        patterns: Vec<Box<str>>,
        snapshot: bool,
        /// Cluster mode: some pattern of it is new on that shard (its first
        /// holder there): the owner's values of its topics may have missed
        /// copies while nobody held it, so they are read again.
        new_interest: bool,
    },
    /// From the owner: one step of a snapshot (`more`: others follow,
    /// each once this shard asked with `SnapMore`), or the answer.
    SubReply {
        conn: Client,
        req: u32,
        entries: Vec<(Framed, TopicAt)>,
        more: bool,
    },
    /// To the owner: the step of request `req` was taken in and the
    /// client's queue drained (or the tick's rule, `snapshots.rs`); send
    /// the next (`go`), or stop and answer (nothing of it is wanted any
    /// more, or the connection closed).
    SnapMore { conn: Client, req: u32, go: bool },
    /// Cluster mode, to the owner: a publish to number through the stream
    /// (`cluster.rs`); the owner answers `origin` when it is stored.
    ClusterPublish {
        buf: Bytes,
        topic_len: u8,
        origin: Origin,
    },
    /// Cluster mode, from a topic's owner: the answer to a publish of
    /// `conn` (an `ack` or `err` frame; none for an ack without an id).
    Reply { conn: Client, frame: Option<Bytes> },
    /// From the NATS bridge (not a shard).
    Cluster(ClusterIn),
    /// Mail of the application around the broker (the admin API's
    /// queries and answers), opaque to the broker: `Broker::mail` ignores
    /// it, the application takes it out first.
    Host(Box<dyn std::any::Any + Send>),
}

/// The `buf` of `Publish` and `PublishFor`: the topic, then the data
/// (`topic_len` says where one ends), in one allocation.
pub(super) fn topic_then_data(topic: &str, data: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(topic.len() + data.len());
    buf.put_slice(topic.as_bytes());
    buf.put_slice(data.as_bytes());
    buf.freeze()
}

impl Broker {
    /// Mail from shard `from`, each kind to its handler.
    pub fn mail<H: Host>(&mut self, io: &mut H, from: usize, mail: Mail) {
        match mail {
            Mail::Publish {
                buf,
                topic_len,
                from: conn,
                arrived,
            } => {
                let (t, data) = buf.split_at(topic_len as usize);
                if let Ok(topic) = std::str::from_utf8(t) {
                    self.publish_from(io, topic, data, (from, conn, arrived), None);
                }
            }
            Mail::PublishFor {
                buf,
                topic_len,
                batch,
                index,
                arrived,
            } => {
                let (t, data) = buf.split_at(topic_len as usize);
                if let Ok(topic) = std::str::from_utf8(t) {
                    self.publish_for(io, from, topic, data, (batch, index), arrived);
                }
            }
            Mail::Numbered { batch, index, seq } => self.numbered(batch, index, seq),
            Mail::Created { conn } => self.created(io, conn),
            Mail::Deliver { frame, at, arrived } => self.deliver(io, from, &frame, at, arrived),
            Mail::Interest { pattern, add } => self.owner_interest(&pattern, from, add),
            Mail::SubRequest {
                conn,
                req,
                patterns,
                snapshot,
                new_interest,
            } => {
                let ask = super::snapshots::SubAsk {
                    req,
                    patterns,
                    snapshot,
                    new_interest,
                };
                self.owner_request(io, from, conn, ask)
            }
            Mail::SubReply {
                conn,
                req,
                entries,
                more,
            } => {
                let go = self.sub_reply(io, from, conn, req, entries, more);
                if more {
                    self.step_taken(io, from, conn, req, go);
                }
            }
            Mail::SnapMore { conn, req, go } => self.scan_more(io, (from, conn), req, go),
            Mail::ClusterPublish {
                buf,
                topic_len,
                origin,
            } => {
                let n = topic_len as usize;
                if let Some(topic) = buf.get(..n).and_then(|t| std::str::from_utf8(t).ok()) {
                    self.cluster_publish(io, topic, buf.slice(n..), origin);
                }
            }
            Mail::Reply { conn, frame } => self.cluster_replied(io, conn, frame),
            Mail::Cluster(m) => self.cluster_in(io, m),
            Mail::Host(_) => {}
        }
    }
}
