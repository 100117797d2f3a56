//! Cluster mode: the answers a publisher gets (`cluster.rs` numbers its
//! publishes through the stream), and what a drain waits for.
//!
//! The answer to a WebSocket `pub` is made on the topic's owner shard and
//! goes back to the publisher's shard, which counts what its connections
//! are owed until then (`cluster_owed`): a node shutting down closes its
//! connections only once nothing is owed anywhere in the process
//! (`Broker::settled`), so every publish it took gets its `ack` or `err`
//! before the `1001`, mail between shards included.

use bytes::Bytes;

use super::cluster::Origin;
use super::engine::Broker;
use super::host::{Client, Host};
use super::mail::Mail;
use super::wire::{self, ErrCode};
use crate::metrics::{dec, inc};

impl Broker {
    /// The largest `msg` (data with its envelope) a publish may make, and
    /// what sets it: `--max-message`, or in cluster mode what one stream
    /// message can carry if that is less (a larger one would only be
    /// refused by NATS after it was numbered).
    pub(super) fn max_publish(&self) -> (usize, &'static str) {
        match &self.cluster {
            Some(c) if c.max_msg() < self.config.max_message => {
                (c.max_msg(), "the cluster's NATS max_payload")
            }
            _ => (self.config.max_message, "--max-message"),
        }
    }

    /// Draining: whether no connection of this process is owed the
    /// answer to a publish any more. Each shard counts what its own
    /// connections are owed until the answer is back on it (mail between
    /// shards included), and every shard's count is read, so a shard about
    /// to close its connections knows the owner shards are done.
    pub fn settled(&self) -> bool {
        self.cluster.is_none()
            || self
                .stats
                .iter()
                .all(|s| s.cluster_owed.load(std::sync::atomic::Ordering::Relaxed) == 0)
    }

    /// On the publisher's shard: the answer to a publish of `conn` (an
    /// `ack` or `err`; nothing for an ack without an id).
    pub(super) fn cluster_replied<H: Host>(
        &mut self,
        io: &mut H,
        conn: Client,
        frame: Option<Bytes>,
    ) {
        dec(&self.stats[io.shard()].cluster_owed, 1);
        if let Some(frame) = frame {
            self.answer(io, conn, frame);
        }
    }

    /// Answer a publish: its seq, or why it was not published.
    pub(super) fn cluster_answer<H: Host>(
        &mut self,
        io: &mut H,
        origin: Origin,
        r: Result<u64, ErrCode>,
    ) {
        let text = r.err().map_or("", unavailable_text);
        self.cluster_answer_text(io, origin, r, text);
    }

    /// As [`Self::cluster_answer`], an error saying `text`.
    pub(super) fn cluster_answer_text<H: Host>(
        &mut self,
        io: &mut H,
        origin: Origin,
        r: Result<u64, ErrCode>,
        text: &str,
    ) {
        let me = io.shard();
        match origin {
            Origin::Conn { shard, conn, id } => {
                // Even with nothing to send (no id) the publisher's shard
                // hears of it: it counts what its connections are owed.
                let frame = match r {
                    Ok(_) => id.map(wire::ack),
                    Err(code) => {
                        inc(&self.stats[me].errors_total, 1);
                        Some(wire::err(id, code, text))
                    }
                };
                if shard == me {
                    self.cluster_replied(io, conn, frame);
                } else {
                    io.post(shard, Mail::Reply { conn, frame });
                }
            }
            Origin::Batch {
                shard,
                batch,
                index,
            } => {
                let seq = match r {
                    Ok(seq) => seq,
                    Err(ErrCode::RateLimited) => super::batch::OVERLOADED_SEQ,
                    Err(_) => super::batch::UNAVAILABLE_SEQ,
                };
                if shard == me {
                    self.numbered(batch, index, seq);
                } else {
                    io.post(shard, Mail::Numbered { batch, index, seq });
                }
            }
        }
    }
}

pub(super) const DRAINING: &str =
    "this node is shutting down: not published; publish through another node";

pub(super) fn unavailable_text(code: ErrCode) -> &'static str {
    match code {
        ErrCode::RateLimited => "broker overloaded: too many publishes of this topic waiting for the cluster, the topic contended by other nodes, or its shard behind; retry later",
        _ => "the cluster could not confirm this publish (NATS unreachable or no stream leader); it may or may not have been published",
    }
}
