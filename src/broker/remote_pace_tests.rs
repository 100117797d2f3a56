//! Remote scans paced by their reader (`snapshots.rs`): the subscriber's
//! shard asks the owner for the next step only once the client's queue
//! drained, or by the tick's rule; a close or an unsubscribe stops the
//! owner's scan at once. The queue is the fake host's `wire` here
//! (`enforce_limit`): what `received` takes is what the client read.

use super::config::BrokerConfig;
use super::sim::{summary, Cluster, Peer};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

/// Two shards, `n` topics `r.tN` owned by shard 1, each published once;
/// the subscriber's shard 0 keeps its clients' queues to `max_queued`.
fn remote_cluster(n: usize, max_queued: usize) -> (Cluster, Vec<String>) {
    let config = BrokerConfig {
        snapshot_step: 8,
        max_queued,
        ..BrokerConfig::default()
    };
    let mut cl = Cluster::with(2, config);
    let topics: Vec<String> = (0..)
        .map(|i| format!("r.t{i}"))
        .filter(|t| super::engine::owner_of(t, 2) == 1)
        .take(n)
        .collect();
    let publisher = cl.connect(1);
    for t in &topics {
        cl.publish(publisher, t, 1);
    }
    cl.settle();
    cl.hosts[0].enforce_limit = true;
    (cl, topics)
}

/// Deliver all mail, with no tick and no `writable`.
fn deliver(cl: &mut Cluster) {
    while cl.rings.values().any(|r| !r.is_empty()) {
        for to in 0..cl.hosts.len() {
            cl.drain_to(to);
        }
    }
}

/// Frames queued on a client and not read.
fn queued(cl: &Cluster, (shard, c): Peer) -> usize {
    cl.hosts[shard].wire.get(&c).map_or(0, Vec::len)
}

fn sub_all(cl: &mut Cluster, sub: Peer) {
    cl.send(
        sub,
        json!({"op": "sub", "topics": ["r.*"], "id": 1, "snapshot": true}),
    );
}

#[test]
fn a_remote_scan_waits_for_a_reader_that_does_not_drain_but_not_for_ever() {
    // ~30 snapshot frames fit the queue: about four steps.
    let (mut cl, _) = remote_cluster(200, 2000);
    let sub = cl.connect(0);
    sub_all(&mut cl, sub);
    deliver(&mut cl);
    let first = queued(&cl, sub);
    assert!((1..=8).contains(&first), "one step, not the scan: {first}");
    assert!(!cl.brokers[1].served.is_empty(), "the owner waits");
    // Its queue does not drain: ticks wait...
    for _ in 0..9 {
        cl.tick(0);
        deliver(&mut cl);
    }
    assert_eq!(queued(&cl, sub), first);
    // ...but not for ever: a step per 10 ticks, until its policy applies.
    let mut steps = 1;
    while cl.hosts[0].closes.is_empty() {
        for _ in 0..10 {
            cl.tick(0);
            deliver(&mut cl);
        }
        steps += 1;
        assert!(steps < 30, "never closed");
    }
    assert_eq!(cl.hosts[0].closes, [(sub.1, 1008)]);
    // At most one step went beyond what the queue took.
    let offered = cl.brokers[0].stats[0].snapshots_total.load(Relaxed) as usize;
    let fit = queued(&cl, sub);
    assert!(offered <= fit + 8, "{offered} offered, {fit} queued");
    assert!(steps <= 6, "{steps} steps");
    // The runtime then ends the connection: the owner's scan is freed.
    cl.close(sub);
    deliver(&mut cl);
    assert!(cl.brokers[1].served.is_empty());
    assert!(cl.brokers[0].parked.is_empty());
    assert_eq!(cl.brokers[0].snapshots_in_flight, 0);
}

#[test]
fn a_remote_scan_paced_by_a_reader_delivers_every_topic_once_then_the_ack() {
    // The whole snapshot (~13 kB) is far over the queue: it only gets
    // through a step at a time.
    let (mut cl, topics) = remote_cluster(200, 1000);
    let publisher = cl.connect(1);
    let sub = cl.connect(0);
    sub_all(&mut cl, sub);
    let mut last = BTreeMap::new();
    let mut got = Vec::new();
    for round in 0.. {
        assert!(round < 100, "no ack");
        deliver(&mut cl);
        let read = cl.received(sub);
        let done = read.iter().any(|m| m["op"] == "ack");
        got.extend(read);
        if done {
            break;
        }
        if round == 3 {
            // Live publishes mid-scan: no duplicate, no gap.
            cl.publish(publisher, &topics[0], 2);
            cl.publish(publisher, &topics[199], 2);
        }
        cl.writable(sub);
    }
    assert!(cl.hosts[0].closes.is_empty(), "{:?}", cl.hosts[0].closes);
    let mut snaps = 0;
    for m in got.iter().filter(|m| m["op"] == "msg") {
        let t = m["topic"].as_str().unwrap_or_default().to_string();
        let seq = m["seq"].as_u64().unwrap_or(0);
        if m["snapshot"] == true {
            snaps += 1;
            assert!(!last.contains_key(&t), "duplicate {t}: {m}");
        } else if let Some(&l) = last.get(&t) {
            assert_eq!(seq, l + 1, "{t} after {l}: {m}");
        }
        last.insert(t, seq);
    }
    assert_eq!(last.len(), 200, "every topic");
    assert!(snaps >= 198, "{snaps} snapshot entries");
    assert_eq!(summary(&got).last().map(String::as_str), Some("ack 1"));
    assert!(cl.brokers[1].served.is_empty());
    assert!(cl.brokers[0].parked.is_empty());
    assert_eq!(cl.brokers[0].snapshots_in_flight, 0);
}

#[test]
fn closing_or_unsubscribing_a_remote_reader_mid_scan_frees_the_owner() {
    let (mut cl, _) = remote_cluster(200, 1000);
    // Closed while its step waits for the queue to drain.
    let a = cl.connect(0);
    sub_all(&mut cl, a);
    deliver(&mut cl);
    assert!(queued(&cl, a) > 0 && !cl.brokers[1].served.is_empty());
    cl.close(a);
    deliver(&mut cl);
    assert!(cl.brokers[1].served.is_empty(), "the owner's scan is freed");
    assert!(cl.brokers[0].parked.is_empty());
    assert_eq!(cl.brokers[0].snapshots_in_flight, 0);

    // Unsubscribed so: both acked at once, unread queue or not.
    let b = cl.connect(0);
    sub_all(&mut cl, b);
    deliver(&mut cl);
    assert!(!cl.brokers[1].served.is_empty());
    cl.send(b, json!({"op": "unsub", "topics": ["r.*"], "id": 2}));
    deliver(&mut cl);
    let got = summary(&cl.received(b));
    assert_eq!(got[got.len() - 2..], ["ack 1", "ack 2"], "{got:?}");
    assert!(got.len() <= 2 + 8, "stopped after a step: {}", got.len());
    assert!(cl.brokers[1].served.is_empty());
    assert!(cl.brokers[0].parked.is_empty());
    assert_eq!(cl.brokers[0].snapshots_in_flight, 0);
}

#[test]
fn a_reading_subscriber_gets_a_big_snapshot_from_every_owner_at_the_default_limits() {
    // Two owners, default step and queue limit (1 MiB): each owner's first
    // step used to be 4,096 entries (~800 kB here), and both landed in the
    // queue before the client could read: closed 1008 with most of the
    // snapshot missing.
    let mut cl = Cluster::new(2);
    let data = "x".repeat(150);
    let publisher = cl.connect(1);
    for i in 0..12_000 {
        cl.send(
            publisher,
            json!({"op": "pub", "topic": format!("t.n{i}"), "data": data}),
        );
    }
    cl.settle();
    cl.hosts[0].enforce_limit = true;
    let sub = cl.connect(0);
    cl.send(
        sub,
        json!({"op": "sub", "topics": ["t.*"], "id": 1, "snapshot": true}),
    );
    let mut snaps = 0;
    let mut acked = false;
    for round in 0.. {
        assert!(round < 10_000, "no ack after {snaps} entries");
        deliver(&mut cl);
        for m in cl.received(sub) {
            if m["op"] == "ack" {
                acked = true;
            } else if m["snapshot"] == true {
                snaps += 1;
            }
        }
        assert!(cl.hosts[0].closes.is_empty(), "{:?}", cl.hosts[0].closes);
        if acked {
            break;
        }
        cl.writable(sub);
        if round % 10 == 9 {
            cl.tick(0);
            cl.tick(1);
        }
    }
    assert_eq!(snaps, 12_000);
}
