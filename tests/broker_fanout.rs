//! Frame once: one publish to a topic with 10,000 subscribers (spread over
//! both shards) is framed exactly once and queued on every subscriber.

mod common;

use common::pubsub::{open_subscribers, pub_req, Client};
use common::wsraw::{bounded, metric, wait_metric};
use common::Broker;
use futures_util::StreamExt;
use std::time::{Duration, Instant};

const SUBSCRIBERS: usize = 10_000;
/// Handshakes (and subscriptions) in flight at once.
const IN_FLIGHT: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_publish_to_10000_subscribers_is_framed_once() {
    let b = Broker::start(&["--shards", "2"]);
    let t0 = Instant::now();
    let subs = bounded(
        60,
        "opening the subscribers",
        open_subscribers(b.addr, SUBSCRIBERS, IN_FLIGHT, &["fan.out"]),
    )
    .await;
    let opened = t0.elapsed();
    assert_eq!(subs.len(), SUBSCRIBERS);
    wait_metric(
        b.addr,
        "ringfan_subscriptions",
        SUBSCRIBERS as u64,
        Duration::from_secs(10),
    )
    .await;
    let frames = metric(b.addr, "ringfan_frames_built_total").await;
    let deliveries = metric(b.addr, "ringfan_deliveries_total").await;
    let publishes = metric(b.addr, "ringfan_publishes_total").await;
    let mail = metric(b.addr, "ringfan_mail_received_total").await;
    assert_eq!((frames, deliveries, publishes), (0, 0, 0));

    let data = r#"{"to":"everyone","n":[1,2,3]}"#;
    let mut p = Client::connect(b.addr).await;
    let t1 = Instant::now();
    p.send(pub_req("fan.out", data, Some(1))).await;
    p.expect_ack(1).await;
    let want = format!(r#"{{"op":"msg","topic":"fan.out","seq":1,"data":{data}}}"#);
    let received = futures_util::stream::iter(subs)
        .map(|mut c| {
            let want = want.clone();
            async move {
                let m = c.recv_msg().await;
                assert_eq!(m.text, want);
                c
            }
        })
        .buffer_unordered(1000)
        .collect::<Vec<Client>>();
    let subs = bounded(30, "every subscriber receiving", received).await;
    let delivered = t1.elapsed();
    assert_eq!(subs.len(), SUBSCRIBERS);

    assert_eq!(metric(b.addr, "ringfan_publishes_total").await, 1);
    assert_eq!(metric(b.addr, "ringfan_frames_built_total").await, 1);
    assert_eq!(
        metric(b.addr, "ringfan_deliveries_total").await,
        SUBSCRIBERS as u64
    );
    // The subscribers were on both shards: the frame crossed to the shard
    // that does not own the topic, and was still built only once.
    assert!(
        metric(b.addr, "ringfan_mail_received_total").await > mail,
        "no cross-shard delivery"
    );
    eprintln!(
        "opened {SUBSCRIBERS} subscribers in {opened:?}; one publish reached all in {delivered:?}"
    );
    drop(subs);
}
