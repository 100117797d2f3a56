//! Publishing for a caller that wants each message's `seq` back: the HTTP
//! publish API (`POST /publish`), one message or a batch.
//!
//! A WebSocket `pub` is acknowledged "taken" without its seq (the owner
//! numbers it later, on its own shard). A backend publishing over HTTP is
//! told the seq each message got, so a topic owned by another shard costs
//! a round trip through the mailboxes: [`Mail::PublishFor`] to the owner,
//! [`Mail::Numbered`] back. The messages take the same path as a `pub`'s
//! (`Broker::publish_from`: numbered, framed once, fanned out), so
//! subscribers cannot tell them apart.
//!
//! A batch is checked whole before any of it is published (a bad topic,
//! data nested too deep, a message too large: nothing is published, the
//! answer names the message). Overload is per message: one whose owner's
//! mailbox is full, or whose new topic finds no room, is not numbered
//! (`None`), and the caller may retry exactly those without duplicating
//! any.

use super::cluster::Origin;
use super::engine::{owner_of, Broker, ENVELOPE};
use super::host::{Client, Host};
use super::mail::{topic_then_data, Mail};
use super::topic::check_topic;
use super::wire::{self, ErrCode};
use crate::metrics::inc;
use slab::Slab;

/// Why a batch was refused before anything of it was published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchError {
    /// Which message (0 for a single one).
    pub index: usize,
    pub code: ErrCode,
    pub message: String,
}

/// What became of each message of a batch: its seq, or `None` when it
/// was not published (overload: retry it). `refused` says why, for the
/// first that was not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    pub seqs: Vec<Option<u64>>,
    pub refused: Option<&'static str>,
}

/// A batch some of whose messages wait for their owners' numbers.
struct Pending {
    /// The caller's handle, given back with the outcome.
    ticket: u64,
    outcome: BatchOutcome,
    waiting: usize,
}

/// This shard's batches in flight, and those completed since the caller
/// last looked.
#[derive(Default)]
pub(super) struct Batches {
    pending: Slab<Pending>,
    done: Vec<(u64, BatchOutcome)>,
}

/// The publisher of a batch: not a connection, so no new-topic budget to
/// charge (no slot holds this generation).
const NOBODY: Client = Client {
    slot: u32::MAX,
    gen: u32::MAX,
};

const OVERLOADED: &str = "broker overloaded: this topic's shard is behind; retry later";
const NO_ROOM: &str = "too many topics on this topic's shard; retry later";
pub const UNAVAILABLE: &str = "the cluster could not confirm a message (NATS unreachable or no stream leader); it may or may not have been published";

/// Cluster mode: the seq a `Numbered` carries for a message the cluster
/// could not confirm (0 is "no room").
pub(super) const UNAVAILABLE_SEQ: u64 = u64::MAX;
/// Cluster mode: the seq a `Numbered` carries for a message refused as
/// overload (its topic's queue or shard behind, or contended).
pub(super) const OVERLOADED_SEQ: u64 = u64::MAX - 1;

impl Broker {
    /// Whether `topic` and `data` (JSON, verbatim) may be published at
    /// all: the checks a `pub` gets, with the same error codes.
    pub fn check_publish<H: Host>(
        &self,
        io: &mut H,
        topic: &str,
        data: &str,
    ) -> Result<(), (ErrCode, String)> {
        if let Err(e) = check_topic(topic) {
            return Err((ErrCode::BadTopic, wire::bad_topic(topic, e)));
        }
        if wire::nests_deeper(data.as_bytes(), self.config.max_json_depth) {
            inc(&self.my_stats(io).json_too_deep_total, 1);
            let max = self.config.max_json_depth;
            let msg = format!("data nests deeper than {max} arrays/objects (--max-json-depth)");
            return Err((ErrCode::BadJson, msg));
        }
        let (max, by) = self.max_publish();
        if data.len() + topic.len() + ENVELOPE > max {
            let msg =
                format!("message too large to deliver (limit {max} bytes with its envelope, {by})");
            return Err((ErrCode::TooLarge, msg));
        }
        Ok(())
    }

    /// Publish `messages` (topic, data) in order for the caller's
    /// `ticket`. The outcome now when every message was numbered here (or
    /// refused); otherwise `Ok(None)`, and the outcome comes out of
    /// [`Broker::take_batches`] once the owners have answered (after the
    /// `mail` that completes it). Nothing is published when a message
    /// fails [`Broker::check_publish`].
    pub fn publish_batch<H: Host>(
        &mut self,
        io: &mut H,
        ticket: u64,
        messages: &[(&str, &str)],
    ) -> Result<Option<BatchOutcome>, BatchError> {
        for (index, (topic, data)) in messages.iter().enumerate() {
            self.check_publish(io, topic, data)
                .map_err(|(code, message)| BatchError {
                    index,
                    code,
                    message,
                })?;
        }
        let mut outcome = BatchOutcome {
            seqs: vec![None; messages.len()],
            refused: None,
        };
        if self.cluster.is_some() {
            return Ok(self.cluster_batch(io, ticket, messages, outcome));
        }
        let slot = self.batches.pending.vacant_key() as u32;
        let me = io.shard();
        let mut waiting = 0;
        // The request's arrival, for the publish-to-send latency (the
        // loop turn's clock, as for a `pub`).
        let arrived = io.now_ns();
        for (index, (topic, data)) in messages.iter().enumerate() {
            let owner = owner_of(topic, io.shards());
            if owner == me {
                match self.publish_from(io, topic, data.as_bytes(), (me, NOBODY, arrived), None) {
                    Some(seq) => outcome.seqs[index] = Some(seq),
                    None => {
                        inc(&self.my_stats(io).topics_refused_total, 1);
                        outcome.refused.get_or_insert(NO_ROOM);
                    }
                }
                continue;
            }
            let mail = Mail::PublishFor {
                buf: topic_then_data(topic, data),
                topic_len: topic.len() as u8,
                batch: slot,
                index: index as u32,
                arrived,
            };
            // As for a `pub`: refused before the owner numbers it, so no
            // seq gap, and the caller is told which to retry.
            if io.try_post(owner, mail).is_err() {
                inc(&self.my_stats(io).publishes_refused_total, 1);
                outcome.refused.get_or_insert(OVERLOADED);
            } else {
                waiting += 1;
            }
        }
        if waiting == 0 {
            return Ok(Some(outcome));
        }
        self.batches.pending.insert(Pending {
            ticket,
            outcome,
            waiting,
        });
        Ok(None)
    }

    /// On the owner: number a message published for a batch of shard
    /// `from` and tell it the seq (0: not published, no room for a new
    /// topic).
    pub(super) fn publish_for<H: Host>(
        &mut self,
        io: &mut H,
        from: usize,
        topic: &str,
        data: &[u8],
        (batch, index): (u32, u32),
        arrived: u64,
    ) {
        let seq = self.publish_from(io, topic, data, (from, NOBODY, arrived), None);
        // One answer per `PublishFor` taken off that shard's ring: bounded
        // by the ring, like `Created`.
        io.post(
            from,
            Mail::Numbered {
                batch,
                index,
                seq: seq.unwrap_or(0),
            },
        );
    }

    /// On the batch's shard: an owner's answer.
    pub(super) fn numbered(&mut self, batch: u32, index: u32, seq: u64) {
        let Some(p) = self.batches.pending.get_mut(batch as usize) else {
            return;
        };
        if let Some(s) = p.outcome.seqs.get_mut(index as usize) {
            if seq == 0 {
                p.outcome.refused.get_or_insert(NO_ROOM);
            } else if seq == UNAVAILABLE_SEQ {
                p.outcome.refused.get_or_insert(UNAVAILABLE);
            } else if seq == OVERLOADED_SEQ {
                p.outcome.refused.get_or_insert(OVERLOADED);
            } else {
                *s = Some(seq);
            }
        }
        p.waiting -= 1;
        if p.waiting == 0 {
            let p = self.batches.pending.remove(batch as usize);
            self.batches.done.push((p.ticket, p.outcome));
        }
    }

    /// Cluster mode: every message goes to the stream through its owner
    /// shard and is answered by [`Broker::numbered`]: later, or at once
    /// when it cannot be sent (then the outcome may be complete here).
    fn cluster_batch<H: Host>(
        &mut self,
        io: &mut H,
        ticket: u64,
        messages: &[(&str, &str)],
        outcome: BatchOutcome,
    ) -> Option<BatchOutcome> {
        if messages.is_empty() {
            return Some(outcome);
        }
        let slot = self.batches.pending.insert(Pending {
            ticket,
            outcome,
            waiting: messages.len(),
        }) as u32;
        let me = io.shard();
        for (index, (topic, data)) in messages.iter().enumerate() {
            let owner = owner_of(topic, io.shards());
            let origin = Origin::Batch {
                shard: me,
                batch: slot,
                index: index as u32,
            };
            self.cluster_route(io, owner, topic, data, origin);
        }
        // Every answer came at once (all refused): the outcome is done.
        let done = &mut self.batches.done;
        let at = done.iter().position(|(t, _)| *t == ticket)?;
        Some(done.remove(at).1)
    }

    /// Batches completed since the last call, with their tickets.
    pub fn take_batches(&mut self) -> Vec<(u64, BatchOutcome)> {
        std::mem::take(&mut self.batches.done)
    }

    /// Whether any batch completed (cheap: called after every mail).
    pub fn has_batches(&self) -> bool {
        !self.batches.done.is_empty()
    }
}
