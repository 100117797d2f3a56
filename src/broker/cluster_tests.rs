//! Cluster mode's numbering (`cluster.rs`) on simulated nodes: each node a
//! simulated set of shards, the stream played by the rules the real one
//! follows (expected last subject sequence, republish to interest). The
//! real NATS server is exercised by tests/cluster.rs and
//! tests/python/test_cluster.py; this checks the broker's state machine
//! step by step, including orders the real one rarely shows.

use super::cluster::{Cluster as Link, ClusterIn, ClusterOut, PublishResult, Stored};
use super::sim::{summary, topic_owned_by, Cluster};
use super::topic::matches;
use super::Mail;
use bytes::Bytes;
use rustc_hash::FxHashMap;
use serde_json::json;
use std::sync::{Arc, Mutex};

type Outbox = Arc<Mutex<Vec<(usize, ClusterOut)>>>;

/// A stored message: (stream seq, seq, payload, bundle lens).
pub(super) type Msg = (u64, u64, Bytes, Vec<u32>);

/// The stream: per topic its last (stream seq, seq, payload, bundle lens).
#[derive(Default)]
pub(super) struct Stream {
    pub(super) seq: u64,
    pub(super) last: FxHashMap<Box<str>, (u64, u64, Bytes, Vec<u32>)>,
    /// Lengths of every stream message stored (a bundle's `msg` count).
    pub(super) stored: Vec<usize>,
    /// Interest per node: pattern → shards holding it.
    interest: Vec<FxHashMap<Box<str>, usize>>,
    down: bool,
    /// Publishes and reads taken and never answered (an answer lost on
    /// its way).
    pub(super) silent: bool,
    /// Every publish conflicts (another node always first).
    contended: bool,
    /// Last-message reads served.
    lasts: usize,
    /// Every stored message per topic, oldest first: (stream seq, seq,
    /// payload, bundle lens), for copies' previous sequence and fills.
    pub(super) history: FxHashMap<Box<str>, Vec<Msg>>,
    /// Copies to each node that are lost on the way (the next ones).
    pub(super) lose: Vec<usize>,
    /// Fills asked for: (node, topic, after, until, token).
    pub(super) fills: Vec<(usize, Box<str>, u64, u64, u64)>,
    /// Fills are taken and not answered.
    pub(super) fills_silent: bool,
}

pub(super) struct Nodes {
    pub(super) nodes: Vec<Cluster>,
    out: Vec<Outbox>,
    pub(super) stream: Stream,
}

pub(super) fn nodes(n: usize, shards: usize) -> Nodes {
    nodes_with(n, shards, Default::default())
}

fn nodes_with(n: usize, shards: usize, config: super::BrokerConfig) -> Nodes {
    let mut out = Vec::new();
    let nodes = (0..n)
        .map(|node| {
            let mut c = Cluster::new(shards);
            let o: Outbox = Arc::default();
            for (shard, b) in c.brokers.iter_mut().enumerate() {
                let o = o.clone();
                let sink = Box::new(move |m: ClusterOut| {
                    o.lock().unwrap().push((shard, m));
                    true
                });
                let fresh = super::Broker::new(config.clone(), b.stats.clone());
                *b = fresh.with_cluster(Link::new(
                    sink,
                    node as u64,
                    std::time::Duration::from_secs(12),
                ));
            }
            out.push(o);
            c
        })
        .collect();
    Nodes {
        nodes,
        out,
        stream: Stream {
            interest: vec![FxHashMap::default(); n],
            lose: vec![0; n],
            ..Default::default()
        },
    }
}

impl Nodes {
    pub(super) fn tell(&mut self, node: usize, shard: usize, m: ClusterIn) {
        let c = &mut self.nodes[node];
        c.external(shard, Mail::Cluster(m));
        c.settle();
    }

    /// Play the stream until nothing is asked of it, settling every node.
    pub(super) fn settle(&mut self) {
        loop {
            for n in &mut self.nodes {
                n.settle();
            }
            let mut asked = Vec::new();
            for (node, o) in self.out.iter().enumerate() {
                asked.extend(o.lock().unwrap().drain(..).map(|(s, m)| (node, s, m)));
            }
            if asked.is_empty() {
                return;
            }
            for (node, shard, m) in asked {
                self.serve(node, shard, m);
            }
        }
    }

    fn serve(&mut self, node: usize, shard: usize, m: ClusterOut) {
        match m {
            ClusterOut::Interest { pattern, add } => {
                let n = self.stream.interest[node]
                    .entry(pattern.clone())
                    .or_default();
                if add {
                    *n += 1;
                } else {
                    *n -= 1;
                }
            }
            ClusterOut::Last { token, topic, .. } => {
                if self.stream.silent {
                    return;
                }
                self.stream.lasts += 1;
                let found = self
                    .stream
                    .last
                    .get(&topic)
                    .map(|(s, q, p, l)| bundle(&topic, *s, *q, p, l));
                self.tell(node, shard, ClusterIn::Last { token, found });
            }
            ClusterOut::Fill {
                token,
                topic,
                after,
                until,
            } => {
                self.stream
                    .fills
                    .push((node, topic.clone(), after, until, token));
                if self.stream.fills_silent {
                    return;
                }
                let found = self.stream.history.get(&topic).map(|h| {
                    h.iter()
                        .filter(|(s, ..)| after < *s && *s < until)
                        .map(|(s, q, p, l)| bundle(&topic, *s, *q, p, l))
                        .collect()
                });
                let found = Some(found.unwrap_or_default());
                self.tell(node, shard, ClusterIn::Filled { token, found });
            }
            ClusterOut::LastAll { token, pattern } => {
                if self.stream.silent {
                    return;
                }
                self.stream.lasts += 1;
                let shards = self.nodes[node].hosts.len();
                let mut mine: Vec<Stored> = self
                    .stream
                    .last
                    .iter()
                    .filter(|(t, _)| matches(&pattern, t))
                    .filter(|(t, _)| super::engine::owner_of(t, shards) == shard)
                    .map(|(t, (s, q, p, l))| bundle(t, *s, *q, p, l))
                    .collect();
                mine.sort_by_key(|c| c.stream_seq);
                for c in mine {
                    self.tell(node, shard, ClusterIn::Copy(c));
                }
                self.tell(node, shard, ClusterIn::LastAll { token });
            }
            ClusterOut::Publish {
                token,
                topic,
                expected_last,
                rf_seq,
                payload,
                lens,
                ..
            } => {
                let last = self.stream.last.get(&topic).map_or(0, |l| l.0);
                if self.stream.silent {
                    return;
                }
                let result = if self.stream.down {
                    PublishResult::Unavailable
                } else if last != expected_last || self.stream.contended {
                    PublishResult::Conflict
                } else {
                    self.stream.seq += 1;
                    let s = self.stream.seq;
                    self.stream.stored.push(lens.len().max(1));
                    let stored = (s, rf_seq, payload.clone(), lens.clone());
                    self.stream.last.insert(topic.clone(), stored.clone());
                    let h = self.stream.history.entry(topic.clone()).or_default();
                    h.push(stored);
                    PublishResult::Stored { stream_seq: s }
                };
                let stored = matches!(result, PublishResult::Stored { .. });
                // The ack and the copies take different ways through NATS:
                // every other stored message's copies come first.
                let copies_first = stored && self.stream.seq.is_multiple_of(2);
                if copies_first {
                    self.republish(&topic);
                }
                self.tell(node, shard, ClusterIn::Published { token, result });
                if stored && !copies_first {
                    self.republish(&topic);
                }
            }
        }
    }

    /// One copy per matching subscription (as NATS does), to the topic's
    /// owner shard on each interested node.
    fn republish(&mut self, topic: &str) {
        let (s, q, p, l) = self.stream.last[topic].clone();
        // `Nats-Last-Sequence`: the topic's stored message before this one.
        let prev = self.stream.history.get(topic).map_or(0, |h| {
            h.iter().rev().map(|m| m.0).find(|&x| x < s).unwrap_or(0)
        });
        for node in 0..self.nodes.len() {
            let subs: Vec<usize> = self.stream.interest[node]
                .iter()
                .filter(|(pat, n)| **n > 0 && matches(pat, topic))
                .map(|_| 1)
                .collect();
            let owner = super::engine::owner_of(topic, self.nodes[node].hosts.len());
            for _ in subs {
                if self.stream.lose[node] > 0 {
                    self.stream.lose[node] -= 1;
                    continue;
                }
                let mut c = bundle(topic, s, q, &p, &l);
                c.last_stream_seq = prev;
                self.tell(node, owner, ClusterIn::Copy(c));
            }
        }
    }
}

pub(super) fn copy(topic: &str, stream_seq: u64, rf_seq: u64, payload: &Bytes) -> Stored {
    bundle(topic, stream_seq, rf_seq, payload, &[])
}

pub(super) fn bundle(
    topic: &str,
    stream_seq: u64,
    rf_seq: u64,
    payload: &Bytes,
    lens: &[u32],
) -> Stored {
    Stored {
        topic: topic.into(),
        stream_seq,
        last_stream_seq: 0,
        rf_seq,
        payload: payload.clone(),
        lens: lens.to_vec(),
    }
}

#[test]
fn publishes_on_two_nodes_get_one_gapless_seq_and_reach_both() {
    let mut n = nodes(2, 2);
    let t = topic_owned_by(1, 2, "md");
    let subs = [n.nodes[0].connect(0), n.nodes[1].connect(1)];
    for (i, s) in subs.iter().enumerate() {
        n.nodes[i].send(*s, json!({"op": "sub", "topic": "md.*", "id": 1}));
    }
    // Two overlapping patterns on node 1: NATS sends two copies, one is
    // delivered.
    n.nodes[1].send(subs[1], json!({"op": "sub", "topic": t, "id": 2}));
    n.settle();
    let pubs = [n.nodes[0].connect(1), n.nodes[1].connect(0)];
    // Both nodes publish the topic at once: one of each pair conflicts,
    // learns the last message and is numbered again.
    for round in 0..3 {
        for (i, p) in pubs.iter().enumerate() {
            let id = round * 2 + i as u64;
            n.nodes[i].send(*p, json!({"op": "pub", "topic": t, "data": id, "id": id}));
        }
        n.settle();
    }
    for (i, s) in subs.iter().enumerate() {
        let got = n.nodes[i].received(*s);
        let seqs: Vec<String> = summary(&got)
            .into_iter()
            .filter(|m| m.starts_with("msg"))
            .collect();
        let want: Vec<String> = (1..=6).map(|q| format!("msg {t} {q}")).collect();
        assert_eq!(seqs, want, "node {i}");
    }
    for (i, p) in pubs.iter().enumerate() {
        let acks = summary(&n.nodes[i].received(*p));
        assert_eq!(acks.len(), 3, "node {i}: {acks:?}");
        assert!(acks.iter().all(|a| a.starts_with("ack")), "{acks:?}");
    }
    let dups: u64 = (0..2)
        .map(|s| {
            n.nodes[1].brokers[s].stats()[s]
                .cluster_duplicates_total
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .sum();
    assert_eq!(dups, 6, "the second subscription's copies");
    let conflicts: u64 = n
        .nodes
        .iter()
        .flat_map(|c| {
            (0..2).map(move |s| {
                c.brokers[s].stats()[s]
                    .cluster_conflicts_total
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
        })
        .sum();
    assert!(
        conflicts >= 3,
        "each round, one node's publish was numbered again: {conflicts}"
    );
}

#[test]
fn an_unavailable_stream_answers_every_publisher_and_the_next_publish_asks_again() {
    let mut n = nodes(1, 2);
    let t = topic_owned_by(0, 2, "x");
    let p = n.nodes[0].connect(1);
    n.nodes[0].send(p, json!({"op": "pub", "topic": t, "data": 1, "id": 1}));
    n.settle();
    assert_eq!(summary(&n.nodes[0].received(p)), ["ack 1"]);
    n.stream.down = true;
    n.nodes[0].send(p, json!({"op": "pub", "topic": t, "data": 2, "id": 2}));
    n.settle();
    let got = n.nodes[0].received(p);
    assert_eq!(got[0]["code"], "unavailable", "{got:?}");
    n.stream.down = false;
    n.nodes[0].send(p, json!({"op": "pub", "topic": t, "data": 3, "id": 3}));
    n.settle();
    assert_eq!(summary(&n.nodes[0].received(p)), ["ack 3"]);
    assert_eq!(
        n.stream.last[t.as_str()].1,
        2,
        "numbered after the stored one"
    );
}

#[test]
fn a_batch_waits_for_the_stream_and_gets_its_seqs() {
    let mut n = nodes(1, 2);
    let a = topic_owned_by(0, 2, "b");
    let b = topic_owned_by(1, 2, "b");
    let msgs: Vec<(&str, &str)> = vec![(&a, "1"), (&b, "2"), (&a, "3")];
    let r = n.nodes[0].publish_batch(0, 9, &msgs);
    assert_eq!(r, Ok(None));
    n.settle();
    let done = n.nodes[0].brokers[0].take_batches();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].1.seqs, vec![Some(1), Some(1), Some(2)]);
    n.stream.down = true;
    let _ = n.nodes[0].publish_batch(0, 10, &msgs);
    n.settle();
    let done = n.nodes[0].brokers[0].take_batches();
    assert!(
        done[0].1.refused.is_some_and(|r| r.contains("cluster")),
        "{done:?}"
    );
}

#[test]
fn idle_topics_past_the_cap_are_forgotten_and_read_again() {
    let config = super::BrokerConfig {
        max_topics: 2,
        ..Default::default()
    };
    let mut n = nodes_with(1, 1, config);
    let p = n.nodes[0].connect(0);
    for round in 0..2 {
        for t in ["a", "b", "c"] {
            n.nodes[0].send(p, json!({"op": "pub", "topic": t, "data": round, "id": 1}));
            n.settle();
        }
    }
    assert_eq!(n.stream.lasts, 3, "numbering kept while under the cap");
    n.nodes[0].tick(0);
    n.settle();
    n.nodes[0].send(p, json!({"op": "pub", "topic": "a", "data": 2, "id": 1}));
    n.settle();
    let got = summary(&n.nodes[0].received(p));
    assert_eq!(
        n.stream.lasts, 4,
        "forgotten at the tick, read again: {got:?}"
    );
    assert_eq!(n.stream.last["a"].1, 3, "and numbered on from the stream");
    assert!(summary(&n.nodes[0].received(p))
        .iter()
        .all(|m| m == "ack 1"));
}

#[test]
fn a_lost_answer_fails_its_publishers_at_the_deadline_and_the_topic_goes_on() {
    let mut n = nodes(1, 1);
    let p = n.nodes[0].connect(0);
    n.stream.silent = true;
    for id in 1..=3 {
        n.nodes[0].send(p, json!({"op": "pub", "topic": "t", "data": id, "id": id}));
    }
    n.settle();
    assert!(n.nodes[0].received(p).is_empty(), "waiting for the stream");
    n.nodes[0].hosts[0].now_ms += 11_000;
    n.nodes[0].tick(0);
    n.settle();
    assert!(n.nodes[0].received(p).is_empty(), "not before the deadline");
    n.nodes[0].hosts[0].now_ms += 2_000;
    n.nodes[0].tick(0);
    n.settle();
    let got = n.nodes[0].received(p);
    let codes: Vec<_> = got
        .iter()
        .map(|m| (m["id"].clone(), m["code"].clone()))
        .collect();
    assert_eq!(
        codes,
        vec![
            (json!(1), json!("unavailable")),
            (json!(2), json!("unavailable")),
            (json!(3), json!("unavailable"))
        ]
    );
    n.stream.silent = false;
    n.nodes[0].send(p, json!({"op": "pub", "topic": "t", "data": 4, "id": 4}));
    n.settle();
    assert_eq!(summary(&n.nodes[0].received(p)), ["ack 4"]);
    let waiting = n.nodes[0].brokers[0].stats()[0]
        .cluster_waiting
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(waiting, 0);
}

#[test]
fn a_publish_that_keeps_conflicting_is_refused_after_eight_rounds() {
    let mut n = nodes(1, 1);
    let p = n.nodes[0].connect(0);
    n.stream.contended = true;
    n.nodes[0].send(p, json!({"op": "pub", "topic": "t", "data": 1, "id": 1}));
    n.settle();
    let got = n.nodes[0].received(p);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["code"], "rate_limited", "{got:?}");
    let conflicts = n.nodes[0].brokers[0].stats()[0]
        .cluster_conflicts_total
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(conflicts, 9);
}

pub(super) fn snapshot_reads(n: &Nodes, node: usize) -> u64 {
    let c = &n.nodes[node];
    (0..c.brokers.len())
        .map(|s| {
            c.brokers[s].stats()[s]
                .cluster_snapshot_reads_total
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .sum()
}

pub(super) fn msgs(n: &mut Nodes, node: usize, peer: super::sim::Peer) -> Vec<String> {
    summary(&n.nodes[node].received(peer))
        .into_iter()
        .filter(|m| !m.starts_with("ack"))
        .collect()
}

#[test]
fn publishes_waiting_behind_one_in_flight_go_as_one_bundle_numbered_in_order() {
    let mut n = nodes(2, 2);
    let t = topic_owned_by(0, 2, "hot");
    let subs = [n.nodes[0].connect(1), n.nodes[1].connect(0)];
    for (i, s) in subs.iter().enumerate() {
        n.nodes[i].send(*s, json!({"op": "sub", "topic": t, "id": 1}));
    }
    n.settle();
    let pubs = [n.nodes[0].connect(0), n.nodes[1].connect(1)];
    // Ten from node 0 at once: they wait for the topic's numbering (a
    // last-message read) and go as one stream message. Ten more, the
    // numbering known: the first goes at once, the nine behind it wait
    // for its answer and go together.
    for id in 1..=10 {
        n.nodes[0].send(
            pubs[0],
            json!({"op": "pub", "topic": t, "data": id, "id": id}),
        );
    }
    n.settle();
    assert_eq!(n.stream.stored, [10]);
    for id in 11..=20 {
        n.nodes[0].send(
            pubs[0],
            json!({"op": "pub", "topic": t, "data": id, "id": id}),
        );
    }
    n.settle();
    assert_eq!(n.stream.stored, [10, 1, 9]);
    n.stream.stored.clear();
    let acks: Vec<String> = (1..=20).map(|i| format!("ack {i}")).collect();
    assert_eq!(summary(&n.nodes[0].received(pubs[0])), acks);
    // Both nodes at once, five each: bundles conflict, are numbered again
    // whole, and every subscriber sees one gapless order.
    for id in 11..=15 {
        for (i, p) in pubs.iter().enumerate() {
            let id = id * 10 + i as u64;
            n.nodes[i].send(*p, json!({"op": "pub", "topic": t, "data": id, "id": id}));
        }
    }
    n.settle();
    let mut orders = Vec::new();
    for (i, s) in subs.iter().enumerate() {
        let got = n.nodes[i].received(*s);
        let seqs: Vec<u64> = got
            .iter()
            .filter(|m| m["op"] == "msg")
            .map(|m| m["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, (1..=30).collect::<Vec<_>>(), "node {i}");
        let data: Vec<u64> = got
            .iter()
            .filter(|m| m["op"] == "msg")
            .map(|m| m["data"].as_u64().unwrap())
            .collect();
        orders.push(data);
    }
    assert_eq!(orders[0], orders[1], "one order on every node");
    let from = |node: usize| -> Vec<u64> {
        orders[0][20..]
            .iter()
            .copied()
            .filter(|d| d % 10 == node as u64)
            .collect()
    };
    assert_eq!(
        from(0),
        [110, 120, 130, 140, 150],
        "each publisher's order kept"
    );
    assert_eq!(from(1), [111, 121, 131, 141, 151]);
    assert!(
        n.stream.stored.len() < 2 + 10,
        "bundled: {:?}",
        n.stream.stored
    );
    // The last value is a bundle's last msg: a snapshot elsewhere reads it.
    let late = n.nodes[1].connect(0);
    let last = n.stream.last[t.as_str()].clone();
    n.nodes[1].send(
        late,
        json!({"op": "sub", "topic": t, "snapshot": true, "id": 1}),
    );
    n.settle();
    assert_eq!(
        msgs(&mut n, 1, late),
        [format!("snap {t} 30")],
        "{:?}",
        last.3
    );
}

#[test]
fn a_bundle_whose_lengths_do_not_add_up_is_dropped_whole() {
    let mut n = nodes(1, 1);
    let s = n.nodes[0].connect(0);
    n.nodes[0].send(s, json!({"op": "sub", "topic": "b", "id": 1}));
    n.settle();
    let one = r#"{"op":"msg","topic":"b","seq":1,"data":1}"#;
    let two = r#"{"op":"msg","topic":"b","seq":2,"data":2}"#;
    let payload = Bytes::from(format!("{one}{two}"));
    let l1 = one.len() as u32;
    for lens in [vec![l1, 5], vec![l1 + 1, two.len() as u32 - 1], vec![l1]] {
        n.tell(0, 0, ClusterIn::Copy(bundle("b", 1, 1, &payload, &lens)));
    }
    assert!(msgs(&mut n, 0, s).is_empty());
    let bad = n.nodes[0].brokers[0].stats()[0]
        .cluster_bad_copies_total
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(bad, 3);
    n.tell(
        0,
        0,
        ClusterIn::Copy(bundle("b", 1, 1, &payload, &[l1, two.len() as u32])),
    );
    assert_eq!(msgs(&mut n, 0, s), ["msg b 1", "msg b 2"]);
}

#[test]
fn a_publish_larger_than_a_nats_message_is_too_large_and_bundles_keep_under_it() {
    let mut n = nodes(1, 1);
    for b in n.nodes[0].brokers.iter_mut() {
        if let Some(c) = b.cluster.as_mut() {
            c.set_max_payload(8 * 1024);
        }
    }
    let s = n.nodes[0].connect(0);
    n.nodes[0].send(s, json!({"op": "sub", "topic": "big", "id": 1}));
    let p = n.nodes[0].connect(0);
    let big = "x".repeat(7 * 1024);
    n.nodes[0].send(
        p,
        json!({"op": "pub", "topic": "big", "data": big, "id": 2}),
    );
    n.settle();
    let got = n.nodes[0].received(p);
    assert_eq!(got[0]["code"], "too_large", "{got:?}");
    assert!(
        got[0]["message"]
            .as_str()
            .unwrap()
            .contains("NATS max_payload"),
        "{got:?}"
    );
    assert!(n.stream.stored.is_empty(), "nothing numbered or sent");
    // Forty of 500 bytes: bundles of at most half the 8 KiB each.
    let half = "y".repeat(500);
    for id in 0..40 {
        n.nodes[0].send(
            p,
            json!({"op": "pub", "topic": "big", "data": half, "id": id}),
        );
    }
    n.settle();
    assert_eq!(n.stream.stored.iter().sum::<usize>(), 40);
    assert!(
        n.stream.stored.iter().all(|&k| k <= 8),
        "{:?}",
        n.stream.stored
    );
    let seqs: Vec<String> = msgs(&mut n, 0, s);
    assert_eq!(seqs.len(), 40);
    assert_eq!(seqs[39], "msg big 40");
}

/// Publishes of a node's connections still owed an answer, over its shards.
fn owed(n: &Nodes, node: usize) -> u64 {
    let c = &n.nodes[node];
    (0..c.brokers.len())
        .map(|s| {
            c.brokers[s].stats()[s]
                .cluster_owed
                .load(std::sync::atomic::Ordering::Relaxed)
        })
        .sum()
}

#[test]
fn a_node_is_settled_only_once_every_publish_it_took_is_answered() {
    let mut n = nodes(1, 2);
    let t = topic_owned_by(1, 2, "d");
    let p = n.nodes[0].connect(0);
    assert!(n.nodes[0].brokers[0].settled());
    n.stream.silent = true;
    // One with an id, one without: both are owed an answer until it is
    // back on the publisher's shard (the owner is the other shard).
    n.nodes[0].send(p, json!({"op": "pub", "topic": t, "data": 1, "id": 1}));
    n.nodes[0].send(p, json!({"op": "pub", "topic": t, "data": 2}));
    n.settle();
    assert_eq!(owed(&n, 0), 2);
    assert!(!n.nodes[0].brokers[0].settled() && !n.nodes[0].brokers[1].settled());
    n.stream.silent = false;
    n.nodes[0].hosts[1].now_ms += 13_000;
    n.nodes[0].tick(1);
    n.settle();
    assert_eq!(owed(&n, 0), 0);
    assert!(n.nodes[0].brokers[0].settled());
    // Draining: a new publish is refused at once as the node shutting down.
    n.nodes[0].hosts[0].draining = true;
    n.nodes[0].send(p, json!({"op": "pub", "topic": t, "data": 3, "id": 3}));
    n.settle();
    let got = n.nodes[0].received(p);
    let last = got.last().unwrap();
    assert!(
        last["message"].as_str().unwrap().contains("shutting down"),
        "{got:?}"
    );
    assert_eq!(owed(&n, 0), 0);
}
