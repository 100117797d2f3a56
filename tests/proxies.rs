//! Behind proxies (issue #15), against the real binary over real sockets:
//! `--proxy-protocol` (v1 and v2, plain and TLS) makes the header's
//! source the client for the per-address limits, a connection without a
//! valid header is closed unanswered and counted, and `--trusted-proxy`
//! believes `X-Forwarded-For` from trusted peers only. Every client here
//! connects from 127.0.0.1: a limit that applied to the socket's address
//! would refuse the second connection of each test. (nginx and HAProxy
//! themselves: tests/python/test_proxies.py.)

mod common;

use common::wsraw::{bounded, http_raw, upgrade_request, RawWs};
use common::Broker;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn v1(src: &str, sport: u16) -> Vec<u8> {
    let fam = if src.contains(':') { "TCP6" } else { "TCP4" };
    let dst = if src.contains(':') {
        "::1"
    } else {
        "127.0.0.1"
    };
    format!("PROXY {fam} {src} {dst} {sport} 8080\r\n").into_bytes()
}

/// A v2 PROXY header from `src` (IPv4 or IPv6), with one TLV (ALPN) that
/// must be skipped.
fn v2(src: &str, sport: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.push(0x21);
    let mut body = Vec::new();
    match src.parse::<std::net::IpAddr>().expect("ip") {
        std::net::IpAddr::V4(ip) => {
            h.push(0x11);
            body.extend_from_slice(&ip.octets());
            body.extend_from_slice(&[127, 0, 0, 1]);
        }
        std::net::IpAddr::V6(ip) => {
            h.push(0x21);
            body.extend_from_slice(&ip.octets());
            body.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        }
    }
    body.extend_from_slice(&sport.to_be_bytes());
    body.extend_from_slice(&8080u16.to_be_bytes());
    body.extend_from_slice(&[0x01, 0, 8]);
    body.extend_from_slice(b"http/1.1");
    h.extend_from_slice(&(body.len() as u16).to_be_bytes());
    h.extend_from_slice(&body);
    h
}

fn status(head: &str) -> u16 {
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Connect, send `prefix` then an upgrade request with `extra` headers;
/// the response head and the connection.
async fn upgrade_with(addr: SocketAddr, prefix: &[u8], extra: &[&str]) -> (String, RawWs) {
    let mut stream = bounded(10, "connect", tokio::net::TcpStream::connect(addr))
        .await
        .expect("connect");
    if !prefix.is_empty() {
        bounded(10, "write header", stream.write_all(prefix))
            .await
            .expect("write header");
    }
    RawWs::handshake(stream, &upgrade_request("/ws", extra)).await
}

/// `/metrics` after `prefix` (`PROXY UNKNOWN`: the proxy's own connection,
/// counted under the socket's address, 127.0.0.1). Under
/// `--max-connections-per-ip 1` the previous request's connection may
/// still be counted for a moment after its answer: a 429 is retried.
async fn metric(addr: SocketAddr, prefix: &[u8], name: &str) -> u64 {
    let mut req = prefix.to_vec();
    req.extend_from_slice(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n");
    let r = bounded(10, "/metrics answered", async {
        loop {
            let r = http_raw(addr, &req).await;
            if r.status != 429 {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(r.status, 200, "{}", r.head);
    let body = String::from_utf8_lossy(&r.body);
    // A total over the shard label.
    common::metric_sum(&body, name).unwrap_or_else(|| panic!("metric {name} missing"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_headers_name_the_client_for_per_address_limits() {
    let b = Broker::start(&[
        "--shards",
        "2",
        "--proxy-protocol",
        "--max-connections-per-ip",
        "1",
    ]);
    // v1 from 10.1.1.1: in.
    let (head, a) = upgrade_with(b.addr, &v1("10.1.1.1", 40000), &[]).await;
    assert_eq!(status(&head), 101, "{head}");
    // v2 from the same client through another proxy port: its second.
    let (head, _) = upgrade_with(b.addr, &v2("10.1.1.1", 40001), &[]).await;
    assert_eq!(status(&head), 429, "{head}");
    assert!(head.contains("Retry-After: 1"), "{head}");
    // Other clients, v1 and v2, IPv4 and IPv6, all from 127.0.0.1.
    let mut held = vec![a];
    for h in [
        v2("10.1.1.2", 1),
        v1("2001:db8::7", 2),
        v2("2001:db8:0:1::7", 3),
    ] {
        let (head, ws) = upgrade_with(b.addr, &h, &[]).await;
        assert_eq!(status(&head), 101, "{head}");
        held.push(ws);
    }
    let unknown = b"PROXY UNKNOWN\r\n";
    assert_eq!(
        metric(b.addr, unknown, "ringfan_peer_connections_refused_total").await,
        1
    );
    // Four clients, and 127.0.0.1 (this request, PROXY UNKNOWN).
    assert_eq!(
        metric(b.addr, unknown, "ringfan_peer_addresses_tracked").await,
        5
    );
    // A header split over several receives still counts.
    let mut s = bounded(10, "connect", tokio::net::TcpStream::connect(b.addr))
        .await
        .expect("connect");
    let hdr = v2("10.1.1.3", 9);
    for chunk in hdr.chunks(5) {
        s.write_all(chunk).await.expect("write");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (head, split) = RawWs::handshake(s, &upgrade_request("/ws", &[])).await;
    assert_eq!(status(&head), 101, "{head}");

    // The first client's count is released when it goes, once: it gets
    // back in, and only once.
    drop(held.remove(0));
    bounded(10, "10.1.1.1 released", async {
        loop {
            let (head, ws) = upgrade_with(b.addr, &v1("10.1.1.1", 40002), &[]).await;
            if status(&head) == 101 {
                held.push(ws);
                break;
            }
            assert_eq!(status(&head), 429, "{head}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let (head, _) = upgrade_with(b.addr, &v1("10.1.1.1", 40003), &[]).await;
    assert_eq!(status(&head), 429, "{head}");
    drop(held);
    drop(split);
    // Everything released: only this request's address is left.
    bounded(10, "every count released", async {
        while metric(b.addr, unknown, "ringfan_peer_addresses_tracked").await != 1 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

/// Read until the server closes; the bytes it sent (a reset counts as a
/// close with nothing sent).
async fn until_closed(mut s: tokio::net::TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    match bounded(10, "server closing", s.read_to_end(&mut got)).await {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("not closed: {e}"),
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_a_valid_header_is_closed_unanswered() {
    let b = Broker::start(&["--proxy-protocol", "--handshake-timeout", "30"]);
    let mut bad_v2 = v2("10.0.0.1", 1);
    bad_v2[12] = 0x31; // version 3
    let cases: Vec<Vec<u8>> = vec![
        // A client that went around the proxy.
        upgrade_request("/ws", &[]).into_bytes(),
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"PROXY TCP4 10.0.0.1 10.0.0.2 99999 80\r\nGET / HTTP/1.1\r\n\r\n".to_vec(),
        bad_v2,
        // No CRLF within 107 bytes.
        [&b"PROXY UNKNOWN "[..], &[b'x'; 200]].concat(),
    ];
    for bytes in &cases {
        let mut s = bounded(10, "connect", tokio::net::TcpStream::connect(b.addr))
            .await
            .expect("connect");
        s.write_all(bytes).await.expect("write");
        // Closed at once (the deadline is 30 s away), and no HTTP answer.
        let got = bounded(5, "closed at once", until_closed(s)).await;
        assert!(
            got.is_empty(),
            "answered: {:?}",
            String::from_utf8_lossy(&got)
        );
    }
    assert_eq!(
        metric(
            b.addr,
            b"PROXY UNKNOWN\r\n",
            "ringfan_proxy_header_errors_total"
        )
        .await,
        cases.len() as u64
    );
    // Health checks work with a header: v2 LOCAL, as HAProxy's checks send.
    let mut local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00".to_vec();
    local.extend_from_slice(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(http_raw(b.addr, &local).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxies_name_the_client_untrusted_ones_do_not() {
    let b = Broker::start(&[
        "--trusted-proxy",
        "127.0.0.1/32",
        "--max-connections-per-ip",
        "1",
    ]);
    let (head, _a) = upgrade_with(b.addr, b"", &["X-Forwarded-For: 203.0.113.7"]).await;
    assert_eq!(status(&head), 101, "{head}");
    let (head, _) = upgrade_with(b.addr, b"", &["X-Forwarded-For: 203.0.113.7"]).await;
    assert_eq!(status(&head), 429, "{head}");
    // A client that puts its own entry first does not get to choose:
    // the rightmost untrusted address (what our proxy saw) counts.
    let xff = ["X-Forwarded-For: 203.0.113.7, 203.0.113.8"];
    let (head, _b) = upgrade_with(b.addr, b"", &xff).await;
    assert_eq!(status(&head), 101, "{head}");
    // Forwarded is not the configured header: ignored; the peer counts.
    let (head, _c) = upgrade_with(b.addr, b"", &["Forwarded: for=203.0.113.9"]).await;
    assert_eq!(status(&head), 101, "{head} (as 127.0.0.1)");
    let (head, _) = upgrade_with(b.addr, b"", &["Forwarded: for=203.0.113.10"]).await;
    assert_eq!(status(&head), 429, "{head} (127.0.0.1's second)");

    // Untrusted peer: whatever it sends, it is the client.
    let u = Broker::start(&[
        "--trusted-proxy",
        "10.0.0.0/8",
        "--max-connections-per-ip",
        "1",
    ]);
    let (head, _d) = upgrade_with(u.addr, b"", &["X-Forwarded-For: 198.51.100.1"]).await;
    assert_eq!(status(&head), 101, "{head}");
    let (head, _) = upgrade_with(u.addr, b"", &["X-Forwarded-For: 198.51.100.2"]).await;
    assert_eq!(status(&head), 429, "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_source_hands_over_to_its_forwarded_header() {
    // A TCP load balancer (PROXY) in front of an HTTP proxy (XFF): the
    // PROXY source is the HTTP proxy, trusted; its header names the client.
    let b = Broker::start(&[
        "--proxy-protocol",
        "--trusted-proxy",
        "10.0.0.0/8",
        "--forwarded-header",
        "forwarded",
        "--max-connections-per-ip",
        "1",
    ]);
    let fwd = ["Forwarded: for=\"[2001:db8::5]:5555\";proto=https"];
    let (head, _a) = upgrade_with(b.addr, &v1("10.0.0.5", 1), &fwd).await;
    assert_eq!(status(&head), 101, "{head}");
    let (head, _) = upgrade_with(b.addr, &v2("10.0.0.6", 2), &fwd).await;
    assert_eq!(status(&head), 429, "{head}");
    // An untrusted PROXY source is the client, whatever it forwards.
    let (head, _b) = upgrade_with(b.addr, &v1("192.0.2.1", 3), &fwd).await;
    assert_eq!(status(&head), 101, "{head}");
}

mod tls {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};
    use rustls::pki_types::{CertificateDer, ServerName};
    use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
    use std::sync::Arc;

    type Tls = StreamOwned<ClientConnection, TcpStream>;

    /// A self-signed `localhost` certificate in a temp dir, and a client
    /// that trusts it.
    fn pki() -> (std::path::PathBuf, Arc<ClientConfig>) {
        let dir = std::env::temp_dir().join(format!(
            "ringfan-proxies-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(vec!["localhost".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("self-signed");
        std::fs::write(dir.join("chain.pem"), cert.pem()).expect("write chain");
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write key");
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(cert.der().to_vec()))
            .expect("root");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        (dir, Arc::new(client))
    }

    /// The PROXY header in the clear, then TLS, then an upgrade: the
    /// response's status.
    fn upgrade(addr: SocketAddr, client: &Arc<ClientConfig>, header: &[u8]) -> (u16, Tls) {
        let mut tcp = TcpStream::connect(addr).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(10))).ok();
        tcp.write_all(header).expect("write header");
        let name = ServerName::try_from("localhost").expect("name");
        let conn = ClientConnection::new(client.clone(), name).expect("client");
        let mut s = StreamOwned::new(conn, tcp);
        s.write_all(upgrade_request("/ws", &[]).as_bytes())
            .expect("write request");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut chunk).expect("read the answer");
            assert!(n > 0, "EOF before the answer");
            buf.extend_from_slice(&chunk[..n]);
        }
        (status(&String::from_utf8_lossy(&buf)), s)
    }

    #[test]
    fn the_header_comes_before_the_client_hello() {
        let (dir, client) = pki();
        let chain = dir.join("chain.pem");
        let key = dir.join("key.pem");
        let b = Broker::start(&[
            "--listen-tls",
            "127.0.0.1:0",
            "--tls-cert",
            chain.to_str().expect("path"),
            "--tls-key",
            key.to_str().expect("path"),
            "--proxy-protocol",
            "--max-connections-per-ip",
            "1",
        ]);
        let tls = b.tls_addr.expect("tls address");
        let (s, _a) = upgrade(tls, &client, &v2("10.2.2.2", 1));
        assert_eq!(s, 101);
        // Same client, v1: refused inside TLS.
        let (s, _) = upgrade(tls, &client, &v1("10.2.2.2", 2));
        assert_eq!(s, 429);
        let (s, _b) = upgrade(tls, &client, &v1("10.2.2.3", 3));
        assert_eq!(s, 101);
        // A ClientHello without the header: closed, counted.
        let mut tcp = TcpStream::connect(tls).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let name = ServerName::try_from("localhost").expect("name");
        let mut conn = ClientConnection::new(client.clone(), name).expect("client");
        let mut hello = Vec::new();
        conn.write_tls(&mut hello).expect("hello");
        tcp.write_all(&hello).expect("write hello");
        let mut got = Vec::new();
        match tcp.read_to_end(&mut got) {
            Ok(_) => assert!(got.is_empty(), "answered {got:?}"),
            Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let errors = rt.block_on(metric(
            b.addr,
            b"PROXY UNKNOWN\r\n",
            "ringfan_proxy_header_errors_total",
        ));
        assert_eq!(errors, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
