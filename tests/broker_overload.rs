//! A shard that falls behind, made to happen: with `--mailbox-capacity 2`,
//! a burst of publishes overruns the cross-shard rings. Nothing may then
//! queue without bound, and nothing may be lost silently: every publish gets
//! exactly one answer (ack, or err rate_limited carrying its id), and every
//! acked message reaches the subscriber or is counted as shed.

mod common;

use common::pubsub::{pub_req, Client};
use common::wsraw::{bounded, metric};
use common::Broker;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const TOPICS: usize = 64;
const BURST: u64 = 2000;

fn topic(i: u64) -> String {
    format!("t.{}", i % TOPICS as u64)
}

/// Publish once on every topic and wait for each to arrive, so that both
/// owners know of the subscriber's interest before the burst. Returns the
/// last seq seen per topic.
async fn probe(p: &mut Client, s: &mut Client) -> BTreeMap<String, u64> {
    let mut last = BTreeMap::new();
    for i in 0..TOPICS as u64 {
        let t = topic(i);
        // The interest mail may still be on its way: retry until it lands.
        for attempt in 0.. {
            assert!(attempt < 50, "probe on {t} never arrived");
            p.send(pub_req(&t, "\"probe\"", None)).await;
            if let Ok(text) = tokio::time::timeout(Duration::from_millis(200), s.recv_text()).await
            {
                let m = common::pubsub::parse_msg(&text);
                assert_eq!(m.topic, t);
                last.insert(t.clone(), m.seq);
                break;
            }
        }
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_mailbox_refuses_or_sheds_and_says_so() {
    let b = Broker::start(&["--shards", "2", "--mailbox-capacity", "2"]);
    let mut s = Client::connect(b.addr).await;
    let mut p = Client::connect(b.addr).await;
    s.sub(&["t.>"], 1).await;
    let mut last = probe(&mut p, &mut s).await;

    // Both ways of overflowing: a publisher on the other shard than a
    // topic's owner is refused; an owner on the other shard than the
    // subscriber sheds. Eight publishers land on both shards (the kernel's
    // SO_REUSEPORT hash) but for 1 time in 128; fresh ones every round.
    let (mut refused_seen, mut shed_seen) = (false, false);
    let mut next_id = 1_000u64;
    for round in 0..5 {
        let refused_before = metric(b.addr, "ringfan_publishes_refused_total").await;
        let shed_before = metric(b.addr, "ringfan_fanout_shed_total").await;

        let mut pubs = Vec::new();
        for _ in 0..8 {
            pubs.push(Client::connect(b.addr).await);
        }
        let mut sent: Vec<Vec<u64>> = Vec::new();
        for q in pubs.iter_mut() {
            let ids: Vec<u64> = (next_id..next_id + BURST / 8).collect();
            next_id += BURST / 8;
            for &id in &ids {
                q.feed(pub_req(&topic(id), &id.to_string(), Some(id))).await;
            }
            sent.push(ids);
        }
        for q in pubs.iter_mut() {
            q.flush().await;
        }

        // Exactly one answer per publish, in order.
        let mut acked = BTreeSet::new();
        let mut refused = BTreeSet::new();
        for (q, ids) in pubs.iter_mut().zip(&sent) {
            for &id in ids {
                let v = q.recv_json().await;
                assert_eq!(v["id"], id, "answers out of order or missing: {v}");
                match v["op"].as_str() {
                    Some("ack") => acked.insert(id),
                    Some("err") => {
                        assert_eq!(v["code"], "rate_limited", "{v}");
                        assert!(v["message"].is_string(), "{v}");
                        refused.insert(id)
                    }
                    _ => panic!("not an answer: {v}"),
                };
            }
        }
        let refused_n = metric(b.addr, "ringfan_publishes_refused_total").await - refused_before;
        assert_eq!(refused_n, refused.len() as u64, "refusals not all counted");

        // Every acked message arrives, or was shed for the subscriber's
        // shard and counted. None twice, none refused, seq rising per topic.
        // Sheds happen on the owner after the ack, so the count settles
        // only once the deliveries have.
        let mut seen = BTreeSet::new();
        let shed = bounded(30, "deliveries after the burst", async {
            loop {
                match tokio::time::timeout(Duration::from_millis(300), s.recv_msg()).await {
                    Ok(m) => {
                        let id: u64 = m.data.parse().expect("data is the publish id");
                        assert!(acked.contains(&id), "delivered a publish never acked: {id}");
                        assert!(seen.insert(id), "delivered twice: {id}");
                        let prev = last.insert(m.topic.clone(), m.seq).unwrap_or(0);
                        assert!(m.seq > prev, "{}: seq {} after {prev}", m.topic, m.seq);
                    }
                    Err(_) => {
                        let shed = metric(b.addr, "ringfan_fanout_shed_total").await - shed_before;
                        let accounted = seen.len() as u64 + shed;
                        assert!(accounted <= acked.len() as u64, "more shed than acked");
                        if accounted == acked.len() as u64 {
                            return shed;
                        }
                    }
                }
            }
        })
        .await;
        eprintln!(
            "round {round}: {} acked, {} refused, {shed} shed",
            acked.len(),
            refused.len()
        );
        refused_seen |= !refused.is_empty();
        shed_seen |= shed > 0;
        if refused_seen && shed_seen {
            break;
        }
    }
    assert!(
        refused_seen,
        "no publish was ever refused by a 2-slot mailbox"
    );
    assert!(shed_seen, "no message was ever shed by a 2-slot mailbox");

    // The broker is still whole: a publish on every topic (so on both
    // owners), one at a time, is acked and delivered.
    for i in 0..TOPICS as u64 {
        let t = topic(i);
        p.send(pub_req(&t, "\"after\"", Some(i))).await;
        p.expect_ack(i).await;
        let m = s.recv_msg().await;
        assert_eq!(
            (m.topic.as_str(), m.data.as_str()),
            (t.as_str(), "\"after\"")
        );
    }
}
