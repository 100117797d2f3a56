//! Closing, against the real binary: the close handshake, the close codes
//! for protocol violations, peers that vanish, and graceful shutdown.

mod common;

use common::echo::{connect, roundtrip, Ws};
use common::wsraw::{
    self, bounded, close_body, encode, masked, RawWs, OP_BINARY, OP_CLOSE, OP_CONT, OP_PING,
    OP_TEXT,
};
use common::{with_broker, Broker};
use futures_util::StreamExt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// Two shards, so that connections land on both.
const ARGS: &[&str] = &["--shards", "2", "--echo"];
const ECHO_LIMIT_1000: &[&str] = &["--shards", "2", "--echo", "--max-message-echo", "1000"];

const MASK: [u8; 4] = [0xa1, 0xb2, 0xc3, 0xd4];

async fn raw_roundtrip(ws: &mut RawWs, text: &str) {
    ws.send(&masked(OP_TEXT, text.as_bytes())).await;
    let f = ws.frame().await;
    assert_eq!((f.opcode, f.payload.as_slice()), (OP_TEXT, text.as_bytes()));
}

/// Upgrade raw, prove the connection works, send `bytes`, and expect a
/// close frame with `code` followed by EOF.
async fn violation(addr: SocketAddr, what: &str, bytes: &[u8], code: u16) {
    let mut ws = RawWs::connect(addr, "/echo").await;
    raw_roundtrip(&mut ws, "before").await;
    ws.send(bytes).await;
    let f = ws
        .read_frame()
        .await
        .unwrap_or_else(|| panic!("{what}: EOF without a close frame (expected close {code})"));
    assert_eq!(
        f.opcode, OP_CLOSE,
        "{what}: expected close {code}, got {f:?}"
    );
    assert!(
        f.fin && !f.masked && f.rsv == 0,
        "{what}: bad close frame {f:?}"
    );
    assert_eq!(
        f.close_code(),
        Some(code),
        "{what}: close frame {f:?} reason {:?}",
        String::from_utf8_lossy(&f.payload[2.min(f.payload.len())..])
    );
    if let Some(extra) = ws.read_frame().await {
        panic!("{what}: expected EOF after the close, got {extra:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_close_is_echoed_then_eof() {
    with_broker(ARGS, 30, |addr| async move {
        for code in [1000u16, 1001, 3000, 4999] {
            for _ in 0..2 {
                let mut ws = RawWs::connect(addr, "/echo").await;
                raw_roundtrip(&mut ws, "hi").await;
                ws.send(&masked(OP_CLOSE, &close_body(code, "bye now")))
                    .await;
                ws.expect_close(code).await;
            }
        }
        // An empty close gets an empty close back.
        let mut ws = RawWs::connect(addr, "/echo").await;
        ws.send(&masked(OP_CLOSE, b"")).await;
        let f = ws.frame().await;
        assert_eq!((f.opcode, f.payload.len()), (OP_CLOSE, 0), "{f:?}");
        ws.expect_eof().await;
        // (Each raw client is dropped, closing our side, once done: the
        // server waits for that EOF before it releases the connection.)
        drop(ws);
        // Data after our close is ignored: the close answer, then EOF.
        let mut ws = RawWs::connect(addr, "/echo").await;
        let mut bytes = masked(OP_CLOSE, &close_body(1000, ""));
        bytes.extend(masked(OP_TEXT, b"too late"));
        ws.send(&bytes).await;
        ws.expect_close(1000).await;
        drop(ws);
        // tokio-tungstenite's view.
        for i in 0..4 {
            let mut ws = connect(addr).await;
            roundtrip(&mut ws, format!("client {i}")).await;
            bounded(
                10,
                "close",
                ws.close(Some(CloseFrame {
                    code: CloseCode::Normal,
                    reason: "done here".into(),
                })),
            )
            .await
            .expect("close");
            match bounded(10, "close reply", ws.next()).await {
                Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::Normal),
                other => panic!("expected close 1000, got {other:?}"),
            }
            assert!(
                bounded(10, "end of stream", ws.next()).await.is_none(),
                "stream should end after the close handshake"
            );
        }
        wsraw::wait_metric(addr, "ringfan_connections_open", 1, Duration::from_secs(5)).await;
    })
    .await;
}

/// A completed close handshake releases the connection at once: the
/// server closes its socket after its close frame without waiting for the
/// client's EOF (RFC 6455 §7.1.1: the server closes first). A close after a
/// protocol violation still half-closes and reads on until the client's
/// EOF, so input the client had in flight cannot turn it into a reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_close_handshake_releases_without_the_clients_eof() {
    let args = &["--shards", "2", "--echo", "--close-timeout", "30"];
    with_broker(args, 30, |addr| async move {
        let mut done = Vec::new();
        for code in [1000u16, 1001] {
            let mut ws = RawWs::connect(addr, "/echo").await;
            raw_roundtrip(&mut ws, "hi").await;
            ws.send(&masked(OP_CLOSE, &close_body(code, ""))).await;
            ws.expect_close(code).await;
            // Kept open on our side: no FIN from us.
            done.push(ws);
        }
        // Only the /metrics request itself, long before --close-timeout.
        wsraw::wait_metric(addr, "ringfan_connections_open", 1, Duration::from_secs(5)).await;
        // A violation's close lingers until our EOF.
        let mut bad = RawWs::connect(addr, "/echo").await;
        raw_roundtrip(&mut bad, "before").await;
        bad.send(&masked(0x3, b"reserved opcode")).await;
        let f = bad.frame().await;
        assert_eq!((f.opcode, f.close_code()), (OP_CLOSE, Some(1002)), "{f:?}");
        bad.expect_eof().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            wsraw::metric(addr, "ringfan_connections_open").await,
            2,
            "the failed connection waits for our EOF"
        );
        drop(bad);
        wsraw::wait_metric(addr, "ringfan_connections_open", 1, Duration::from_secs(5)).await;
        drop(done);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_close_payloads() {
    with_broker(ARGS, 30, |addr| async move {
        for code in [1005u16, 999, 1006, 1015, 0, 1016, 2999, 5000, 65535] {
            let what = format!("close code {code}");
            violation(addr, &what, &masked(OP_CLOSE, &close_body(code, "")), 1002).await;
        }
        violation(
            addr,
            "1-byte close payload",
            &masked(OP_CLOSE, &[0x03]),
            1002,
        )
        .await;
        let mut bad_reason = close_body(1000, "");
        bad_reason.extend_from_slice(&[0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xff]);
        violation(
            addr,
            "invalid UTF-8 reason",
            &masked(OP_CLOSE, &bad_reason),
            1007,
        )
        .await;
        wsraw::wait_metric(addr, "ringfan_connections_open", 1, Duration::from_secs(5)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_violations_get_1002() {
    with_broker(ARGS, 30, |addr| async move {
        let start_fragment = encode(false, 0, OP_TEXT, b"part", Some(MASK));
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("unmasked text", encode(true, 0, OP_TEXT, b"hello", None)),
            ("unmasked ping", encode(true, 0, OP_PING, b"", None)),
            ("reserved opcode 0x3", encode(true, 0, 0x3, b"", Some(MASK))),
            (
                "reserved opcode 0x7",
                encode(true, 0, 0x7, b"x", Some(MASK)),
            ),
            ("reserved opcode 0xB", encode(true, 0, 0xB, b"", Some(MASK))),
            (
                "reserved opcode 0xF",
                encode(true, 0, 0xF, b"x", Some(MASK)),
            ),
            ("RSV1", encode(true, 1 << 2, OP_TEXT, b"x", Some(MASK))),
            ("RSV2", encode(true, 1 << 1, OP_BINARY, b"x", Some(MASK))),
            ("RSV3", encode(true, 1, OP_TEXT, b"x", Some(MASK))),
            (
                "RSV1 on ping",
                encode(true, 1 << 2, OP_PING, b"", Some(MASK)),
            ),
            (
                "fragmented ping",
                encode(false, 0, OP_PING, b"", Some(MASK)),
            ),
            (
                "ping of 126 bytes",
                encode(true, 0, OP_PING, &[0; 126], Some(MASK)),
            ),
            (
                "continuation without a start",
                encode(true, 0, OP_CONT, b"x", Some(MASK)),
            ),
            ("new message inside a fragmented one", {
                let mut v = start_fragment.clone();
                v.extend(encode(true, 0, OP_TEXT, b"new", Some(MASK)));
                v
            }),
            ("64-bit length with the top bit", {
                let mut v = vec![0x82, 0xff];
                v.extend_from_slice(&(1u64 << 63).to_be_bytes());
                v.extend_from_slice(&MASK);
                v
            }),
        ];
        for (what, bytes) in &cases {
            violation(addr, what, bytes, 1002).await;
        }
        wsraw::wait_metric(addr, "ringfan_connections_open", 1, Duration::from_secs(5)).await;
        let errors = wsraw::metric(addr, "ringfan_protocol_errors_total").await;
        assert_eq!(errors, cases.len() as u64, "protocol_errors_total");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_text_gets_1007() {
    with_broker(ARGS, 30, |addr| async move {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("0xff", masked(OP_TEXT, b"abc\xffdef")),
            ("overlong", masked(OP_TEXT, b"\xc0\xaf")),
            ("surrogate", masked(OP_TEXT, b"\xed\xa0\x80")),
            ("truncated at the end", masked(OP_TEXT, b"euro \xe2\x82")),
            ("in a second fragment", {
                let mut v = encode(false, 0, OP_TEXT, "κόσμε".as_bytes(), Some(MASK));
                v.extend(encode(true, 0, OP_CONT, b"\xf5\x80", Some(MASK)));
                v
            }),
            ("truncated across the last fragment", {
                let mut v = encode(false, 0, OP_TEXT, b"ok \xe2", Some(MASK));
                v.extend(encode(true, 0, OP_CONT, b"\x82", Some(MASK)));
                v
            }),
        ];
        for (what, bytes) in &cases {
            violation(addr, what, bytes, 1007).await;
        }
        // A large text message whose bad byte is near the end.
        let mut big = "a".repeat(300_000).into_bytes();
        big[299_990] = 0xff;
        violation(addr, "bad byte at 299990", &masked(OP_TEXT, &big), 1007).await;
        // Invalid UTF-8 in a binary message is fine.
        let mut ws = RawWs::connect(addr, "/echo").await;
        ws.send(&masked(OP_BINARY, b"\xff\xfe")).await;
        assert_eq!(ws.frame().await.payload, b"\xff\xfe");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_over_the_limit_gets_1009_before_its_payload() {
    with_broker(ECHO_LIMIT_1000, 30, |addr| async move {
        for (op, len) in [
            (OP_BINARY, 1001usize),
            (OP_TEXT, 2000),
            (OP_BINARY, 1 << 30),
        ] {
            let mut ws = RawWs::connect(addr, "/echo").await;
            raw_roundtrip(&mut ws, "before").await;
            // Only the header (with its mask key): the payload never goes.
            let frame = encode(true, 0, op, &vec![0u8; len.min(70_000)], Some(MASK));
            let header_len = if len <= 0xffff { 8 } else { 14 };
            let mut header = frame[..header_len].to_vec();
            if len > 0xffff {
                header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            }
            ws.send(&header).await;
            ws.expect_close(1009).await;
        }
        // Fragments that only add up to more than the limit.
        let mut ws = RawWs::connect(addr, "/echo").await;
        ws.send(&encode(false, 0, OP_BINARY, &[1; 600], Some(MASK)))
            .await;
        ws.send(&encode(true, 0, OP_CONT, &[2; 600], Some(MASK)))
            .await;
        ws.expect_close(1009).await;
        drop(ws);
        // Exactly the limit is fine, whole or in fragments.
        let mut ws = RawWs::connect(addr, "/echo").await;
        ws.send(&masked(OP_BINARY, &[7; 1000])).await;
        assert_eq!(ws.frame().await.payload, vec![7; 1000]);
        let mut bytes = encode(false, 0, OP_BINARY, &[8; 500], Some(MASK));
        bytes.extend(encode(true, 0, OP_CONT, &[8; 500], Some(MASK)));
        ws.send(&bytes).await;
        assert_eq!(ws.frame().await.payload, vec![8; 1000]);
        wsraw::wait_metric(addr, "ringfan_connections_open", 2, Duration::from_secs(5)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanishing_peers_leave_nothing_behind() {
    let mut b = with_broker(ARGS, 40, |addr| async move {
        // Clients that must keep working throughout.
        let mut keep = Vec::new();
        for _ in 0..4 {
            keep.push(connect(addr).await);
        }
        // The four plus the /metrics request itself.
        let baseline = 4 + 1;
        wsraw::wait_metric(
            addr,
            "ringfan_connections_open",
            baseline,
            Duration::from_secs(5),
        )
        .await;

        let half_frame = || {
            let f = masked(OP_TEXT, &[b'z'; 1000]);
            f[..f.len() / 2].to_vec()
        };
        for round in 0..8 {
            // Half a frame, then a normal close of the socket (FIN).
            let mut ws = RawWs::connect(addr, "/echo").await;
            ws.send(&half_frame()).await;
            drop(ws);
            // Gone right after the handshake.
            drop(RawWs::connect(addr, "/echo").await);
            // Half a frame, then a reset (SO_LINGER 0).
            let mut ws = RawWs::connect(addr, "/echo").await;
            ws.send(&half_frame()).await;
            socket2::SockRef::from(&ws.stream)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(ws);
            // Reset right after the handshake, with the server's reply
            // still unread.
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(wsraw::upgrade_request("/echo", &[]).as_bytes())
                .await
                .unwrap();
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(s);
            // Half a request head, then gone.
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\nUpg")
                .await
                .unwrap();
            drop(s);
            // Connected, said nothing, gone.
            drop(tokio::net::TcpStream::connect(addr).await.unwrap());
            // A reset while the server is still sending a big echo to a
            // peer that does not read it.
            if round % 2 == 0 {
                let mut ws = RawWs::connect(addr, "/echo").await;
                ws.send(&masked(OP_BINARY, &vec![5u8; 4 << 20])).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                socket2::SockRef::from(&ws.stream)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
                drop(ws);
            }
            for (i, ws) in keep.iter_mut().enumerate() {
                roundtrip(ws, format!("round {round} client {i}")).await;
            }
        }
        wsraw::wait_metric(
            addr,
            "ringfan_connections_open",
            baseline,
            Duration::from_secs(10),
        )
        .await;
        for (i, ws) in keep.iter_mut().enumerate() {
            roundtrip(ws, format!("after client {i}")).await;
        }
        // New connections work too.
        let mut ws = connect(addr).await;
        roundtrip(&mut ws, "newcomer").await;
    })
    .await;
    assert!(
        b.child.try_wait().expect("try_wait").is_none(),
        "the server exited"
    );
}

/// Read a tungstenite client until the server's close; its code.
async fn await_server_close(mut ws: Ws) -> Option<u16> {
    let code = loop {
        match ws.next().await {
            Some(Ok(Message::Close(f))) => break f.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    // tungstenite answered the close; the server then ends the stream.
    while let Some(m) = ws.next().await {
        if let Err(e) = m {
            panic!("error after the close: {e}");
        }
    }
    code
}

/// One task per client, each reading until the server's close (within
/// 10 s); the close codes.
fn spawn_close_readers(clients: Vec<Ws>) -> Vec<tokio::task::JoinHandle<Option<u16>>> {
    clients
        .into_iter()
        .map(|ws| tokio::spawn(bounded(10, "server close", await_server_close(ws))))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_clients_with_1001_and_exits_0() {
    let mut b = Broker::start(&["--shards", "2", "--echo", "--drain-timeout", "2"]);
    let addr = b.addr;
    let mut clients = Vec::new();
    bounded(20, "connect", async {
        for i in 0..8 {
            let mut ws = connect(addr).await;
            roundtrip(&mut ws, format!("before shutdown {i}")).await;
            clients.push(ws);
        }
        wsraw::wait_metric(
            addr,
            "ringfan_connections_open",
            8 + 1,
            Duration::from_secs(5),
        )
        .await;
    })
    .await;
    let readers = spawn_close_readers(clients);
    let t0 = Instant::now();
    b.terminate();
    for r in readers {
        assert_eq!(
            r.await.expect("reader"),
            Some(1001),
            "close code on SIGTERM"
        );
    }
    let status = tokio::task::block_in_place(|| b.wait_exit(Duration::from_secs(10)))
        .expect("the server did not exit after SIGTERM");
    let took = t0.elapsed();
    assert!(status.success(), "exit status {status:?}");
    // Every client answered at once, so the drain ends well before its
    // timeout (2 s; the timers tick every 200 ms).
    assert!(took < Duration::from_secs(2), "drain took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_unresponsive_clients_exits_within_the_drain_timeout() {
    let mut b = Broker::start(&["--shards", "2", "--echo", "--drain-timeout", "2"]);
    let addr = b.addr;
    let mut raws = Vec::new();
    let mut good = Vec::new();
    bounded(20, "connect", async {
        for _ in 0..4 {
            let mut ws = RawWs::connect(addr, "/echo").await;
            raw_roundtrip(&mut ws, "x").await;
            raws.push(ws);
            good.push(connect(addr).await);
        }
    })
    .await;
    let readers = spawn_close_readers(good);
    let t0 = Instant::now();
    b.terminate();
    // The raw clients get the close and never answer it.
    bounded(10, "closes", async {
        for ws in &mut raws {
            let f = ws.frame().await;
            assert_eq!(f.opcode, OP_CLOSE, "{f:?}");
            assert_eq!(f.close_code(), Some(1001), "{f:?}");
        }
    })
    .await;
    for r in readers {
        assert_eq!(r.await.expect("reader"), Some(1001));
    }
    let status = tokio::task::block_in_place(|| b.wait_exit(Duration::from_secs(10)))
        .expect("the server did not exit after SIGTERM");
    let took = t0.elapsed();
    assert!(status.success(), "exit status {status:?}");
    // The drain timeout is 2 s, with up to a tick and a second of timer
    // granularity on top.
    assert!(took < Duration::from_secs(4), "drain took {took:?}");
    // The unresponsive clients' connections are gone: EOF or a reset.
    for mut ws in raws {
        let mut buf = [0u8; 64];
        let r = bounded(
            5,
            "connection end",
            tokio::io::AsyncReadExt::read(&mut ws.stream, &mut buf),
        )
        .await;
        assert!(matches!(r, Ok(0) | Err(_)), "still open after exit: {r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_503_while_draining() {
    let b = Broker::start(&["--shards", "2", "--echo", "--drain-timeout", "3"]);
    let addr = b.addr;
    // Clients that never answer the server's close keep the drain going.
    let mut raws = Vec::new();
    bounded(10, "connect", async {
        for _ in 0..4 {
            raws.push(RawWs::connect(addr, "/echo").await);
        }
        let r = wsraw::http_raw(addr, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").await;
        assert_eq!((r.status, r.body.as_slice()), (200, &b"ok\n"[..]));
    })
    .await;
    b.terminate();
    bounded(5, "the drain's close frames", async {
        for ws in &mut raws {
            assert_eq!(ws.frame().await.close_code(), Some(1001));
        }
    })
    .await;
    // protocol.md: "GET /healthz: 200 ok while the broker accepts
    // connections, 503 while draining".
    let r = bounded(
        2,
        "a /healthz answer while draining",
        wsraw::http_raw(addr, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"),
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.head);
}
