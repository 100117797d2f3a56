//! Snapshots served in steps (`snapshots.rs`, `owner::Scan`): other work
//! goes on between the steps, publishes during a scan give no duplicate
//! and no gap, and an unsubscribe or a close mid-scan stops it and frees
//! its slot. Small steps here; the default is `config::SNAPSHOT_STEP`.

use super::config::BrokerConfig;
use super::sim::{summary, topic_owned_by, Cluster, Peer};
use super::topic::matches;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

fn stepping(step: usize) -> BrokerConfig {
    BrokerConfig {
        snapshot_step: step,
        ..BrokerConfig::default()
    }
}

/// `n` topics `{prefix}.tN` owned by shard `owner` of `shards`.
fn owned_topics(owner: usize, shards: usize, prefix: &str, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("{prefix}.t{i}"))
        .filter(|t| super::engine::owner_of(t, shards) == owner)
        .take(n)
        .collect()
}

/// Per topic, what a client got: its seqs in order, `snap` marking a
/// snapshot entry. Panics on a duplicate or a gap.
fn check_exact(msgs: &[Value], last: &mut BTreeMap<String, u64>) -> usize {
    let mut snaps = 0;
    for m in msgs.iter().filter(|m| m["op"] == "msg") {
        let t = m["topic"].as_str().unwrap_or_default().to_string();
        let seq = m["seq"].as_u64().unwrap_or(0);
        if m["snapshot"] == true {
            snaps += 1;
            assert!(!last.contains_key(&t), "snapshot after live for {t}: {m}");
        } else if let Some(&l) = last.get(&t) {
            assert_eq!(seq, l + 1, "{t} after {l}: {m}");
        }
        last.insert(t, seq);
    }
    snaps
}

#[test]
fn a_wildcard_snapshot_is_served_in_steps_while_other_work_goes_on() {
    // Remote subscriber: the owner sends one step per `SnapMore`.
    let mut cl = Cluster::with(2, stepping(8));
    let topics = owned_topics(1, 2, "w", 50);
    let publisher = cl.connect(1);
    for t in &topics {
        cl.publish(publisher, t, 1);
    }
    cl.settle();
    let sub = cl.connect(0);
    cl.send(
        sub,
        json!({"op": "sub", "topics": ["w.*"], "id": 1, "snapshot": true}),
    );
    // Interest and request reach the owner; it sends its first step only.
    cl.drain_to(1);
    cl.drain_to(0);
    // (8 index nodes: the root and `w` count too.)
    let first = cl.received(sub);
    assert_eq!(first.len(), 6, "one step: {:?}", summary(&first));
    // A publish on the owner's shard, to a topic the scan has not reached,
    // is numbered and acked before the scan is done; it reaches the
    // subscriber live, and its snapshot is left out (seq 1 would be older).
    let late = topics
        .iter()
        .find(|t| !first.iter().any(|m| m["topic"] == t.as_str()))
        .unwrap();
    cl.send(
        publisher,
        json!({"op": "pub", "topic": late, "data": 2, "id": 9}),
    );
    assert_eq!(summary(&cl.received(publisher)), ["ack 9"]);
    cl.settle();
    let rest = cl.received(sub);
    assert!(rest
        .iter()
        .any(|m| m["topic"] == late.as_str() && m["seq"] == 2));
    let mut last = BTreeMap::new();
    let snaps = check_exact(&first, &mut last) + check_exact(&rest, &mut last);
    assert_eq!(snaps, 49, "every other topic once");
    assert_eq!(last.len(), 50);
    assert_eq!(summary(&rest).last().map(String::as_str), Some("ack 1"));
    assert!(cl.brokers[1].served.is_empty(), "scan done on the owner");

    // Local subscriber on one shard: a step per tick (or drained queue).
    let mut cl = Cluster::with(1, stepping(8));
    let publisher = cl.connect(0);
    let topics = owned_topics(0, 1, "w", 50);
    for t in &topics {
        cl.publish(publisher, t, 1);
    }
    let sub = cl.connect(0);
    cl.send(
        sub,
        json!({"op": "sub", "topics": ["w.*"], "id": 1, "snapshot": true}),
    );
    assert_eq!(cl.received(sub).len(), 6, "the first step only");
    cl.send(
        publisher,
        json!({"op": "pub", "topic": &topics[49], "data": 2, "id": 9}),
    );
    assert_eq!(summary(&cl.received(publisher)), ["ack 9"]);
    let snaps = |v: Vec<Value>| v.iter().filter(|m| m["snapshot"] == true).count();
    cl.writable(sub);
    let n = snaps(cl.received(sub));
    assert!((7..=8).contains(&n), "its queue drained: one step, {n}");
    cl.tick(0);
    let n = snaps(cl.received(sub));
    assert!((7..=8).contains(&n), "a tick: one step, {n}");
    cl.settle();
    assert_eq!(
        summary(&cl.received(sub)).last().map(String::as_str),
        Some("ack 1")
    );
}

#[test]
fn publishes_during_a_scan_give_no_duplicate_and_no_gap() {
    for shards in [1, 2] {
        let mut cl = Cluster::with(shards, stepping(4));
        let owner = shards - 1;
        let topics = owned_topics(owner, shards, "p", 40);
        let publisher = cl.connect(owner);
        for t in &topics {
            cl.publish(publisher, t, 1);
            cl.publish(publisher, t, 2);
        }
        cl.settle();
        let sub = cl.connect(0);
        cl.send(
            sub,
            json!({"op": "sub", "topics": ["p.>"], "id": 1, "snapshot": true}),
        );
        let mut got = Vec::new();
        // Publish to every topic between steps: to ones the scan has
        // passed, and to ones it has yet to reach.
        let mut round = 0;
        loop {
            round += 1;
            for t in topics.iter().skip(round % 3).step_by(3) {
                cl.publish(publisher, t, 3);
            }
            for _ in 0..3 {
                cl.drain_to(owner);
                cl.drain_to(0);
            }
            cl.tick(owner);
            got.extend(cl.received(sub));
            assert!(round < 100, "the scan ends");
            if cl.brokers[owner].served.is_empty() {
                break;
            }
        }
        assert!(round > 3, "served in several steps: {round}");
        for t in &topics {
            cl.publish(publisher, t, 4);
        }
        cl.settle();
        got.extend(cl.received(sub));
        let mut last = BTreeMap::new();
        let snaps = check_exact(&got, &mut last);
        assert!(
            snaps > 0 && snaps < 40,
            "some snapshots, some live: {snaps}"
        );
        assert_eq!(last.len(), 40, "every topic, snapshot or live");
        let acks = got.iter().filter(|m| m["op"] == "ack").count();
        assert_eq!(acks, 1);
    }
}

#[test]
fn an_unsubscribe_or_a_close_mid_scan_stops_it_and_frees_its_slot() {
    let config = BrokerConfig {
        max_snapshots_per_shard: 1,
        ..stepping(4)
    };
    for shards in [1, 2] {
        let mut cl = Cluster::with(shards, config.clone());
        let owner = shards - 1;
        let publisher = cl.connect(owner);
        for t in owned_topics(owner, shards, "u", 100) {
            cl.publish(publisher, &t, 1);
        }
        cl.settle();
        // Unsubscribed after the first step: both acked, the scan stops.
        let a = cl.connect(0);
        cl.send(
            a,
            json!({"op": "sub", "topics": ["u.*"], "id": 1, "snapshot": true}),
        );
        cl.drain_to(owner);
        cl.drain_to(0);
        cl.send(a, json!({"op": "unsub", "topics": ["u.*"], "id": 2}));
        cl.settle();
        let got = summary(&cl.received(a));
        assert_eq!(got[got.len() - 2..], ["ack 1", "ack 2"], "{got:?}");
        assert!(got.len() <= 2 + 8, "stopped early: {} entries", got.len());
        assert_eq!(cl.brokers[0].snapshots_in_flight, 0);
        assert!(cl.brokers[owner].served.is_empty());

        // Closed after the first step: the slot (one per shard here) is
        // free at once for another connection, and the owner stops.
        let b = cl.connect(0);
        cl.send(b, json!({"op": "sub", "topics": ["u.*"], "snapshot": true}));
        cl.drain_to(owner);
        cl.drain_to(0);
        cl.close(b);
        let c = cl.connect(0);
        cl.send(
            c,
            json!({"op": "sub", "topics": ["u.>"], "id": 1, "snapshot": true}),
        );
        cl.settle();
        let got = cl.received(c);
        let mut last = BTreeMap::new();
        assert_eq!(check_exact(&got, &mut last), 100, "the next one is whole");
        assert_eq!(summary(&got).last().map(String::as_str), Some("ack 1"));
        assert!(cl.brokers.iter().all(|b| b.served.is_empty()));
        assert_eq!(cl.brokers[0].snapshots_in_flight, 0);
    }
}

#[test]
fn requests_behind_a_scan_wait_for_it_and_keep_their_order() {
    // A second snapshot of an overlapping pattern, and a plain sub, wait
    // on the owner until the first scan is done: each topic comes once.
    let config = BrokerConfig {
        max_snapshots_per_conn: 4,
        ..stepping(2)
    };
    let mut cl = Cluster::with(2, config);
    let topics = owned_topics(1, 2, "q", 10);
    let publisher = cl.connect(1);
    for t in &topics {
        cl.publish(publisher, t, 1);
    }
    cl.settle();
    let sub = cl.connect(0);
    cl.send(
        sub,
        json!({"op": "sub", "topics": ["q.*"], "id": 1, "snapshot": true}),
    );
    cl.send(sub, json!({"op": "sub", "topics": [&topics[0]], "id": 2}));
    cl.send(
        sub,
        json!({"op": "sub", "topics": ["q.>"], "id": 3, "snapshot": true}),
    );
    cl.publish(publisher, &topics[9], 2);
    cl.settle();
    let got = cl.received(sub);
    let mut last = BTreeMap::new();
    check_exact(&got, &mut last);
    assert_eq!(last.len(), 10);
    let replies: Vec<String> = summary(&got)
        .into_iter()
        .filter(|s| s.starts_with("ack"))
        .collect();
    assert_eq!(replies, ["ack 1", "ack 2", "ack 3"]);
}

#[test]
fn a_local_scan_waits_for_a_slow_reader_but_not_for_ever() {
    let config = BrokerConfig {
        policy: super::config::SlowPolicy::Drop,
        ..stepping(8)
    };
    let mut cl = Cluster::with(1, config);
    let publisher = cl.connect(0);
    for t in owned_topics(0, 1, "s", 30) {
        cl.publish(publisher, &t, 1);
    }
    let sub = cl.connect(0);
    cl.send(
        sub,
        json!({"op": "sub", "topics": ["s.*"], "snapshot": true}),
    );
    assert_eq!(cl.received(sub).len(), 6);
    // Its queue does not drain: ticks wait (a reader paces the scan)...
    cl.hosts[0].full.insert(sub.1);
    for _ in 0..9 {
        cl.tick(0);
    }
    assert_eq!(
        cl.brokers[0].stats[0]
            .dropped_total
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    // ...but a client that never reads does not hold its slot for ever:
    // the steps go on and meet its policy (here: dropped).
    cl.tick(0);
    cl.settle();
    assert!(cl.brokers[0].served.is_empty());
    assert_eq!(cl.brokers[0].snapshots_in_flight, 0);
}

/// What the model knows of one client (as in fuzz-checks' broker model).
struct Model {
    peer: Peer,
    open: bool,
    subs: BTreeSet<&'static str>,
    last: BTreeMap<String, u64>,
    next_id: u64,
    waiting: VecDeque<u64>,
}

impl Model {
    fn absorb(&mut self, frames: Vec<Value>, seed: u64) {
        for m in frames {
            match m["op"].as_str() {
                Some("msg") => {
                    let t = m["topic"].as_str().unwrap_or_default().to_string();
                    let seq = m["seq"].as_u64().unwrap_or(0);
                    assert!(
                        self.subs.iter().any(|p| matches(p, &t)),
                        "seed {seed}: msg with no subscription: {m}"
                    );
                    if let Some(&l) = self.last.get(&t) {
                        assert_eq!(seq, l + 1, "seed {seed}: {t} after {l}: {m}");
                    }
                    self.last.insert(t, seq);
                }
                _ => {
                    assert_eq!(m["op"], "ack", "seed {seed}: {m}");
                    let want = self.waiting.pop_front();
                    assert_eq!(m["id"].as_u64(), want, "seed {seed}: order: {m}");
                }
            }
        }
    }
}

#[test]
fn random_interleavings_with_one_topic_steps_stay_exact() {
    const TOPICS: &[&str] = &["a.b", "a.c", "x.b", "a.b.c", "a.d", "x.c", "a.e"];
    const PATTERNS: &[&str] = &["a.b", "a.c", "x.b", "a.*", "*.b", "a.>", ">", "*.c"];
    for seed in 0..3000u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let shards = 1 + rng.usize(..3);
        let config = BrokerConfig {
            max_snapshots_per_conn: usize::MAX,
            max_snapshots_per_shard: usize::MAX,
            ..stepping(1 + rng.usize(..2))
        };
        let mut cl = Cluster::with(shards, config);
        let mut clients: Vec<Model> = Vec::new();
        for _ in 0..60 {
            match rng.u8(..10) {
                0 if clients.len() < 4 => clients.push(Model {
                    peer: cl.connect(rng.usize(..shards)),
                    open: true,
                    subs: BTreeSet::new(),
                    last: BTreeMap::new(),
                    next_id: 1,
                    waiting: VecDeque::new(),
                }),
                1..=3 if !clients.is_empty() => {
                    let i = rng.usize(..clients.len());
                    let m = &mut clients[i];
                    if !m.open {
                        continue;
                    }
                    m.absorb(cl.received(m.peer), seed);
                    let id = m.next_id;
                    m.next_id += 1;
                    m.waiting.push_back(id);
                    let text = match rng.u8(..3) {
                        0 => {
                            let p = PATTERNS[rng.usize(..PATTERNS.len())];
                            m.subs.insert(p);
                            json!({"op": "sub", "topic": p, "id": id, "snapshot": rng.bool()})
                        }
                        1 => {
                            let p = PATTERNS[rng.usize(..PATTERNS.len())];
                            m.subs.remove(p);
                            let subs = &m.subs;
                            m.last.retain(|t, _| subs.iter().any(|p| matches(p, t)));
                            json!({"op": "unsub", "topic": p, "id": id})
                        }
                        _ => {
                            let t = TOPICS[rng.usize(..TOPICS.len())];
                            json!({"op": "pub", "topic": t, "data": id, "id": id})
                        }
                    };
                    cl.send(m.peer, text);
                }
                4 | 5 => {
                    cl.step(rng.usize(..shards), rng.usize(..shards));
                }
                6 => cl.drain_to(rng.usize(..shards)),
                7 => cl.tick(rng.usize(..shards)),
                8 if !clients.is_empty() => {
                    let i = rng.usize(..clients.len());
                    let m = &mut clients[i];
                    if m.open {
                        m.absorb(cl.received(m.peer), seed);
                        if rng.u8(..4) == 0 {
                            cl.close(m.peer);
                            m.open = false;
                        } else {
                            cl.writable(m.peer);
                        }
                    }
                }
                _ => {}
            }
        }
        cl.settle();
        for m in clients.iter_mut().filter(|m| m.open) {
            m.absorb(cl.received(m.peer), seed);
            assert!(
                m.waiting.is_empty(),
                "seed {seed}: unanswered {:?}",
                m.waiting
            );
        }
        assert!(
            cl.brokers.iter().all(|b| b.served.is_empty()),
            "seed {seed}"
        );
        assert!(cl.brokers.iter().all(|b| b.snapshots_in_flight == 0));
    }
    // Keep the helper used by the other tests honest about ownership.
    assert_eq!(topic_owned_by(0, 1, "z"), "z.t0");
}

/// What one step costs: `cargo test --release --lib snapshot_step_cost --
/// --ignored --nocapture` (the figures in docs/benchmarks.md).
#[test]
#[ignore]
fn snapshot_step_cost() {
    use std::time::Instant;
    for step in [1024, 4096, 16384] {
        let config = BrokerConfig {
            max_new_topics_per_conn: u64::MAX,
            ..stepping(step)
        };
        let mut cl = Cluster::with(1, config);
        let publisher = cl.connect(0);
        for i in 0..200_000 {
            cl.publish(publisher, &format!("t.{i}"), 1);
        }
        let sub = cl.connect(0);
        let t = Instant::now();
        cl.send(
            sub,
            json!({"op": "sub", "topics": ["t.*"], "id": 1, "snapshot": true}),
        );
        let first = t.elapsed();
        let mut steps = 1;
        let mut worst = first;
        while cl.brokers[0].scans_waiting() {
            let t = Instant::now();
            cl.writable(sub);
            worst = worst.max(t.elapsed());
            steps += 1;
            cl.hosts[0].wire.clear();
        }
        println!(
            "t.* over 200,000 topics, step {step}: {steps} steps, first {first:?}, worst {worst:?}"
        );
        let sub2 = cl.connect(0);
        let topics: Vec<String> = (0..200_000)
            .step_by(200)
            .map(|i| format!("t.{i}"))
            .collect();
        let t = Instant::now();
        cl.send(
            sub2,
            json!({"op": "sub", "topics": topics, "id": 1, "snapshot": true}),
        );
        println!("1,000 exact topics: {:?} for the request", t.elapsed());
        // The owner's part alone.
        let o = &mut cl.brokers[0].owned;
        let mut scan = o.scan(&["t.*".into()]);
        let t = Instant::now();
        let n = o.scan_step(&mut scan, step).len();
        println!("  owner step alone: {n} entries in {:?}", t.elapsed());
    }
}
