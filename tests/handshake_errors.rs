//! Refused handshakes against the real binary: every error is a complete
//! HTTP response with `Connection: close`, after which the server closes
//! the connection; and bad requests never disturb other clients.

mod common;

use common::echo::{close, connect, roundtrip};
use common::with_broker;
use common::wsraw::{self, bounded, upgrade_request, Reply, KEY};
use std::net::SocketAddr;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Error as WsError;

/// Two shards, so that connections land on both.
const ARGS: &[&str] = &["--shards", "2", "--echo"];
const GOOD_ORIGIN_ONLY: &[&str] = &[
    "--shards",
    "2",
    "--echo",
    "--allow-origin",
    "https://good.example",
];
/// The defaults: /echo off.
const DEFAULTS: &[&str] = &["--shards", "2"];
/// The deprecated way of saying the default.
const NO_ECHO: &[&str] = &["--shards", "2", "--no-echo"];

/// A request with the given request line and header lines.
fn request(line: &str, headers: &[&str]) -> String {
    let mut r = format!("{line}\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r
}

const HOST: &str = "Host: test";
const UPGRADE: &str = "Upgrade: websocket";
const CONNECTION: &str = "Connection: Upgrade";
const VERSION: &str = "Sec-WebSocket-Version: 13";

fn key() -> String {
    format!("Sec-WebSocket-Key: {KEY}")
}

/// Send `req` raw; expect `status` with `Connection: close`, a body that
/// matches its Content-Length, and EOF after it (checked by `http_raw`).
async fn expect_status(addr: SocketAddr, req: &[u8], status: u16, what: &str) -> Reply {
    let r = wsraw::http_raw(addr, req).await;
    assert_eq!(r.status, status, "{what}: got {}", r.head);
    assert!(
        r.head.starts_with(&format!("HTTP/1.1 {status} ")),
        "{what}: status line {}",
        r.head
    );
    assert_eq!(
        r.header("connection").map(|v| v.to_ascii_lowercase()),
        Some("close".to_string()),
        "{what}: no Connection: close in {}",
        r.head
    );
    let len: usize = r
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{what}: no Content-Length in {}", r.head));
    assert_eq!(len, r.body.len(), "{what}: body length");
    assert!(
        !r.head.to_ascii_lowercase().contains("sec-websocket-accept"),
        "{what}: an error must not accept: {}",
        r.head
    );
    r
}

async fn echo_works(addr: SocketAddr) {
    let mut ws = connect(addr).await;
    roundtrip(&mut ws, "still serving").await;
    close(ws).await;
}

/// tokio-tungstenite's view of a refused handshake: an Http error carrying
/// the status.
async fn tungstenite_refused(req: impl IntoClientRequest + Unpin, status: u16) {
    match bounded(10, "refused handshake", connect_async(req)).await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status().as_u16(), status),
        Err(e) => panic!("expected an Http {status} error, got {e:?}"),
        Ok((_, resp)) => panic!("expected {status}, upgraded: {resp:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_400() {
    with_broker(ARGS, 40, |addr| async move {
        let k = key();
        let cases: Vec<(&str, String)> = vec![
            (
                "missing Sec-WebSocket-Key",
                request("GET /echo HTTP/1.1", &[HOST, UPGRADE, CONNECTION, VERSION]),
            ),
            (
                "key not base64",
                request(
                    "GET /echo HTTP/1.1",
                    &[
                        HOST,
                        UPGRADE,
                        CONNECTION,
                        VERSION,
                        "Sec-WebSocket-Key: !!not base64!!",
                    ],
                ),
            ),
            (
                "key of 15 bytes",
                request(
                    "GET /echo HTTP/1.1",
                    &[
                        HOST,
                        UPGRADE,
                        CONNECTION,
                        VERSION,
                        "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA",
                    ],
                ),
            ),
            (
                "empty key",
                request(
                    "GET /echo HTTP/1.1",
                    &[HOST, UPGRADE, CONNECTION, VERSION, "Sec-WebSocket-Key: "],
                ),
            ),
            (
                "two keys",
                request(
                    "GET /echo HTTP/1.1",
                    &[HOST, UPGRADE, CONNECTION, VERSION, &k, &k],
                ),
            ),
            (
                "HTTP/1.0",
                request(
                    "GET /echo HTTP/1.0",
                    &[HOST, UPGRADE, CONNECTION, VERSION, &k],
                ),
            ),
            (
                "Connection without upgrade",
                request(
                    "GET /echo HTTP/1.1",
                    &[HOST, UPGRADE, "Connection: keep-alive", VERSION, &k],
                ),
            ),
            (
                "no Connection header",
                request("GET /echo HTTP/1.1", &[HOST, UPGRADE, VERSION, &k]),
            ),
            (
                "missing Host",
                request("GET /echo HTTP/1.1", &[UPGRADE, CONNECTION, VERSION, &k]),
            ),
            ("not HTTP at all", "HELLO THERE\r\n\r\n".to_string()),
            (
                "bad header line",
                "GET /echo HTTP/1.1\r\nno colon here\r\n\r\n".to_string(),
            ),
        ];
        for (what, req) in &cases {
            expect_status(addr, req.as_bytes(), 400, what).await;
        }
        // The same requests all at once, on many connections.
        let tasks: Vec<_> = cases
            .into_iter()
            .flat_map(|c| [c.clone(), c])
            .map(|(what, req)| {
                tokio::spawn(async move {
                    expect_status(addr, req.as_bytes(), 400, what).await;
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
        echo_works(addr).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_not_allowed_gets_403() {
    with_broker(GOOD_ORIGIN_ONLY, 30, |addr| async move {
        for origin in ["https://evil.example", "https://good.example.evil", "null"] {
            let req = upgrade_request("/echo", &[&format!("Origin: {origin}")]);
            expect_status(addr, req.as_bytes(), 403, origin).await;
        }
        // Through tokio-tungstenite: the evil origin is an Http 403 error.
        let mut req = format!("ws://{addr}/echo").into_client_request().unwrap();
        req.headers_mut()
            .insert("Origin", "https://evil.example".parse().unwrap());
        tungstenite_refused(req, 403).await;
        // The good origin and no origin at all (a non-browser client) pass.
        for _ in 0..3 {
            let mut req = format!("ws://{addr}/echo").into_client_request().unwrap();
            req.headers_mut()
                .insert("Origin", "https://good.example".parse().unwrap());
            let (mut ws, resp) = bounded(10, "handshake", connect_async(req))
                .await
                .expect("good origin upgrades");
            assert_eq!(resp.status(), 101);
            roundtrip(&mut ws, "good origin").await;
            close(ws).await;
            echo_works(addr).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_path_gets_404() {
    with_broker(ARGS, 30, |addr| async move {
        for path in ["/nope", "/", "/echo/extra", "/ECHO", "/healthz/x"] {
            let req = upgrade_request(path, &[]);
            expect_status(addr, req.as_bytes(), 404, path).await;
            // And as plain HTTP.
            let req = request(&format!("GET {path} HTTP/1.1"), &[HOST]);
            expect_status(addr, req.as_bytes(), 404, path).await;
        }
        tungstenite_refused(format!("ws://{addr}/nope"), 404).await;
        echo_works(addr).await;
    })
    .await;
}

async fn echo_is_404(addr: SocketAddr, what: &str) {
    for _ in 0..4 {
        let req = upgrade_request("/echo", &[]);
        expect_status(addr, req.as_bytes(), 404, what).await;
        // Plain, too: no 426 hinting that something lives there.
        let req = request("GET /echo HTTP/1.1", &[HOST]);
        expect_status(addr, req.as_bytes(), 404, what).await;
    }
    tungstenite_refused(format!("ws://{addr}/echo"), 404).await;
    // The rest of the server is up.
    let r = wsraw::http_raw(addr, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(r.status, 200);
}

/// /echo takes 16 MiB messages from anyone: off unless `--echo` (before,
/// on by default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_is_off_by_default_and_on_with_the_flag() {
    with_broker(DEFAULTS, 30, |addr| async move {
        echo_is_404(addr, "/echo by default").await;
    })
    .await;
    with_broker(ARGS, 30, |addr| async move {
        echo_works(addr).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deprecated_no_echo_still_starts_with_echo_off() {
    with_broker(NO_ECHO, 30, |addr| async move {
        echo_is_404(addr, "/echo with --no-echo").await;
    })
    .await;
}

/// Two `Host` headers: a proxy in front may route by one while we read
/// the other; RFC 9112 has the server answer 400, for any request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_host_headers_get_400() {
    with_broker(&[], 30, |addr| async move {
        for host in ["Host: other", "host: test"] {
            let req = upgrade_request("/ws", &[host]);
            let r = expect_status(addr, req.as_bytes(), 400, host).await;
            assert_eq!(r.body, b"more than one Host header\n");
        }
        let req = b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n";
        let r = expect_status(addr, req, 400, "healthz").await;
        assert_eq!(r.body, b"more than one Host header\n");
        // One Host still works.
        let req = b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n";
        expect_status(addr, req, 200, "one host").await;
    })
    .await;
}

/// Two `Origin` headers: the allow-list used to judge the last while
/// anything in front of or behind the broker may read the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_origin_headers_get_400() {
    with_broker(GOOD_ORIGIN_ONLY, 30, |addr| async move {
        for pair in [
            [
                "Origin: https://evil.example",
                "Origin: https://good.example",
            ],
            [
                "Origin: https://good.example",
                "origin: https://good.example",
            ],
        ] {
            let req = upgrade_request("/ws", &pair);
            let r = expect_status(addr, req.as_bytes(), 400, pair[0]).await;
            assert_eq!(r.body, b"more than one Origin header\n");
        }
        // One good Origin still upgrades.
        let req = upgrade_request("/ws", &["Origin: https://good.example"]);
        let (head, _ws) = wsraw::RawWs::connect_with(addr, &req).await;
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_gets_405() {
    with_broker(ARGS, 30, |addr| async move {
        let k = key();
        for (what, line) in [
            ("POST /echo", "POST /echo HTTP/1.1"),
            ("PUT /echo", "PUT /echo HTTP/1.1"),
            ("POST /metrics", "POST /metrics HTTP/1.1"),
            ("POST /healthz", "POST /healthz HTTP/1.1"),
        ] {
            let req = request(
                line,
                &[HOST, UPGRADE, CONNECTION, VERSION, &k, "Content-Length: 0"],
            );
            let r = expect_status(addr, req.as_bytes(), 405, what).await;
            assert_eq!(
                r.header("allow").as_deref(),
                Some("GET"),
                "{what}: {}",
                r.head
            );
        }
        echo_works(addr).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_version_or_no_upgrade_gets_426() {
    with_broker(ARGS, 30, |addr| async move {
        let k = key();
        for (what, req) in [
            (
                "version 8",
                request(
                    "GET /echo HTTP/1.1",
                    &[HOST, UPGRADE, CONNECTION, "Sec-WebSocket-Version: 8", &k],
                ),
            ),
            (
                "version 14",
                request(
                    "GET /echo HTTP/1.1",
                    &[HOST, UPGRADE, CONNECTION, "Sec-WebSocket-Version: 14", &k],
                ),
            ),
            (
                "no version",
                request("GET /echo HTTP/1.1", &[HOST, UPGRADE, CONNECTION, &k]),
            ),
        ] {
            let r = expect_status(addr, req.as_bytes(), 426, what).await;
            assert_eq!(
                r.header("sec-websocket-version").as_deref(),
                Some("13"),
                "{what}: {}",
                r.head
            );
        }
        for (what, req) in [
            (
                "missing Upgrade",
                request("GET /echo HTTP/1.1", &[HOST, CONNECTION, VERSION, &k]),
            ),
            (
                "Upgrade: h2c",
                request(
                    "GET /echo HTTP/1.1",
                    &[HOST, "Upgrade: h2c", CONNECTION, VERSION, &k],
                ),
            ),
            ("plain GET /echo", request("GET /echo HTTP/1.1", &[HOST])),
        ] {
            let r = expect_status(addr, req.as_bytes(), 426, what).await;
            assert!(
                r.header("upgrade")
                    .is_some_and(|v| v.eq_ignore_ascii_case("websocket")),
                "{what}: 426 should name the protocol: {}",
                r.head
            );
        }
        let mut req = format!("ws://{addr}/echo").into_client_request().unwrap();
        req.headers_mut()
            .insert("Sec-WebSocket-Version", "8".parse().unwrap());
        tungstenite_refused(req, 426).await;
        echo_works(addr).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_head_gets_431() {
    with_broker(ARGS, 30, |addr| async move {
        let big = format!("X-Big: {}", "a".repeat(9 * 1024));
        let req = upgrade_request("/echo", &[&big]);
        expect_status(addr, req.as_bytes(), 431, "9 KiB header").await;
        // Far over the limit: the server must stop reading, not buffer it.
        let huge = format!("X-Big: {}", "b".repeat(64 * 1024));
        let req = request("GET /echo HTTP/1.1", &[HOST, &huge]);
        expect_status(addr, req.as_bytes(), 431, "64 KiB header").await;
        // Many small headers adding up to more than 8 KiB.
        let many: Vec<String> = (0..200)
            .map(|i| format!("X-H{i}: {}", "v".repeat(40)))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let req = upgrade_request("/echo", &many);
        expect_status(addr, req.as_bytes(), 431, "many headers").await;
        // An unterminated head that keeps growing past 8 KiB.
        let req = format!(
            "GET /echo HTTP/1.1\r\nHost: t\r\nX-Never-Ends: {}",
            "c".repeat(10 * 1024)
        );
        expect_status(addr, req.as_bytes(), 431, "unterminated head").await;
        // Just under the limit is fine.
        let ok = format!("X-Pad: {}", "p".repeat(7 * 1024));
        let req = upgrade_request("/echo", &[&ok]);
        let (head, _ws) = wsraw::RawWs::connect_with(addr, &req).await;
        assert!(head.starts_with("HTTP/1.1 101 "), "7 KiB head: {head}");
        echo_works(addr).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_never_affects_other_clients() {
    with_broker(GOOD_ORIGIN_ONLY, 40, |addr| async move {
        // Clients that stay open through the storm of bad requests.
        let mut clients = Vec::new();
        for _ in 0..6 {
            clients.push(connect(addr).await);
        }
        let k = key();
        let big = format!("X-Big: {}", "a".repeat(9 * 1024));
        let bad: Vec<(u16, String)> = vec![
            (
                400,
                request("GET /echo HTTP/1.1", &[HOST, UPGRADE, CONNECTION, VERSION]),
            ),
            (400, "\x00\x01\x02\x03 garbage\r\n\r\n".to_string()),
            (
                403,
                upgrade_request("/echo", &["Origin: https://evil.example"]),
            ),
            (404, request("GET /nowhere HTTP/1.1", &[HOST])),
            (
                405,
                request("POST /echo HTTP/1.1", &[HOST, "Content-Length: 0"]),
            ),
            (
                426,
                request(
                    "GET /echo HTTP/1.1",
                    &[HOST, UPGRADE, CONNECTION, "Sec-WebSocket-Version: 8", &k],
                ),
            ),
            (431, request("GET /echo HTTP/1.1", &[HOST, &big])),
        ];
        let mut tasks = Vec::new();
        for round in 0..5 {
            for (status, req) in bad.iter().cloned() {
                tasks.push(tokio::spawn(async move {
                    expect_status(
                        addr,
                        req.as_bytes(),
                        status,
                        &format!("{status} round {round}"),
                    )
                    .await;
                }));
            }
        }
        for (i, ws) in clients.iter_mut().enumerate() {
            roundtrip(ws, format!("during the storm {i}")).await;
        }
        for t in tasks {
            t.await.expect("task");
        }
        // A request head that trickles in a few bytes at a time still
        // upgrades (partial heads are fine).
        {
            use tokio::io::AsyncWriteExt;
            let req = upgrade_request("/echo", &[]);
            let mut s = bounded(10, "connect", tokio::net::TcpStream::connect(addr))
                .await
                .unwrap();
            s.set_nodelay(true).unwrap();
            for chunk in req.as_bytes().chunks(7) {
                s.write_all(chunk).await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            let mut ws = wsraw::RawWs {
                stream: s,
                buf: Vec::new(),
            };
            let head = ws.read_head().await;
            assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        }
        for (i, ws) in clients.iter_mut().enumerate() {
            roundtrip(ws, format!("after the storm {i}")).await;
        }
        for ws in clients {
            close(ws).await;
        }
        echo_works(addr).await;
        let rejected = wsraw::metric(addr, "ringfan_handshakes_rejected_total").await;
        assert_eq!(rejected, 5 * bad.len() as u64, "handshakes_rejected_total");
    })
    .await;
}
