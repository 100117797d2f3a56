//! The broker's subscribe → owner replies → snapshot → ack sequence, with
//! no sockets: several shards' brokers over a fake [`Host`] whose mail
//! rings are plain FIFO queues the test delivers one by one, so every
//! interleaving of the real runtime can be played in a chosen order.

use super::engine::{owner_of, Broker, BrokerConfig};
use super::host::{Client, Host};
use super::mail::Mail;
use super::stats::BrokerStats;
use crate::sendbuf::{Offered, SendBuf};
use crate::ws::frame::parse_header;
use bytes::Bytes;
use rustc_hash::FxHashMap;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::Arc;

/// One shard as the broker sees it: what it queued on clients and posted
/// to other shards.
struct FakeHost {
    shard: usize,
    shards: usize,
    wire: FxHashMap<Client, Vec<Bytes>>,
    outbox: Vec<(usize, Mail)>,
    now_ms: u64,
    /// When set, `offer` keeps to its limit as the runtime does: each
    /// client's queue is what `wire` holds (nothing is ever sent).
    enforce_limit: bool,
}

impl Host for FakeHost {
    fn shard(&self) -> usize {
        self.shard
    }

    fn shards(&self) -> usize {
        self.shards
    }

    fn send(&mut self, to: Client, frame: Bytes) -> bool {
        self.wire.entry(to).or_default().push(frame);
        true
    }

    fn offer(&mut self, to: Client, frame: &SendBuf, limit: usize) -> Offered {
        let queued = self.backlog(to).unwrap_or(0);
        if self.enforce_limit && queued > 0 && queued + frame.bytes().len() > limit {
            return Offered::Full;
        }
        self.send(to, frame.bytes().clone());
        Offered::Sent
    }

    fn close(&mut self, _to: Client, _code: u16, _reason: &'static str) -> bool {
        true
    }

    fn backlog(&self, to: Client) -> Option<usize> {
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
        self.outbox.push((to, mail));
        Ok(())
    }

    fn now_ms(&self) -> u64 {
        self.now_ms
    }
}

/// Several shards and the FIFO mail rings between each pair.
struct Cluster {
    brokers: Vec<Broker>,
    hosts: Vec<FakeHost>,
    rings: FxHashMap<(usize, usize), VecDeque<Mail>>,
    next_slot: u32,
}

impl Cluster {
    fn new(shards: usize) -> Self {
        Self::with(shards, BrokerConfig::default())
    }

    fn with(shards: usize, config: BrokerConfig) -> Self {
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
                })
                .collect(),
            rings: FxHashMap::default(),
            next_slot: 0,
        }
    }

    /// A client connected to `shard`.
    fn connect(&mut self, shard: usize) -> (usize, Client) {
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
    fn send(&mut self, (shard, c): (usize, Client), request: Value) {
        let text = request.to_string();
        self.brokers[shard].text(&mut self.hosts[shard], c, &text);
        self.post_outbox(shard);
    }

    /// Deliver the next mail from `from` to `to`; false if there was none.
    fn step(&mut self, from: usize, to: usize) -> bool {
        let Some(m) = self.rings.get_mut(&(from, to)).and_then(|r| r.pop_front()) else {
            return false;
        };
        self.brokers[to].mail(&mut self.hosts[to], from, m);
        self.post_outbox(to);
        true
    }

    /// Deliver all mail to `to` (from every shard, one at a time).
    fn drain_to(&mut self, to: usize) {
        while (0..self.hosts.len()).any(|from| self.step(from, to)) {}
    }

    /// Deliver everything until no shard has mail.
    fn settle(&mut self) {
        while self.rings.values().any(|r| !r.is_empty()) {
            for to in 0..self.hosts.len() {
                self.drain_to(to);
            }
        }
    }

    /// What the client has received since the last call, as JSON.
    fn received(&mut self, (shard, c): (usize, Client)) -> Vec<Value> {
        let frames = self.hosts[shard].wire.remove(&c).unwrap_or_default();
        frames
            .iter()
            .map(|f| {
                let h = parse_header(f).ok().flatten().expect("a whole frame");
                serde_json::from_slice(&f[h.len..]).expect("JSON")
            })
            .collect()
    }
}

/// A topic named `{prefix}.N` that shard `owner` of `shards` owns.
fn topic_owned_by(owner: usize, shards: usize, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}.t{i}"))
        .find(|t| owner_of(t, shards) == owner)
        .unwrap_or_default()
}

/// `(op, seq, snapshot?)` or `(op, id)` of each message, compactly.
fn summary(msgs: &[Value]) -> Vec<String> {
    msgs.iter()
        .map(|m| match m["op"].as_str() {
            Some("msg") if m["snapshot"] == json!(true) => {
                format!("snap {} {}", m["topic"].as_str().unwrap_or(""), m["seq"])
            }
            Some("msg") => format!("msg {} {}", m["topic"].as_str().unwrap_or(""), m["seq"]),
            Some(op) => format!("{op} {}", m["id"]),
            None => format!("{m}"),
        })
        .collect()
}

fn publish(cl: &mut Cluster, from: (usize, Client), topic: &str, n: u32) {
    cl.send(from, json!({"op": "pub", "topic": topic, "data": n}));
}

#[test]
fn snapshot_comes_before_the_ack_and_the_live_stream_continues_from_it() {
    let mut cl = Cluster::new(2);
    let t = topic_owned_by(1, 2, "md");
    let publisher = cl.connect(0);
    let sub = cl.connect(0);
    publish(&mut cl, publisher, &t, 1);
    publish(&mut cl, publisher, &t, 2);
    cl.settle();
    cl.send(
        sub,
        json!({"op": "sub", "topics": [&t], "id": 7, "snapshot": true}),
    );
    // Nothing before the owner answered: the ack means "subscribed".
    assert_eq!(summary(&cl.received(sub)), Vec::<String>::new());
    cl.settle();
    assert_eq!(
        summary(&cl.received(sub)),
        [format!("snap {t} 2"), "ack 7".into()]
    );
    publish(&mut cl, publisher, &t, 3);
    cl.settle();
    assert_eq!(summary(&cl.received(sub)), [format!("msg {t} 3")]);
}

#[test]
fn a_publish_the_owner_numbers_before_the_request_is_in_the_snapshot_not_lost() {
    let mut cl = Cluster::new(2);
    let t = topic_owned_by(1, 2, "md");
    let owner_side = cl.connect(1);
    let sub = cl.connect(0);
    publish(&mut cl, owner_side, &t, 1);
    cl.send(
        sub,
        json!({"op": "sub", "topics": [&t], "id": 1, "snapshot": true}),
    );
    // The owner publishes again before it reads the interest and the
    // request: shard 0 gets no live copy, so the snapshot must carry it.
    publish(&mut cl, owner_side, &t, 2);
    cl.settle();
    assert_eq!(
        summary(&cl.received(sub)),
        [format!("snap {t} 2"), "ack 1".into()]
    );
    publish(&mut cl, owner_side, &t, 3);
    cl.settle();
    assert_eq!(summary(&cl.received(sub)), [format!("msg {t} 3")]);
}

#[test]
fn a_wildcard_asks_every_owner_and_acks_once_all_answered() {
    let mut cl = Cluster::new(3);
    let publisher = cl.connect(2);
    let topics: Vec<String> = (0..3).map(|o| topic_owned_by(o, 3, "w")).collect();
    for t in &topics {
        publish(&mut cl, publisher, t, 1);
    }
    cl.settle();
    let sub = cl.connect(0);
    cl.send(
        sub,
        json!({"op": "sub", "topic": "w.*", "id": 5, "snapshot": true}),
    );
    // Shard 0 answered for itself at once; 1 and 2 have not.
    let first = summary(&cl.received(sub));
    assert_eq!(first, [format!("snap {} 1", topics[0])]);
    cl.drain_to(1);
    cl.drain_to(0);
    assert_eq!(
        summary(&cl.received(sub)),
        [format!("snap {} 1", topics[1])]
    );
    cl.settle();
    assert_eq!(
        summary(&cl.received(sub)),
        [format!("snap {} 1", topics[2]), "ack 5".into()]
    );
}

#[test]
fn acks_keep_request_order_while_a_snapshot_is_pending() {
    let mut cl = Cluster::new(2);
    let remote = topic_owned_by(1, 2, "r");
    let local = topic_owned_by(0, 2, "l");
    let sub = cl.connect(0);
    cl.send(
        sub,
        json!({"op": "sub", "topics": [&remote], "id": 1, "snapshot": true}),
    );
    // Owned here: answered at once, but after request 1 in line.
    cl.send(sub, json!({"op": "sub", "topics": [&local], "id": 2}));
    cl.send(
        sub,
        json!({"op": "pub", "topic": &local, "data": 0, "id": 3}),
    );
    cl.send(
        sub,
        json!({"op": "unsub", "topics": ["nothing.here"], "id": 4}),
    );
    cl.send(
        sub,
        json!({"op": "pub", "topic": "bad..topic", "data": 0, "id": 5}),
    );
    // An error without an id waits for no one.
    cl.send(sub, json!({"op": "pub", "topic": "bad..topic", "data": 0}));
    // Messages are not replies: the local subscription is in force (its
    // owner knows of it) and streams while its ack waits its turn.
    let early = cl.received(sub);
    assert_eq!(early.len(), 2, "{early:?}");
    assert_eq!(summary(&early[..1]), [format!("msg {local} 1")]);
    assert_eq!(early[1]["code"], "bad_topic");
    assert!(early[1].get("id").is_none());
    cl.settle();
    let got = summary(&cl.received(sub));
    assert_eq!(got, ["ack 1", "ack 2", "ack 3", "ack 4", "err 5"]);
}

#[test]
fn unsubscribing_an_overlapping_pattern_while_a_snapshot_is_pending_sends_no_seq_twice() {
    let mut cl = Cluster::new(2);
    let t = topic_owned_by(1, 2, "a");
    let publisher = cl.connect(1);
    let sub = cl.connect(0);
    cl.send(sub, json!({"op": "sub", "topics": [&t], "id": 1}));
    cl.settle();
    publish(&mut cl, publisher, &t, 1);
    cl.settle();
    assert_eq!(summary(&cl.received(sub)), ["ack 1", &format!("msg {t} 1")]);
    // a.* (which matches t) asks for its snapshot; before the owner
    // answers, the client drops the exact subscription it streamed t by.
    cl.send(
        sub,
        json!({"op": "sub", "topics": ["a.*"], "id": 2, "snapshot": true}),
    );
    cl.send(sub, json!({"op": "unsub", "topics": [&t], "id": 3}));
    cl.settle();
    // Seq 1 was streamed already: the snapshot must not send it again.
    assert_eq!(summary(&cl.received(sub)), ["ack 2", "ack 3"]);
    publish(&mut cl, publisher, &t, 2);
    cl.settle();
    assert_eq!(summary(&cl.received(sub)), [format!("msg {t} 2")]);
}

#[test]
fn a_carried_topic_keeps_streaming_until_the_snapshot_arrives() {
    let mut cl = Cluster::new(2);
    let t = topic_owned_by(1, 2, "a");
    let publisher = cl.connect(1);
    let sub = cl.connect(0);
    cl.send(sub, json!({"op": "sub", "topics": [&t]}));
    cl.settle();
    publish(&mut cl, publisher, &t, 1);
    cl.settle();
    cl.send(
        sub,
        json!({"op": "sub", "topics": ["a.*"], "id": 2, "snapshot": true}),
    );
    cl.send(sub, json!({"op": "unsub", "topics": [&t]}));
    // The owner publishes seq 2 before it reads the request: the live copy
    // reaches shard 0 ahead of the snapshot and must not be lost.
    publish(&mut cl, publisher, &t, 2);
    cl.drain_to(0);
    assert_eq!(
        summary(&cl.received(sub)),
        [format!("msg {t} 1"), format!("msg {t} 2")]
    );
    cl.settle();
    assert_eq!(summary(&cl.received(sub)), ["ack 2"]);
}

#[test]
fn overlapping_patterns_deliver_once_and_snapshot_only_what_is_not_streamed() {
    let mut cl = Cluster::new(2);
    let t = topic_owned_by(1, 2, "o");
    let u = topic_owned_by(0, 2, "o");
    let publisher = cl.connect(1);
    let sub = cl.connect(0);
    publish(&mut cl, publisher, &u, 1);
    cl.send(sub, json!({"op": "sub", "topics": [&t], "id": 1}));
    cl.settle();
    publish(&mut cl, publisher, &t, 1);
    cl.settle();
    assert_eq!(summary(&cl.received(sub)), ["ack 1", &format!("msg {t} 1")]);
    // o.> matches both; t streams already, u does not.
    cl.send(
        sub,
        json!({"op": "sub", "topics": ["o.>"], "id": 2, "snapshot": true}),
    );
    cl.settle();
    assert_eq!(
        summary(&cl.received(sub)),
        [format!("snap {u} 1"), "ack 2".into()]
    );
    publish(&mut cl, publisher, &t, 2);
    cl.settle();
    assert_eq!(summary(&cl.received(sub)), [format!("msg {t} 2")]);
}

#[test]
fn a_snapshot_for_a_pattern_unsubscribed_meanwhile_is_not_sent() {
    let mut cl = Cluster::new(2);
    let t = topic_owned_by(1, 2, "x");
    let publisher = cl.connect(1);
    let sub = cl.connect(0);
    publish(&mut cl, publisher, &t, 1);
    cl.settle();
    cl.send(
        sub,
        json!({"op": "sub", "topics": [&t], "id": 1, "snapshot": true}),
    );
    cl.send(sub, json!({"op": "unsub", "topics": [&t], "id": 2}));
    cl.settle();
    assert_eq!(summary(&cl.received(sub)), ["ack 1", "ack 2"]);
    publish(&mut cl, publisher, &t, 2);
    cl.settle();
    assert_eq!(summary(&cl.received(sub)), Vec::<String>::new());
}

fn config() -> BrokerConfig {
    BrokerConfig::default()
}

#[test]
fn snapshot_deliveries_count_against_the_queue_limit_like_live_data() {
    let mut cl = Cluster::with(
        2,
        BrokerConfig {
            policy: super::engine::SlowPolicy::Drop,
            max_queued: 10_000,
            ..config()
        },
    );
    cl.hosts.iter_mut().for_each(|h| h.enforce_limit = true);
    let publisher = cl.connect(1);
    let kb = "x".repeat(1000);
    for i in 0..100 {
        cl.send(
            publisher,
            json!({"op": "pub", "topic": format!("s.t{i}"), "data": kb}),
        );
    }
    cl.settle();
    let sub = cl.connect(0);
    cl.send(
        sub,
        json!({"op": "sub", "topics": ["s.>"], "id": 1, "snapshot": true}),
    );
    cl.settle();
    // ~100 KB of snapshot on a 10 KB queue that never drains: the policy
    // (drop) keeps it to the limit, and the ack still comes.
    let got = summary(&cl.received(sub));
    let snaps = got.iter().filter(|m| m.starts_with("snap")).count();
    assert!((9..=11).contains(&snaps), "{snaps} snapshot frames queued");
    assert_eq!(got.last().map(String::as_str), Some("ack 1"));
    let (dropped, _, _) = cl.brokers[0].conn_counters(sub.1).unwrap();
    assert_eq!(dropped as usize + snaps, 100);
}

#[test]
fn one_snapshot_at_a_time_per_connection_and_patterns_capped() {
    let mut cl = Cluster::with(
        2,
        BrokerConfig {
            max_snapshot_patterns: 3,
            ..config()
        },
    );
    let remote = topic_owned_by(1, 2, "r");
    let sub = cl.connect(0);
    cl.send(
        sub,
        json!({"op": "sub", "topics": [&remote], "id": 1, "snapshot": true}),
    );
    cl.send(
        sub,
        json!({"op": "sub", "topics": ["a.>"], "id": 2, "snapshot": true}),
    );
    // Without a snapshot it is a plain subscription: not limited.
    cl.send(sub, json!({"op": "sub", "topics": ["b.>"], "id": 3}));
    cl.send(
        sub,
        json!({"op": "sub", "topics": ["c", "d", "e", "f"], "id": 4, "snapshot": true}),
    );
    cl.settle();
    let got = cl.received(sub);
    assert_eq!(summary(&got), ["ack 1", "err 2", "ack 3", "err 4"]);
    assert_eq!(got[1]["code"], "rate_limited");
    assert_eq!(got[3]["code"], "too_large");
    assert!(got[3]["message"].as_str().unwrap().contains("limit 3"));
    // The first one answered: the next may go.
    cl.send(
        sub,
        json!({"op": "sub", "topics": ["a.>"], "id": 5, "snapshot": true}),
    );
    cl.settle();
    assert_eq!(summary(&cl.received(sub)), ["ack 5"]);
    // A connection closed mid-snapshot frees its place on the shard.
    for i in 0..3 {
        let c = cl.connect(0);
        cl.send(
            c,
            json!({"op": "sub", "topics": [format!("z{i}.>")], "id": 1, "snapshot": true}),
        );
        cl.brokers[0].closed(&mut cl.hosts[0], c.1);
    }
    cl.settle();
    let stats = &cl.brokers[0].stats()[0];
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(stats.snapshot_requests_in_flight.load(Relaxed), 0);
    assert_eq!(stats.snapshots_refused_total.load(Relaxed), 2);
}

#[test]
fn snapshots_in_flight_are_bounded_per_shard() {
    let mut cl = Cluster::with(
        2,
        BrokerConfig {
            max_snapshots_per_shard: 2,
            ..config()
        },
    );
    let subs: Vec<_> = (0..3).map(|_| cl.connect(0)).collect();
    for (i, &s) in subs.iter().enumerate() {
        cl.send(
            s,
            json!({"op": "sub", "topics": ["w.>"], "id": i, "snapshot": true}),
        );
    }
    cl.settle();
    assert_eq!(summary(&cl.received(subs[0])), ["ack 0"]);
    assert_eq!(summary(&cl.received(subs[1])), ["ack 1"]);
    let third = cl.received(subs[2]);
    assert_eq!(third[0]["code"], "rate_limited", "{third:?}");
    assert_eq!(third[0]["id"], 2);
}

#[test]
fn a_connection_creating_topics_past_its_budget_is_rate_limited_whoever_owns_them() {
    let mut cl = Cluster::with(
        2,
        BrokerConfig {
            max_new_topics_per_conn: 5,
            ..config()
        },
    );
    let publisher = cl.connect(0);
    for i in 0..5 {
        let t = topic_owned_by(i % 2, 2, &format!("n{i}"));
        cl.send(
            publisher,
            json!({"op": "pub", "topic": t, "data": 1, "id": i}),
        );
    }
    cl.settle();
    assert_eq!(summary(&cl.received(publisher)).len(), 5);
    // Republishing to known topics created nothing... but the budget is
    // spent: the next publish is refused, with its id.
    cl.send(
        publisher,
        json!({"op": "pub", "topic": "n.new", "data": 1, "id": 9}),
    );
    let got = cl.received(publisher);
    assert_eq!(got[0]["code"], "rate_limited", "{got:?}");
    assert_eq!(got[0]["id"], 9);
    // 5 per 10 s: one paid back every 2 s.
    cl.hosts[0].now_ms += 2_000;
    cl.send(
        publisher,
        json!({"op": "pub", "topic": "n.new", "data": 1, "id": 10}),
    );
    assert_eq!(summary(&cl.received(publisher)), ["ack 10"]);
    // Another connection has its own budget.
    let other = cl.connect(0);
    cl.send(
        other,
        json!({"op": "pub", "topic": "o.t", "data": 1, "id": 1}),
    );
    cl.settle();
    assert_eq!(summary(&cl.received(other)), ["ack 1"]);
}

#[test]
fn a_shard_full_of_wanted_topics_refuses_new_ones_and_forgets_unwanted_ones() {
    let mut cl = Cluster::with(
        1,
        BrokerConfig {
            max_topics: 10,
            ..config()
        },
    );
    let sub = cl.connect(0);
    let publisher = cl.connect(0);
    cl.send(sub, json!({"op": "sub", "topics": ["keep.>"]}));
    for i in 0..10 {
        publish(&mut cl, publisher, &format!("keep.k{i}"), 1);
        publish(&mut cl, publisher, &format!("keep.k{i}"), 2);
    }
    assert_eq!(cl.received(sub).len(), 20);
    cl.send(
        publisher,
        json!({"op": "pub", "topic": "x.new", "data": 1, "id": 1}),
    );
    let got = cl.received(publisher);
    assert_eq!(got[0]["code"], "rate_limited", "{got:?}");
    assert_eq!(got[0]["id"], 1);
    // Unsubscribed, the topics are forgettable: room is made (a tenth of
    // the cap), and a forgotten topic's seq starts again at 1 (the
    // documented reset); the others count on.
    cl.send(sub, json!({"op": "unsub", "topics": ["keep.>"]}));
    cl.send(
        publisher,
        json!({"op": "pub", "topic": "x.new", "data": 1, "id": 2}),
    );
    assert_eq!(summary(&cl.received(publisher)), ["ack 2"]);
    cl.send(
        sub,
        json!({"op": "sub", "topics": ["keep.>"], "snapshot": true}),
    );
    assert_eq!(cl.received(sub).len(), 9, "one forgotten");
    for i in 0..10 {
        publish(&mut cl, publisher, &format!("keep.k{i}"), 3);
    }
    let mut seqs: Vec<u64> = cl
        .received(sub)
        .iter()
        .map(|m| m["seq"].as_u64().unwrap_or(0))
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, [1, 3, 3, 3, 3, 3, 3, 3, 3, 3]);
    use std::sync::atomic::Ordering::Relaxed;
    let stats = &cl.brokers[0].stats()[0];
    assert_eq!(stats.topics_forgotten_total.load(Relaxed), 2);
    assert_eq!(stats.topics_refused_total.load(Relaxed), 1);
    assert_eq!(stats.topics.load(Relaxed), 10);
}
