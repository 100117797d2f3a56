//! What one client can make a shard hold, bounded (issue #12): a client
//! that sends but never reads is held back (its input is not read while
//! its answers pile up) and gets every answer once it reads; an unfinished
//! message trickled in is closed 1008; idle TCP connections cannot take
//! the slots `/healthz` needs. Small limits via flags, so each runs in a
//! few seconds.

mod common;

use common::pubsub::pub_req;
use common::wsraw::{
    bounded, encode, masked, metric, parse, RawWs, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT,
};
use common::{http_get, rss_kib, Broker};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PINGS: usize = 100_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_held_back_then_gets_every_pong() {
    // 64 KiB is ~1,000 queued pongs (2 bytes + 64 of overhead each); the
    // hard limit of 1 MiB would close the flooder if reading went on.
    let b = Broker::start(&[
        "--shards",
        "1",
        "--max-backlog-read",
        "65536",
        "--max-backlog-bytes",
        "1048576",
    ]);
    let pid = b.child.id();
    let rss_before = rss_kib(pid);
    let ws = RawWs::connect(b.addr, "/ws").await;
    let (mut rd, mut wr) = ws.stream.into_split();
    let writer = tokio::spawn(async move {
        let ping = masked(OP_PING, b"");
        let chunk: Vec<u8> = ping.repeat(10_000);
        for _ in 0..PINGS / 10_000 {
            wr.write_all(&chunk).await.expect("write pings");
        }
        wr
    });

    // The broker stops reading the flooder instead of queueing its pongs.
    bounded(20, "reading paused", async {
        while metric(b.addr, "ringfan_recv_paused_total").await == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    // Others are still served meanwhile.
    let mut other = RawWs::connect(b.addr, "/ws").await;
    other.send(&masked(OP_PING, b"hi")).await;
    let f = other.frame().await;
    assert_eq!((f.opcode, &f.payload[..]), (OP_PONG, &b"hi"[..]));
    let addr = b.addr;
    let (status, _) = tokio::task::spawn_blocking(move || http_get(addr, "/healthz"))
        .await
        .expect("healthz");
    assert_eq!(status, 200);
    let grew_mib = rss_kib(pid).saturating_sub(rss_before) / 1024;
    assert!(grew_mib < 32, "RSS grew {grew_mib} MiB while flooded");

    // Once the flooder reads, it gets every pong: backpressure, not loss,
    // not a close.
    let mut buf = Vec::new();
    let mut pongs = 0;
    bounded(60, "every pong", async {
        let mut chunk = vec![0u8; 64 * 1024];
        while pongs < PINGS {
            let n = rd.read(&mut chunk).await.expect("read pongs");
            assert!(n > 0, "EOF after {pongs} pongs");
            buf.extend_from_slice(&chunk[..n]);
            let mut off = 0;
            while let Some((f, used)) = parse(&buf[off..]) {
                assert_ne!(f.opcode, OP_CLOSE, "closed after {pongs} pongs: {f:?}");
                assert_eq!(f.opcode, OP_PONG);
                pongs += 1;
                off += used;
            }
            buf.drain(..off);
        }
    })
    .await;
    bounded(20, "writer done", writer).await.expect("writer");
    assert!(metric(b.addr, "ringfan_recv_paused_total").await >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_message_trickled_in_is_closed_1008() {
    let b = Broker::start(&[
        "--shards",
        "1",
        "--min-recv-rate",
        "1000",
        "--min-recv-rate-pending",
        "4096",
    ]);
    // The trickler: 8 KiB of a 64 KiB frame, then 20 bytes every 200 ms
    // (100 bytes/s, under 1000).
    let mut slow = RawWs::connect(b.addr, "/ws").await;
    let frame = encode(
        true,
        0,
        OP_BINARY,
        &vec![7u8; 64 * 1024],
        Some([1, 2, 3, 4]),
    );
    slow.send(&frame[..8 * 1024]).await;
    // A fast one holding as much, at 16 KiB/s, finishes and is answered.
    let mut fast = RawWs::connect(b.addr, "/ws").await;
    let data = format!("\"{}\"", "x".repeat(60 * 1024));
    let publish = encode(
        true,
        0,
        OP_TEXT,
        pub_req("t", &data, Some(1)).as_bytes(),
        Some([5, 6, 7, 8]),
    );
    let fast_task = tokio::spawn(async move {
        for part in publish.chunks(1600) {
            fast.send(part).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let f = fast.frame().await;
        assert_eq!(f.opcode, OP_TEXT, "{f:?}");
        let v: serde_json::Value = serde_json::from_slice(&f.payload).expect("json");
        assert_eq!(
            (v["op"].as_str(), v["id"].as_u64()),
            (Some("ack"), Some(1)),
            "{v}"
        );
    });

    let start = tokio::time::Instant::now();
    let mut off = 8 * 1024;
    let closed = bounded(20, "the trickler closed", async {
        loop {
            tokio::select! {
                n = slow.stream.read_buf(&mut slow.buf) => {
                    if n.expect("read") == 0 {
                        return None;
                    }
                    if let Some((f, _)) = parse(&slow.buf) {
                        return Some(f);
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    let end = (off + 20).min(frame.len());
                    // The server may have closed already: ignore errors.
                    let _ = slow.stream.write_all(&frame[off..end]).await;
                    off = end;
                }
            }
        }
    })
    .await
    .expect("a close frame before EOF");
    assert_eq!(closed.opcode, OP_CLOSE, "{closed:?}");
    assert_eq!(closed.close_code(), Some(1008));
    assert_eq!(&closed.payload[2..], b"receive too slow");
    let took = start.elapsed();
    assert!(took < Duration::from_secs(12), "closed after {took:?}");
    bounded(30, "fast publisher answered", fast_task)
        .await
        .expect("fast publisher");
    assert_eq!(metric(b.addr, "ringfan_recv_too_slow_total").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_while_idle_tcp_fills_the_table() {
    // 60 idle TCP connections against a 40-slot table: before, they held
    // every slot for the 10 s handshake timeout and /healthz failed.
    let b = Broker::start(&["--shards", "1", "--max-connections-per-shard", "40"]);
    let addr = b.addr;
    let idle: Vec<std::net::TcpStream> = (0..60)
        .map(|_| std::net::TcpStream::connect(addr).expect("connect"))
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = std::time::Instant::now();
    let (status, body) = tokio::task::spawn_blocking(move || http_get(addr, "/healthz"))
        .await
        .expect("healthz");
    assert_eq!(status, 200, "{body}");
    let took = start.elapsed();
    assert!(took < Duration::from_secs(5), "/healthz took {took:?}");
    assert!(metric(b.addr, "ringfan_handshakes_shed_total").await > 0);
    drop(idle);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_past_the_cap_close_the_oldest() {
    let b = Broker::start(&["--shards", "1", "--max-handshakes-per-shard", "4"]);
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(
            tokio::net::TcpStream::connect(b.addr)
                .await
                .expect("connect"),
        );
        // In order: accepts are FIFO, and so is the shedding.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    // The four oldest are closed (EOF or reset), the four newest are not.
    for (i, s) in idle.iter_mut().enumerate() {
        let mut byte = [0u8; 1];
        let r = tokio::time::timeout(Duration::from_millis(500), s.read(&mut byte)).await;
        match (i < 4, r) {
            (true, Ok(Ok(0)) | Ok(Err(_))) => {}
            (false, Err(_)) => {}
            (old, r) => panic!("connection {i} (oldest: {old}): {r:?}"),
        }
    }
    // At least those four (this request is one more handshake).
    assert!(metric(b.addr, "ringfan_handshakes_shed_total").await >= 4);
    // The newest still complete their handshake.
    let mut s = idle.pop().expect("one");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    let mut out = String::new();
    bounded(10, "healthz", s.read_to_string(&mut out))
        .await
        .expect("read");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_handshakes_on_a_full_but_roomy_table_are_not_shed() {
    // 320 of 400 slots open (over 3/4), 80 free: ten clients whose
    // requests come 1.5 s after connecting (a storm's clients on a busy
    // machine) cannot take the free slots, so nothing is shed. Before,
    // 3/4 full alone made every handshake over 1 s old go.
    let b = Broker::start(&["--shards", "1", "--max-connections-per-shard", "400"]);
    let mut open = Vec::new();
    for _ in 0..320 {
        open.push(RawWs::connect(b.addr, "/ws").await);
    }
    let mut slow = Vec::new();
    for _ in 0..10 {
        slow.push(
            tokio::net::TcpStream::connect(b.addr)
                .await
                .expect("connect"),
        );
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for s in slow {
        // A new connection after the wait keeps the shedding check busy.
        let _extra = tokio::net::TcpStream::connect(b.addr).await;
        RawWs::upgrade(s, "/ws").await;
    }
    assert_eq!(metric(b.addr, "ringfan_handshakes_shed_total").await, 0);
}
