//! Start the real `ringfan` binary for a test and stop it afterwards.
#![allow(dead_code)]

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Broker {
    pub child: Child,
    pub addr: SocketAddr,
    /// The TLS listener's address (with `--listen-tls`).
    pub tls_addr: Option<SocketAddr>,
}

impl Broker {
    /// Start `ringfan --listen 127.0.0.1:0` with `args`; waits for its
    /// "listening on" line.
    pub fn start(args: &[&str]) -> Broker {
        Self::start_with(args, |_| {})
    }

    /// Like `start`, letting the caller adjust the command (limits, env).
    pub fn start_with(args: &[&str], adjust: impl FnOnce(&mut Command)) -> Broker {
        // RINGFAN_TEST_BIN runs a test against another build (a "before"
        // binary, to see a test fail without its fix).
        let bin = std::env::var_os("RINGFAN_TEST_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_ringfan").into());
        let mut cmd = Command::new(bin);
        cmd.args(["--listen", "127.0.0.1:0", "--no-pin"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        adjust(&mut cmd);
        let mut child = cmd.spawn().expect("spawn ringfan");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut reader = BufReader::new(stdout);
        while !line.contains("listening on") {
            line.clear();
            let n = reader.read_line(&mut line).expect("read ringfan stdout");
            assert!(n > 0, "ringfan exited before listening");
            assert!(Instant::now() < deadline, "ringfan did not start");
        }
        let addr_of = |line: &str| {
            line.split_whitespace()
                .find_map(|w| w.parse::<SocketAddr>().ok())
                .expect("address in the listening line")
        };
        let addr = addr_of(&line);
        let mut tls_addr = None;
        if args.contains(&"--listen-tls") {
            // Printed after the plain listener's line.
            line.clear();
            while !line.contains("tls listening on") {
                line.clear();
                let n = reader.read_line(&mut line).expect("read ringfan stdout");
                assert!(n > 0, "ringfan exited before listening for TLS");
            }
            tls_addr = Some(addr_of(&line));
        }
        // Keep draining stdout so the server never blocks on it.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                sink.clear();
            }
        });
        Broker {
            child,
            addr,
            tls_addr,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// Send SIGTERM (graceful drain).
    pub fn terminate(&self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
    }

    /// Wait for exit up to `timeout`; the exit status if it exited.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// One metric's value from `/metrics`, summed over shards (see
    /// [`metric_sum`]).
    pub fn metric(&self, name: &str) -> u64 {
        let body = http_get(self.addr, "/metrics").1;
        metric_sum(&body, name).unwrap_or_else(|| panic!("metric {name} missing"))
    }
}

/// The sum of the series of `/metrics` text that `query` selects: `name`
/// selects every series of that name (one per shard), `name{k="v"}`
/// those that also carry each given label. None if none does. A total
/// over shards: what a test that reads "how many" wants.
pub fn metric_sum(body: &str, query: &str) -> Option<u64> {
    fn parse(series: &str) -> (&str, Vec<(&str, &str)>) {
        let Some((name, rest)) = series.split_once('{') else {
            return (series, Vec::new());
        };
        let labels = rest
            .trim_end_matches('}')
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k, v.trim_matches('"')))
            .collect();
        (name, labels)
    }
    let (want, want_labels) = parse(query);
    let mut sum: Option<i64> = None;
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (name, labels) = parse(series);
        if name != want || !want_labels.iter().all(|l| labels.contains(l)) {
            continue;
        }
        let v: i64 = value
            .parse()
            .unwrap_or_else(|_| panic!("{line}: not an integer"));
        sum = Some(sum.unwrap_or(0) + v);
    }
    sum.map(|s| u64::try_from(s).unwrap_or_else(|_| panic!("{query} sums to {s}")))
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The prologue of most tests: start `ringfan` with `args`, run `test`
/// against its address with at most `secs` for the whole of it, then hand
/// the broker back, still running, for checks after the test. Dropping it
/// kills the server, also when the test fails.
pub async fn with_broker<F: Future<Output = ()>>(
    args: &[&str],
    secs: u64,
    test: impl FnOnce(SocketAddr) -> F,
) -> Broker {
    let broker = Broker::start(args);
    wsraw::bounded(secs, "test", test(broker.addr)).await;
    broker
}

/// A plain HTTP/1.1 GET; (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Resident set size of a process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// Async helpers for driving the server with hand-made bytes: raw HTTP
/// requests, raw WebSocket frames, and `/metrics` without blocking the
/// runtime. Every wait is bounded by [`wsraw::IO_TIMEOUT`].
pub mod wsraw {
    use std::future::Future;
    use std::net::SocketAddr;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// The longest any single network wait may take in these tests.
    pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

    /// A syntactically valid Sec-WebSocket-Key (16 bytes in base64).
    pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    /// The Sec-WebSocket-Accept that goes with [`KEY`] (RFC 6455 §1.3).
    pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    pub const OP_CONT: u8 = 0x0;
    pub const OP_TEXT: u8 = 0x1;
    pub const OP_BINARY: u8 = 0x2;
    pub const OP_CLOSE: u8 = 0x8;
    pub const OP_PING: u8 = 0x9;
    pub const OP_PONG: u8 = 0xA;

    /// Run `fut`, failing the test if it takes longer than `secs`.
    pub async fn bounded<T>(secs: u64, what: &str, fut: impl Future<Output = T>) -> T {
        match tokio::time::timeout(Duration::from_secs(secs), fut).await {
            Ok(v) => v,
            Err(_) => panic!("timed out after {secs}s: {what}"),
        }
    }

    /// Run `fut` within [`IO_TIMEOUT`] and unwrap its result; panics
    /// naming `what` on a timeout or an error.
    pub async fn expect_io<T, E: std::fmt::Debug>(
        what: &str,
        fut: impl Future<Output = Result<T, E>>,
    ) -> T {
        match bounded(IO_TIMEOUT.as_secs(), what, fut).await {
            Ok(v) => v,
            Err(e) => panic!("{what}: {e:?}"),
        }
    }

    /// A GET upgrade request for `path` with the standard headers and `extra`
    /// header lines (each without CRLF).
    pub fn upgrade_request(path: &str, extra: &[&str]) -> String {
        let mut r = format!(
            "GET {path} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
        );
        for h in extra {
            r.push_str(h);
            r.push_str("\r\n");
        }
        r.push_str("\r\n");
        r
    }

    /// A client frame. `mask` None sends it unmasked (a protocol violation).
    pub fn encode(
        fin: bool,
        rsv: u8,
        opcode: u8,
        payload: &[u8],
        mask: Option<[u8; 4]>,
    ) -> Vec<u8> {
        let mut f = Vec::with_capacity(payload.len() + 14);
        f.push(((fin as u8) << 7) | ((rsv & 7) << 4) | (opcode & 0x0f));
        let m = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n @ 0..=125 => f.push(m | n as u8),
            n @ 126..=0xffff => {
                f.push(m | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(m | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match mask {
            Some(k) => {
                f.extend_from_slice(&k);
                f.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
            }
            None => f.extend_from_slice(payload),
        }
        f
    }

    /// A final, masked client frame.
    pub fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
        encode(
            true,
            0,
            opcode,
            payload,
            Some(fastrand::u32(..).to_ne_bytes()),
        )
    }

    /// A close frame body: code and reason.
    pub fn close_body(code: u16, reason: &str) -> Vec<u8> {
        let mut b = code.to_be_bytes().to_vec();
        b.extend_from_slice(reason.as_bytes());
        b
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Frame {
        pub fin: bool,
        pub rsv: u8,
        pub opcode: u8,
        pub masked: bool,
        pub payload: Vec<u8>,
    }

    impl Frame {
        /// The status code of a close frame (None for an empty body).
        pub fn close_code(&self) -> Option<u16> {
            assert_eq!(self.opcode, OP_CLOSE, "not a close frame: {self:?}");
            (self.payload.len() >= 2)
                .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
        }
    }

    /// Parse one server frame from the front of `buf`: the frame and the
    /// bytes it took, or None if incomplete.
    pub fn parse(buf: &[u8]) -> Option<(Frame, usize)> {
        if buf.len() < 2 {
            return None;
        }
        let (b0, b1) = (buf[0], buf[1]);
        let mut len = 2;
        let plen = match b1 & 0x7f {
            126 => {
                let b = buf.get(2..4)?;
                len = 4;
                u16::from_be_bytes([b[0], b[1]]) as usize
            }
            127 => {
                let b = buf.get(2..10)?;
                len = 10;
                u64::from_be_bytes(b.try_into().unwrap()) as usize
            }
            n => n as usize,
        };
        let masked = b1 & 0x80 != 0;
        let mask = if masked {
            let m = buf.get(len..len + 4)?;
            len += 4;
            Some([m[0], m[1], m[2], m[3]])
        } else {
            None
        };
        let mut payload = buf.get(len..len + plen)?.to_vec();
        if let Some(k) = mask {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= k[i % 4];
            }
        }
        let frame = Frame {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 7,
            opcode: b0 & 0x0f,
            masked,
            payload,
        };
        Some((frame, len + plen))
    }

    /// A TCP connection to `addr` within 10 s.
    async fn connect(addr: SocketAddr) -> TcpStream {
        expect_io("connect", TcpStream::connect(addr)).await
    }

    /// One raw TCP connection that speaks WebSocket frames by hand.
    pub struct RawWs {
        pub stream: TcpStream,
        /// Bytes received and not yet parsed.
        pub buf: Vec<u8>,
    }

    impl RawWs {
        /// Connect and upgrade on `path`; panics unless the answer is 101
        /// with the right accept key.
        pub async fn connect(addr: SocketAddr, path: &str) -> RawWs {
            Self::upgrade(connect(addr).await, path).await
        }

        /// Upgrade on `path` over a connection made by the caller (say,
        /// with a small receive buffer); panics unless the answer is 101
        /// with the right accept key.
        pub async fn upgrade(stream: TcpStream, path: &str) -> RawWs {
            let (head, ws) = Self::handshake(stream, &upgrade_request(path, &[])).await;
            assert!(head.starts_with("HTTP/1.1 101 "), "upgrade refused: {head}");
            assert!(
                head.to_ascii_lowercase().contains(&format!(
                    "sec-websocket-accept: {}",
                    ACCEPT.to_ascii_lowercase()
                )),
                "bad accept key: {head}"
            );
            ws
        }

        /// Connect, send `request` and read the response head (up to the
        /// blank line); returns the head and the connection.
        pub async fn connect_with(addr: SocketAddr, request: &str) -> (String, RawWs) {
            Self::handshake(connect(addr).await, request).await
        }

        /// Send `request` on `stream` and read the response head.
        pub async fn handshake(mut stream: TcpStream, request: &str) -> (String, RawWs) {
            stream.set_nodelay(true).ok();
            expect_io("write request", stream.write_all(request.as_bytes())).await;
            let mut ws = RawWs {
                stream,
                buf: Vec::new(),
            };
            let head = ws.read_head().await;
            (head, ws)
        }

        /// Read up to the blank line that ends an HTTP response head and
        /// return the head; what follows it stays in `buf`.
        pub async fn read_head(&mut self) -> String {
            let end = loop {
                if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                let n = self.fill().await;
                assert!(
                    n > 0,
                    "EOF before the response head: {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
            };
            let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
            self.buf.drain(..end);
            head
        }

        /// Read more bytes into `buf`; 0 at EOF. Panics on timeout or error.
        pub async fn fill(&mut self) -> usize {
            let mut chunk = vec![0u8; 64 * 1024];
            let n = expect_io("read from server", self.stream.read(&mut chunk)).await;
            self.buf.extend_from_slice(&chunk[..n]);
            n
        }

        pub async fn send(&mut self, bytes: &[u8]) {
            expect_io("write to server", self.stream.write_all(bytes)).await;
        }

        /// The next frame, or None at a clean EOF between frames.
        pub async fn read_frame(&mut self) -> Option<Frame> {
            loop {
                if let Some((f, n)) = parse(&self.buf) {
                    self.buf.drain(..n);
                    return Some(f);
                }
                if self.fill().await == 0 {
                    assert!(
                        self.buf.is_empty(),
                        "EOF inside a frame: {} bytes left",
                        self.buf.len()
                    );
                    return None;
                }
            }
        }

        /// The next frame; panics at EOF.
        pub async fn frame(&mut self) -> Frame {
            self.read_frame().await.expect("a frame, got EOF")
        }

        /// The server sends nothing more and closes its side (EOF, not a
        /// reset) within [`IO_TIMEOUT`].
        pub async fn expect_eof(&mut self) {
            if let Some(f) = self.read_frame().await {
                panic!("expected EOF, got frame {f:?}");
            }
        }

        /// Expect a close frame with `code` and then EOF.
        pub async fn expect_close(&mut self, code: u16) {
            let f = self.frame().await;
            assert_eq!(f.opcode, OP_CLOSE, "expected close {code}, got {f:?}");
            assert!(f.fin && !f.masked && f.rsv == 0, "bad close frame {f:?}");
            assert_eq!(f.close_code(), Some(code), "close frame {f:?}");
            self.expect_eof().await;
        }
    }

    /// A raw HTTP response read to EOF.
    #[derive(Debug)]
    pub struct Reply {
        pub status: u16,
        /// Status line and headers, as received.
        pub head: String,
        pub body: Vec<u8>,
    }

    impl Reply {
        /// A header's value (name case-insensitive), first occurrence.
        pub fn header(&self, name: &str) -> Option<String> {
            self.head.lines().skip(1).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        }
    }

    /// Send `request` bytes on a fresh connection and read until the server
    /// closes it; panics if it does not within [`IO_TIMEOUT`] or resets it.
    pub async fn http_raw(addr: SocketAddr, request: &[u8]) -> Reply {
        let mut s = connect(addr).await;
        expect_io("write request", s.write_all(request)).await;
        let mut out = Vec::new();
        bounded(
            IO_TIMEOUT.as_secs(),
            "server closing the connection after its response",
            s.read_to_end(&mut out),
        )
        .await
        .expect("read response to EOF");
        let end = out
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| i + 4)
            .unwrap_or_else(|| panic!("no response head: {:?}", String::from_utf8_lossy(&out)));
        let head = String::from_utf8_lossy(&out[..end]).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        Reply {
            status,
            head,
            body: out[end..].to_vec(),
        }
    }

    /// One metric's value, read without blocking the runtime.
    pub async fn metric(addr: SocketAddr, name: &str) -> u64 {
        let r = http_raw(addr, b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n").await;
        assert_eq!(r.status, 200, "{}", r.head);
        let body = String::from_utf8_lossy(&r.body);
        super::metric_sum(&body, name).unwrap_or_else(|| panic!("metric {name} missing"))
    }

    /// Poll `name` until it equals `want`, for at most `within`.
    pub async fn wait_metric(addr: SocketAddr, name: &str, want: u64, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let v = metric(addr, name).await;
            if v == want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} is {v}, expected {want} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// tokio-tungstenite clients of `/echo`. Every wait is bounded.
pub mod echo {
    use super::wsraw::bounded;
    use futures_util::{SinkExt, StreamExt};
    use std::net::SocketAddr;
    use tokio::net::TcpStream;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

    pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

    /// Upgrade on `/echo`; panics unless the server answers 101.
    pub async fn connect(addr: SocketAddr) -> Ws {
        let (ws, resp) = bounded(
            10,
            "websocket handshake",
            connect_async(format!("ws://{addr}/echo")),
        )
        .await
        .expect("upgrade /echo");
        assert_eq!(resp.status(), 101);
        ws
    }

    /// The next data or control message; panics on error, close or EOF.
    pub async fn next(ws: &mut Ws) -> Message {
        match bounded(10, "next message", ws.next()).await {
            Some(Ok(m)) => m,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// Send `msg` and expect exactly it back.
    pub async fn roundtrip(ws: &mut Ws, msg: impl Into<Message>) {
        let msg = msg.into();
        bounded(20, "send", ws.send(msg.clone()))
            .await
            .expect("send");
        let got = next(ws).await;
        assert!(
            got == msg,
            "echo differs: sent {} got {}",
            describe(&msg),
            describe(&got)
        );
    }

    /// A message for a failure report: large payloads by their size only.
    fn describe(m: &Message) -> String {
        match m {
            Message::Text(t) if t.len() > 200 => format!("Text({} bytes)", t.len()),
            Message::Binary(b) if b.len() > 200 => format!("Binary({} bytes)", b.len()),
            other => format!("{other:?}"),
        }
    }

    /// A clean client close: the server answers and ends the stream.
    pub async fn close(mut ws: Ws) {
        bounded(10, "close", ws.close(None)).await.expect("close");
        loop {
            match bounded(10, "close handshake", ws.next()).await {
                Some(Ok(Message::Close(_))) | None => break,
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("error while closing: {e}"),
            }
        }
    }
}

/// tokio-tungstenite clients speaking the `/ws` pub/sub protocol
/// (protocol.md). Every wait is bounded by [`wsraw::IO_TIMEOUT`] unless a
/// helper says otherwise.
pub mod pubsub {
    use super::wsraw::{bounded, expect_io, IO_TIMEOUT};
    use futures_util::{SinkExt, StreamExt};
    use serde::Deserialize;
    use serde_json::value::RawValue;
    use std::net::SocketAddr;
    use std::time::Duration;
    use tokio::net::TcpStream;
    use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

    pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

    /// A `msg` from the server.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Msg {
        pub topic: String,
        pub seq: u64,
        pub snapshot: bool,
        /// The `data` member's bytes exactly as they were on the wire.
        pub data: String,
        /// The whole message text.
        pub text: String,
    }

    #[derive(Deserialize)]
    struct MsgWire<'a> {
        op: &'a str,
        topic: String,
        seq: u64,
        #[serde(default)]
        snapshot: bool,
        #[serde(borrow)]
        data: &'a RawValue,
    }

    /// Parse a server text as a `msg`; panics if it is anything else.
    pub fn parse_msg(text: &str) -> Msg {
        let w: MsgWire<'_> =
            serde_json::from_str(text).unwrap_or_else(|e| panic!("not a msg ({e}): {text}"));
        assert_eq!(w.op, "msg", "not a msg: {text}");
        Msg {
            topic: w.topic,
            seq: w.seq,
            snapshot: w.snapshot,
            data: w.data.get().to_string(),
            text: text.to_string(),
        }
    }

    /// A `/ws` client.
    pub struct Client {
        pub ws: Ws,
    }

    impl Client {
        /// Connect to `/ws` with tungstenite's default buffers.
        pub async fn connect(addr: SocketAddr) -> Client {
            Self::connect_with(addr, WebSocketConfig::default()).await
        }

        /// Connect with 4 KiB read and write buffers, for tests that hold
        /// thousands of clients.
        pub async fn connect_light(addr: SocketAddr) -> Client {
            let cfg = WebSocketConfig::default()
                .read_buffer_size(4096)
                .write_buffer_size(0);
            Self::connect_with(addr, cfg).await
        }

        pub async fn connect_with(addr: SocketAddr, cfg: WebSocketConfig) -> Client {
            let url = format!("ws://{addr}/ws");
            let (ws, resp) = expect_io(
                "ws connect",
                tokio_tungstenite::connect_async_with_config(url, Some(cfg), true),
            )
            .await;
            assert_eq!(resp.status().as_u16(), 101);
            Client { ws }
        }

        /// Connect to `/ws` and subscribe to `topics`, waiting for the ack
        /// of `id`.
        pub async fn subscribed(addr: SocketAddr, topics: &[&str], id: u64) -> Client {
            let mut c = Self::connect(addr).await;
            c.sub(topics, id).await;
            c
        }

        /// Send one text message (flushed).
        pub async fn send(&mut self, text: impl Into<String>) {
            let text: String = text.into();
            expect_io("ws send", self.ws.send(Message::text(text))).await;
        }

        /// Queue one text message without flushing.
        pub async fn feed(&mut self, text: impl Into<String>) {
            let text: String = text.into();
            expect_io("ws feed", self.ws.feed(Message::text(text))).await;
        }

        pub async fn flush(&mut self) {
            expect_io("ws flush", self.ws.flush()).await;
        }

        /// Send a binary message.
        pub async fn send_binary(&mut self, bytes: Vec<u8>) {
            expect_io("ws send", self.ws.send(Message::binary(bytes))).await;
        }

        /// The next data or close message (pings and pongs skipped), or
        /// None at the end of the stream; panics on a transport error or
        /// after `secs`.
        pub async fn next_within(&mut self, secs: u64) -> Option<Message> {
            bounded(secs, "next ws message", async {
                loop {
                    match self.ws.next().await {
                        None => return None,
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        Some(Ok(m)) => return Some(m),
                        Some(Err(e)) => panic!("ws read error: {e}"),
                    }
                }
            })
            .await
        }

        /// The next text message; panics on anything else.
        pub async fn recv_text(&mut self) -> String {
            match self.next_within(IO_TIMEOUT.as_secs()).await {
                Some(Message::Text(t)) => t.as_str().to_string(),
                other => panic!("expected a text message, got {other:?}"),
            }
        }

        pub async fn recv_json(&mut self) -> serde_json::Value {
            let t = self.recv_text().await;
            serde_json::from_str(&t).unwrap_or_else(|e| panic!("server sent bad JSON ({e}): {t}"))
        }

        /// The next message, which must be a `msg`.
        pub async fn recv_msg(&mut self) -> Msg {
            let t = self.recv_text().await;
            parse_msg(&t)
        }

        /// The next message is exactly `{"op":"ack","id":id}`.
        pub async fn expect_ack(&mut self, id: u64) {
            let t = self.recv_text().await;
            assert_eq!(
                t,
                format!("{{\"op\":\"ack\",\"id\":{id}}}"),
                "expected ack {id}"
            );
        }

        /// The next message is an `err` with `code` and `id` (absent when
        /// None); returns it.
        pub async fn expect_err(&mut self, id: Option<u64>, code: &str) -> serde_json::Value {
            let v = self.recv_json().await;
            assert_eq!(v["op"], "err", "expected err {code}: {v}");
            assert_eq!(v["code"], code, "{v}");
            match id {
                Some(id) => assert_eq!(v["id"], id, "{v}"),
                None => assert!(v.get("id").is_none(), "err carries an id: {v}"),
            }
            assert!(v["message"].is_string(), "{v}");
            v
        }

        /// Subscribe with an id and wait for its ack.
        pub async fn sub(&mut self, topics: &[&str], id: u64) {
            let req = serde_json::json!({"op":"sub","topics":topics,"id":id});
            self.send(req.to_string()).await;
            self.expect_ack(id).await;
        }

        /// A request that only acks (unsub of a pattern never subscribed):
        /// its ack being the next message proves nothing came before it.
        pub async fn sync(&mut self, id: u64) {
            self.send(format!(
                r#"{{"op":"unsub","topic":"sync.never.subscribed","id":{id}}}"#
            ))
            .await;
            self.expect_ack(id).await;
        }

        /// Nothing arrives for `d`.
        pub async fn expect_quiet(&mut self, d: Duration) {
            if let Ok(m) = tokio::time::timeout(d, self.ws.next()).await {
                panic!("expected nothing for {d:?}, got {m:?}");
            }
        }

        /// Read until a close frame; its code (None for an empty close).
        /// Messages before it are returned too.
        pub async fn read_to_close(&mut self, secs: u64) -> (Vec<Message>, Option<u16>) {
            let mut before = Vec::new();
            loop {
                match self.next_within(secs).await {
                    Some(Message::Close(c)) => return (before, c.map(|c| u16::from(c.code))),
                    Some(m) => before.push(m),
                    None => panic!("stream ended without a close frame"),
                }
            }
        }
    }

    /// `pub` request text.
    pub fn pub_req(topic: &str, data: &str, id: Option<u64>) -> String {
        match id {
            Some(id) => format!(r#"{{"op":"pub","topic":"{topic}","data":{data},"id":{id}}}"#),
            None => format!(r#"{{"op":"pub","topic":"{topic}","data":{data}}}"#),
        }
    }

    /// Open `n` light clients with at most `in_flight` handshakes at once,
    /// each subscribing to `topics` (and waiting for the ack).
    pub async fn open_subscribers(
        addr: SocketAddr,
        n: usize,
        in_flight: usize,
        topics: &[&str],
    ) -> Vec<Client> {
        let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        let mut out = Vec::with_capacity(n);
        let opens = futures_util::stream::iter(0..n).map(|i| {
            let topics = topics.clone();
            async move {
                let mut c = Client::connect_light(addr).await;
                let t: Vec<&str> = topics.iter().map(|s| s.as_str()).collect();
                c.sub(&t, i as u64).await;
                c
            }
        });
        let mut opens = opens.buffer_unordered(in_flight);
        while let Some(c) = opens.next().await {
            out.push(c);
        }
        out
    }
}
