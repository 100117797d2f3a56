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
//! a read (~1 ms), and an explicit gap only when the read fails or the
//! messages are gone from the stream.

use std::collections::VecDeque;

use super::cluster::{ClusterOut, Kind, Stored};
use super::engine::Broker;
use super::host::Host;
use crate::metrics::inc;

/// Copies of a topic held behind its fill, at most; past it (or
/// [`HELD_BYTES`]) the fill is given up and they go out with the gap. A
/// read takes ~1 ms; 1,024 stream messages is a topic at the stream's
/// pace for one node (~3,000 stream messages/s, `cluster.rs`) for a third
/// of a second, and the bridge gives a fill at most 2 s.
const HELD: usize = 1024;

/// Bytes of held copies, at most (a bundle is up to 256 KiB: 64 of them).
const HELD_BYTES: usize = 16 << 20;

/// Copies of one topic waiting for its fill, in stream order, each with
/// the epoch it came in (`take_copy`: what it may mark current).
pub(crate) struct Held {
    token: u64,
    copies: VecDeque<(Stored, u32)>,
    bytes: usize,
}

impl Held {
    /// In stream order (a snapshot read's answer may come before copies
    /// older than it); `Err` gives it back when full.
    fn put(&mut self, copy: Stored, epoch: u32) -> Result<(), Stored> {
        if self.copies.len() >= HELD || self.bytes + copy.payload.len() > HELD_BYTES {
            return Err(copy);
        }
        self.bytes += copy.payload.len();
        let at = self
            .copies
            .partition_point(|(c, _)| c.stream_seq <= copy.stream_seq);
        self.copies.insert(at, (copy, epoch));
        Ok(())
    }
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
        let lapses = c.lapses;
        let Some(st) = c.topics.get_mut(&*copy.topic) else {
            return Some(copy);
        };
        // A duplicate is dropped where it is delivered, held or not.
        if copy.stream_seq <= st.delivered {
            return Some(copy);
        }
        if let Some(held) = st.held.as_mut() {
            let Err(copy) = held.put(copy, epoch) else {
                return None;
            };
            // Full: the fill is given up (its late answer is ignored), the
            // held copies go out with the hole as an explicit gap, then
            // this one as any other.
            let held = st.held.take()?;
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
        // bridge's catch-up brings what was stored meanwhile, and what it
        // did not bring (taken from too late a sequence, or still on its
        // way after `HOLD_FOR`) is filled here.
        let followed = st.followed != 0 && st.followed == lapses;
        let missed = followed && st.delivered > 0 && copy.last_stream_seq > st.delivered;
        if !missed {
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
        let mut held = Held {
            token,
            copies: VecDeque::new(),
            bytes: 0,
        };
        let topic = copy.topic.clone();
        held.put(copy, epoch).ok()?;
        if let Some(st) = c.topics.get_mut(&*topic) {
            st.held = Some(held);
        }
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
        let Some(st) = c.topics.get_mut(topic) else {
            return;
        };
        // A fill given up (its held copies went out) whose answer came.
        if st.held.as_ref().is_none_or(|h| h.token != token) {
            return;
        }
        let Some(held) = st.held.take() else {
            return;
        };
        match found {
            Some(mut found) => {
                found.sort_by_key(|m| m.stream_seq);
                inc(&self.stats[me].cluster_filled_total, found.len() as u64);
                for m in found.into_iter().filter(|m| &*m.topic == topic) {
                    self.deliver_copy(io, m, epoch);
                }
            }
            None => inc(&self.stats[me].cluster_fill_failures_total, 1),
        }
        self.fill_release(io, held);
    }

    /// The copies held behind a fill, in stream order: the first (the one
    /// that showed the hole) as it is, whatever the fill found (else it
    /// would ask again for what is not there); each later one through the
    /// gate again (another hole among them is another fill).
    fn fill_release<H: Host>(&mut self, io: &mut H, held: Held) {
        let mut copies = held.copies.into_iter();
        if let Some((first, epoch)) = copies.next() {
            self.deliver_copy(io, first, epoch);
        }
        for (copy, epoch) in copies {
            self.take_copy(io, copy, epoch);
        }
    }
}
