//! The broker on one shard: the `/ws` protocol over its [`Host`].
//!
//! A publish goes to the topic's owner shard (by hash), which numbers it,
//! frames it once and sends that same `Bytes` to every shard with a
//! matching subscriber; each shard queues it on its own subscribers. Mail
//! between two shards is FIFO, which is what keeps per-topic order and makes
//! snapshots exact (see `snapshot_reply`).

use bytes::Bytes;
use std::sync::Arc;

use super::auth::Auth;
use super::cluster::Origin;
use super::config::{BrokerConfig, SlowPolicy};
use super::host::{Client, Host, ShardMask};
use super::mail::Mail;
use super::owner::{Owned, OwnedLimits};
use super::patterns::{Patterns, Shared};
use super::snapshots::{ConnKey, Parked, Served};
use super::stats::BrokerStats;
use super::subscriber::{Limits, Subscriber};
use super::topic::{check_topic, first_bad_pattern, is_pattern};
use super::trie::Trie;
use super::wire::{self, ErrCode, Request, TopicAt};
use crate::metrics::{dec, inc};
use crate::sendbuf::{Offered, SendBuf};
use crate::ws::code;
use rustc_hash::{FxHashMap, FxHasher};
use std::hash::Hasher;

/// Upper bound of a `msg` frame's bytes besides topic and data: the JSON
/// envelope with `"snapshot":true` and a 20-digit seq, plus the header.
pub(super) const ENVELOPE: usize = 112;

pub struct Broker {
    pub(super) config: BrokerConfig,
    pub(super) stats: Arc<[BrokerStats]>,
    pub(super) owned: Owned,
    /// Local subscriptions: pattern → connections.
    pub(super) subs: Trie<Client>,
    /// The patterns local connections hold, one copy each, counted by
    /// holder to tell owners when it changes 0↔1.
    pub(super) patterns: Patterns,
    /// By the host's dense client slot.
    pub(super) conns: Vec<Option<Subscriber>>,
    pub(super) stamp: u64,
    /// Reused per delivery: the matched connections.
    pub(super) targets: Vec<Client>,
    /// Snapshot requests of this shard's connections waiting on owners.
    pub(super) snapshots_in_flight: usize,
    /// As an owner: the requests being served, per subscribing connection.
    pub(super) served: FxHashMap<ConnKey, Served>,
    /// As a subscriber's shard: remote scans' steps taken in, the next
    /// waiting for the connection's queue to drain.
    pub(super) parked: FxHashMap<Client, Vec<Parked>>,
    /// Where the tick's sweep of subscribers' spare state goes on.
    tidy_at: usize,
    /// Who may do what (issue #13); empty with auth off.
    pub(super) auth: Auth,
    /// Publishes waiting for their seqs (`batch.rs`, HTTP publish).
    pub(super) batches: super::batch::Batches,
    /// Cluster mode (`cluster.rs`): topics numbered through NATS.
    pub(super) cluster: Option<Box<super::cluster::Cluster>>,
}

/// Subscribers whose spare state ([`super::subscriber::More`]) the tick
/// looks at: 250,000 subscribers that all subscribed in a storm are back
/// to their small size within ~6 s at 4,096 a tick of 100 ms, each look a
/// few ns.
const TIDY_PER_TICK: usize = 4096;

/// The shard that owns `topic`.
pub fn owner_of(topic: &str, shards: usize) -> usize {
    let mut h = FxHasher::default();
    h.write(topic.as_bytes());
    (h.finish() % shards as u64) as usize
}

pub(super) fn bits(mut mask: ShardMask) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        (mask != 0).then(|| {
            let i = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            i
        })
    })
}

impl Broker {
    pub fn new(config: BrokerConfig, stats: Arc<[BrokerStats]>) -> Self {
        Self {
            owned: Owned::new(OwnedLimits {
                max_lvc_bytes: config.max_lvc_bytes,
                max_topics: config.max_topics,
                deflate: config.deflate,
            }),
            config,
            stats,
            subs: Trie::new(),
            patterns: Patterns::default(),
            conns: Vec::new(),
            stamp: 0,
            targets: Vec::new(),
            snapshots_in_flight: 0,
            served: FxHashMap::default(),
            parked: FxHashMap::default(),
            tidy_at: 0,
            auth: Auth::default(),
            batches: Default::default(),
            cluster: None,
        }
    }

    /// Cluster mode: publishes are numbered by the stream behind
    /// `cluster`'s bridge, and delivered from its copies (`cluster.rs`).
    pub fn with_cluster(mut self, cluster: super::cluster::Cluster) -> Self {
        self.cluster = Some(Box::new(cluster));
        self
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    pub fn stats(&self) -> &[BrokerStats] {
        &self.stats
    }

    /// A subscriber's slow-consumer counters: (dropped, conflated, messages
    /// waiting under conflation).
    pub fn conn_counters(&mut self, conn: Client) -> Option<(u64, u64, usize)> {
        self.state(conn).map(|s| s.counters())
    }

    pub(super) fn my_stats<H: Host>(&self, io: &H) -> &BrokerStats {
        &self.stats[io.shard()]
    }

    pub(super) fn state(&mut self, conn: Client) -> Option<&mut Subscriber> {
        live(&mut self.conns, conn)
    }

    /// On the host's timer tick (100 ms): local snapshot scans go on, and
    /// some subscribers drop the state they no longer need.
    pub fn tick<H: Host>(&mut self, io: &mut H) {
        self.cluster_tick(io);
        self.scan_tick(io);
        self.tidy_some(io.now_ms());
        self.auth_tick(io);
    }

    fn tidy_some(&mut self, now_ms: u64) {
        let n = self.conns.len();
        if n == 0 {
            return;
        }
        let limits = Limits {
            pub_rate: self.config.pub_rate,
            sub_rate: self.config.sub_rate,
            new_topics: self.config.max_new_topics_per_conn,
        };
        let mut i = self.tidy_at % n;
        for _ in 0..TIDY_PER_TICK.min(n) {
            if let Some(st) = self.conns[i].as_mut() {
                st.tidy(now_ms, &limits);
            }
            i = (i + 1) % n;
        }
        self.tidy_at = i;
    }

    /// A connection upgraded on `/ws`.
    pub fn open(&mut self, conn: Client) {
        let i = conn.slot as usize;
        if self.conns.len() <= i {
            self.conns.resize_with(i + 1, || None);
        }
        self.conns[i] = Some(Subscriber::new(conn.gen));
    }

    pub fn closed<H: Host>(&mut self, io: &mut H, conn: Client) {
        self.auth_closed(conn);
        self.forget_served(io, conn);
        let Some(st) = self.state(conn) else { return };
        let subs = st.take_subs();
        let snapshots = st.snapshots_in_flight();
        self.conns[conn.slot as usize] = None;
        self.snapshots_done(io, snapshots);
        for (p, pos) in subs {
            self.unsubscribe_one(io, conn, p, pos);
        }
    }

    pub(super) fn reply<H: Host>(
        &mut self,
        io: &mut H,
        conn: Client,
        id: Option<u64>,
        code: ErrCode,
        msg: &str,
    ) {
        inc(&self.my_stats(io).errors_total, 1);
        let frame = wire::err(id, code, msg);
        match id {
            Some(_) => self.answer(io, conn, frame),
            // Not a reply anyone waits for by id: no place in line.
            None => {
                io.send(conn, frame);
            }
        }
    }

    /// Send a reply to a request with an id, in request order: behind any
    /// earlier reply still waiting on owners.
    pub(super) fn answer<H: Host>(&mut self, io: &mut H, conn: Client, frame: Bytes) {
        let frame = match self.state(conn) {
            Some(st) => st.reply(frame),
            None => Some(frame),
        };
        if let Some(f) = frame {
            io.send(conn, f);
        }
    }

    /// A binary message on `/ws`.
    pub fn binary<H: Host>(&mut self, io: &mut H, conn: Client) {
        if self.awaiting_auth(conn) {
            return self.auth_first(io, conn, None);
        }
        self.reply(
            io,
            conn,
            None,
            ErrCode::BadOp,
            "binary frames are not part of the protocol; send JSON text",
        );
    }

    /// A text message on `/ws` (valid UTF-8, checked by the frame layer).
    pub fn text<H: Host>(&mut self, io: &mut H, conn: Client, text: &str) {
        let request = wire::parse(text);
        if self.awaiting_auth(conn) && !matches!(request, Ok(Request::Auth { .. })) {
            let id = match &request {
                Err(r) => r.id,
                Ok(r) => r.id(),
            };
            return self.auth_first(io, conn, id);
        }
        match request {
            Err(r) => self.reply(io, conn, r.id, r.code, &r.message),
            Ok(Request::Auth { token, id }) => {
                // A token check costs up to four signature checks: charged
                // to the subscribe rate, as a request that changes what
                // the connection may receive (the first one under
                // `required` is free, and its failure closes).
                if self.awaiting_auth(conn) || self.admit(io, conn, false, 1, id) {
                    self.authenticate(io, conn, &token, id)
                }
            }
            Ok(Request::Pub { topic, data, id }) => {
                if check_topic(&topic).is_ok() && !self.pub_allowed(conn, &topic) {
                    return self.forbidden(io, conn, id, "publish to", &topic);
                }
                if self.admit(io, conn, true, 1, id) {
                    self.publish_request(io, conn, &topic, data, id)
                }
            }
            Ok(Request::Sub {
                topics,
                id,
                snapshot,
            }) => {
                if let Some((t, e)) = first_bad_pattern(&topics) {
                    return self.reply(io, conn, id, ErrCode::BadTopic, &wire::bad_topic(t, e));
                }
                if let Some(t) = self.sub_refused(conn, &topics) {
                    return self.forbidden(io, conn, id, "subscribe to", t);
                }
                if self.admit(io, conn, false, topics.len(), id)
                    && self.mail_has_room(io, conn, &topics, id)
                {
                    self.subscribe(io, conn, &topics, id, snapshot)
                }
            }
            Ok(Request::Unsub { topics, id }) => {
                if let Some((t, e)) = first_bad_pattern(&topics) {
                    return self.reply(io, conn, id, ErrCode::BadTopic, &wire::bad_topic(t, e));
                }
                if !self.admit(io, conn, false, topics.len(), id)
                    || !self.mail_has_room(io, conn, &topics, id)
                {
                    return;
                }
                self.drop_subscriptions(io, conn, &topics);
                if let Some(id) = id {
                    self.answer(io, conn, wire::ack(id));
                }
            }
        }
    }

    fn publish_request<H: Host>(
        &mut self,
        io: &mut H,
        conn: Client,
        topic: &str,
        data: &str,
        id: Option<u64>,
    ) {
        if let Err(e) = check_topic(topic) {
            return self.reply(io, conn, id, ErrCode::BadTopic, &wire::bad_topic(topic, e));
        }
        // `data` is passed verbatim: a subscriber's recursive parser would
        // meet all of its depth (200,000 levels crash many). Once per publish.
        if wire::nests_deeper(data.as_bytes(), self.config.max_json_depth) {
            inc(&self.my_stats(io).json_too_deep_total, 1);
            let max = self.config.max_json_depth;
            let msg = format!("data nests deeper than {max} arrays/objects (--max-json-depth)");
            return self.reply(io, conn, id, ErrCode::BadJson, &msg);
        }
        // The msg envelope around the data must still fit subscribers
        // (and, in cluster mode, one stream message).
        let (max, by) = self.max_publish();
        if data.len() + topic.len() + ENVELOPE > max {
            let msg =
                format!("message too large to deliver (limit {max} bytes with its envelope, {by})");
            return self.reply(io, conn, id, ErrCode::TooLarge, &msg);
        }
        let cap = self.config.max_new_topics_per_conn;
        let now = io.now_ms();
        if self
            .state(conn)
            .is_some_and(|st| st.new_topics_spent(now, cap))
        {
            inc(&self.my_stats(io).new_topics_limited_total, 1);
            let msg = format!(
                "too many new topics from this connection (limit {cap} per 10 s); retry later"
            );
            return self.reply(io, conn, id, ErrCode::RateLimited, &msg);
        }
        // When the publish arrived: the clock of the loop turn that read
        // it, carried to each send that delivers it (the publish-to-send
        // latency histogram). Every publish path passes here.
        let arrived = io.now_ns();
        let owner = owner_of(topic, io.shards());
        if self.cluster.is_some() {
            // Answered once the stream stored it (`cluster.rs`).
            let origin = Origin::Conn {
                shard: io.shard(),
                conn,
                id,
            };
            return self.cluster_route(io, owner, topic, data, origin);
        }
        if owner == io.shard() {
            let me = io.shard();
            let from = (me, conn, arrived);
            if self
                .publish_from(io, topic, data.as_bytes(), from, id)
                .is_none()
            {
                self.refuse_topic(io, conn, id);
            }
        } else {
            let mail = Mail::Publish {
                buf: super::mail::topic_then_data(topic, data),
                topic_len: topic.len() as u8,
                from: conn,
                arrived,
            };
            // A full ring means the owner is behind by a whole ring of
            // mail. Queueing more would grow this shard without bound;
            // refusing before the owner numbers it leaves no seq gap, and
            // the publisher is told (with its id, if it gave one).
            if io.try_post(owner, mail).is_err() {
                inc(&self.my_stats(io).publishes_refused_total, 1);
                return self.reply(
                    io,
                    conn,
                    id,
                    ErrCode::RateLimited,
                    "broker overloaded: this topic's shard is behind; retry later",
                );
            }
            if let Some(id) = id {
                self.answer(io, conn, wire::ack(id));
            }
        }
    }

    pub(super) fn count_forgotten<H: Host>(&mut self, io: &mut H) {
        let n = self.owned.take_forgotten();
        if n > 0 {
            let s = self.my_stats(io);
            inc(&s.topics_forgotten_total, n);
            dec(&s.topics, n);
        }
    }

    /// `n` snapshot requests of this shard no longer wait on owners.
    pub(super) fn snapshots_done<H: Host>(&mut self, io: &mut H, n: usize) {
        if n > 0 {
            self.snapshots_in_flight -= n;
            dec(&self.my_stats(io).snapshot_requests_in_flight, n as u64);
        }
    }

    /// A publish of `from` (on the shard that sent it) created a topic.
    pub(super) fn created<H: Host>(&mut self, io: &mut H, from: Client) {
        let cap = self.config.max_new_topics_per_conn;
        let now = io.now_ms();
        if let Some(st) = self.state(from) {
            st.more().new_topics.charge(now, cap);
        }
    }

    /// On the owner: number, frame once, fan out to interested shards.
    /// `from` is (shard, connection, arrival time) of the publish; a
    /// local publisher's `ack` id
    /// is answered once the message is numbered, before any delivery (so a
    /// publisher that also subscribes gets the ack first). Its seq; None:
    /// a new topic with no room for it, nothing done (one topic lookup
    /// either way).
    pub(super) fn publish_from<H: Host>(
        &mut self,
        io: &mut H,
        topic: &str,
        data: &[u8],
        (from_shard, from, arrived): (usize, Client, u64),
        ack: Option<u64>,
    ) -> Option<u64> {
        let me = io.shard();
        let Some(p) = self.owned.publish(topic, data, io.now_ms()) else {
            self.count_forgotten(io);
            if from_shard != me {
                // Remote publisher, acked already (the ack says "taken by
                // the broker"): counted, as for a shed fan-out. A local
                // one is refused by the caller (counted there).
                inc(&self.my_stats(io).topics_refused_total, 1);
            }
            return None;
        };
        self.count_forgotten(io);
        if let Some(id) = ack {
            self.answer(io, from, wire::ack(id));
        }
        let s = self.my_stats(io);
        inc(&s.publishes_total, 1);
        inc(&s.frames_built_total, 1);
        if p.created {
            inc(&s.topics, 1);
            if from_shard == me {
                self.created(io, from);
            } else {
                // One per Publish mail taken off that shard's ring: bounded
                // by the ring, like the publishes themselves.
                io.post(from_shard, Mail::Created { conn: from });
            }
        }
        self.fan_out(io, &p, arrived);
        Some(p.seq)
    }

    /// Queue `frame` on a subscriber, under the slow-consumer policy.
    pub(super) fn offer<H: Host>(
        &mut self,
        io: &mut H,
        conn: Client,
        frame: &SendBuf,
        at: TopicAt,
    ) {
        let me = io.shard();
        let Some(st) = live(&mut self.conns, conn) else {
            return;
        };
        let mut behind = st.conflating();
        if behind && io.backlog(conn) == Some(0) {
            // Held-back messages and nothing in flight to call `writable`:
            // release them now.
            self.writable(io, conn);
            behind = self.state(conn).is_some_and(|s| s.conflating());
        }
        // Nothing held back: queue it unless the backlog is over the limit
        // (an empty queue always takes it, however large: the policy is
        // for subscribers that fall behind, not for big messages). The
        // common case ends here, after one lookup.
        if !behind {
            match io.offer(conn, frame, self.config.max_queued) {
                Offered::Sent => {
                    inc(&self.stats[me].deliveries_total, 1);
                    return;
                }
                Offered::Gone => return,
                Offered::Full => {}
            }
        }
        let Some(st) = live(&mut self.conns, conn) else {
            return;
        };
        match self.config.policy {
            SlowPolicy::Disconnect => {
                if io.close(conn, code::POLICY_VIOLATION, "slow consumer") {
                    inc(&self.stats[me].slow_disconnects_total, 1);
                    self.log_slow(io, conn);
                }
            }
            SlowPolicy::Drop => {
                st.more().dropped += 1;
                inc(&self.stats[me].dropped_total, 1);
            }
            SlowPolicy::Conflate => {
                let st = st.more();
                if st.conflated_latest.hold(frame.clone(), at) {
                    st.conflated += 1;
                    inc(&self.stats[me].conflated_total, 1);
                }
                // One message per topic, but topics are unbounded: past
                // the queue limit again in held messages, the subscriber
                // is too slow even for conflation.
                if st.conflated_latest.bytes() > self.config.max_queued {
                    st.conflated_latest.clear();
                    if io.close(conn, code::POLICY_VIOLATION, "slow consumer") {
                        inc(&self.stats[me].conflate_overflows_total, 1);
                        self.log_slow(io, conn);
                    }
                }
            }
        }
    }

    /// The host sent everything queued: release conflated messages.
    pub fn writable<H: Host>(&mut self, io: &mut H, conn: Client) {
        self.local_scan_writable(io, conn);
        self.remote_scan_writable(io, conn);
        let max = self.config.max_queued;
        let me = io.shard();
        let Some(st) = self.state(conn) else { return };
        if !st.conflating() {
            return;
        }
        let st = st.more();
        let mut queued = 0;
        let mut n = 0;
        while let Some(len) = st.conflated_latest.front_len() {
            if queued + len > max && n > 0 {
                break;
            }
            queued += len;
            if let Some(f) = st.conflated_latest.pop_front() {
                // Offered past any limit (it was held for room that is
                // there now), as a share: deflate subscribers get the
                // compressed variant.
                io.offer(conn, &f, usize::MAX);
            }
            n += 1;
        }
        inc(&self.stats[me].deliveries_total, n as u64);
    }

    fn subscribe<H: Host>(
        &mut self,
        io: &mut H,
        conn: Client,
        topics: &[std::borrow::Cow<'_, str>],
        id: Option<u64>,
        snapshot: bool,
    ) {
        // `text` checked the patterns (bad_topic, then forbidden) before
        // the rate limits.
        let me = io.shard();
        let shards = io.shards();
        let limit = self.config.max_subscriptions;
        let Some(st) = self.state(conn) else { return };
        let fresh = topics.iter().filter(|t| !st.has_sub(t)).count();
        if st.sub_count() + fresh > limit {
            let msg = format!("too many subscriptions (limit {limit} per connection)");
            return self.reply(io, conn, id, ErrCode::TooLarge, &msg);
        }
        if snapshot && fresh > 0 {
            if let Some((code, msg)) = self.snapshot_refusal(conn, topics.len()) {
                inc(&self.stats[me].snapshots_refused_total, 1);
                return self.reply(io, conn, id, code, &msg);
            }
        }
        let mut new: Vec<Box<str>> = Vec::new();
        let mut new_interest = false;
        for t in topics {
            let Some(st) = live(&mut self.conns, conn) else {
                return;
            };
            // Already subscribed: no second delivery, no second snapshot.
            if st.has_sub(t) {
                continue;
            }
            let (p, first) = self.patterns.hold(t);
            let pos = self.subs.push(t, conn);
            st.add_sub(p, pos);
            new.push(t.as_ref().into());
            inc(&self.stats[me].subscriptions, 1);
            if first {
                // Interest first: the owner must know of us before it
                // answers the sub request behind it on the same ring.
                self.announce(io, t, true);
                new_interest = true;
            }
        }
        if new.is_empty() {
            if let Some(id) = id {
                self.answer(io, conn, wire::ack(id));
            }
            return;
        }
        // Ask every owner that may hold matching topics, snapshot or not:
        // until an owner answers, what it sent before it knew of this
        // subscription is older than it and is not delivered through it.
        // Otherwise a delivery still on its way under an earlier
        // subscriber's interest (since dropped, then re-added) would start
        // the stream before a hole: seq 1, then 3, a gap the subscriber
        // never had (found by the broker fuzzer).
        let mut per_owner: Vec<Vec<Box<str>>> = vec![Vec::new(); shards];
        let mut all: ShardMask = 0;
        for p in &new {
            for o in owners(p, shards) {
                per_owner[o].push(p.clone());
                all |= 1 << o;
            }
        }
        let Some(st) = self.state(conn) else { return };
        let req = st.next_req();
        if snapshot {
            st.more().snapshots.push((req, all));
            self.snapshots_in_flight += 1;
            inc(&self.stats[me].snapshot_requests_in_flight, 1);
        }
        let Some(st) = self.state(conn) else { return };
        for p in new {
            let awaiting = owners(&p, shards).fold(0, |m, o| m | 1 << o);
            st.add_pending(req, p, awaiting);
        }
        if let Some(id) = id {
            st.reply_after(req, all, wire::ack(id));
        }
        for (o, patterns) in per_owner.into_iter().enumerate() {
            if patterns.is_empty() {
                continue;
            }
            if o == me {
                let ask = super::snapshots::SubAsk {
                    req,
                    patterns,
                    snapshot,
                    new_interest,
                };
                self.owner_request(io, me, conn, ask);
            } else {
                io.post(
                    o,
                    Mail::SubRequest {
                        conn,
                        req,
                        patterns,
                        snapshot,
                        new_interest,
                    },
                );
            }
        }
    }

    /// Remove `patterns` from `conn`'s subscriptions (those it holds).
    pub(super) fn drop_subscriptions<H: Host, S: AsRef<str>>(
        &mut self,
        io: &mut H,
        conn: Client,
        patterns: &[S],
    ) {
        for t in patterns {
            let removed = self.state(conn).and_then(|st| st.unsubscribe(t.as_ref()));
            if let Some((p, pos)) = removed {
                self.unsubscribe_one(io, conn, p, pos);
            }
        }
        self.remote_scan_unsub(io, conn);
    }

    /// Tell the owners that may hold topics matching `pattern` that this
    /// shard gained its first (or lost its last) subscriber of it.
    fn announce<H: Host>(&mut self, io: &mut H, pattern: &str, add: bool) {
        if let Some(c) = self.cluster.as_mut() {
            c.interest(pattern, add);
        }
        let me = io.shard();
        for o in owners(pattern, io.shards()) {
            if o == me {
                self.owner_interest(pattern, me, add);
            } else {
                io.post(
                    o,
                    Mail::Interest {
                        pattern: pattern.into(),
                        add,
                    },
                );
            }
        }
    }

    /// `conn` let go of `pattern`, which was at `pos` of its trie list.
    fn unsubscribe_one<H: Host>(&mut self, io: &mut H, conn: Client, pattern: Shared, pos: u32) {
        match self.subs.remove_at(&pattern, pos, conn) {
            Ok(Some(moved)) => {
                if let Some(m) = live(&mut self.conns, moved) {
                    m.sub_moved(&pattern, pos);
                }
            }
            Ok(None) => {}
            Err(_) => {
                // The subscriber's record and the trie disagree: a bug.
                // The subscriber has let the pattern go all the same, so
                // its hold on the shared copy goes too (kept, a later
                // subscriber would never announce its interest).
                debug_assert!(false, "{conn:?} not at {pos} of {}", &*pattern);
                if self.patterns.release(&pattern) {
                    self.announce(io, &pattern, false);
                }
                return;
            }
        }
        let me = io.shard();
        dec(&self.stats[me].subscriptions, 1);
        if self.patterns.release(&pattern) {
            self.announce(io, &pattern, false);
        }
    }
}

/// A subscriber's state if `conn` is still that connection. A function of
/// the table alone, so a caller holding it can still use the broker's
/// other fields (counters) without a second lookup.
pub(super) fn live(conns: &mut [Option<Subscriber>], conn: Client) -> Option<&mut Subscriber> {
    conns
        .get_mut(conn.slot as usize)
        .and_then(|s| s.as_mut())
        .filter(|s| s.gen == conn.gen)
}

/// Shards that may own topics matching `pattern`: its owner for an exact
/// topic, every shard for a wildcard.
pub(super) fn owners(pattern: &str, shards: usize) -> impl Iterator<Item = usize> {
    let (lo, hi) = if is_pattern(pattern) {
        (0, shards)
    } else {
        let o = owner_of(pattern, shards);
        (o, o + 1)
    };
    lo..hi
}
