//! Per-address bounds (issue #12): `--max-connections-per-ip` counts a
//! client address's open connections over every shard, and
//! `--max-handshakes-per-ip` its new connections per second; past either,
//! the answer is 429 with `Retry-After`. Clients come from distinct
//! loopback addresses (127.0.0.x), so the broker must know each
//! connection's real peer address for these to pass.

mod common;

use common::wsraw::{bounded, metric, upgrade_request, RawWs};
use common::Broker;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::TcpSocket;

/// Open a TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: &str, to: SocketAddr) -> tokio::net::TcpStream {
    let ip: IpAddr = from.parse().expect("source address");
    let s = TcpSocket::new_v4().expect("socket");
    s.bind(SocketAddr::new(ip, 0)).expect("bind source");
    bounded(10, "connect", s.connect(to))
        .await
        .expect("connect")
}

/// Ask for an upgrade from `from`; the response head and the connection.
async fn upgrade_from(from: &str, to: SocketAddr) -> (String, RawWs) {
    let stream = connect_from(from, to).await;
    RawWs::handshake(stream, &upgrade_request("/ws", &[])).await
}

fn status(head: &str) -> u16 {
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_address_are_counted_over_every_shard() {
    // Two shards: SO_REUSEPORT spreads one address's connections over
    // both, so a per-shard count would let 8 in.
    let b = Broker::start(&["--shards", "2", "--max-connections-per-ip", "4"]);
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..8 {
        let (head, ws) = upgrade_from("127.0.0.2", b.addr).await;
        match status(&head) {
            101 => held.push(ws),
            429 => {
                refused += 1;
                assert!(head.starts_with("HTTP/1.1 429 Too Many Requests"), "{head}");
                assert!(head.contains("Retry-After: 1"), "{head}");
            }
            s => panic!("unexpected answer {s}: {head}"),
        }
    }
    assert_eq!((held.len(), refused), (4, 4));
    // Another address is not affected.
    let (head, _other) = upgrade_from("127.0.0.3", b.addr).await;
    assert_eq!(status(&head), 101, "{head}");
    assert_eq!(
        metric(b.addr, "ringfan_peer_connections_refused_total").await,
        4
    );
    // 127.0.0.2, 127.0.0.3, and 127.0.0.1 whose /metrics request is
    // open while the gauge is rendered.
    assert_eq!(metric(b.addr, "ringfan_peer_addresses_tracked").await, 3);

    // A closed connection frees its place.
    drop(held.pop());
    bounded(10, "a freed place", async {
        loop {
            let (head, ws) = upgrade_from("127.0.0.2", b.addr).await;
            if status(&head) == 101 {
                held.push(ws);
                break;
            }
            assert_eq!(status(&head), 429, "{head}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(held.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_connections_per_address_are_rate_limited() {
    let b = Broker::start(&["--shards", "2", "--max-handshakes-per-ip", "5"]);
    let mut ok = 0;
    let mut refused = 0;
    let start = tokio::time::Instant::now();
    for _ in 0..15 {
        let (head, _ws) = upgrade_from("127.0.0.4", b.addr).await;
        match status(&head) {
            101 => ok += 1,
            429 => {
                refused += 1;
                assert!(head.contains("Retry-After: 1"), "{head}");
                assert!(head.contains("Connection: close"), "{head}");
            }
            s => panic!("unexpected answer {s}: {head}"),
        }
    }
    // A burst of one second's worth, plus what refilled meanwhile (5/s).
    let refill = (start.elapsed().as_secs_f64() * 5.0).ceil() as usize;
    assert!(
        ok >= 5 && ok <= 5 + refill,
        "{ok} accepted in {:?}",
        start.elapsed()
    );
    assert!(refused >= 15 - 5 - refill, "{refused} refused");
    assert_eq!(
        metric(b.addr, "ringfan_peer_rate_refused_total").await,
        refused as u64
    );
    // Other addresses keep their own budget.
    let (head, _ws) = upgrade_from("127.0.0.5", b.addr).await;
    assert_eq!(status(&head), 101, "{head}");
    // After a second the budget is back.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (head, _ws) = upgrade_from("127.0.0.4", b.addr).await;
    assert_eq!(status(&head), 101, "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_limits_one_address_may_open_many() {
    let b = Broker::start(&["--shards", "2"]);
    let mut held = Vec::new();
    for _ in 0..64 {
        let (head, ws) = upgrade_from("127.0.0.6", b.addr).await;
        assert_eq!(status(&head), 101, "{head}");
        held.push(ws);
    }
    assert_eq!(metric(b.addr, "ringfan_peer_addresses_tracked").await, 0);
    assert_eq!(
        metric(b.addr, "ringfan_peer_connections_refused_total").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_address_gauge_sums_right_whichever_shard_adds_or_removes() {
    // An address's entry is added by the shard that accepted its first
    // connection and removed by the one that saw its last close: one
    // shard's gauge goes below zero. Summed with overflow checks (the test
    // build) that made /metrics panic the shard (2 runs of 4 before).
    let b = Broker::start(&["--shards", "2", "--max-connections-per-ip", "100"]);
    for round in 0..6 {
        let from = format!("127.0.2.{}", round + 1);
        let mut held = Vec::new();
        for _ in 0..6 {
            held.push(connect_from(&from, b.addr).await);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        if round % 2 == 1 {
            held.reverse();
        }
        for s in held {
            drop(s);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Only the /metrics request's own address is left.
        let tracked = bounded(
            10,
            "/metrics",
            metric(b.addr, "ringfan_peer_addresses_tracked"),
        )
        .await;
        assert_eq!(tracked, 1, "round {round}");
    }
}
