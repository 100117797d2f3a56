//! `--write-delay-ms`: data is held so that one send carries many messages,
//! while control frames are not held. Against the real binary, one shard so
//! that its send counter is this test's alone.

mod common;

use common::pubsub::{pub_req, Client};
use common::wsraw::{bounded, metric};
use common::Broker;
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// ~150-byte frames: 20 of them are 3 KB, over the 1 KiB queue limit.
fn data(i: u64) -> String {
    format!("\"{}{i}\"", "x".repeat(100))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_data_goes_out_in_one_send_and_pongs_go_first() {
    // A queue limit below what the window holds: held data is not a slow
    // consumer's backlog, so the policy (disconnect) must not fire.
    let b = Broker::start(&[
        "--shards",
        "1",
        "--write-delay-ms",
        "2000",
        "--max-queued-bytes",
        "1024",
    ]);
    let mut s = Client::connect(b.addr).await;
    let mut p = Client::connect(b.addr).await;
    s.sub(&["wd.a"], 1).await;

    // 20 publishes spread over ~100 ms, well inside one 2 s window.
    // Without the delay each would be its own send.
    let sends_before = metric(b.addr, "ringfan_sends_total").await;
    for i in 1..=20 {
        p.send(pub_req("wd.a", &data(i), None)).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The data is held: a ping's pong overtakes it.
    s.ws.send(Message::Ping(b"now".to_vec().into()))
        .await
        .expect("ping");
    let first = bounded(5, "pong", s.ws.next()).await;
    assert!(
        matches!(&first, Some(Ok(Message::Pong(p))) if p.as_ref() == b"now"),
        "expected the pong before held data, got {first:?}"
    );
    for i in 1..=20u64 {
        let m = s.recv_msg().await;
        assert_eq!((m.seq, m.data.as_str()), (i, data(i).as_str()));
    }
    let sends = metric(b.addr, "ringfan_sends_total").await - sends_before;
    // The pong's send may carry some of the data with it; the rest waits
    // for the window. Nothing else was sent in between.
    assert!(sends <= 4, "20 held messages took {sends} sends");
}
