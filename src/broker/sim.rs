//! A broker cluster without sockets or threads: several shards' brokers
//! over a fake [`Host`] whose mail rings are plain FIFO queues, delivered
//! one message at a time in whatever order the caller picks, so every
//! interleaving the real runtime can produce can be played. For the
//! broker's unit tests and for the fuzzer (`fuzz-checks`); the runtime's
//! `impl Host for Io` is the real one.

use super::batch::{BatchError, BatchOutcome};
use super::config::BrokerConfig;
use super::engine::{owner_of, Broker};
use super::host::{Client, Host, ShardMask};
use super::mail::Mail;
use super::stats::BrokerStats;
use crate::sendbuf::{Offered, SendBuf};
use crate::ws::frame::parse_header;
use bytes::Bytes;
use rustc_hash::FxHashMap;
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::Arc;

/// A client: its shard and its id there.
pub type Peer = (usize, Client);

/// One shard as the broker sees it: what it queued on clients and posted
/// to other shards.
pub struct FakeHost {
    pub shard: usize,
    pub shards: usize,
    pub wire: FxHashMap<Client, Vec<Bytes>>,
    pub outbox: Vec<(usize, Mail)>,
    /// The clock `now_ms` reads; tests move it.
    pub now_ms: u64,
    /// When set, `offer` keeps to its limit as the runtime does: each
    /// client's queue is what `wire` holds (nothing is ever sent).
    pub enforce_limit: bool,
    /// Clients whose queue is full (`offer` says so, `backlog` is not 0).
    pub full: rustc_hash::FxHashSet<Client>,
    /// Clients closed, with the code.
    pub closes: Vec<(Client, u16)>,
    /// Shards whose mail waits behind a full ring.
    pub waiting: ShardMask,
    /// Shards whose ring is full: `try_post` to them fails.
    pub full_rings: ShardMask,
    /// The process is shutting down.
    pub draining: bool,
}

impl Host for FakeHost {
    fn shard(&self) -> usize {
        self.shard
    }

    fn shards(&self) -> usize {
        self.shards
    }

    fn mail_waiting(&self, to: usize) -> bool {
        self.waiting & 1 << to != 0
    }

    fn draining(&self) -> bool {
        self.draining
    }

    fn send(&mut self, to: Client, frame: Bytes) -> bool {
        self.wire.entry(to).or_default().push(frame);
        true
    }

    fn offer(&mut self, to: Client, frame: &SendBuf, limit: usize) -> Offered {
        let queued = self.backlog(to).unwrap_or(0);
        let over = self.enforce_limit && queued > 0 && queued + frame.bytes().len() > limit;
        if over || self.full.contains(&to) {
            return Offered::Full;
        }
        self.send(to, frame.bytes().clone());
        Offered::Sent
    }

    fn close(&mut self, to: Client, code: u16, _reason: &'static str) -> bool {
        if self.closes.iter().any(|(c, _)| *c == to) {
            return false; // closing already
        }
        self.closes.push((to, code));
        true
    }

    fn close_after(&mut self, to: Client, code: u16, reason: &'static str) -> bool {
        // The fake wire keeps every frame: closing now loses nothing.
        self.close(to, code, reason)
    }

    fn backlog(&self, to: Client) -> Option<usize> {
        if self.full.contains(&to) {
            return Some(1);
        }
        if !self.enforce_limit {
            return Some(0);
        }
        let q = self
            .wire
            .get(&to)
            .map_or(0, |w| w.iter().map(|f| f.len()).sum());
        Some(q)
    }

    fn post(&mut self, to: usize, mail: Mail) {
        self.outbox.push((to, mail));
    }

    fn try_post(&mut self, to: usize, mail: Mail) -> Result<(), Mail> {
        if self.full_rings & 1 << to != 0 {
            return Err(mail);
        }
        self.outbox.push((to, mail));
        Ok(())
    }

    fn now_ms(&self) -> u64 {
        self.now_ms
    }

    fn now_ns(&self) -> u64 {
        self.now_ms.saturating_mul(1_000_000)
    }
}

/// Several shards and the FIFO mail rings between each pair.
pub struct Cluster {
    pub brokers: Vec<Broker>,
    pub hosts: Vec<FakeHost>,
    /// Mail posted and not yet delivered, per (from, to).
    pub rings: FxHashMap<(usize, usize), VecDeque<Mail>>,
    next_slot: u32,
}

impl Cluster {
    pub fn new(shards: usize) -> Self {
        Self::with(shards, BrokerConfig::default())
    }

    pub fn with(shards: usize, config: BrokerConfig) -> Self {
        let stats: Arc<[BrokerStats]> = (0..shards).map(|_| BrokerStats::default()).collect();
        Self {
            brokers: (0..shards)
                .map(|_| Broker::new(config.clone(), stats.clone()))
                .collect(),
            hosts: (0..shards)
                .map(|shard| FakeHost {
                    shard,
                    shards,
                    wire: FxHashMap::default(),
                    outbox: Vec::new(),
                    now_ms: 0,
                    enforce_limit: false,
                    full: Default::default(),
                    closes: Vec::new(),
                    waiting: 0,
                    full_rings: 0,
                    draining: false,
                })
                .collect(),
            rings: FxHashMap::default(),
            next_slot: 0,
        }
    }

    /// A client connected to `shard`.
    pub fn connect(&mut self, shard: usize) -> Peer {
        let c = Client {
            slot: self.next_slot,
            gen: 1,
        };
        self.next_slot += 1;
        self.brokers[shard].open(c);
        (shard, c)
    }

    fn post_outbox(&mut self, from: usize) {
        for (to, m) in self.hosts[from].outbox.drain(..) {
            self.rings.entry((from, to)).or_default().push_back(m);
        }
    }

    /// A client sends one request.
    pub fn send(&mut self, peer: Peer, request: Value) {
        self.send_text(peer, &request.to_string());
    }

    /// A client publishes `n` (as data) on `topic`, without an id.
    pub fn publish(&mut self, peer: Peer, topic: &str, n: u32) {
        self.send(
            peer,
            serde_json::json!({"op": "pub", "topic": topic, "data": n}),
        );
    }

    /// A batch published on `shard` for `ticket` (HTTP publish): the
    /// outcome at once, or None (it waits for other shards' seqs).
    pub fn publish_batch(
        &mut self,
        shard: usize,
        ticket: u64,
        messages: &[(&str, &str)],
    ) -> Result<Option<BatchOutcome>, BatchError> {
        let r = self.brokers[shard].publish_batch(&mut self.hosts[shard], ticket, messages);
        self.post_outbox(shard);
        r
    }

    /// A client sends one text message, whatever it holds.
    pub fn send_text(&mut self, (shard, c): Peer, text: &str) {
        self.brokers[shard].text(&mut self.hosts[shard], c, text);
        self.post_outbox(shard);
    }

    /// A client's connection ends (the runtime's `closed`).
    pub fn close(&mut self, (shard, c): Peer) {
        self.brokers[shard].closed(&mut self.hosts[shard], c);
        self.post_outbox(shard);
        self.hosts[shard].wire.remove(&c);
    }

    /// Deliver the next mail from `from` to `to`; false if there was none.
    pub fn step(&mut self, from: usize, to: usize) -> bool {
        let Some(m) = self.rings.get_mut(&(from, to)).and_then(|r| r.pop_front()) else {
            return false;
        };
        self.brokers[to].mail(&mut self.hosts[to], from, m);
        self.post_outbox(to);
        true
    }

    /// Mail to `to` from outside the shards (the NATS bridge): `from` is
    /// one past the last shard, as the runtime's external inbox says.
    pub fn external(&mut self, to: usize, m: Mail) {
        let from = self.hosts.len();
        self.brokers[to].mail(&mut self.hosts[to], from, m);
        self.post_outbox(to);
    }

    /// Deliver all mail to `to` (from every shard, one at a time).
    pub fn drain_to(&mut self, to: usize) {
        while (0..self.hosts.len()).any(|from| self.step(from, to)) {}
    }

    /// The timer tick on `shard` (local snapshot scans go on).
    pub fn tick(&mut self, shard: usize) {
        self.brokers[shard].tick(&mut self.hosts[shard]);
        self.post_outbox(shard);
    }

    /// The runtime's `writable` for a client: its queue drained.
    pub fn writable(&mut self, (shard, c): Peer) {
        self.brokers[shard].writable(&mut self.hosts[shard], c);
        self.post_outbox(shard);
    }

    /// Deliver everything until no shard has mail, ticking shards whose
    /// snapshot scans wait for a tick.
    pub fn settle(&mut self) {
        loop {
            while self.rings.values().any(|r| !r.is_empty()) {
                for to in 0..self.hosts.len() {
                    self.drain_to(to);
                }
            }
            let waiting: Vec<usize> = (0..self.brokers.len())
                .filter(|&s| self.brokers[s].scans_waiting())
                .collect();
            if waiting.is_empty() {
                return;
            }
            for s in waiting {
                self.tick(s);
            }
        }
    }

    /// What the client has received since the last call, as JSON.
    /// Frames that are not one whole JSON text frame show as a JSON
    /// string saying so (the broker only ever sends such frames).
    pub fn received(&mut self, (shard, c): Peer) -> Vec<Value> {
        let frames = self.hosts[shard].wire.remove(&c).unwrap_or_default();
        frames
            .iter()
            .map(|f| match parse_header(f) {
                Ok(Some(h)) => serde_json::from_slice(&f[h.len..])
                    .unwrap_or_else(|e| Value::from(format!("not JSON: {e}"))),
                _ => Value::from("not a whole frame"),
            })
            .collect()
    }
}

/// A topic named `{prefix}.N` that shard `owner` of `shards` owns.
pub fn topic_owned_by(owner: usize, shards: usize, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}.t{i}"))
        .find(|t| owner_of(t, shards) == owner)
        .unwrap_or_default()
}

/// `(op, seq, snapshot?)` or `(op, id)` of each message, compactly.
pub fn summary(msgs: &[Value]) -> Vec<String> {
    msgs.iter()
        .map(|m| match m["op"].as_str() {
            Some("msg") if m["snapshot"] == Value::Bool(true) => {
                format!("snap {} {}", m["topic"].as_str().unwrap_or(""), m["seq"])
            }
            Some("msg") => format!("msg {} {}", m["topic"].as_str().unwrap_or(""), m["seq"]),
            Some(op) => format!("{op} {}", m["id"]),
            None => format!("{m}"),
        })
        .collect()
}
