//! Cluster mode's snapshots across nodes (`cluster_snapshot.rs`) on the
//! simulated nodes of `cluster_tests.rs`.

use super::cluster::ClusterIn;
use super::cluster_tests::{copy, msgs, nodes, snapshot_reads};
use super::sim::{summary, topic_owned_by};
use bytes::Bytes;
use serde_json::json;

#[test]
fn a_snapshot_of_a_topic_only_another_node_delivered_is_read_from_the_stream() {
    let mut n = nodes(2, 2);
    let t = topic_owned_by(1, 2, "q");
    let p = n.nodes[0].connect(0);
    for i in 1..=3 {
        n.nodes[0].send(p, json!({"op": "pub", "topic": t, "data": i, "id": i}));
        n.settle();
    }
    // Node 1 never held interest in it: nothing of it here.
    let s = n.nodes[1].connect(0);
    n.nodes[1].send(
        s,
        json!({"op": "sub", "topic": t, "snapshot": true, "id": 9}),
    );
    n.settle();
    assert_eq!(msgs(&mut n, 1, s), [format!("snap {t} 3")]);
    assert_eq!(snapshot_reads(&n, 1), 1);
    n.nodes[0].send(p, json!({"op": "pub", "topic": t, "data": 4, "id": 4}));
    n.settle();
    assert_eq!(
        msgs(&mut n, 1, s),
        [format!("msg {t} 4")],
        "then live, no gap"
    );
    // Held since, with copies arriving: the next snapshot on the same
    // shard is served here.
    let s2 = n.nodes[1].connect(0);
    n.nodes[1].send(
        s2,
        json!({"op": "sub", "topic": t, "snapshot": true, "id": 9}),
    );
    n.settle();
    assert_eq!(msgs(&mut n, 1, s2), [format!("snap {t} 4")]);
    assert_eq!(snapshot_reads(&n, 1), 1, "no second read");
    // A first holder on another shard reads again: its interest may be
    // new to the bridge too (another shard's lapse, on its way to the
    // owner, may have dropped the NATS subscription in between).
    let s3 = n.nodes[1].connect(1);
    n.nodes[1].send(
        s3,
        json!({"op": "sub", "topic": t, "snapshot": true, "id": 9}),
    );
    n.settle();
    assert_eq!(msgs(&mut n, 1, s3), [format!("snap {t} 4")]);
    assert_eq!(snapshot_reads(&n, 1), 2);
}

#[test]
fn a_snapshot_after_the_interest_lapsed_is_not_the_stale_value() {
    let mut n = nodes(2, 1);
    let p = n.nodes[0].connect(0);
    let s = n.nodes[1].connect(0);
    n.nodes[1].send(s, json!({"op": "sub", "topic": "a.b", "id": 1}));
    n.settle();
    n.nodes[0].send(p, json!({"op": "pub", "topic": "a.b", "data": 1, "id": 1}));
    n.settle();
    assert_eq!(msgs(&mut n, 1, s), ["msg a.b 1"]);
    n.nodes[1].send(s, json!({"op": "unsub", "topic": "a.b", "id": 2}));
    n.settle();
    for i in 2..=3 {
        n.nodes[0].send(p, json!({"op": "pub", "topic": "a.b", "data": i, "id": i}));
        n.settle();
    }
    n.nodes[1].send(
        s,
        json!({"op": "sub", "topic": "a.b", "snapshot": true, "id": 3}),
    );
    n.settle();
    assert_eq!(msgs(&mut n, 1, s), ["snap a.b 3"], "not the stale 1");
    // A wildcard's lapse voids every local value; so does a link blip.
    let w = n.nodes[1].connect(0);
    n.nodes[1].send(w, json!({"op": "sub", "topic": "x.*", "id": 1}));
    n.settle();
    n.nodes[1].send(w, json!({"op": "unsub", "topic": "x.*", "id": 2}));
    n.settle();
    let before = snapshot_reads(&n, 1);
    let s2 = n.nodes[1].connect(0);
    n.nodes[1].send(
        s2,
        json!({"op": "sub", "topic": "a.b", "snapshot": true, "id": 1}),
    );
    n.settle();
    assert_eq!(msgs(&mut n, 1, s2), ["snap a.b 3"]);
    assert_eq!(snapshot_reads(&n, 1), before + 1, "read again after x.*");
    n.tell(1, 0, ClusterIn::Connected(false));
    n.tell(1, 0, ClusterIn::Connected(true));
    let s3 = n.nodes[1].connect(0);
    n.nodes[1].send(
        s3,
        json!({"op": "sub", "topic": "a.b", "snapshot": true, "id": 1}),
    );
    n.settle();
    assert_eq!(msgs(&mut n, 1, s3), ["snap a.b 3"]);
    assert_eq!(snapshot_reads(&n, 1), before + 2, "read again after a blip");
}

#[test]
fn copies_still_on_their_way_when_the_read_answered_are_not_delivered_again() {
    let mut n = nodes(2, 1);
    let p = n.nodes[0].connect(0);
    for i in 1..=3 {
        n.nodes[0].send(p, json!({"op": "pub", "topic": "k", "data": i, "id": i}));
        n.settle();
    }
    // A storm of subscribers to one quiet topic: one read for all.
    let subs: Vec<_> = (0..3).map(|_| n.nodes[1].connect(0)).collect();
    for s in &subs {
        n.nodes[1].send(
            *s,
            json!({"op": "sub", "topic": "k", "snapshot": true, "id": 1}),
        );
    }
    n.settle();
    assert_eq!(snapshot_reads(&n, 1), 1);
    // Copies of messages stored before the read, arriving after it
    // (the read and the copies take different ways through NATS).
    let (s2, q2, d2) = (
        2,
        2,
        Bytes::from(r#"{"op":"msg","topic":"k","seq":2,"data":2}"#),
    );
    n.tell(1, 0, ClusterIn::Copy(copy("k", s2, q2, &d2)));
    let (s3, q3, p3, _) = n.stream.last["k"].clone();
    n.tell(1, 0, ClusterIn::Copy(copy("k", s3, q3, &p3)));
    n.nodes[0].send(p, json!({"op": "pub", "topic": "k", "data": 4, "id": 4}));
    n.settle();
    for s in subs {
        assert_eq!(msgs(&mut n, 1, s), ["snap k 3", "msg k 4"]);
    }
}

#[test]
fn a_snapshot_read_that_fails_serves_what_is_here() {
    let mut n = nodes(1, 1);
    let s = n.nodes[0].connect(0);
    n.stream.silent = true;
    n.nodes[0].send(
        s,
        json!({"op": "sub", "topic": "z", "snapshot": true, "id": 1}),
    );
    n.settle();
    assert!(n.nodes[0].received(s).is_empty(), "waiting for the read");
    n.nodes[0].hosts[0].now_ms += 13_000;
    n.nodes[0].tick(0);
    n.settle();
    assert_eq!(summary(&n.nodes[0].received(s)), ["ack 1"]);
}

#[test]
fn a_stream_made_anew_numbers_from_one_and_its_copies_are_delivered() {
    let mut n = nodes(1, 1);
    let s = n.nodes[0].connect(0);
    n.nodes[0].send(s, json!({"op": "sub", "topic": "r", "id": 1}));
    let p = n.nodes[0].connect(0);
    for i in 1..=3 {
        n.nodes[0].send(p, json!({"op": "pub", "topic": "r", "data": i, "id": i}));
        n.settle();
    }
    assert_eq!(msgs(&mut n, 0, s), ["msg r 1", "msg r 2", "msg r 3"]);
    // The server came back without the (memory) stream: the bridge made
    // it again and says so.
    n.stream.last.clear();
    n.stream.history.clear();
    n.stream.seq = 0;
    n.tell(0, 0, ClusterIn::StreamReset);
    n.nodes[0].send(p, json!({"op": "pub", "topic": "r", "data": 4, "id": 4}));
    n.settle();
    assert_eq!(
        msgs(&mut n, 0, s),
        ["msg r 1"],
        "the reset, told as protocol.md says, not dropped as old"
    );
}

#[test]
fn a_wildcard_snapshot_on_a_node_that_never_held_it_reads_each_shards_topics() {
    let mut n = nodes(2, 2);
    let p = n.nodes[0].connect(0);
    let topics: Vec<String> = (0..6).map(|i| format!("w.{i}")).collect();
    for (i, t) in topics.iter().enumerate() {
        for d in 0..=i {
            n.nodes[0].send(p, json!({"op": "pub", "topic": t, "data": d, "id": 1}));
            n.settle();
        }
    }
    n.nodes[0].send(p, json!({"op": "pub", "topic": "v.0", "data": 1, "id": 1}));
    n.settle();
    let s = n.nodes[1].connect(1);
    n.nodes[1].send(
        s,
        json!({"op": "sub", "topic": "w.*", "snapshot": true, "id": 9}),
    );
    n.settle();
    let mut got = msgs(&mut n, 1, s);
    got.sort();
    let want: Vec<String> = (0..6).map(|i| format!("snap w.{i} {}", i + 1)).collect();
    assert_eq!(got, want);
    assert_eq!(snapshot_reads(&n, 1), 2, "one read per owner shard");
    n.nodes[0].send(p, json!({"op": "pub", "topic": "w.3", "data": 9, "id": 1}));
    n.settle();
    assert_eq!(msgs(&mut n, 1, s), ["msg w.3 5"], "then live, no gap");
    // Held since: the next one on the same shard is served from here.
    let s2 = n.nodes[1].connect(1);
    n.nodes[1].send(
        s2,
        json!({"op": "sub", "topic": "w.*", "snapshot": true, "id": 9}),
    );
    n.settle();
    assert_eq!(msgs(&mut n, 1, s2).len(), 6);
    assert_eq!(snapshot_reads(&n, 1), 2);
}

#[test]
fn a_subscriber_after_a_lapse_does_not_share_the_read_fenced_before_it() {
    let mut n = nodes(2, 1);
    let p = n.nodes[0].connect(0);
    for i in 1..=3 {
        n.nodes[0].send(p, json!({"op": "pub", "topic": "l", "data": i, "id": i}));
        n.settle();
    }
    n.stream.silent = true;
    let a = n.nodes[1].connect(0);
    n.nodes[1].send(
        a,
        json!({"op": "sub", "topic": "l", "snapshot": true, "id": 1}),
    );
    n.settle();
    n.nodes[1].send(a, json!({"op": "unsub", "topic": "l", "id": 2}));
    n.settle();
    let b = n.nodes[1].connect(0);
    n.nodes[1].send(
        b,
        json!({"op": "sub", "topic": "l", "snapshot": true, "id": 1}),
    );
    n.settle();
    assert_eq!(snapshot_reads(&n, 1), 1, "b waits for a read of its own");
    n.stream.silent = false;
    n.nodes[1].hosts[0].now_ms += 13_000;
    n.nodes[1].tick(0);
    n.settle();
    assert_eq!(snapshot_reads(&n, 1), 2);
    assert_eq!(summary(&n.nodes[1].received(b)), ["snap l 3", "ack 1"]);
}
