//! HTTP publish batches (`batch.rs`) on a simulated cluster: seqs from
//! other shards, the whole-batch checks, and overload per message.

use super::batch::{BatchError, BatchOutcome};
use super::sim::{summary, topic_owned_by, Cluster};
use super::wire::ErrCode;
use serde_json::json;

#[test]
fn a_batch_gets_local_and_remote_seqs_and_reaches_subscribers_everywhere() {
    let mut c = Cluster::new(3);
    let topics: Vec<String> = (0..3).map(|o| topic_owned_by(o, 3, "b")).collect();
    let subs: Vec<_> = (0..3).map(|s| c.connect(s)).collect();
    for (i, s) in subs.iter().enumerate() {
        c.send(*s, json!({"op": "sub", "topics": ["b.>"], "id": i}));
    }
    c.settle();
    for s in &subs {
        c.received(*s);
    }
    let msgs: Vec<(&str, &str)> = vec![
        (&topics[0], "1"),
        (&topics[1], "2"),
        (&topics[2], "3"),
        (&topics[1], "4"),
    ];
    // Published on shard 0: topic 0 is numbered here, the rest wait.
    assert_eq!(c.publish_batch(0, 77, &msgs), Ok(None));
    assert!(c.brokers[0].take_batches().is_empty());
    c.settle();
    let done = c.brokers[0].take_batches();
    assert_eq!(
        done,
        vec![(
            77,
            BatchOutcome {
                seqs: vec![Some(1), Some(1), Some(1), Some(2)],
                refused: None
            }
        )]
    );
    for s in &subs {
        let mut got = summary(&c.received(*s));
        got.sort();
        let mut want = vec![
            format!("msg {} 1", topics[0]),
            format!("msg {} 1", topics[1]),
            format!("msg {} 2", topics[1]),
            format!("msg {} 1", topics[2]),
        ];
        want.sort();
        assert_eq!(got, want);
    }
}

#[test]
fn an_all_local_batch_is_answered_at_once() {
    let mut c = Cluster::new(1);
    let out = c.publish_batch(0, 1, &[("a", "1"), ("a", "2"), ("b", "[]")]);
    assert_eq!(
        out,
        Ok(Some(BatchOutcome {
            seqs: vec![Some(1), Some(2), Some(1)],
            refused: None
        }))
    );
}

#[test]
fn one_bad_message_refuses_the_whole_batch() {
    let mut c = Cluster::new(1);
    let deep = "[".repeat(100) + &"]".repeat(100);
    let long = "x".repeat(300);
    for (msgs, index, code) in [
        (vec![("a", "1"), ("a..b", "2")], 1, ErrCode::BadTopic),
        (vec![("a", deep.as_str())], 0, ErrCode::BadJson),
        (
            vec![("a", "1"), ("b", "2"), (&*long, "3")],
            2,
            ErrCode::BadTopic,
        ),
    ] {
        match c.publish_batch(0, 1, &msgs) {
            Err(BatchError {
                index: i, code: k, ..
            }) => assert_eq!((i, k), (index, code)),
            other => panic!("{other:?}"),
        }
    }
    let big = "x".repeat(2 << 20);
    let e = c.publish_batch(0, 3, &[("a", &big)]).err();
    assert_eq!(e.map(|e| e.code), Some(ErrCode::TooLarge));
    // Nothing of them was numbered: `a` starts at seq 1.
    let out = c.publish_batch(0, 2, &[("a", "0")]);
    assert_eq!(out.map(|o| o.map(|o| o.seqs)), Ok(Some(vec![Some(1)])));
}

#[test]
fn a_full_ring_leaves_exactly_those_messages_unnumbered() {
    let mut c = Cluster::new(2);
    let here = topic_owned_by(0, 2, "o");
    let there = topic_owned_by(1, 2, "o");
    c.hosts[0].full_rings = 0b10;
    let out = c.publish_batch(0, 5, &[(&here, "1"), (&there, "2"), (&here, "3")]);
    let Ok(Some(o)) = out else { panic!("{out:?}") };
    assert_eq!(o.seqs, vec![Some(1), None, Some(2)]);
    assert!(o.refused.is_some_and(|r| r.contains("behind")));
    // The retry, once the ring has room, gets seq 1: nothing was lost or
    // numbered twice.
    c.hosts[0].full_rings = 0;
    assert_eq!(c.publish_batch(0, 6, &[(&there, "2")]), Ok(None));
    c.settle();
    assert_eq!(
        c.brokers[0].take_batches(),
        vec![(
            6,
            BatchOutcome {
                seqs: vec![Some(1)],
                refused: None
            }
        )]
    );
}
