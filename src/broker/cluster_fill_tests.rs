//! Cluster mode's fills (`cluster_fill.rs`) on the simulated nodes of
//! `cluster_tests.rs`: copies a node never got (lost on the way), read
//! from the stream before the copy that showed them missing.

use super::cluster::ClusterIn;
use super::cluster_tests::{msgs, nodes, Nodes};
use super::sim::topic_owned_by;
use super::stats::BrokerStats;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

fn count(n: &Nodes, node: usize, f: impl Fn(&BrokerStats) -> &AtomicU64) -> u64 {
    let c = &n.nodes[node];
    (0..c.brokers.len())
        .map(|s| f(&c.brokers[s].stats()[s]).load(Relaxed))
        .sum()
}

fn seqs(t: &str, range: std::ops::RangeInclusive<u64>) -> Vec<String> {
    range.map(|q| format!("msg {t} {q}")).collect()
}

/// Node 0 publishes `t` one at a time (each its own stream message);
/// node 1 has a subscriber of it.
fn two_nodes(t: &str) -> (Nodes, super::sim::Peer, super::sim::Peer) {
    let mut n = nodes(2, 2);
    let p = n.nodes[0].connect(0);
    let s = n.nodes[1].connect(0);
    n.nodes[1].send(s, json!({"op": "sub", "topic": t, "id": 1}));
    n.settle();
    (n, p, s)
}

fn publish(n: &mut Nodes, p: super::sim::Peer, t: &str, i: u64) {
    n.nodes[0].send(p, json!({"op": "pub", "topic": t, "data": i, "id": i}));
    n.settle();
}

/// Fills go unanswered from now on, node 1 loses the next `lost` copies,
/// and node 0 publishes 2..=`last`: the copy after the lost ones shows
/// the hole, and it and every later one wait for a read that never comes.
fn hole_unanswered(n: &mut Nodes, p: super::sim::Peer, t: &str, lost: usize, last: u64) {
    n.stream.fills_silent = true;
    n.stream.lose[1] = lost;
    for i in 2..=last {
        publish(n, p, t, i);
    }
}

#[test]
fn copies_a_node_missed_are_read_before_the_next_one_and_seq_stays_contiguous() {
    let t = topic_owned_by(1, 2, "md");
    let (mut n, p, s) = two_nodes(&t);
    for i in 1..=3 {
        publish(&mut n, p, &t, i);
    }
    // The stream leader dies between storing and republishing: node 1
    // never gets the copies of 4 and 5, and 6's copy says 5 came before.
    n.stream.lose[1] = 2;
    for i in 4..=6 {
        publish(&mut n, p, &t, i);
    }
    assert_eq!(msgs(&mut n, 1, s), seqs(&t, 1..=6), "no gap");
    assert_eq!(n.stream.fills.len(), 1, "{:?}", n.stream.fills);
    let (node, ref topic, after, until, _) = n.stream.fills[0];
    assert_eq!((node, &**topic, after, until), (1, &*t, 3, 6));
    assert_eq!(count(&n, 1, |s| &s.cluster_fills_total), 1);
    assert_eq!(count(&n, 1, |s| &s.cluster_filled_total), 2);
    publish(&mut n, p, &t, 7);
    assert_eq!(msgs(&mut n, 1, s), seqs(&t, 7..=7));
    assert_eq!(n.stream.fills.len(), 1, "no fill without a hole");
    // A node delivering every copy never asks.
    assert_eq!(count(&n, 0, |s| &s.cluster_fills_total), 0);
}

#[test]
fn copies_wait_behind_a_fill_in_order_and_a_fill_that_fails_is_one_explicit_gap() {
    let t = topic_owned_by(0, 2, "md");
    let (mut n, p, s) = two_nodes(&t);
    publish(&mut n, p, &t, 1);
    hole_unanswered(&mut n, p, &t, 1, 5);
    // 3's copy showed the hole; it, 4 and 5 wait for the read.
    assert_eq!(msgs(&mut n, 1, s), seqs(&t, 1..=1));
    assert_eq!(n.stream.fills.len(), 1);
    // No answer: at the deadline (12 s here) the fill is given up, and
    // the copies go out with the hole as a gap the client sees.
    n.nodes[1].hosts[0].now_ms += 13_000;
    n.nodes[1].tick(0);
    n.settle();
    assert_eq!(msgs(&mut n, 1, s), seqs(&t, 3..=5));
    assert_eq!(count(&n, 1, |s| &s.cluster_fill_failures_total), 1);
    publish(&mut n, p, &t, 6);
    assert_eq!(msgs(&mut n, 1, s), seqs(&t, 6..=6));
    assert_eq!(
        n.stream.fills.len(),
        1,
        "the copy past the hole asks no more"
    );
}

#[test]
fn a_late_answer_to_a_fill_given_up_is_ignored() {
    let t = topic_owned_by(0, 2, "md");
    let (mut n, p, s) = two_nodes(&t);
    publish(&mut n, p, &t, 1);
    hole_unanswered(&mut n, p, &t, 1, 3);
    n.nodes[1].hosts[0].now_ms += 13_000;
    n.nodes[1].tick(0);
    n.settle();
    assert_eq!(
        msgs(&mut n, 1, s),
        [seqs(&t, 1..=1), seqs(&t, 3..=3)].concat()
    );
    // The bridge's answer comes after all.
    let token = n.stream.fills[0].4;
    let (s2, q2, p2, _) = n.stream.history[&*t][1].clone();
    let late = vec![super::cluster_tests::copy(&t, s2, q2, &p2)];
    n.tell(
        1,
        0,
        ClusterIn::Filled {
            token,
            found: Some(late),
        },
    );
    assert!(msgs(&mut n, 1, s).is_empty(), "not delivered out of order");
}

#[test]
fn a_node_that_was_not_holding_the_topic_asks_nothing() {
    let t = topic_owned_by(1, 2, "md");
    let (mut n, p, s) = two_nodes(&t);
    publish(&mut n, p, &t, 1);
    publish(&mut n, p, &t, 2);
    n.nodes[1].send(s, json!({"op": "unsub", "topic": t, "id": 2}));
    n.settle();
    // Published while node 1 had no interest: not its copies to miss.
    publish(&mut n, p, &t, 3);
    publish(&mut n, p, &t, 4);
    n.nodes[1].send(s, json!({"op": "sub", "topic": t, "id": 3}));
    n.settle();
    publish(&mut n, p, &t, 5);
    assert_eq!(
        msgs(&mut n, 1, s),
        [seqs(&t, 1..=2), seqs(&t, 5..=5)].concat()
    );
    assert!(n.stream.fills.is_empty(), "{:?}", n.stream.fills);
}

#[test]
fn past_1024_copies_held_the_fill_is_given_up_and_everything_goes_out() {
    let t = topic_owned_by(0, 2, "md");
    let (mut n, p, s) = two_nodes(&t);
    publish(&mut n, p, &t, 1);
    hole_unanswered(&mut n, p, &t, 1, 1100);
    // 1 delivered, 2 lost, 3..=1026 held (1,024), 1027 overflows them.
    let got = msgs(&mut n, 1, s);
    assert_eq!(got, [seqs(&t, 1..=1), seqs(&t, 3..=1100)].concat());
    assert_eq!(count(&n, 1, |s| &s.cluster_fill_failures_total), 1);
    assert_eq!(n.stream.fills.len(), 1);
}

#[test]
fn copies_held_behind_a_fill_go_out_after_what_it_found() {
    let t = topic_owned_by(0, 2, "md");
    let (mut n, p, s) = two_nodes(&t);
    publish(&mut n, p, &t, 1);
    hole_unanswered(&mut n, p, &t, 1, 5);
    assert_eq!(msgs(&mut n, 1, s), seqs(&t, 1..=1));
    let (_, _, after, until, token) = n.stream.fills[0].clone();
    let found = n.stream.history[&*t]
        .iter()
        .filter(|m| after < m.0 && m.0 < until)
        .map(|(s, q, p, _)| super::cluster_tests::copy(&t, *s, *q, p))
        .collect::<Vec<_>>();
    assert_eq!(found.len(), 1);
    n.tell(
        1,
        0,
        ClusterIn::Filled {
            token,
            found: Some(found),
        },
    );
    assert_eq!(msgs(&mut n, 1, s), seqs(&t, 2..=5), "in order, no gap");
}

#[test]
fn a_hole_across_a_link_blip_is_filled_too() {
    let t = topic_owned_by(1, 2, "md");
    let (mut n, p, s) = two_nodes(&t);
    publish(&mut n, p, &t, 1);
    // Node 1's NATS server died and it reconnected elsewhere; catch-up
    // (the bridge's) did not bring 2.
    for shard in 0..2 {
        n.tell(1, shard, ClusterIn::Connected(false));
        n.tell(1, shard, ClusterIn::Connected(true));
    }
    n.stream.lose[1] = 1;
    publish(&mut n, p, &t, 2);
    publish(&mut n, p, &t, 3);
    assert_eq!(msgs(&mut n, 1, s), seqs(&t, 1..=3));
    assert_eq!(n.stream.fills.len(), 1);
}

#[test]
fn a_wildcard_lapse_on_the_owner_ends_the_following() {
    let t = topic_owned_by(1, 2, "md");
    let (mut n, p, s) = two_nodes(&t);
    publish(&mut n, p, &t, 1);
    // Another connection's wildcard comes and goes on node 1. The exact
    // subscription still holds, but the owner does not tell which topics
    // a wildcard's lapse left without interest, so it treats none as
    // followed until its next copy: a hole then is an explicit gap.
    let w = n.nodes[1].connect(1);
    n.nodes[1].send(w, json!({"op": "sub", "topic": "zz.>", "id": 1}));
    n.settle();
    n.nodes[1].send(w, json!({"op": "unsub", "topic": "zz.>", "id": 2}));
    n.settle();
    n.stream.lose[1] = 1;
    publish(&mut n, p, &t, 2);
    publish(&mut n, p, &t, 3);
    assert_eq!(
        msgs(&mut n, 1, s),
        [seqs(&t, 1..=1), seqs(&t, 3..=3)].concat()
    );
    assert!(n.stream.fills.is_empty());
    // Followed again from 3's copy on.
    n.stream.lose[1] = 1;
    publish(&mut n, p, &t, 4);
    publish(&mut n, p, &t, 5);
    assert_eq!(msgs(&mut n, 1, s), seqs(&t, 4..=5));
    assert_eq!(n.stream.fills.len(), 1);
}

#[test]
fn a_stream_made_anew_delivers_the_copies_held_behind_a_fill() {
    let t = topic_owned_by(0, 2, "md");
    let (mut n, p, s) = two_nodes(&t);
    publish(&mut n, p, &t, 1);
    hole_unanswered(&mut n, p, &t, 1, 4);
    assert_eq!(msgs(&mut n, 1, s), seqs(&t, 1..=1));
    // They came from the old stream and other nodes delivered them: out
    // as they are (the hole a gap), not dropped with the old numbering.
    n.tell(1, 0, ClusterIn::StreamReset);
    assert_eq!(msgs(&mut n, 1, s), seqs(&t, 3..=4));
    assert_eq!(count(&n, 1, |s| &s.cluster_fill_failures_total), 1);
}

#[test]
fn an_older_copy_held_behind_a_fill_that_fails_goes_out_without_asking_again() {
    let t = topic_owned_by(0, 2, "md");
    let (mut n, p, s) = two_nodes(&t);
    publish(&mut n, p, &t, 1);
    // Node 1 misses 2, 3 and 4; 5's copy shows the hole.
    hole_unanswered(&mut n, p, &t, 3, 5);
    assert_eq!(n.stream.fills.len(), 1);
    // 3's copy comes late after all (a second subscription's, say): it is
    // held before 5, in stream order.
    let (s3, q3, p3, _) = n.stream.history[&*t][2].clone();
    let mut late = super::cluster_tests::copy(&t, s3, q3, &p3);
    late.last_stream_seq = n.stream.history[&*t][1].0;
    n.tell(1, 0, ClusterIn::Copy(late));
    assert_eq!(msgs(&mut n, 1, s), seqs(&t, 1..=1), "3 and 5 wait");
    n.nodes[1].hosts[0].now_ms += 13_000;
    n.nodes[1].tick(0);
    n.settle();
    // Both up to the copy that showed the hole go out as they are: 5
    // through the gate again would have asked for 4 (and held the topic
    // once more).
    let want = [seqs(&t, 3..=3), seqs(&t, 5..=5)].concat();
    assert_eq!(msgs(&mut n, 1, s), want);
    assert_eq!(n.stream.fills.len(), 1, "no second fill");
}

#[test]
fn catch_ups_first_copy_of_a_topic_fills_from_what_was_delivered() {
    let t = topic_owned_by(1, 2, "md");
    let (mut n, p, s) = two_nodes(&t);
    publish(&mut n, p, &t, 1);
    // Node 1's link goes; 2 and 3 are stored meanwhile, and catch-up
    // read from too late a sequence brings only 3, whose previous it
    // cannot know.
    for shard in 0..2 {
        n.tell(1, shard, ClusterIn::Connected(false));
    }
    n.stream.lose[1] = 2;
    publish(&mut n, p, &t, 2);
    publish(&mut n, p, &t, 3);
    for shard in 0..2 {
        n.tell(1, shard, ClusterIn::Connected(true));
    }
    let (s3, q3, p3, _) = n.stream.history[&*t][2].clone();
    let mut caught = super::cluster_tests::copy(&t, s3, q3, &p3);
    caught.last_stream_seq = super::cluster::UNKNOWN_PREVIOUS;
    n.tell(1, 1, ClusterIn::Copy(caught));
    n.settle();
    assert_eq!(msgs(&mut n, 1, s), seqs(&t, 1..=3), "2 read back first");
    // The next one's previous is known again: nothing more to read.
    publish(&mut n, p, &t, 4);
    assert_eq!(msgs(&mut n, 1, s), seqs(&t, 4..=4));
    assert_eq!(n.stream.fills.len(), 1);
    // Nothing missed before such a copy: the read finds nothing, and the
    // copy goes out as it is.
    let (s5, q5, p5, _) = {
        n.stream.lose[1] = 1;
        publish(&mut n, p, &t, 5);
        n.stream.history[&*t][4].clone()
    };
    let mut caught = super::cluster_tests::copy(&t, s5, q5, &p5);
    caught.last_stream_seq = super::cluster::UNKNOWN_PREVIOUS;
    n.tell(1, 1, ClusterIn::Copy(caught));
    n.settle();
    assert_eq!(msgs(&mut n, 1, s), seqs(&t, 5..=5));
    assert_eq!(n.stream.fills.len(), 2);
}
