//! Cluster mode (issue #18, docs/cluster.md): topics numbered by a
//! JetStream stream instead of by this node, so every node sees one
//! `seq` per topic.
//!
//! What the broker does here, on a topic's owner shard:
//!
//! - **Publishing**: it frames `{"op":"msg","topic":T,"seq":Q+1,...}` once
//!   and hands the JSON text to the NATS bridge with the stream sequence
//!   `S` of T's last stored message; the stream stores it only if T's last
//!   is still `S` (`Nats-Expected-Last-Subject-Sequence`), so two nodes
//!   can never give two messages one seq. One publish per topic is in
//!   flight per node; later ones wait in order behind it (a stream round
//!   trip each: 0.1-0.4 ms measured, docs/cluster.md). The publisher's
//!   `ack` (or HTTP `seqs`) goes out once the stream stored it; `err`
//!   `unavailable` when it could not be confirmed.
//! - **Delivering**: nothing is delivered when published. Every node,
//!   this one included, delivers the stream's copies (republished on
//!   `rf.d.<topic>`, which the bridge subscribes to per local pattern), so
//!   all nodes deliver one order and never a publish the stream refused.
//!   A copy is framed once per node and fanned out like a local publish;
//!   a copy already delivered (two overlapping patterns, a retried
//!   subscription) is dropped by its stream sequence.
//!
//! The broker stays plain data: it talks to the bridge through a sink it
//! is given ([`ClusterSink`]) and hears from it by mail
//! ([`super::Mail::Cluster`]).

use bytes::Bytes;
use rustc_hash::FxHashMap;
use std::collections::VecDeque;

use super::cluster_answer::DRAINING;
use super::engine::Broker;
use super::host::Host;
use super::mail::Mail;
use super::wire::ErrCode;
use crate::metrics::{dec, inc};

pub use super::cluster_mail::{
    ClusterIn, ClusterOut, ClusterSink, Origin, PublishResult, Stored, UNKNOWN_PREVIOUS,
};

/// Publishes of one topic waiting behind the one in flight, at most: past
/// it a publisher gets `rate_limited`. At ~0.3 ms a round trip a topic
/// takes ~3,000 publishes/s per node, so 1,024 is a third of a second.
const MAX_WAITING: usize = 1024;

/// Times a publish is numbered again after conflicts before its publisher
/// is told the topic is contended (docs/cluster.md §3): two nodes taking
/// turns on one topic conflict at most once a round each.
const MAX_CONFLICTS: u8 = 8;

pub(super) struct Pending {
    pub(super) data: Bytes,
    origin: Origin,
    conflicts: u8,
}

/// A topic's numbering as this node knows it.
#[derive(Default)]
pub(super) struct TopicSeq {
    /// `stream`/`seq` are the stream's word (from an ack, a copy or a
    /// read); until then the next publish asks for the last message.
    pub(super) known: bool,
    /// A last-message read is on its way.
    asking: bool,
    /// Stream sequence and seq of the topic's last stored message.
    pub(super) stream: u64,
    pub(super) seq: u64,
    /// Highest stream sequence delivered here (copies at or below it are
    /// duplicates).
    pub(super) delivered: u64,
    /// The stream message in flight: its token, its first seq, and its
    /// publishes (a bundle, `stream_message.rs`).
    inflight: Option<(u64, u64, Vec<Pending>)>,
    waiting: VecDeque<Pending>,
    /// The interest epoch (`Cluster::epoch`) in which this node's last
    /// value of the topic was known current: a copy arrived while the
    /// node held interest in it, or a snapshot read answered. Equal to
    /// the cluster's epoch: a snapshot is served from the local value
    /// (`cluster_snapshot.rs`); 0: never, or the interest lapsed since.
    pub(super) fresh: u32,
    /// A snapshot read is on its way, and the subscriptions (connection,
    /// request) waiting for it.
    pub(super) reading: bool,
    pub(super) readers: Vec<(super::snapshots::ConnKey, u32)>,
    /// The topic's interest lapsed while the read was on its way: it was
    /// fenced before any interest since, so it neither makes the value
    /// current nor serves subscribers who came after; those wait in
    /// `next_readers` for a read of their own.
    pub(super) read_stale: bool,
    pub(super) next_readers: Vec<(super::snapshots::ConnKey, u32)>,
    /// `Cluster::lapses` when the last copy delivered here found local
    /// interest in the topic; 0 when it found none or the interest lapsed
    /// since. Equal to `lapses`: the node has followed the topic without a
    /// break since `delivered`, so a copy whose previous stream sequence
    /// is above `delivered` shows a copy missed (`cluster_fill.rs`).
    /// Unlike `fresh`, a link blip does not end it: the copies missed
    /// across one are filled the same way when catch-up did not bring them.
    pub(super) followed: u32,
    /// A fill is on its way (`cluster_fill.rs`): the copies that came
    /// since, the one that showed the hole first, in stream order.
    pub(super) held: Option<super::cluster_fill::Held>,
}

/// A wildcard's snapshot reads on this shard (`cluster_snapshot.rs`).
#[derive(Default)]
pub(super) struct WildRead {
    /// The epoch in which this node's values of its topics were known
    /// current (a read answered; the node's interest in the wildcard
    /// held since, or the epoch would have moved).
    pub(super) fresh: u32,
    pub(super) reading: bool,
    pub(super) readers: Vec<(super::snapshots::ConnKey, u32)>,
}

/// What a request to the bridge was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// The topic's last message, to number its next publish.
    Numbering,
    /// A publish.
    Publish,
    /// A snapshot's read of an exact topic (`cluster_snapshot.rs`), sent
    /// in this epoch.
    Read(u32),
    /// A snapshot's read of a wildcard's topics, sent in this epoch.
    Wild(u32),
    /// Messages a copy showed were missed (`cluster_fill.rs`).
    Fill,
}

/// A request waiting for the bridge's answer.
struct Request {
    /// Its topic (or pattern, for `Kind::Wild`).
    topic: Box<str>,
    /// When it was sent (shard clock, ms).
    at: u64,
    kind: Kind,
}

/// The cluster state of a shard.
pub struct Cluster {
    sink: ClusterSink,
    node: u64,
    pub(super) topics: FxHashMap<Box<str>, TopicSeq>,
    /// Wildcard patterns snapshotted here: their reads and freshness.
    pub(super) wild: FxHashMap<Box<str>, WildRead>,
    /// Request token → what it asked: every request waiting for the
    /// bridge, so the deadline looks at these, not at every topic.
    tokens: FxHashMap<u64, Request>,
    next: u64,
    /// A request older than this (ms) gets no answer any more: the bridge
    /// gave up on it (its own publish timeout, plus slack).
    deadline_ms: u64,
    /// Interest the bridge refused, resent in order (a lost one would be a
    /// subscription that silently never delivers). The bridge takes
    /// interest whatever its command queue holds (`BridgeSender::send`),
    /// so this is for a bridge that is gone or stopping.
    interest: VecDeque<ClusterOut>,
    /// Bumped whenever this node may have missed copies of topics it did
    /// not mark one by one: a wildcard's interest lapsed here, or the
    /// NATS link went down or came back. Starts at 1 (0 = never fresh).
    pub(super) epoch: u32,
    /// Bumped whenever a wildcard's interest lapses here (a topic's exact
    /// lapse clears its own `TopicSeq::followed`): what `followed` is
    /// compared with. Starts at 1 (0 = not followed).
    pub(super) lapses: u32,
    /// Fills on their way, and the bytes of copies held behind them, over
    /// every topic of this shard (`cluster_fill.rs` bounds both).
    pub(super) fills: usize,
    pub(super) held_bytes: usize,
    /// The link as the bridge last said (copies mark a topic fresh only
    /// while it is up).
    pub(super) connected: bool,
    /// The NATS server's `max_payload` (bytes, headers included).
    max_payload: usize,
}

/// Bytes a stream message's headers take at most, besides a bundle's
/// lengths (`Nats-Msg-Id`, `Nats-Expected-Last-Subject-Sequence`,
/// `Rf-Seq` and the status line: under 200 measured; 1 KiB to spare).
const NATS_HEADROOM: usize = 1024;

impl Cluster {
    /// `node` tells this node's message ids from other nodes' (random at
    /// start: a restarted node must not reuse the ids of its last life
    /// within the stream's 2-minute duplicate window).
    /// `deadline` bounds how long a request may wait for the bridge's
    /// answer: its publish timeout plus slack (an answer the bridge could
    /// not hand over, a shard inbox full for that long, must not leave the
    /// topic's publishers waiting for ever).
    pub fn new(sink: ClusterSink, node: u64, deadline: std::time::Duration) -> Self {
        Self {
            sink,
            node,
            topics: FxHashMap::default(),
            wild: FxHashMap::default(),
            tokens: FxHashMap::default(),
            next: 0,
            deadline_ms: deadline.as_millis() as u64,
            interest: VecDeque::new(),
            epoch: 1,
            lapses: 1,
            fills: 0,
            held_bytes: 0,
            connected: true,
            max_payload: 1 << 20, // nats-server's default
        }
    }

    /// The NATS server's `max_payload`: a publish's `msg` larger than it
    /// (less the headers) is refused `too_large` before it is numbered,
    /// and bundles keep to half of it.
    pub fn with_max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    #[cfg(test)]
    pub(super) fn set_max_payload(&mut self, bytes: usize) {
        self.max_payload = bytes;
    }

    /// The largest `msg` (JSON text) one stream message can carry.
    pub(super) fn max_msg(&self) -> usize {
        self.max_payload.saturating_sub(NATS_HEADROOM)
    }

    /// A bundle's data at most.
    pub(super) fn bundle_bytes(&self) -> usize {
        super::stream_message::BUNDLE_BYTES.min(self.max_payload / 2)
    }

    /// The topic a request's answer is for (its token forgotten) and what
    /// it asked; `None` for an answer no longer waited for.
    fn answered(&mut self, token: u64) -> Option<(Box<str>, Kind)> {
        let r = self.tokens.remove(&token)?;
        Some((r.topic, r.kind))
    }

    /// As [`Self::answered`], for a numbering or publish answer, with the
    /// topic's state.
    fn answered_topic(&mut self, token: u64) -> Option<(Box<str>, &mut TopicSeq)> {
        let (topic, _) = self.answered(token)?;
        let st = self.topics.get_mut(&*topic)?;
        Some((topic, st))
    }

    pub(super) fn request(&mut self, topic: &str, now_ms: u64, kind: Kind) -> u64 {
        self.next += 1;
        let r = Request {
            topic: topic.into(),
            at: now_ms,
            kind,
        };
        self.tokens.insert(self.next, r);
        self.next
    }

    pub(super) fn forget_token(&mut self, token: u64) {
        self.tokens.remove(&token);
    }

    pub(super) fn send(&mut self, m: ClusterOut) -> bool {
        (self.sink)(m)
    }

    /// Tell the bridge of interest, in order, holding what it refuses.
    pub(super) fn interest(&mut self, pattern: &str, add: bool) {
        self.interest.push_back(ClusterOut::Interest {
            pattern: pattern.into(),
            add,
        });
        self.resend_interest();
    }

    /// The tick: interest the bridge refused goes again, and past `cap`
    /// topics the idle ones are forgotten (nothing in flight or waiting):
    /// a forgotten topic's next publish reads its last message again (one
    /// round trip), so the map stays bounded like the owner's topics
    /// (`--max-topics-per-shard`) whatever the number of topics seen.
    pub(super) fn tick(&mut self, cap: usize) {
        self.resend_interest();
        let epoch = self.epoch;
        self.wild.retain(|_, w| w.reading || w.fresh == epoch);
        if self.topics.len() > cap {
            self.topics.retain(|_, st| {
                st.asking
                    || st.reading
                    || st.held.is_some()
                    || st.inflight.is_some()
                    || !st.waiting.is_empty()
            });
        }
    }

    /// Requests that waited past the deadline at `now_ms` (their token,
    /// topic and kind): their tokens are forgotten (a late answer is
    /// ignored).
    fn expired(&mut self, now_ms: u64) -> Vec<(u64, Box<str>, Kind)> {
        let deadline = self.deadline_ms;
        let mut topics = Vec::new();
        self.tokens.retain(|token, r| {
            let late = now_ms.saturating_sub(r.at) > deadline;
            if late {
                topics.push((*token, std::mem::take(&mut r.topic), r.kind));
            }
            !late
        });
        topics
    }

    pub(super) fn resend_interest(&mut self) {
        while let Some(m) = self.interest.front() {
            if !(self.sink)(m.clone()) {
                return;
            }
            self.interest.pop_front();
        }
    }
}

impl Broker {
    /// The tick, cluster mode: refused interest again, idle topics past
    /// the cap forgotten, requests past their deadline failed.
    pub(super) fn cluster_tick<H: Host>(&mut self, io: &mut H) {
        let cap = self.config.max_topics;
        let now = io.now_ms();
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        c.tick(cap);
        for (token, topic, kind) in c.expired(now) {
            self.cluster_no_answer(io, token, &topic, kind);
        }
    }

    /// Cluster mode: a publish checked here goes to its topic's owner
    /// shard on this node (by mail when that is another shard), which
    /// numbers it through the stream and answers `origin`.
    pub(super) fn cluster_route<H: Host>(
        &mut self,
        io: &mut H,
        owner: usize,
        topic: &str,
        data: &str,
        origin: Origin,
    ) {
        // Owed to the connection until the answer is back on this shard:
        // a drain closes connections only when nothing is owed anywhere
        // (`Broker::settled`), mail in flight included.
        if matches!(origin, Origin::Conn { .. }) {
            inc(&self.stats[io.shard()].cluster_owed, 1);
        }
        // Shutting down: the connections close once the publishes taken
        // are answered; new ones would hold that up.
        if io.draining() {
            inc(&self.stats[io.shard()].publishes_refused_total, 1);
            return self.cluster_answer_text(io, origin, Err(ErrCode::Unavailable), DRAINING);
        }
        if owner == io.shard() {
            let data = Bytes::copy_from_slice(data.as_bytes());
            return self.cluster_publish(io, topic, data, origin);
        }
        let mail = Mail::ClusterPublish {
            buf: super::mail::topic_then_data(topic, data),
            topic_len: topic.len() as u8,
            origin,
        };
        // As for a local-mode publish: a full ring refuses it before it
        // is numbered (no seq gap), and the publisher is told.
        if io.try_post(owner, mail).is_err() {
            inc(&self.stats[io.shard()].publishes_refused_total, 1);
            self.cluster_answer(io, origin, Err(ErrCode::RateLimited));
        }
    }

    /// On `topic`'s owner shard, cluster mode: number `data` through the
    /// stream, after the publishes of it already waiting.
    pub(super) fn cluster_publish<H: Host>(
        &mut self,
        io: &mut H,
        topic: &str,
        data: Bytes,
        origin: Origin,
    ) {
        // While NATS is unreachable the bridge answers `Unavailable` at
        // once; the shard does not keep its own copy of the link's state
        // (a missed change would leave it refusing with NATS back).
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let st = match c.topics.get_mut(topic) {
            Some(st) => st,
            None => c.topics.entry(topic.into()).or_default(),
        };
        if st.waiting.len() >= MAX_WAITING {
            inc(&self.stats[io.shard()].publishes_refused_total, 1);
            return self.cluster_answer(io, origin, Err(ErrCode::RateLimited));
        }
        st.waiting.push_back(Pending {
            data,
            origin,
            conflicts: 0,
        });
        inc(&self.stats[io.shard()].cluster_waiting, 1);
        self.cluster_pump(io, topic);
    }

    /// Send `topic`'s next waiting publish if none is in flight, asking for
    /// its last message first when its numbering is not known.
    fn cluster_pump<H: Host>(&mut self, io: &mut H, topic: &str) {
        let me = io.shard();
        let now = io.now_ms();
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let Some(st) = c.topics.get_mut(topic) else {
            return;
        };
        if st.inflight.is_some() || st.asking || st.waiting.is_empty() {
            return;
        }
        if !st.known {
            st.asking = true;
            let token = c.request(topic, now, Kind::Numbering);
            let ask = ClusterOut::Last {
                token,
                topic: topic.into(),
                fence: false,
            };
            if !(c.sink)(ask) {
                c.tokens.remove(&token);
                if let Some(st) = c.topics.get_mut(topic) {
                    st.asking = false;
                }
                return self.cluster_fail_all(io, topic);
            }
            return;
        }
        // Every publish waiting goes in one stream message (up to a
        // bundle's bounds): a hot topic costs a round trip per bundle.
        let cap = c.bundle_bytes();
        let Some(st) = c.topics.get_mut(topic) else {
            return;
        };
        // A seq this near the end came from the network (no topic gets
        // there by publishing): refuse rather than overflow.
        if st.seq > u64::MAX - (super::stream_message::MAX_BUNDLE as u64 + 1) {
            return self.cluster_fail_all(io, topic);
        }
        let bundle = super::stream_message::take_bundle(&mut st.waiting, cap, topic.len());
        if bundle.is_empty() {
            return;
        }
        let (stream, seq) = (st.stream, st.seq + 1);
        // Framed once, here; the JSON text after the WebSocket header is
        // what every node (this one too) frames again from the copy.
        let (payload, lens) = super::stream_message::frame(topic, seq, &bundle);
        let token = c.request(topic, now, Kind::Publish);
        let msg_id = format!("{:x}-{me}-{token}", c.node).into_boxed_str();
        let out = ClusterOut::Publish {
            token,
            topic: topic.into(),
            expected_last: stream,
            rf_seq: seq,
            msg_id,
            payload,
            lens,
        };
        let k = bundle.len() as u64;
        if let Some(st) = c.topics.get_mut(topic) {
            st.inflight = Some((token, seq, bundle));
        }
        if !(c.sink)(out) {
            c.tokens.remove(&token);
            return self.cluster_fail_all(io, topic);
        }
        inc(&self.stats[me].cluster_publishes_total, 1);
        if k > 1 {
            inc(&self.stats[me].cluster_bundled_total, k);
        }
    }

    /// Every publish of `topic` here, in flight or waiting, is answered
    /// `unavailable` (the bridge cannot take requests, gave no answer in
    /// time, or could not confirm the one before: a later one stored
    /// before it is retried would break its publisher's order).
    fn cluster_fail_all<H: Host>(&mut self, io: &mut H, topic: &str) {
        let Some(c) = self.cluster.as_mut() else {
            return;
        };
        let Some(st) = c.topics.get_mut(topic) else {
            return;
        };
        st.known = false;
        let inflight = st.inflight.take();
        if let Some((token, ..)) = &inflight {
            c.tokens.remove(token);
        }
        let mut failed: Vec<Origin> = inflight
            .into_iter()
            .flat_map(|(_, _, b)| b.into_iter().map(|p| p.origin))
            .collect();
        failed.extend(st.waiting.drain(..).map(|p| p.origin));
        let me = io.shard();
        inc(
            &self.stats[me].cluster_unavailable_total,
            failed.len() as u64,
        );
        dec(&self.stats[me].cluster_waiting, failed.len() as u64);
        for origin in failed {
            self.cluster_answer(io, origin, Err(ErrCode::Unavailable));
        }
    }

    /// Mail from the bridge.
    pub(super) fn cluster_in<H: Host>(&mut self, io: &mut H, m: ClusterIn) {
        match m {
            ClusterIn::Published { token, result } => self.cluster_published(io, token, result),
            ClusterIn::Copy(copy) => self.cluster_copy(io, copy),
            ClusterIn::Last { token, found } => self.cluster_last(io, token, found),
            ClusterIn::LastFailed { token } => {
                if let Some((topic, kind)) = self.cluster.as_mut().and_then(|c| c.answered(token)) {
                    self.cluster_no_answer(io, token, &topic, kind);
                }
            }
            ClusterIn::LastAll { token } => {
                let answered = self.cluster.as_mut().and_then(|c| c.answered(token));
                if let Some((pattern, Kind::Wild(epoch))) = answered {
                    self.wild_read_done(io, &pattern, Some(epoch));
                }
            }
            ClusterIn::Filled { token, found } => {
                let answered = self.cluster.as_mut().and_then(|c| c.answered(token));
                if let Some((topic, Kind::Fill)) = answered {
                    self.fill_answered(io, &topic, token, found);
                }
            }
            ClusterIn::Lapsed => {
                if let Some(c) = self.cluster.as_mut() {
                    c.epoch = c.epoch.wrapping_add(1).max(1);
                }
            }
            ClusterIn::StreamReset => {
                // Copies held behind fills came from the old stream and
                // were delivered on other nodes: out first, as they are.
                self.fill_flush_all(io);
                if let Some(c) = self.cluster.as_mut() {
                    // Its copies start again at stream sequence 1: what
                    // was delivered here must not make them duplicates,
                    // and the next publish reads the (new) last message.
                    c.epoch = c.epoch.wrapping_add(1).max(1);
                    for st in c.topics.values_mut() {
                        (st.known, st.stream, st.seq, st.delivered) = (false, 0, 0, 0);
                    }
                }
            }
            ClusterIn::Connected(up) => {
                if let Some(c) = self.cluster.as_mut() {
                    // Copies may have been missed (down), or the link is
                    // new (up): no local value is known current now.
                    c.connected = up;
                    c.epoch = c.epoch.wrapping_add(1).max(1);
                    if up {
                        c.resend_interest();
                    }
                }
            }
        }
    }

    fn cluster_published<H: Host>(&mut self, io: &mut H, token: u64, result: PublishResult) {
        let me = io.shard();
        let Some((topic, st)) = self.cluster.as_mut().and_then(|c| c.answered_topic(token)) else {
            return;
        };
        let Some((_, first, bundle)) = st.inflight.take_if(|(t, ..)| *t == token) else {
            return;
        };
        let k = bundle.len() as u64;
        let mut answers: Vec<(Origin, Result<u64, ErrCode>)> = Vec::new();
        let mut fail_all = false;
        match result {
            PublishResult::Stored { stream_seq } => {
                // Its copy may have come first (the ack and the copy take
                // different ways through NATS): it said the same then.
                if stream_seq >= st.stream {
                    (st.stream, st.seq) = (stream_seq, first + k - 1);
                }
                let seqs = first..;
                answers.extend(bundle.into_iter().zip(seqs).map(|(p, q)| (p.origin, Ok(q))));
            }
            PublishResult::Conflict => {
                // Another node published the topic: learn its last
                // message, then number these again, in their order (one
                // numbered again too often is refused: contended).
                st.known = false;
                inc(&self.stats[me].cluster_conflicts_total, 1);
                for mut p in bundle.into_iter().rev() {
                    if p.conflicts < MAX_CONFLICTS {
                        p.conflicts += 1;
                        st.waiting.push_front(p);
                    } else {
                        answers.push((p.origin, Err(ErrCode::RateLimited)));
                    }
                }
            }
            PublishResult::Unavailable => {
                // Perhaps stored, perhaps not: the next one must not
                // assume either, and the ones waiting behind it must not
                // overtake a retry of it.
                inc(&self.stats[me].cluster_unavailable_total, k);
                answers.extend(
                    bundle
                        .into_iter()
                        .map(|p| (p.origin, Err(ErrCode::Unavailable))),
                );
                fail_all = true;
            }
        }
        dec(&self.stats[me].cluster_waiting, answers.len() as u64);
        for (origin, r) in answers {
            self.cluster_answer(io, origin, r);
        }
        if fail_all {
            return self.cluster_fail_all(io, &topic);
        }
        self.cluster_pump(io, &topic);
    }

    /// A request of `topic` got no answer (the bridge could not, or the
    /// deadline passed).
    fn cluster_no_answer<H: Host>(&mut self, io: &mut H, token: u64, topic: &str, kind: Kind) {
        match kind {
            Kind::Read(_) => self.snapshot_read_done(io, topic),
            Kind::Wild(_) => self.wild_read_done(io, topic, None),
            Kind::Fill => self.fill_answered(io, topic, token, None),
            Kind::Numbering | Kind::Publish => {
                if let Some(st) = self.cluster.as_mut().and_then(|c| c.topics.get_mut(topic)) {
                    st.asking = false;
                }
                self.cluster_fail_all(io, topic);
            }
        }
    }

    fn cluster_last<H: Host>(&mut self, io: &mut H, token: u64, found: Option<Stored>) {
        let Some((topic, kind)) = self.cluster.as_mut().and_then(|c| c.answered(token)) else {
            return;
        };
        if let Kind::Read(epoch) = kind {
            return self.snapshot_read_answered(io, &topic, epoch, found);
        }
        let Some(st) = self
            .cluster
            .as_mut()
            .and_then(|c| c.topics.get_mut(&*topic))
        else {
            return;
        };
        st.asking = false;
        // Older than what this node knows (a copy of a later message came
        // first): the later one stands. A stream made anew is told
        // explicitly (`ClusterIn::StreamReset`), not guessed from here.
        let (stream, seq) = found.map_or((0, 0), |f| (f.stream_seq, f.last_seq()));
        if !st.known || stream >= st.stream {
            (st.known, st.stream, st.seq) = (true, stream, seq);
        }
        self.cluster_pump(io, &topic);
    }
}
