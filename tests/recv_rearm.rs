//! A connection whose receive stopped (every receive buffer in use:
//! ENOBUFS) must get it re-armed even while it is sent to on every turn.
//! One shard with a single receive buffer, so receives keep running out;
//! subscribers under continuous fan-out keep pinging, and every ping must
//! be answered. (A flush that submitted a send once returned before the
//! re-arm: such subscribers went deaf until their ping timeout.)

mod common;

use common::pubsub::{pub_req, Client};
use common::wsraw::{bounded, metric};
use common::Broker;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const SUBSCRIBERS: usize = 8;
const PINGS: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receives_stopped_by_enobufs_are_rearmed_under_fan_out() {
    // Policy drop: subscribers that fall behind under this flood lose
    // messages (fine here) rather than their connection.
    let b = Broker::start(&[
        "--shards",
        "1",
        "--recv-buffers",
        "1",
        "--recv-buffers-max",
        "1",
        "--slow-consumer",
        "drop",
    ]);
    let mut subs = Vec::new();
    for i in 0..SUBSCRIBERS {
        subs.push(Client::subscribed(b.addr, &["rr.a"], i as u64).await);
    }
    let mut p = Client::connect(b.addr).await;
    // As fast as it goes, so that subscribers have data queued at every
    // flush: the case where the re-arm was skipped.
    let publisher = tokio::spawn(async move {
        for i in 0u64.. {
            p.feed(pub_req("rr.a", &i.to_string(), None)).await;
            if i % 64 == 63 {
                p.flush().await;
            }
        }
    });

    // Each subscriber pings while the messages keep coming, and must see
    // every pong (the messages in between are read and skipped).
    let mut tasks = Vec::new();
    for (i, mut s) in subs.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for n in 0..PINGS {
                let tag = format!("{i}-{n}");
                s.ws.send(Message::Ping(tag.clone().into_bytes().into()))
                    .await
                    .expect("ping");
                bounded(2, "pong", async {
                    loop {
                        match s.ws.next().await {
                            Some(Ok(Message::Pong(p))) if p.as_ref() == tag.as_bytes() => break,
                            Some(Ok(Message::Text(_) | Message::Pong(_))) => continue,
                            other => panic!("subscriber {i}: {other:?}"),
                        }
                    }
                })
                .await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("a subscriber stopped being read");
    }
    publisher.abort();
    // The path under test was taken: receives did run out of buffers.
    assert!(metric(b.addr, "ringfan_recv_enobufs_total").await > 0);
}
