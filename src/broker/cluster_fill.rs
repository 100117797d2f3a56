//! Cluster mode: messages a node missed, fetched from the stream before
//! the copy that showed them missing is delivered (docs/cluster.md §4,
//! "Holes").
//!
//! Every copy carries its topic's previous stream sequence
//! (`Nats-Last-Sequence`). While a node holds interest in a topic without
//! a break (`TopicSeq::followed`), that is the last one it delivered,
//! unless a copy never came: the stream leader died
//! between storing a message and republishing it to this node's server
//! (seen with a three-server NATS cluster: two acked publishes sent within
//! 2 ms of the leader's kill never reached a node on another server), the
//! shard's inbox was full and the bridge shed it, or catch-up after a
//! reconnect started past it (also seen in that test: a node whose NATS
//! server was killed missed two publishes sent 8 ms after). Without this, the
//! topic's subscribers would see an explicit gap; with it, the missing
//! messages (the stream keeps `--cluster-history`, 16, per topic) are
//! read and delivered first, and the copy and every later one wait for
//! them in stream order. The subscribers see the seqs contiguous, late by
//! a read (0.13-0.16 ms for one message on loopback), and an explicit gap
//! when the read fails, the messages are gone from the stream, or the
//! shard is too far behind to read (the bounds below).

use std::collections::VecDeque;

use super::cluster::{Cluster, ClusterOut, Kind, Stored};
use super::engine::Broker;
use super::host::Host;
use crate::metrics::inc;

/// Copies of a topic held behind its fill, at most; past it (or
/// [`HELD_BYTES`], or the shard's [`SHARD_HELD_BYTES`]) the fill is given
/// up and they go out with the gap. A read takes ~0.2 ms; 1,024 stream
/// messages is a topic at the stream's pace for one node (~3,000 stream
/// messages/s, `cluster.rs`) for a third of a second, and the bridge
/// gives a fill at most 2 s.
const HELD: usize = 1024;

/// Bytes of held copies per topic, at most (a bundle is up to 256 KiB:
/// 64 of them).
const HELD_BYTES: usize = 16 << 20;

/// Bytes of held copies per shard, over all its topics: as much as the
/// shard's inbox holds of copies (`COPY_BYTES`, 64 MiB), which is where
/// they came from.
const SHARD_HELD_BYTES: usize = 64 << 20;

/// Fills on their way per shard, at most; a hole seen past it is an
/// explicit gap. Holes come one per stream leader's failover per topic
/// or from shed copies: many at once is a shard far behind, which reads
/// would only put further behind.
const SHARD_FILLS: usize = 64;

/// Copies of one topic waiting for its fill, in stream order, each with
/// the epoch it came in (`take_copy`: what it may mark current).
pub(crate) struct Held {
    token: u64,
    /// The stream sequence of the copy that showed the hole: copies up to
    /// it are released as they are (the hole is before them).
    until: u64,
    copies: VecDeque<(Stored, u32)>,
    bytes: usize,
}

impl Held {
    /// In stream order (a snapshot read's answer may come before copies
    /// older than it); `Err` gives it back when full (the first is always
    /// taken, whatever its size).
    fn put(&mut self, copy: Stored, epoch: u32, shard_bytes: usize) -> Result<(), Stored> {
        let n = copy.payload.len();
        let full = self.copies.len() >= HELD
            || self.bytes + n > HELD_BYTES
            || shard_bytes + n > SHARD_HELD_BYTES;
        if full && !self.copies.is_empty() {
            return Err(copy);
        }
        self.bytes += n;
        let at = self
            .copies
            .partition_point(|(c, _)| c.stream_seq <= copy.stream_seq);
        self.copies.insert(at, (copy, epoch));
        Ok(())
    }
}

/// `topic`'s fill taken off the shard (answered, given up or flushed),
/// the shard's counts with it.
fn take_held(c: &mut Cluster, topic: &str) -> Option<Held> {
    let held = c.topics.get_mut(topic)?.held.take()?;
    c.fills = c.fills.saturating_sub(1);
    c.held_bytes = c.held_bytes.saturating_sub(held.bytes);
    Some(held)
}

impl Broker {
    /// A copy of a topic owned here, on its way to delivery: `Some` to
    /// deliver it now; `None` when it waits behind a fill (sent now, when
    /// this copy shows copies before it were missed).
    pub(super) fn fill_gate<H: Host>(
        &mut self,
        io: &mut H,
        copy: Stored,
        epoch: u32,
    ) -> Option<Stored> {
        let me = io.shard();
        let now = io.now_ms();
        let c = self.cluster.as_mut()?;
        let (lapses, shard_bytes, fills) = (c.lapses, c.held_bytes, c.fills);
        let Some(st) = c.topics.get_mut(&*copy.topic) else {
            return Some(copy);
        };
        // A duplicate is dropped where it is delivered, held or not.
        if copy.stream_seq <= st.delivered {
            return Some(copy);
        }
        if let Some(held) = st.held.as_mut() {
            let n = copy.payload.len();
            let Err(copy) = held.put(copy, epoch, shard_bytes) else {
                c.held_bytes += n;
                return None;
            };
            // Full: the fill is given up (its late answer is ignored), the
            // held copies go out with the hole as an explicit gap, then
            // this one as any other.
            let held = take_held(c, &copy.topic)?;
            c.forget_token(held.token);
            inc(&self.stats[me].cluster_fill_failures_total, 1);
            self.fill_release(io, held);
            return self.fill_gate(io, copy, epoch);
        }
        // Only a topic followed without a break since its last copy tells
        // a hole: after a lapse of interest the node missed copies on
        // purpose (its next subscribers are not owed them; a snapshot
        // reads the newest), and a topic not delivered here has no
        // "before" for its subscribers. A link blip does not count: the
        // bridge's catch-up brings what was stored meanwhile, and a hole
        // a live copy shows after it (what catch-up read from too late a
        // sequence, or still on its way after `HOLD_FOR`) is filled here.
        let followed = st.followed != 0 && st.followed == lapses;
        let missed = followed && st.delivered > 0 && copy.last_stream_seq > st.delivered;
        if !missed {
            return Some(copy);
        }
        if fills >= SHARD_FILLS {
            // A previous not known (catch-up's first of a topic) was most
            // likely no hole at all: not counted as one left open.
            if copy.last_stream_seq != super::cluster::UNKNOWN_PREVIOUS {
                inc(&self.stats[me].cluster_fill_failures_total, 1);
            }
            return Some(copy);
        }
        let after = st.delivered;
        let token = c.request(&copy.topic, now, Kind::Fill);
        let ask = ClusterOut::Fill {
            token,
            topic: copy.topic.clone(),
            after,
            until: copy.stream_seq,
        };
        if !c.send(ask) {
            c.forget_token(token);
            inc(&self.stats[me].cluster_fill_failures_total, 1);
            return Some(copy);
        }
        inc(&self.stats[me].cluster_fills_total, 1);
        let n = copy.payload.len();
        let topic = copy.topic.clone();
        let mut held = Held {
            token,
            until: copy.stream_seq,
            copies: VecDeque::new(),
            bytes: 0,
        };
        held.put(copy, epoch, 0).ok()?; // the first is always taken
        let st = c.topics.get_mut(&*topic)?;
        st.held = Some(held);
        c.fills += 1;
        c.held_bytes += n;
        None
    }

    /// A fill of `topic` answered (`found`: the missed messages, oldest
    /// first) or given up (`None`): they are delivered, then the copies
    /// held behind it.
    pub(super) fn fill_answered<H: Host>(
        &mut self,
        io: &mut H,
        topic: &str,
        token: u64,
        found: Option<Vec<Stored>>,
    ) {
        let me = io.shard();
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let epoch = c.epoch;
        // A fill given up (its held copies went out) whose answer came.
        let mine = c
            .topics
            .get(topic)
            .and_then(|st| st.held.as_ref())
            .is_some_and(|h| h.token == token);
        if !mine {
            return;
        }
        let Some(held) = take_held(c, topic) else {
            return;
        };
        match found {
            Some(mut found) => {
                found.retain(|m| &*m.topic == topic);
                found.sort_by_key(|m| m.stream_seq);
                inc(&self.stats[me].cluster_filled_total, found.len() as u64);
                for m in found {
                    self.deliver_copy(io, m, epoch);
                }
            }
            None => inc(&self.stats[me].cluster_fill_failures_total, 1),
        }
        self.fill_release(io, held);
    }

    /// The copies held behind a fill, in stream order: those up to the
    /// one that showed the hole as they are, whatever the fill found
    /// (else it would ask again for what is not there); each later one
    /// through the gate again (another hole among them is another fill).
    fn fill_release<H: Host>(&mut self, io: &mut H, held: Held) {
        for (copy, epoch) in held.copies {
            if copy.stream_seq <= held.until {
                self.deliver_copy(io, copy, epoch);
            } else {
                self.take_copy(io, copy, epoch);
            }
        }
    }

    /// Every fill of this shard given up and its held copies delivered as
    /// they are (the stream was made anew: they are the old stream's, and
    /// other nodes delivered them).
    pub(super) fn fill_flush_all<H: Host>(&mut self, io: &mut H) {
        let me = io.shard();
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let topics: Vec<Box<str>> = c
            .topics
            .iter()
            .filter(|(_, st)| st.held.is_some())
            .map(|(t, _)| t.clone())
            .collect();
        for topic in topics {
            let Some(c) = self.cluster.as_mut() else {
                return;
            };
            let Some(held) = take_held(c, &topic) else {
                continue;
            };
            c.forget_token(held.token);
            inc(&self.stats[me].cluster_fill_failures_total, 1);
            for (copy, epoch) in held.copies {
                self.deliver_copy(io, copy, epoch);
            }
        }
    }
}
