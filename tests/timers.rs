//! Connection deadlines against the real binary: the handshake timeout and
//! the idle ping / pong timeout. The server's timers have one-second
//! granularity (see `src/runtime/timer.rs`), so every bound here has a
//! second or two of slack.

mod common;

use common::echo::connect;
use common::with_broker;
use common::wsraw::{self, bounded, RawWs, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// Connections must finish their handshake within 1 s.
const HANDSHAKE_1S: &[&str] = &["--shards", "2", "--echo", "--handshake-timeout", "1"];
/// Idle ping after 1 s of silence, close 1 s after an unanswered ping.
const PING_1S: &[&str] = &[
    "--shards",
    "2",
    "--echo",
    "--idle-ping",
    "1",
    "--pong-timeout",
    "1",
];
/// The same with the handshake timeout as short as the idle ping.
const PING_1S_HANDSHAKE_1S: &[&str] = &[
    "--shards",
    "2",
    "--echo",
    "--idle-ping",
    "1",
    "--pong-timeout",
    "1",
    "--handshake-timeout",
    "1",
];

/// Read until the server closes `s`; how long that took. Panics on a
/// reset, on data, or if it stays open for `within`.
async fn closed_within(s: &mut TcpStream, within: Duration, what: &str) -> Duration {
    let t0 = Instant::now();
    let mut buf = [0u8; 1024];
    let n = bounded(within.as_secs() + 1, what, async {
        tokio::time::timeout(within, s.read(&mut buf)).await
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: still open after {within:?}"))
    .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(n, 0, "{what}: got data instead of EOF: {:?}", &buf[..n]);
    t0.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_timeout_closes_silent_connections() {
    with_broker(HANDSHAKE_1S, 20, |addr| async move {
        // An upgraded client is past the handshake deadline: it stays.
        let mut upgraded = connect(addr).await;
        let t0 = Instant::now();
        let mut silent = Vec::new();
        for _ in 0..6 {
            silent.push(TcpStream::connect(addr).await.expect("connect"));
        }
        // Half a request head, then nothing more.
        let mut partial = TcpStream::connect(addr).await.expect("connect");
        partial
            .write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        silent.push(partial);
        // A head trickling in too slowly to finish in time.
        let mut slow = TcpStream::connect(addr).await.expect("connect");
        let trickle = tokio::spawn(async move {
            for byte in wsraw::upgrade_request("/echo", &[]).bytes() {
                if slow.write_all(&[byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            slow
        });
        for (i, s) in silent.iter_mut().enumerate() {
            closed_within(s, Duration::from_secs(3), &format!("silent connection {i}")).await;
        }
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
        let mut slow = trickle.await.unwrap();
        let mut buf = [0u8; 256];
        let r = bounded(5, "slow head's connection", slow.read(&mut buf)).await;
        assert!(matches!(r, Ok(0) | Err(_)), "slow head was served: {r:?}");

        // The upgraded client outlives the handshake deadline.
        let left = Duration::from_secs(3).saturating_sub(t0.elapsed());
        tokio::time::sleep(left).await;
        upgraded.send(Message::text("alive")).await.expect("send");
        match bounded(5, "echo", upgraded.next()).await {
            Some(Ok(m)) => assert_eq!(m, Message::text("alive")),
            other => panic!("upgraded client lost: {other:?}"),
        }
        let timeouts = wsraw::metric(addr, "ringfan_timeouts_total").await;
        assert!(timeouts >= 8, "timeouts_total {timeouts}");
        // Only the upgraded client (and this /metrics request) remain.
        wsraw::wait_metric(addr, "ringfan_connections_open", 2, Duration::from_secs(3)).await;
    })
    .await;
}

/// A raw client upgrades and then never sends a byte: it must get a ping
/// within about `idle_ping`, and once `pong_timeout` passes unanswered, a
/// close frame and EOF.
async fn unanswered_ping_closes(addr: SocketAddr) {
    let mut tasks = Vec::new();
    for i in 0..4 {
        tasks.push(tokio::spawn(async move {
            let mut ws = RawWs::connect(addr, "/echo").await;
            let t0 = Instant::now();
            let ping = bounded(4, "the idle ping", ws.frame()).await;
            let pinged = t0.elapsed();
            assert_eq!(
                ping.opcode, OP_PING,
                "client {i}: expected a ping, got {ping:?}"
            );
            assert!(
                ping.fin && !ping.masked && ping.payload.len() <= 125,
                "{ping:?}"
            );
            // idle-ping 1 s, one second of timer granularity, a tick.
            assert!(
                pinged < Duration::from_secs(3),
                "client {i}: ping after {pinged:?}"
            );
            let close = bounded(4, "the close after the pong timeout", ws.frame()).await;
            let closed = t0.elapsed() - pinged;
            assert_eq!(
                close.opcode, OP_CLOSE,
                "client {i}: expected a close, got {close:?}"
            );
            let code = close.close_code().expect("a close code");
            assert!(
                matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999),
                "client {i}: close code {code} may not go on the wire"
            );
            assert!(
                closed < Duration::from_secs(3),
                "client {i}: closed {closed:?} after the ping"
            );
            bounded(4, "EOF after the close", ws.expect_eof()).await;
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }
    wsraw::wait_metric(addr, "ringfan_connections_open", 1, Duration::from_secs(5)).await;
}

/// Tungstenite clients (which answer pings while `next()` is polled) stay
/// open for over 4 s of silence, and are pinged along the way.
async fn answering_clients_stay_open(addr: SocketAddr) {
    let mut tasks = Vec::new();
    for i in 0..4 {
        tasks.push(tokio::spawn(async move {
            let mut ws = connect(addr).await;
            let until = tokio::time::Instant::now() + Duration::from_millis(4500);
            let mut pings = 0;
            loop {
                match tokio::time::timeout_at(until, ws.next()).await {
                    Err(_) => break, // 4.5 s passed, still open
                    Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
                    Ok(other) => panic!("client {i}: connection ended: {other:?}"),
                }
            }
            // Pinged every second or two of silence, and each answered.
            assert!(pings >= 2, "client {i}: only {pings} pings in 4.5 s");
            ws.send(Message::text("still open")).await.expect("send");
            loop {
                match bounded(5, "echo", ws.next()).await {
                    Some(Ok(Message::Ping(_))) => continue,
                    Some(Ok(m)) => {
                        assert_eq!(m, Message::text("still open"));
                        break;
                    }
                    other => panic!("client {i}: {other:?}"),
                }
            }
            ws.close(None).await.expect("close");
        }));
    }
    // A raw client that answers each ping with its pong stays open too.
    let raw = tokio::spawn(async move {
        let mut ws = RawWs::connect(addr, "/echo").await;
        let until = Instant::now() + Duration::from_millis(4500);
        let mut pings = 0;
        while Instant::now() < until {
            let left = until - Instant::now();
            let Ok(f) = tokio::time::timeout(left, ws.frame()).await else {
                break;
            };
            assert_eq!(f.opcode, OP_PING, "raw client: {f:?}");
            pings += 1;
            ws.send(&wsraw::masked(OP_PONG, &f.payload)).await;
        }
        assert!(pings >= 2, "raw client: only {pings} pings in 4.5 s");
        ws.send(&wsraw::masked(OP_TEXT, b"raw still open")).await;
        loop {
            let f = ws.frame().await;
            if f.opcode != OP_PING {
                assert_eq!(
                    (f.opcode, f.payload.as_slice()),
                    (OP_TEXT, &b"raw still open"[..])
                );
                break;
            }
        }
    });
    for t in tasks {
        t.await.expect("client task");
    }
    raw.await.expect("raw client task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_ping_closes_the_connection() {
    with_broker(PING_1S, 20, unanswered_ping_closes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_answer_pings_stay_open() {
    with_broker(PING_1S, 20, answering_clients_stay_open).await;
}

// The same two, with the handshake timeout as short as the idle ping, so
// that the handshake deadline and the first idle ping fall due together.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_ping_closes_the_connection_short_handshake_timeout() {
    with_broker(PING_1S_HANDSHAKE_1S, 20, unanswered_ping_closes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_answer_pings_stay_open_short_handshake_timeout() {
    with_broker(PING_1S_HANDSHAKE_1S, 20, answering_clients_stay_open).await;
}

/// A client that only answers pings is pinged every `--idle-ping`, even
/// with a longer `--pong-timeout`: a proxy in front that cuts connections
/// silent for twice the idle ping must never see one. (It was pinged once
/// per pong timeout: every 10 s here.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_come_every_idle_ping_whatever_the_pong_timeout() {
    let args = ["--echo", "--idle-ping", "1", "--pong-timeout", "10"];
    with_broker(&args, 20, |addr| async move {
        let mut ws = RawWs::connect(addr, "/echo").await;
        let t0 = Instant::now();
        let mut pings = 0;
        while t0.elapsed() < Duration::from_secs(6) {
            let f = ws.frame().await;
            assert_eq!(f.opcode, OP_PING, "{f:?}");
            pings += 1;
            ws.send(&wsraw::masked(OP_PONG, &f.payload)).await;
        }
        // One a second (the timer wheel's 100 ms steps add a little).
        assert!(pings >= 4, "{pings} pings in {:?}", t0.elapsed());
    })
    .await;
}
