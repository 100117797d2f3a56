//! The broker's subscribe → owner replies → snapshot → ack sequence, with
//! no sockets: several shards' brokers over the fake host of [`super::sim`],
//! so every interleaving of the real runtime can be played in a chosen
//! order.

use super::config::BrokerConfig;
use super::sim::{summary, topic_owned_by, Cluster};
use serde_json::json;

#[test]
fn snapshot_comes_before_the_ack_and_the_live_stream_continues_from_it() {
    let mut cl = Cluster::new(2);
    let t = topic_owned_by(1, 2, "md");
    let publisher = cl.connect(0);
    let sub = cl.connect(0);
    cl.publish(publisher, &t, 1);
    cl.publish(publisher, &t, 2);
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
    cl.publish(publisher, &t, 3);
    cl.settle();
    assert_eq!(summary(&cl.received(sub)), [format!("msg {t} 3")]);
}

#[test]
fn a_publish_the_owner_numbers_before_the_request_is_in_the_snapshot_not_lost() {
    let mut cl = Cluster::new(2);
    let t = topic_owned_by(1, 2, "md");
    let owner_side = cl.connect(1);
    let sub = cl.connect(0);
    cl.publish(owner_side, &t, 1);
    cl.send(
        sub,
        json!({"op": "sub", "topics": [&t], "id": 1, "snapshot": true}),
    );
    // The owner publishes again before it reads the interest and the
    // request: shard 0 gets no live copy, so the snapshot must carry it.
    cl.publish(owner_side, &t, 2);
    cl.settle();
    assert_eq!(
        summary(&cl.received(sub)),
        [format!("snap {t} 2"), "ack 1".into()]
    );
    cl.publish(owner_side, &t, 3);
    cl.settle();
    assert_eq!(summary(&cl.received(sub)), [format!("msg {t} 3")]);
}

#[test]
fn a_wildcard_asks_every_owner_and_acks_once_all_answered() {
    let mut cl = Cluster::new(3);
    let publisher = cl.connect(2);
    let topics: Vec<String> = (0..3).map(|o| topic_owned_by(o, 3, "w")).collect();
    for t in &topics {
        cl.publish(publisher, t, 1);
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
    cl.publish(publisher, &t, 1);
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
    cl.publish(publisher, &t, 2);
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
    cl.publish(publisher, &t, 1);
    cl.settle();
    cl.send(
        sub,
        json!({"op": "sub", "topics": ["a.*"], "id": 2, "snapshot": true}),
    );
    cl.send(sub, json!({"op": "unsub", "topics": [&t]}));
    // The owner publishes seq 2 before it reads the request: the live copy
    // reaches shard 0 ahead of the snapshot and must not be lost.
    cl.publish(publisher, &t, 2);
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
    cl.publish(publisher, &u, 1);
    cl.send(sub, json!({"op": "sub", "topics": [&t], "id": 1}));
    cl.settle();
    cl.publish(publisher, &t, 1);
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
    cl.publish(publisher, &t, 2);
    cl.settle();
    assert_eq!(summary(&cl.received(sub)), [format!("msg {t} 2")]);
}

#[test]
fn a_snapshot_for_a_pattern_unsubscribed_meanwhile_is_not_sent() {
    let mut cl = Cluster::new(2);
    let t = topic_owned_by(1, 2, "x");
    let publisher = cl.connect(1);
    let sub = cl.connect(0);
    cl.publish(publisher, &t, 1);
    cl.settle();
    cl.send(
        sub,
        json!({"op": "sub", "topics": [&t], "id": 1, "snapshot": true}),
    );
    cl.send(sub, json!({"op": "unsub", "topics": [&t], "id": 2}));
    cl.settle();
    assert_eq!(summary(&cl.received(sub)), ["ack 1", "ack 2"]);
    cl.publish(publisher, &t, 2);
    cl.settle();
    assert_eq!(summary(&cl.received(sub)), Vec::<String>::new());
}

#[test]
fn a_new_subscription_does_not_start_with_a_delivery_older_than_its_owners_answer() {
    // Found by the broker fuzzer. c0 subscribes and publishes seq 1, then
    // leaves, so the shard's interest in t is dropped; seq 2 is published
    // with no interest; c1 subscribes (interest again) and seq 3 follows.
    // Seq 1, still on its way under c0's interest, must not reach c1: it
    // would see 1 then 3, a gap in messages it never subscribed to.
    let mut cl = Cluster::new(2);
    let t = topic_owned_by(1, 2, "h");
    let c0 = cl.connect(0);
    cl.send(c0, json!({"op": "sub", "topics": [&t]}));
    cl.publish(c0, &t, 1);
    cl.close(c0);
    let c1 = cl.connect(0);
    cl.publish(c1, &t, 2);
    cl.send(c1, json!({"op": "sub", "topics": [&t]}));
    cl.publish(c1, &t, 3);
    cl.settle();
    assert_eq!(summary(&cl.received(c1)), [format!("msg {t} 3")]);
}

#[test]
fn what_a_dropped_pending_snapshot_carried_is_carried_on() {
    // Found by the broker fuzzer: t streams through `>`; a pending `t`
    // carries `>` when `>` is dropped; a pending `a.>` starts; then `t` is
    // dropped too. `a.>`'s snapshot must not send t's seq 1 again. (Two
    // snapshots in flight at once: above the default per connection.)
    let config = BrokerConfig {
        max_snapshots_per_conn: 4,
        ..BrokerConfig::default()
    };
    let mut cl = Cluster::with(2, config);
    let t = topic_owned_by(1, 2, "a");
    let c = cl.connect(0);
    cl.publish(c, &t, 1);
    cl.send(
        c,
        json!({"op": "sub", "topics": [">"], "id": 1, "snapshot": true}),
    );
    cl.settle();
    assert_eq!(
        summary(&cl.received(c)),
        [format!("snap {t} 1"), "ack 1".into()]
    );
    cl.send(
        c,
        json!({"op": "sub", "topics": [&t], "id": 2, "snapshot": true}),
    );
    cl.send(c, json!({"op": "unsub", "topics": [">"], "id": 3}));
    cl.send(
        c,
        json!({"op": "sub", "topics": ["a.>"], "id": 4, "snapshot": true}),
    );
    cl.send(c, json!({"op": "unsub", "topics": [&t], "id": 5}));
    cl.settle();
    assert_eq!(
        summary(&cl.received(c)),
        ["ack 2", "ack 3", "ack 4", "ack 5"]
    );
    cl.publish(c, &t, 2);
    cl.settle();
    assert_eq!(summary(&cl.received(c)), [format!("msg {t} 2")]);
}

#[test]
fn an_idle_subscriber_is_small_and_its_spare_state_goes_once_at_rest() {
    // 344 bytes with everything inline; 48 with the spare state boxed; 40
    // with the pattern a pointer to the shard's one copy and its trie
    // position kept in the padding beside it. The broker's table holds
    // an `Option` of one per slot: the niche keeps that 40 too.
    let size = std::mem::size_of::<Option<super::subscriber::Subscriber>>();
    assert!(
        size <= 40,
        "Subscriber grew to {size} bytes: every idle connection holds one"
    );
    let mut cl = Cluster::new(2);
    let t = topic_owned_by(1, 2, "md");
    let publisher = cl.connect(1);
    let sub = cl.connect(0);
    cl.publish(publisher, &t, 1);
    cl.settle();
    cl.send(
        sub,
        json!({"op": "sub", "topics": [&t], "id": 1, "snapshot": true}),
    );
    // Waiting on the owner: the snapshot request and its ack are spare
    // state, which a tick must not drop, however much later.
    cl.hosts[0].now_ms = 60_000;
    cl.tick(0);
    let more = |cl: &mut Cluster| cl.brokers[0].state(sub.1).map(|s| s.has_more());
    assert_eq!(more(&mut cl), Some(true));
    cl.settle();
    assert_eq!(
        summary(&cl.received(sub)),
        [format!("snap {t} 1"), "ack 1".into()]
    );
    // Answered, and its sub bucket long refilled: back to its small
    // size on the next tick...
    cl.tick(0);
    assert_eq!(more(&mut cl), Some(false));
    // (A bucket just used is not full: the tick keeps it.)
    cl.send(sub, json!({"op": "sub", "topics": ["x"]}));
    cl.settle();
    cl.tick(0);
    assert_eq!(more(&mut cl), Some(true));
    cl.hosts[0].now_ms = 61_000;
    cl.tick(0);
    assert_eq!(more(&mut cl), Some(false));
    // ...still subscribed, and still in request order and rate.
    cl.publish(publisher, &t, 2);
    cl.settle();
    assert_eq!(summary(&cl.received(sub)), [format!("msg {t} 2")]);
    cl.send(sub, json!({"op": "sub", "topics": ["other"], "id": 2}));
    cl.settle();
    assert_eq!(summary(&cl.received(sub)), ["ack 2"]);
    cl.send(
        sub,
        json!({"op": "unsub", "topics": [&t, "other", "x"], "id": 3}),
    );
    cl.settle();
    assert_eq!(summary(&cl.received(sub)), ["ack 3"]);
}
