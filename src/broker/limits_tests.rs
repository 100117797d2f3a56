//! The bounds a request meets (snapshots in flight and their size, new
//! topics per connection and per shard, conflation, request rates, full
//! mailboxes), played over the fake host of [`super::sim`].

use super::config::{BrokerConfig, SlowPolicy};
use super::sim::{summary, topic_owned_by, Cluster};
use super::stats::BrokerStats;
use crate::rate::Rate;
use serde_json::json;

fn config() -> BrokerConfig {
    BrokerConfig::default()
}

#[test]
fn snapshot_deliveries_count_against_the_queue_limit_like_live_data() {
    let mut cl = Cluster::with(
        2,
        BrokerConfig {
            policy: SlowPolicy::Drop,
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
        cl.publish(publisher, &format!("keep.k{i}"), 1);
        cl.publish(publisher, &format!("keep.k{i}"), 2);
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
        cl.publish(publisher, &format!("keep.k{i}"), 3);
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

fn counter(cl: &Cluster, f: impl Fn(&BrokerStats) -> &std::sync::atomic::AtomicU64) -> u64 {
    cl.brokers[0]
        .stats()
        .iter()
        .map(|s| f(s).load(std::sync::atomic::Ordering::Relaxed))
        .sum()
}

fn conflating(max_queued: usize) -> BrokerConfig {
    BrokerConfig {
        policy: SlowPolicy::Conflate,
        max_queued,
        ..BrokerConfig::default()
    }
}

#[test]
fn conflation_keeps_the_latest_per_topic_in_the_order_first_held() {
    let mut cl = Cluster::with(1, conflating(1 << 20));
    let publisher = cl.connect(0);
    let sub = cl.connect(0);
    cl.send(sub, json!({"op": "sub", "topics": ["c.>"], "id": 1}));
    assert_eq!(summary(&cl.received(sub)), ["ack 1"]);
    cl.hosts[0].full.insert(sub.1);
    for t in ["c.a", "c.b", "c.a", "c.c", "c.b", "c.a"] {
        cl.publish(publisher, t, 0);
    }
    assert!(cl.received(sub).is_empty(), "all held: the queue is full");
    assert_eq!(cl.brokers[0].conn_counters(sub.1), Some((0, 3, 3)));
    cl.hosts[0].full.clear();
    cl.brokers[0].writable(&mut cl.hosts[0], sub.1);
    assert_eq!(
        summary(&cl.received(sub)),
        ["msg c.a 3", "msg c.b 2", "msg c.c 1"]
    );
    // Released: a topic held again goes to the back of the line.
    cl.hosts[0].full.insert(sub.1);
    for t in ["c.c", "c.a"] {
        cl.publish(publisher, t, 0);
    }
    cl.hosts[0].full.clear();
    cl.brokers[0].writable(&mut cl.hosts[0], sub.1);
    assert_eq!(summary(&cl.received(sub)), ["msg c.c 2", "msg c.a 4"]);
    assert_eq!(counter(&cl, |s| &s.conflated_total), 3);
}

#[test]
fn a_conflating_subscriber_holding_too_many_topics_is_closed_as_a_slow_consumer() {
    // 10,000 bytes of held messages: ~50 topics of these (~60-byte frames
    // plus ~85 bytes each to index them).
    let mut cl = Cluster::with(1, conflating(10_000));
    let publisher = cl.connect(0);
    let sub = cl.connect(0);
    cl.send(sub, json!({"op": "sub", "topics": [">"], "id": 1}));
    assert_eq!(summary(&cl.received(sub)), ["ack 1"]);
    cl.hosts[0].full.insert(sub.1);
    for i in 0..1000 {
        cl.publish(publisher, &format!("many.t{i}"), i);
        if !cl.hosts[0].closes.is_empty() {
            assert!((40..80).contains(&i), "closed after {i} topics");
            break;
        }
    }
    assert_eq!(
        cl.hosts[0].closes,
        [(sub.1, crate::ws::code::POLICY_VIOLATION)]
    );
    assert_eq!(counter(&cl, |s| &s.conflate_overflows_total), 1);
    // What it held is freed at once, not when the close completes.
    assert_eq!(cl.brokers[0].conn_counters(sub.1).map(|c| c.2), Some(0));
}

fn rate_limited(cl: &Cluster) -> u64 {
    counter(cl, |s| &s.requests_rate_limited_total)
}

#[test]
fn publishes_over_the_connection_rate_get_rate_limited_with_their_id_and_no_seq() {
    let config = BrokerConfig {
        pub_rate: Rate {
            per_s: 10,
            burst: 3,
        },
        ..BrokerConfig::default()
    };
    let mut cl = Cluster::with(2, config);
    let t = topic_owned_by(1, 2, "rate");
    let sub = cl.connect(1);
    let publisher = cl.connect(0);
    cl.send(sub, json!({"op": "sub", "topics": [&t]}));
    cl.settle();
    cl.hosts[0].now_ms = 5_000;
    for id in 0..5 {
        cl.send(
            publisher,
            json!({"op": "pub", "topic": &t, "data": id, "id": id}),
        );
    }
    let got = cl.received(publisher);
    assert_eq!(summary(&got), ["ack 0", "ack 1", "ack 2", "err 3", "err 4"]);
    assert_eq!(got[3]["code"], "rate_limited");
    assert!(
        got[3]["message"]
            .as_str()
            .unwrap_or("")
            .contains("--max-pub-rate"),
        "{}",
        got[3]
    );
    assert_eq!(rate_limited(&cl), 2);
    // 10 a second: one more after 100 ms.
    cl.hosts[0].now_ms += 100;
    for id in 5..7 {
        cl.send(
            publisher,
            json!({"op": "pub", "topic": &t, "data": id, "id": id}),
        );
    }
    assert_eq!(summary(&cl.received(publisher)), ["ack 5", "err 6"]);
    // The refused ones were never numbered: no gap.
    cl.settle();
    assert_eq!(
        summary(&cl.received(sub)),
        (1..=4).map(|s| format!("msg {t} {s}")).collect::<Vec<_>>()
    );
    // The other connections are not limited by this one.
    cl.send(sub, json!({"op": "pub", "topic": &t, "data": 0, "id": 9}));
    assert_eq!(
        summary(&cl.received(sub)),
        ["ack 9".to_string(), format!("msg {t} 5")]
    );
}

#[test]
fn sub_and_unsub_patterns_over_the_rate_get_rate_limited_and_change_nothing() {
    let config = BrokerConfig {
        sub_rate: Rate { per_s: 2, burst: 4 },
        ..BrokerConfig::default()
    };
    let mut cl = Cluster::with(1, config);
    let c = cl.connect(0);
    let publisher = cl.connect(0);
    // Six patterns at once: never refused for its size, paid for after.
    cl.send(
        c,
        json!({"op": "sub", "topics": ["s.1", "s.2", "s.3", "s.4", "s.5", "s.6"], "id": 1}),
    );
    cl.send(c, json!({"op": "unsub", "topics": ["s.1"], "id": 2}));
    cl.send(c, json!({"op": "sub", "topics": ["s.7"], "id": 3}));
    let got = cl.received(c);
    assert_eq!(summary(&got), ["ack 1", "err 2", "err 3"]);
    assert_eq!(got[1]["code"], "rate_limited");
    assert_eq!(rate_limited(&cl), 2);
    // The refused unsub left s.1 on, the refused sub did not add s.7.
    cl.publish(publisher, "s.1", 0);
    cl.publish(publisher, "s.7", 0);
    assert_eq!(summary(&cl.received(c)), ["msg s.1 1"]);
    // Two in debt at 2 a second: a token again after 1.5 s.
    cl.hosts[0].now_ms = 1_499;
    cl.send(c, json!({"op": "unsub", "topics": ["s.1"], "id": 4}));
    cl.hosts[0].now_ms = 1_500;
    cl.send(c, json!({"op": "unsub", "topics": ["s.1"], "id": 5}));
    assert_eq!(summary(&cl.received(c)), ["err 4", "ack 5"]);
}

#[test]
fn sub_and_unsub_are_refused_while_a_shard_they_must_mail_has_mail_waiting() {
    let mut cl = Cluster::new(2);
    let remote = topic_owned_by(1, 2, "m");
    let local = topic_owned_by(0, 2, "m");
    let c = cl.connect(0);
    cl.send(c, json!({"op": "sub", "topics": [&remote], "id": 1}));
    cl.settle();
    assert_eq!(summary(&cl.received(c)), ["ack 1"]);
    cl.hosts[0].waiting = 1 << 1;
    cl.send(c, json!({"op": "sub", "topics": ["m.*"], "id": 2}));
    cl.send(c, json!({"op": "unsub", "topics": [&remote], "id": 3}));
    cl.send(c, json!({"op": "sub", "topics": [&local], "id": 4}));
    assert!(cl.hosts[0].outbox.is_empty() && cl.rings.values().all(|r| r.is_empty()));
    let got = cl.received(c);
    assert_eq!(summary(&got), ["err 2", "err 3", "ack 4"]);
    assert_eq!(got[0]["code"], "rate_limited");
    assert_eq!(counter(&cl, |s| &s.subs_refused_total), 2);
    // The refused unsub changed nothing: the remote topic still streams.
    let publisher = cl.connect(1);
    cl.publish(publisher, &remote, 0);
    cl.settle();
    assert_eq!(summary(&cl.received(c)), [format!("msg {remote} 1")]);
    cl.hosts[0].waiting = 0;
    cl.send(c, json!({"op": "unsub", "topics": [&remote], "id": 5}));
    cl.settle();
    assert_eq!(summary(&cl.received(c)), ["ack 5"]);
}
