//! `wss://` against the real binary, with a CA and certificates generated
//! at test time and a rustls client over a blocking socket: the upgrade and
//! echo through TLS, close_notify at the end, the handshake deadline on a
//! stalled TLS handshake, and the per-turn TLS handshake budget.
//! (Python `websockets`, openssl and Chromium check the same from outside:
//! tests/python/test_tls.py, test_chromium.py.)

mod common;

use common::wsraw::{self, OP_CLOSE, OP_TEXT};
use common::Broker;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A CA, one leaf for `localhost`, its files, and a client trusting the CA.
struct Pki {
    dir: PathBuf,
    client: Arc<ClientConfig>,
}

impl Pki {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "ringfan-tls-it-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        std::fs::write(dir.join("chain.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), leaf_key.serialize_pem()).unwrap();
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(ca_cert.der().to_vec()))
            .unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self {
            dir,
            client: Arc::new(client),
        }
    }

    fn start(&self, extra: &[&str]) -> Broker {
        let chain = self.dir.join("chain.pem");
        let key = self.dir.join("key.pem");
        let mut args = vec![
            "--listen-tls",
            "127.0.0.1:0",
            "--tls-cert",
            chain.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--echo",
        ];
        args.extend_from_slice(extra);
        Broker::start(&args)
    }

    fn connect(&self, addr: SocketAddr) -> StreamOwned<ClientConnection, TcpStream> {
        let name = ServerName::try_from("localhost").unwrap();
        let conn = ClientConnection::new(self.client.clone(), name).unwrap();
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        StreamOwned::new(conn, tcp)
    }
}

impl Pki {
    /// A real ClientHello for `localhost`, as the first bytes on the wire.
    fn client_hello(&self) -> Vec<u8> {
        let name = ServerName::try_from("localhost").unwrap();
        let mut c = ClientConnection::new(self.client.clone(), name).unwrap();
        let mut hello = Vec::new();
        c.write_tls(&mut hello).unwrap();
        hello
    }
}

/// Reads until the server closes `tcp` (EOF or reset); how long it took.
fn until_closed(tcp: &mut TcpStream) -> Duration {
    let t = Instant::now();
    let mut got = Vec::new();
    match tcp.read_to_end(&mut got) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("not closed: {e}"),
    }
    t.elapsed()
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// Upgrade to /echo over `s`; returns bytes read past the 101's head.
fn upgrade(s: &mut Tls) -> Vec<u8> {
    s.write_all(wsraw::upgrade_request("/echo", &[]).as_bytes())
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            assert!(head.starts_with("HTTP/1.1 101"), "{head}");
            return buf[end + 4..].to_vec();
        }
        let n = s.read(&mut chunk).expect("read the 101");
        assert!(n > 0, "EOF before the 101");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The next server frame, reading more as needed.
fn next_frame(s: &mut Tls, buf: &mut Vec<u8>) -> wsraw::Frame {
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if let Some((f, used)) = wsraw::parse(buf) {
            buf.drain(..used);
            return f;
        }
        let n = s.read(&mut chunk).expect("read a frame");
        assert!(n > 0, "EOF before a frame");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn wss_echo_and_close_ends_with_close_notify() {
    let pki = Pki::new();
    let broker = pki.start(&["--shards", "2"]);
    let addr = broker.tls_addr.expect("tls address");
    for _ in 0..4 {
        let mut s = pki.connect(addr);
        let mut buf = upgrade(&mut s);
        assert_eq!(s.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        // Small, then larger than one record (16 KiB) and than a receive
        // buffer, so sealing spans records and opening spans receives.
        for len in [5usize, 100, 40_000, 300_000] {
            let msg: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            s.write_all(&wsraw::masked(OP_TEXT, &msg)).unwrap();
            let f = next_frame(&mut s, &mut buf);
            assert_eq!((f.opcode, f.payload.len()), (OP_TEXT, len));
            assert_eq!(f.payload, msg);
        }
        s.write_all(&wsraw::masked(OP_CLOSE, &wsraw::close_body(1000, "bye")))
            .unwrap();
        let f = next_frame(&mut s, &mut buf);
        assert_eq!(f.close_code(), Some(1000));
        // Then a clean TLS end: rustls reads close_notify as EOF (Ok(0));
        // a TCP close without it would be an UnexpectedEof error.
        let mut rest = Vec::new();
        match s.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty(), "bytes after the close: {rest:?}"),
            Err(e) => panic!("no close_notify before EOF: {e}"),
        }
    }
    assert_eq!(
        broker.metric("ringfan_tls_handshakes_total{result=\"full\"}")
            + broker.metric("ringfan_tls_handshakes_total{result=\"resumed\"}"),
        4
    );
    // The plain listener still serves plain WebSocket next to TLS.
    let (status, _) = common::http_get(broker.addr, "/healthz");
    assert_eq!(status, 200);
}

#[test]
fn a_stalled_tls_handshake_is_closed_by_the_handshake_deadline() {
    let pki = Pki::new();
    let broker = pki.start(&["--shards", "1", "--handshake-timeout", "1"]);
    let addr = broker.tls_addr.expect("tls address");
    // A real ClientHello, cut short: the server waits for the rest.
    let hello = pki.client_hello();
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(&hello[..hello.len() / 2]).unwrap();
    let waited = until_closed(&mut tcp);
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(8),
        "closed after {waited:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while broker.metric("ringfan_tls_handshakes_total{result=\"incomplete\"}") != 1 {
        assert!(Instant::now() < deadline, "not counted as incomplete");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(broker.metric("ringfan_timeouts_total"), 1);
}

#[test]
fn tls_handshakes_past_the_turn_budget_wait_their_turn_and_complete() {
    let pki = Pki::new();
    // One flight per turn: a burst of ClientHellos must queue, not fail.
    let broker = pki.start(&["--shards", "1", "--tls-handshakes-per-turn", "1"]);
    let addr = broker.tls_addr.expect("tls address");
    const N: usize = 60;
    let mut conns: Vec<(ClientConnection, TcpStream)> = (0..N)
        .map(|_| {
            let name = ServerName::try_from("localhost").unwrap();
            let c = ClientConnection::new(pki.client.clone(), name).unwrap();
            let tcp = TcpStream::connect(addr).unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            (c, tcp)
        })
        .collect();
    // Every ClientHello goes out before any answer is read, so the
    // shard finds many in one turn.
    for (c, tcp) in &mut conns {
        let mut hello = Vec::new();
        c.write_tls(&mut hello).unwrap();
        tcp.write_all(&hello).unwrap();
    }
    for (c, tcp) in conns {
        let mut s = StreamOwned::new(c, tcp);
        let mut buf = upgrade(&mut s);
        s.write_all(&wsraw::masked(OP_TEXT, b"hi")).unwrap();
        assert_eq!(next_frame(&mut s, &mut buf).payload, b"hi");
    }
    assert_eq!(
        broker.metric("ringfan_tls_handshakes_total{result=\"full\"}"),
        N as u64
    );
    assert!(
        broker.metric("ringfan_tls_handshakes_deferred_total") > 0,
        "{N} ClientHellos at once never exceeded one flight a turn"
    );
    assert_eq!(
        broker.metric("ringfan_tls_handshakes_total{result=\"failed\"}"),
        0
    );
}

#[test]
fn a_refused_tls_client_that_hangs_up_mid_handshake_frees_its_slot_at_once() {
    // --max-connections-per-ip 1: the second connection is refused at the
    // accept; its 429 waits for the TLS handshake. If the client hangs up
    // before finishing it, the 429 can never go: the slot must be freed
    // at its EOF, not held to the close timeout.
    let pki = Pki::new();
    let broker = pki.start(&[
        "--shards",
        "1",
        "--max-connections-per-ip",
        "1",
        "--close-timeout",
        "5",
    ]);
    let addr = broker.tls_addr.expect("tls address");
    let mut first = pki.connect(addr);
    let _ = upgrade(&mut first);
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(&pki.client_hello()).unwrap();
    tcp.shutdown(std::net::Shutdown::Write).unwrap();
    let waited = until_closed(&mut tcp);
    assert!(waited < Duration::from_secs(3), "closed after {waited:?}");
    // Only the first connection is open (plus the /metrics request
    // itself, from another address: 127.0.0.1 is at its limit).
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric_from_other_address(broker.addr, "ringfan_connections_open") != 2 {
        assert!(Instant::now() < deadline, "the refused slot was not freed");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        metric_from_other_address(broker.addr, "ringfan_peer_connections_refused_total"),
        1
    );
}

/// A metric read over a connection from another loopback address each
/// time (127.0.0.2, .3, ...): the per-address limit counts 127.0.0.1, and
/// an earlier request's connection may still be counted for its address
/// while the server releases it.
fn metric_from_other_address(addr: SocketAddr, name: &str) -> u64 {
    static NEXT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 250;
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from(([127, 0, 0, 2 + n], 0)).into())
        .unwrap();
    s.connect(&addr.into()).unwrap();
    let mut s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    common::metric_sum(&out, name).unwrap_or_else(|| panic!("metric {name} missing: {out}"))
}
