//! Per-connection request rates (protocol.md, "Request rates") against the
//! real binary: requests past a connection's bucket get `rate_limited`
//! with their id, change nothing, and are counted; other connections are
//! not affected.

mod common;

use common::pubsub::{pub_req, Client};
use common::with_broker;

/// Send `n` requests built by `req(id)` in one flush, then read the `n`
/// replies: (ids acked, ids refused with rate_limited).
async fn burst(c: &mut Client, n: u64, req: impl Fn(u64) -> String) -> (Vec<u64>, Vec<u64>) {
    for id in 0..n {
        c.feed(req(id)).await;
    }
    c.flush().await;
    let (mut acked, mut refused) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let v = c.recv_json().await;
        let id = v["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("reply without id: {v}"));
        match v["op"].as_str() {
            Some("ack") => acked.push(id),
            Some("err") => {
                assert_eq!(v["code"], "rate_limited", "{v}");
                refused.push(id);
            }
            _ => panic!("unexpected {v}"),
        }
    }
    (acked, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_past_the_connection_rate_are_refused_with_their_id() {
    // 5 a second after a burst of 5: 50 publishes sent at once (well
    // within a second) get ~5 acks, however slow the machine.
    let args = ["--shards", "2", "--max-pub-rate", "5", "--pub-burst", "5"];
    let b = with_broker(&args, 30, |addr| async move {
        let mut sub = Client::subscribed(addr, &["rate.t"], 1).await;
        let mut c = Client::connect(addr).await;
        let (acked, refused) = burst(&mut c, 50, |id| pub_req("rate.t", "1", Some(id))).await;
        assert!(
            (5..=10).contains(&acked.len()),
            "acked {acked:?}, refused {refused:?}"
        );
        assert_eq!(acked[..5], [0, 1, 2, 3, 4], "the burst goes first");
        // Exactly the acked ones were numbered: seq 1.. with no gap.
        for seq in 1..=acked.len() as u64 {
            assert_eq!(sub.recv_msg().await.seq, seq);
        }
        // Another connection has its own bucket.
        let mut other = Client::connect(addr).await;
        other.send(pub_req("rate.t", "2", Some(7))).await;
        other.expect_ack(7).await;
    })
    .await;
    assert!(b.metric("ringfan_requests_rate_limited_total") >= 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_churn_past_the_default_rate_is_refused() {
    // Defaults: 1,000 patterns a second after a burst of 10,000. 100
    // requests of 500 patterns each (50,000) in one go: the first 20 or so
    // use up the burst (each may go below zero), the rest are refused.
    let b = with_broker(&["--shards", "2"], 30, |addr| async move {
        let mut c = Client::connect(addr).await;
        let (acked, refused) = burst(&mut c, 100, |id| {
            let topics: Vec<String> = (0..500).map(|k| format!("churn.{id}.{k}")).collect();
            let op = if id % 2 == 0 { "sub" } else { "unsub" };
            serde_json::json!({"op": op, "topics": topics, "id": id}).to_string()
        })
        .await;
        assert!(
            (20..=40).contains(&acked.len()),
            "acked {} requests: {acked:?}",
            acked.len()
        );
        assert!(!refused.is_empty());
        // A refused sub subscribed nothing: publishing to its topics
        // reaches no one, while an acked one streams.
        let refused_sub = refused.iter().copied().find(|id| id % 2 == 0);
        let acked_sub = acked
            .iter()
            .copied()
            .find(|id| id % 2 == 0)
            .expect("a sub acked");
        let mut p = Client::connect(addr).await;
        if let Some(r) = refused_sub {
            p.send(pub_req(&format!("churn.{r}.0"), "0", Some(1))).await;
            p.expect_ack(1).await;
        }
        p.send(pub_req(&format!("churn.{acked_sub}.0"), "1", Some(2)))
            .await;
        p.expect_ack(2).await;
        let m = c.recv_msg().await;
        assert_eq!(m.topic, format!("churn.{acked_sub}.0"), "{}", m.text);
    })
    .await;
    assert!(b.metric("ringfan_requests_rate_limited_total") >= 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_wait_for_a_full_mailbox_instead_of_growing_its_backlog() {
    // One slot per ring: a wildcard sub mails the other shard twice
    // (interest, then the request), so the second waits in the backlog
    // and the next sub read in the same turn is refused.
    let args = ["--shards", "2", "--mailbox-capacity", "1"];
    let b = with_broker(&args, 30, |addr| async move {
        let mut c = Client::connect(addr).await;
        let (acked, refused) = burst(&mut c, 50, |id| {
            serde_json::json!({"op": "sub", "topic": format!("mb.{id}.>"), "id": id}).to_string()
        })
        .await;
        assert!(
            !acked.is_empty() && !refused.is_empty(),
            "{acked:?} {refused:?}"
        );
        // Refused, not lost: retried, it goes through once the mail moved.
        let r = refused[0];
        let mut done = false;
        for attempt in 0..100 {
            let id = 1000 + attempt;
            let req = serde_json::json!({"op": "sub", "topic": format!("mb.{r}.>"), "id": id});
            c.send(req.to_string()).await;
            let v = c.recv_json().await;
            if v["op"] == "ack" {
                done = true;
                break;
            }
            assert_eq!(v["code"], "rate_limited", "{v}");
            assert!(
                v["message"].as_str().unwrap_or("").contains("behind"),
                "{v}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(done, "never subscribed");
        // The subscription is in force. With one mailbox slot a delivery
        // can still be shed under load (overload shedding, counted), so
        // publish until one arrives rather than count on the first.
        let mut p = Client::connect(addr).await;
        let mut got = None;
        for id in 1..=20 {
            p.send(pub_req(&format!("mb.{r}.x"), "1", Some(id))).await;
            p.expect_ack(id).await;
            let wait = std::time::Duration::from_millis(500);
            if let Ok(m) = tokio::time::timeout(wait, c.recv_msg()).await {
                got = Some(m);
                break;
            }
        }
        let m = got.expect("no publish reached the subscription");
        assert_eq!(m.topic, format!("mb.{r}.x"));
    })
    .await;
    assert!(b.metric("ringfan_subs_refused_total") >= 1);
}
