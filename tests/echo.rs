//! `/echo` against the real binary with real clients: message kinds and
//! sizes, fragmentation, many concurrent connections, ping/pong, the
//! subprotocol, and the counters on `/metrics`.

mod common;

use common::echo::{close, connect, next, roundtrip};
use common::with_broker;
use common::wsraw::{self, bounded, RawWs, OP_BINARY, OP_CONT, OP_PING, OP_PONG, OP_TEXT};
use futures_util::SinkExt;
use std::time::Duration;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::{Bytes, Message};

/// Two shards, so that connections land on both.
const ARGS: &[&str] = &["--shards", "2", "--echo"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_stays_text_binary_stays_binary() {
    with_broker(ARGS, 30, |addr| async move {
        // Several connections so both shards serve some.
        for i in 0..6 {
            let mut ws = connect(addr).await;
            roundtrip(&mut ws, Message::text(format!("hello {i} ✓ ünïcödé"))).await;
            roundtrip(&mut ws, Message::binary(vec![0u8, 1, 2, 0xff, 0xfe, i])).await;
            // Binary that happens to be valid UTF-8 stays binary, and text
            // that looks like JSON stays text.
            roundtrip(&mut ws, Message::binary(b"plain ascii".to_vec())).await;
            roundtrip(&mut ws, Message::text(r#"{"op":"pub"}"#)).await;
            close(ws).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_messages() {
    with_broker(ARGS, 30, |addr| async move {
        for _ in 0..4 {
            let mut ws = connect(addr).await;
            roundtrip(&mut ws, Message::text("")).await;
            roundtrip(&mut ws, Message::binary(Vec::new())).await;
            roundtrip(&mut ws, Message::text("after empty")).await;
            close(ws).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_1_mib_and_10_mib() {
    with_broker(ARGS, 60, |addr| async move {
        let mut clients = Vec::new();
        for _ in 0..2 {
            clients.push(connect(addr).await);
        }
        for (i, ws) in clients.iter_mut().enumerate() {
            let one: Vec<u8> = (0..1 << 20)
                .map(|n: u32| (n * 7 + i as u32) as u8)
                .collect();
            roundtrip(ws, Message::binary(one)).await;
            let text = "0123456789abcdef€".repeat((1 << 20) / 19);
            roundtrip(ws, Message::text(text)).await;
            let ten: Vec<u8> = (0..10u32 << 20).map(|n| (n % 251) as u8).collect();
            roundtrip(ws, Message::binary(ten)).await;
            // Still usable afterwards.
            roundtrip(ws, Message::text("small again")).await;
        }
        for ws in clients {
            close(ws).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_message_comes_back_whole() {
    with_broker(ARGS, 30, |addr| async move {
        for _ in 0..4 {
            let mut ws = connect(addr).await;
            // A text message in three frames, with a two-byte character
            // split across the first boundary and a ping in the middle
            // (control frames may interleave with fragments).
            let whole = "héllo, wörld €€€";
            let bytes = whole.as_bytes();
            let parts = [&bytes[..2], &bytes[2..9], &bytes[9..]];
            let frames = [
                Frame::message(
                    Bytes::copy_from_slice(parts[0]),
                    OpCode::Data(Data::Text),
                    false,
                ),
                Frame::message(
                    Bytes::copy_from_slice(parts[1]),
                    OpCode::Data(Data::Continue),
                    false,
                ),
                Frame::ping(Bytes::from_static(b"mid")),
                Frame::message(
                    Bytes::copy_from_slice(parts[2]),
                    OpCode::Data(Data::Continue),
                    true,
                ),
            ];
            for f in frames {
                bounded(10, "send frame", ws.send(Message::Frame(f)))
                    .await
                    .expect("send frame");
            }
            assert_eq!(
                next(&mut ws).await,
                Message::Pong(Bytes::from_static(b"mid"))
            );
            assert_eq!(next(&mut ws).await, Message::text(whole));

            // A 3 MiB binary message in 1 MiB fragments.
            let big: Vec<u8> = (0..3u32 << 20).map(|n| (n % 253) as u8).collect();
            let chunks: Vec<_> = big.chunks(1 << 20).collect();
            for (i, c) in chunks.iter().enumerate() {
                let op = if i == 0 {
                    OpCode::Data(Data::Binary)
                } else {
                    OpCode::Data(Data::Continue)
                };
                let f = Frame::message(Bytes::copy_from_slice(c), op, i == chunks.len() - 1);
                bounded(10, "send frame", ws.send(Message::Frame(f)))
                    .await
                    .expect("send frame");
            }
            assert!(
                next(&mut ws).await == Message::binary(big),
                "3 MiB reassembly"
            );
            roundtrip(&mut ws, Message::text("unfragmented after")).await;
            close(ws).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_message_raw_frames() {
    with_broker(ARGS, 30, |addr| async move {
        for _ in 0..4 {
            let mut ws = RawWs::connect(addr, "/echo").await;
            let mask = [0x11, 0x22, 0x33, 0x44];
            // Binary in four fragments, one of them empty, all in one write.
            let mut bytes = Vec::new();
            bytes.extend(wsraw::encode(false, 0, OP_BINARY, b"ab", Some(mask)));
            bytes.extend(wsraw::encode(false, 0, OP_CONT, b"", Some(mask)));
            bytes.extend(wsraw::encode(false, 0, OP_CONT, b"cde", Some(mask)));
            bytes.extend(wsraw::encode(true, 0, OP_CONT, b"f", Some(mask)));
            ws.send(&bytes).await;
            let f = ws.frame().await;
            assert_eq!(
                (f.fin, f.opcode, f.masked),
                (true, OP_BINARY, false),
                "{f:?}"
            );
            assert_eq!(f.payload, b"abcdef");

            // Text fragments sent one byte at a time (each read is a
            // partial frame for the server).
            let mut bytes = Vec::new();
            bytes.extend(wsraw::encode(false, 0, OP_TEXT, "€".as_bytes(), Some(mask)));
            bytes.extend(wsraw::encode(true, 0, OP_CONT, "x€".as_bytes(), Some(mask)));
            for byte in &bytes {
                ws.send(std::slice::from_ref(byte)).await;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let f = ws.frame().await;
            assert_eq!((f.fin, f.opcode), (true, OP_TEXT), "{f:?}");
            assert_eq!(f.payload, "€x€".as_bytes());
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_connections_echo_in_order() {
    const CONNS: usize = 200;
    const MSGS: usize = 50;
    with_broker(ARGS, 50, |addr| async move {
        let mut tasks = Vec::new();
        for c in 0..CONNS {
            tasks.push(tokio::spawn(async move {
                let mut ws = connect(addr).await;
                for m in 0..MSGS {
                    let msg = if m % 2 == 0 {
                        Message::text(format!("conn {c} msg {m}"))
                    } else {
                        Message::binary(format!("conn {c} bin {m}").into_bytes())
                    };
                    ws.feed(msg).await.expect("feed");
                }
                ws.flush().await.expect("flush");
                for m in 0..MSGS {
                    let want = if m % 2 == 0 {
                        Message::text(format!("conn {c} msg {m}"))
                    } else {
                        Message::binary(format!("conn {c} bin {m}").into_bytes())
                    };
                    let got = next(&mut ws).await;
                    assert_eq!(got, want, "conn {c} message {m}");
                }
                close(ws).await;
            }));
        }
        for t in tasks {
            t.await.expect("connection task");
        }
        let received = wsraw::metric(addr, "ringfan_messages_received_total").await;
        assert_eq!(received, (CONNS * MSGS) as u64);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_gets_pong_with_same_payload() {
    with_broker(ARGS, 30, |addr| async move {
        for i in 0..4u8 {
            let mut ws = connect(addr).await;
            for payload in [
                Vec::new(),
                b"ping!".to_vec(),
                vec![i; 125], // the largest control payload
            ] {
                let p = Bytes::from(payload);
                ws.send(Message::Ping(p.clone())).await.expect("ping");
                assert_eq!(next(&mut ws).await, Message::Pong(p));
            }
            // A pong from us is ignored (unsolicited pongs are allowed).
            ws.send(Message::Pong(Bytes::from_static(b"unsolicited")))
                .await
                .expect("pong");
            roundtrip(&mut ws, Message::text("still here")).await;
            close(ws).await;
        }
        // And on the wire: the pong is an unmasked final frame, opcode 0xA.
        let mut raw = RawWs::connect(addr, "/echo").await;
        raw.send(&wsraw::masked(OP_PING, b"raw")).await;
        let f = raw.frame().await;
        assert_eq!(
            (f.fin, f.rsv, f.opcode, f.masked),
            (true, 0, OP_PONG, false)
        );
        assert_eq!(f.payload, b"raw");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subprotocol_is_echoed_when_offered() {
    with_broker(ARGS, 30, |addr| async move {
        for offer in ["ringfan.v1", "chat, ringfan.v1", "ringfan.v1, other.v2"] {
            let mut req = format!("ws://{}/echo", addr)
                .into_client_request()
                .expect("request");
            req.headers_mut()
                .insert("Sec-WebSocket-Protocol", offer.parse().unwrap());
            let (mut ws, resp) = bounded(10, "handshake", connect_async(req))
                .await
                .unwrap_or_else(|e| panic!("offer {offer:?}: {e}"));
            assert_eq!(resp.status(), 101);
            let got = resp.headers().get_all("sec-websocket-protocol");
            let got: Vec<_> = got.iter().map(|v| v.to_str().unwrap()).collect();
            assert_eq!(got, ["ringfan.v1"], "offer {offer:?}");
            roundtrip(&mut ws, Message::text("with subprotocol")).await;
            close(ws).await;
        }
        // Offering none is fine: no header comes back.
        let (ws, resp) = bounded(10, "handshake", connect_async(format!("ws://{addr}/echo")))
            .await
            .expect("upgrade");
        assert!(resp.headers().get("sec-websocket-protocol").is_none());
        close(ws).await;
        // Offering only something else: upgraded, without the header.
        let req = wsraw::upgrade_request("/echo", &["Sec-WebSocket-Protocol: other.v2"]);
        let (head, _ws) = RawWs::connect_with(addr, &req).await;
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        assert!(
            !head.to_ascii_lowercase().contains("sec-websocket-protocol"),
            "{head}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_counters_move() {
    with_broker(ARGS, 30, |addr| async move {
        let names = [
            "ringfan_messages_received_total",
            "ringfan_websocket_upgrades_total",
            "ringfan_bytes_received_total",
            "ringfan_bytes_sent_total",
            "ringfan_frames_sent_total",
            "ringfan_connections_accepted_total",
        ];
        let mut before = Vec::new();
        for n in names {
            before.push(wsraw::metric(addr, n).await);
        }
        let mut clients = Vec::new();
        for _ in 0..4 {
            clients.push(connect(addr).await);
        }
        // The four clients plus the /metrics request itself.
        wsraw::wait_metric(addr, "ringfan_connections_open", 4 + 1, Duration::from_secs(5)).await;
        for ws in &mut clients {
            for i in 0..10 {
                roundtrip(ws, Message::text(format!("count me {i}"))).await;
            }
        }
        let want_min = [
            before[0] + 40,
            before[1] + 4,
            before[2] + 40 * 16,
            before[3] + 40 * 10,
            before[4] + 40 + 4,
            before[5] + 4,
        ];
        // Send-side counters move when the kernel's completion is reaped,
        // which may be just after the client saw the bytes: poll briefly.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let mut now = Vec::new();
            for n in names {
                now.push(wsraw::metric(addr, n).await);
            }
            if now.iter().zip(&want_min).all(|(n, w)| n >= w) {
                // Messages are counted exactly: one per message received.
                assert_eq!(now[0], before[0] + 40, "messages_received_total");
                assert_eq!(now[1], before[1] + 4, "websocket_upgrades_total");
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "counters did not move enough: {names:?} before {before:?} now {now:?} want at least {want_min:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for ws in clients {
            close(ws).await;
        }
        wsraw::wait_metric(addr, "ringfan_connections_open", 1, Duration::from_secs(5)).await;
    })
    .await;
}
