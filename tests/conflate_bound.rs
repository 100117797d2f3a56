//! Policy conflate holds one message per topic for a subscriber that does
//! not read, but topics are unbounded: what it holds is capped by
//! --max-queued-bytes, past which it is closed 1008 "slow consumer"
//! (protocol.md, "Slow consumers"). Against the real binary, with a
//! subscriber to `>` that never reads and a publisher on ever new topics.

mod common;

use common::pubsub::{pub_req, Client};
use common::wsraw::{bounded, masked, RawWs, OP_CLOSE, OP_TEXT};
use common::{rss_kib, Broker};
use tokio::net::TcpSocket;

/// Distinct topics published, ~1 KiB each: 20 MiB in all if every one
/// were held, 300 times the 64 KiB cap.
const TOPICS: u64 = 20_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflating_subscriber_over_many_topics_is_closed_not_grown() {
    let b = Broker::start(&[
        "--shards",
        "2",
        "--slow-consumer",
        "conflate",
        "--max-queued-bytes",
        "65536",
        "--socket-send-buffer",
        "4096",
        "--close-timeout",
        "30",
        // The publisher creates 20,000 topics at once: past the default
        // new-topic budget, which is not what this test is about.
        "--max-new-topics-per-conn",
        "100000",
    ]);
    let addr = b.addr;
    bounded(60, "test", async {
        // Never reads after its ack; a small receive buffer so the server's
        // queue, not the kernel, holds what it does not read.
        let sock = TcpSocket::new_v4().expect("socket");
        sock.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let stream = sock.connect(addr).await.expect("connect");
        let mut stalled = RawWs::upgrade(stream, "/ws").await;
        stalled
            .send(&masked(OP_TEXT, br#"{"op":"sub","topic":">","id":1}"#))
            .await;
        assert_eq!(stalled.frame().await.payload, br#"{"op":"ack","id":1}"#);

        let rss_before = rss_kib(b.child.id());
        let mut p = Client::connect(addr).await;
        let data = format!(r#""{}""#, "x".repeat(1000));
        for n in 0..TOPICS {
            p.feed(pub_req(&format!("many.t{n}"), &data, Some(n))).await;
            if n % 64 == 63 {
                p.flush().await;
                // Stay within a window of acks: the publisher is never
                // the slow one.
                for id in n - 63..=n {
                    p.expect_ack(id).await;
                }
            }
        }
        // Most of it is the owners' last values (~20 MiB), not the
        // subscriber's: for the record only.
        let rss_growth = rss_kib(b.child.id()).saturating_sub(rss_before);
        eprintln!("RSS grew {rss_growth} KiB over {TOPICS} topics");

        // Read what reached the subscriber, then its close.
        let mut msgs = 0;
        let code = loop {
            let f = stalled.frame().await;
            match f.opcode {
                OP_TEXT => msgs += 1,
                OP_CLOSE => break f.close_code(),
                op => panic!("opcode {op}"),
            }
        };
        assert_eq!(code, Some(1008), "after {msgs} messages");
        assert!(msgs < TOPICS / 10, "{msgs} messages reached it");
    })
    .await;
    assert_eq!(b.metric("ringfan_conflate_overflows_total"), 1);
}
