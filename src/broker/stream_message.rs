//! Cluster mode: what one stream message holds (docs/cluster.md §3-4).
//!
//! A topic has one publish in flight per node (the stream's expected last
//! subject sequence orders them), so a topic's rate on a node is about one
//! stream round trip per message: ~2,000/s on the 2-core test machine,
//! ~10,000/s on 16 cores, and less across real networks (docs/cluster.md,
//! "Cross-node fan-out"). Publishes that wait behind the one in flight
//! therefore go together as one **bundle**: one stream message of k `msg`
//! texts numbered `rf_seq`..`rf_seq`+k-1, their lengths in a header
//! (`Rf-Lens`). A hot topic then costs a round trip per bundle.
//!
//! Receiving, a stored message (a copy, a read back) is taken apart
//! here: each `msg` is checked (it came over the network), framed once,
//! kept as the topic's last value and fanned out in order, exactly as k
//! single messages would be. The stream sequence is the bundle's: it is
//! delivered whole or not at all, and its last `msg` is the topic's last
//! value (what snapshots and numbering read).

use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;

use super::cluster::{Pending, Stored};
use super::engine::{owner_of, Broker};
use super::host::Host;
use super::topic::check_topic;
use super::wire::{self, TopicAt};
use crate::metrics::inc;

/// `msg`s in one stream message at most: a bundle's header lists each
/// length (256 × up to 7 digits is under 2 KB of header).
pub const MAX_BUNDLE: usize = 256;

/// A bundle's data at most, so that it stays well under NATS's default
/// `max_payload` (1 MiB) with its envelopes; a larger publish goes alone.
pub const BUNDLE_BYTES: usize = 256 * 1024;

/// The publishes of the next stream message: the first waiting, and those
/// after it while the bundle's bounds allow. Each counts as what it puts
/// in the stream message: its data, the `msg` envelope around it with
/// the topic, and its length in `Rf-Lens` (a long topic's 256 envelopes
/// are tens of KB).
pub(super) fn take_bundle(
    waiting: &mut VecDeque<Pending>,
    cap: usize,
    topic_len: usize,
) -> Vec<Pending> {
    let mut out = Vec::new();
    let mut bytes = 0;
    while let Some(p) = waiting.front() {
        let more = bytes + p.data.len() + topic_len + super::engine::ENVELOPE + 8;
        if !out.is_empty() && (out.len() >= MAX_BUNDLE || more > cap) {
            break;
        }
        bytes = more;
        if let Some(p) = waiting.pop_front() {
            out.push(p);
        }
    }
    out
}

/// The stream message's payload: each publish framed as the `msg` with
/// seq `first` + i, one after the other, and their lengths (empty for
/// one: a single `msg` carries no lengths).
pub(super) fn frame(topic: &str, first: u64, bundle: &[Pending]) -> (Bytes, Vec<u32>) {
    let text = |i: usize, p: &Pending| {
        let (frame, _) = wire::msg(topic, first + i as u64, &p.data, false);
        let header = frame.len() - payload_len(&frame);
        frame.slice(header..)
    };
    if let [one] = bundle {
        return (text(0, one), Vec::new());
    }
    let mut payload = BytesMut::new();
    let mut lens = Vec::with_capacity(bundle.len());
    for (i, p) in bundle.iter().enumerate() {
        let t = text(i, p);
        lens.push(t.len() as u32);
        payload.extend_from_slice(&t);
    }
    (payload.freeze(), lens)
}

/// The payload length of a server frame (unmasked).
fn payload_len(frame: &Bytes) -> usize {
    crate::ws::frame::parse_header(frame)
        .ok()
        .flatten()
        .map_or(0, |h| frame.len() - h.len)
}

/// A framed `msg`, with where its topic and data sit.
type Part = (Bytes, TopicAt, u32);

/// A stored message's `msg`s, each checked and framed: the first, and the
/// rest of a bundle (empty, so no allocation, for the common single
/// `msg`); `None` when any is not the `msg` of its topic and seq, or the
/// lengths do not add up.
fn parts(copy: &Stored) -> Option<(Part, Vec<Part>)> {
    check_topic(&copy.topic).ok()?;
    if copy.lens.is_empty() {
        let one = wire::frame_copy(&copy.topic, copy.rf_seq, &copy.payload)?;
        return Some((one, Vec::new()));
    }
    let total: usize = copy.lens.iter().map(|&l| l as usize).sum();
    if copy.lens.len() > MAX_BUNDLE || total != copy.payload.len() {
        return None;
    }
    let mut at = 0;
    let mut out = Vec::with_capacity(copy.lens.len());
    // The last seq must not overflow (the numbers came over the network).
    copy.rf_seq.checked_add(copy.lens.len() as u64)?;
    for (i, &len) in copy.lens.iter().enumerate() {
        let text = copy.payload.get(at..at + len as usize)?;
        at += len as usize;
        out.push(wire::frame_copy(&copy.topic, copy.rf_seq + i as u64, text)?);
    }
    let mut rest = out.into_iter();
    let first = rest.next()?;
    Some((first, rest.collect()))
}

impl Stored {
    /// The seq of its last `msg` (a bundle's last).
    pub fn last_seq(&self) -> u64 {
        self.rf_seq
            .saturating_add(self.lens.len().max(1) as u64 - 1)
    }
}

impl Broker {
    /// A stored message for this node's subscribers: framed once, kept as
    /// the topic's last value, fanned out to the interested shards.
    pub(super) fn cluster_copy<H: Host>(&mut self, io: &mut H, copy: Stored) {
        let epoch = self.cluster.as_ref().map_or(0, |c| c.epoch);
        self.take_copy(io, copy, epoch);
    }

    /// As [`Self::cluster_copy`], for a copy or a snapshot read's answer
    /// (`cluster_snapshot.rs`) that came in `epoch`: the topic's value is
    /// known current if it still is that epoch, the link is up and this
    /// node holds interest in the topic (its later copies come here).
    pub(super) fn take_copy<H: Host>(&mut self, io: &mut H, copy: Stored, epoch: u32) {
        if self.cluster.is_none() || owner_of(&copy.topic, io.shards()) != io.shard() {
            return;
        }
        // Copies before it missed: read first, this one waits (`cluster_fill.rs`).
        if let Some(copy) = self.fill_gate(io, copy, epoch) {
            self.deliver_copy(io, copy, epoch);
        }
    }

    /// A copy of a topic owned here, past the fill gate: delivered unless
    /// it is a duplicate or not a `msg` of its topic.
    pub(super) fn deliver_copy<H: Host>(&mut self, io: &mut H, copy: Stored, epoch: u32) {
        let me = io.shard();
        // Checked before it counts for anything: it came over the network.
        let Some((first, rest)) = parts(&copy) else {
            inc(&self.stats[me].cluster_bad_copies_total, 1);
            return;
        };
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let st = match c.topics.get_mut(&*copy.topic) {
            Some(st) => st,
            None => c.topics.entry(copy.topic.clone()).or_default(),
        };
        if copy.stream_seq <= st.delivered {
            inc(&self.stats[me].cluster_duplicates_total, 1);
            return;
        }
        st.delivered = copy.stream_seq;
        if copy.stream_seq > st.stream {
            (st.known, st.stream, st.seq) = (true, copy.stream_seq, copy.last_seq());
        }
        let arrived = io.now_ns();
        let now = io.now_ms();
        let mut interest = false;
        for (i, framed) in std::iter::once(first).chain(rest).enumerate() {
            inc(&self.stats[me].cluster_copies_total, 1);
            let seq = copy.rf_seq + i as u64;
            let Some(p) = self.owned.record_copy(&copy.topic, seq, framed, now) else {
                self.count_forgotten(io);
                inc(&self.stats[me].topics_refused_total, 1);
                return;
            };
            self.count_forgotten(io);
            let s = self.my_stats(io);
            inc(&s.frames_built_total, 1);
            if p.created {
                inc(&s.topics, 1);
            }
            interest = p.shards != 0;
            self.fan_out(io, &p, arrived);
        }
        if let Some(c) = self.cluster.as_mut() {
            let current = c.connected && c.epoch == epoch && interest;
            let lapses = c.lapses;
            if let Some(st) = c.topics.get_mut(&*copy.topic) {
                st.followed = if interest { lapses } else { 0 };
                if current {
                    st.fresh = epoch;
                }
            }
        }
    }
}
