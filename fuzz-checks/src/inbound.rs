//! The runtime's inbound glue (`runtime::inbound`, through the harness
//! `ringfan::runtime::inbound_check`): the bytes a client sends, arriving
//! as the kernel delivers them (in chunks cut anywhere), through the
//! handshake and the WebSocket core to the binary's application (the
//! broker's `server::Node`, `/echo` on), with the connection's pending
//! buffer, the backpressure check and the answers it queues. Nothing is
//! sent; what would be is the outcome.
//!
//! Input layout:
//!   byte 0      bits 0-1: `max_backlog_read` 512, 2048, 16384 or 2 MiB
//!               (`max_backlog` twice that); bit 2: draining; bit 3: the
//!               table is full (upgrades refused)
//!   byte 1      max message size (`/ws` and `/echo`), 64 + 32 * byte
//!   byte 2      number of split points, 0..=15 (low 4 bits)
//!   then        one u16 LE per split point: a chunk length, 0..=4095
//!   rest        the stream, cut into those chunks (the last takes the rest)
//!
//! Asserts, besides no panic:
//! - the outcome (every frame or response queued for sending, in order;
//!   what the application saw; the connection's phase, WebSocket state,
//!   close code and request, whether reading is paused, the pending bytes)
//!   is the same as when the stream arrives in one chunk;
//! - the pending buffer stays within its bound after every step: the head
//!   so far (<= `MAX_HEAD`) during the handshake; while open and read, the
//!   front of one frame (a header and at most the rest of the message
//!   limit, or a control frame's 125 bytes); nothing once closing; an
//!   empty one holds at most `KEEP_RX` of capacity;
//! - a plain HTTP request (or a refused upgrade) is answered with exactly
//!   one complete HTTP response (status line, `Content-Length` = body,
//!   `Connection: close`) and nothing else; the application saw no message;
//! - an upgrade is answered with the `101` the handshake built, first, then
//!   only whole server frames (unmasked, final); `/echo` echoes each message
//!   it saw, in order;
//! - once the WebSocket is closed (the peer's close, or a protocol failure)
//!   or the connection is closing, nothing more is processed: the
//!   application sees nothing and nothing more is queued; the last frame
//!   queued is then the close, carrying the connection's close code.

use ringfan::runtime::inbound_check::{run, Phase, Seen, Setup, Snapshot, Step, Trace, KEEP_RX};
use ringfan::ws::frame::{parse_close, parse_header, MAX_HEADER_LEN};
use ringfan::ws::handshake::MAX_HEAD;
use ringfan::ws::{MessageKind, OpCode, State};

/// The largest control frame payload (RFC 6455 §5.5).
const MAX_CONTROL: usize = 125;

fn header<'h>(headers: &'h [httparse::Header<'_>], name: &str) -> Option<&'h [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// One complete HTTP response and nothing after it; returns its status.
fn check_http_response(bytes: &[u8]) -> u16 {
    let mut hs = [httparse::EMPTY_HEADER; 16];
    let mut resp = httparse::Response::new(&mut hs);
    let n = match resp.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!("response does not parse ({other:?}): {bytes:?}"),
    };
    let status = resp.code.expect("status");
    assert!(
        (200..600).contains(&status) && status != 101,
        "HTTP answer status {status}"
    );
    let len: usize = std::str::from_utf8(header(resp.headers, "content-length").expect("length"))
        .expect("length is text")
        .parse()
        .expect("length is a number");
    assert_eq!(len, bytes.len() - n, "Content-Length vs body: {bytes:?}");
    assert_eq!(
        header(resp.headers, "connection").map(|v| v.to_ascii_lowercase()),
        Some(b"close".to_vec()),
        "an HTTP answer closes"
    );
    status
}

/// One whole server frame (unmasked, final); returns opcode and payload.
fn check_frame(bytes: &[u8]) -> (OpCode, &[u8]) {
    let h = parse_header(bytes)
        .unwrap_or_else(|e| panic!("queued frame rejected: {e}: {bytes:?}"))
        .unwrap_or_else(|| panic!("queued frame incomplete: {bytes:?}"));
    assert!(h.fin, "queued frame not final");
    assert!(h.mask.is_none(), "a server frame is not masked");
    assert_eq!(
        h.frame_len(),
        Some(bytes.len()),
        "one frame per queue entry"
    );
    (h.opcode, &bytes[h.len..])
}

/// The connection's message limit, once upgraded.
fn max_message(seen: &[Seen]) -> Option<usize> {
    seen.iter().find_map(|s| match s {
        Seen::Upgrade {
            accepted: Ok(m), ..
        } => Some(*m),
        _ => None,
    })
}

/// Nothing more is read: the WebSocket closed, or the connection is
/// closing (answered, refused, failed).
fn finished(s: &Snapshot) -> bool {
    s.ws == State::Closed || !matches!(s.phase, Phase::Handshake | Phase::Open)
}

fn check_steps(t: &Trace) {
    let limit = max_message(&t.seen);
    let mut prev: Option<&Snapshot> = None;
    for (step, s) in &t.steps {
        match s.phase {
            Phase::Handshake => {
                assert!(s.rx_len <= MAX_HEAD, "unfinished head over MAX_HEAD: {s:?}");
                assert_eq!(s.backlog, 0, "nothing answered during the handshake");
            }
            Phase::Open if !s.read_paused => {
                let max = limit.expect("open without an accepted upgrade");
                assert!(s.buffered <= max, "assembled past the limit: {s:?}");
                let frame_rest = MAX_CONTROL.max(max - s.buffered);
                assert!(
                    s.rx_len <= MAX_HEADER_LEN + frame_rest,
                    "pending over one frame's bound ({max}): {s:?}"
                );
            }
            Phase::Open => {}
            _ => assert_eq!(s.rx_len, 0, "bytes kept while closing: {s:?}"),
        }
        if s.rx_len == 0 {
            assert!(s.rx_capacity <= KEEP_RX, "an empty rx holds {s:?}");
        }
        if let Some(p) = prev.filter(|p| finished(p)) {
            assert_eq!(
                s.seen, p.seen,
                "the application ran after the end: {step:?}"
            );
            match step {
                Step::Delivered(_) => assert_eq!(s.backlog, p.backlog, "queued after the end"),
                Step::Resumed => assert_eq!(s.backlog, 0, "queued after the end"),
            }
            assert_eq!(s.phase, p.phase, "phase changed after the end");
            assert_eq!(
                s.close_code, p.close_code,
                "close code changed after the end"
            );
        }
        prev = Some(s);
    }
}

fn check_outcome(t: &Trace) {
    let messages: Vec<(MessageKind, &[u8])> = t
        .seen
        .iter()
        .filter_map(|s| match s {
            Seen::Message { kind, payload } => Some((*kind, &payload[..])),
            _ => None,
        })
        .collect();
    for s in &t.seen {
        assert!(!matches!(s, Seen::Other(_)), "unexpected callback {s:?}");
    }
    let upgrade = t.seen.iter().find_map(|s| match s {
        Seen::Upgrade {
            path,
            response,
            accepted: Ok(_),
        } => Some((path, response)),
        _ => None,
    });
    let Some((path, response_101)) = upgrade else {
        // Never upgraded: waiting for the head, or answered once.
        assert!(messages.is_empty(), "a message without an upgrade");
        assert_ne!(t.end.phase, Phase::Open, "open without an upgrade");
        if t.end.phase == Phase::Handshake {
            assert!(t.sent.is_empty(), "answered while waiting: {:?}", t.sent);
            return;
        }
        assert_eq!(
            t.sent.len(),
            1,
            "one HTTP answer, nothing else: {:?}",
            t.sent
        );
        let status = check_http_response(&t.sent[0]);
        // What the application answered is what is sent.
        for s in &t.seen {
            match s {
                Seen::Http { response, .. }
                | Seen::Upgrade {
                    accepted: Err(response),
                    ..
                } => {
                    assert_eq!(&t.sent[0], response, "the app's answer, status {status}");
                }
                _ => {}
            }
        }
        return;
    };
    assert_eq!(t.sent.first(), Some(response_101), "the 101 goes first");
    let mut closed_at = None;
    let mut echoed = Vec::new();
    for (i, f) in t.sent.iter().enumerate().skip(1) {
        assert!(closed_at.is_none(), "a frame after the close: {:?}", t.sent);
        let (op, payload) = check_frame(f);
        match op {
            OpCode::Close => closed_at = Some((i, payload)),
            OpCode::Pong => assert!(payload.len() <= MAX_CONTROL, "long pong"),
            OpCode::Text => echoed.push((MessageKind::Text, payload)),
            OpCode::Binary => echoed.push((MessageKind::Binary, payload)),
            op => panic!("queued a {op:?} frame"),
        }
    }
    if &**path == "/echo" {
        // Each message back, in order; all of them unless the queue
        // overflowed (then the connection is asked to close).
        assert!(echoed.len() <= messages.len(), "more echoes than messages");
        assert_eq!(echoed, messages[..echoed.len()], "echoes");
        if t.end.close_req.is_none() {
            assert_eq!(echoed.len(), messages.len(), "a message not echoed");
        }
    }
    if t.end.ws == State::Closed {
        let (_, payload) = closed_at.expect("closed without a close frame queued");
        let body = parse_close(payload).expect("our close parses");
        assert_eq!(body.code.unwrap_or(1005), t.end.close_code, "close code");
    } else {
        assert!(closed_at.is_none(), "a close queued, state {:?}", t.end.ws);
    }
}

/// The outcome to compare across splits (an `rx`'s capacity depends on
/// how the bytes came, so it is left out).
fn comparable(t: &Trace) -> (Vec<Vec<u8>>, Vec<Seen>, Snapshot) {
    let end = Snapshot {
        rx_capacity: 0,
        ..t.end.clone()
    };
    let seen = t
        .seen
        .iter()
        .map(|s| match s {
            Seen::Http {
                method,
                path,
                response,
            } => Seen::Http {
                method: method.clone(),
                path: path.clone(),
                response: stable(response),
            },
            other => other.clone(),
        })
        .collect();
    (t.sent.iter().map(|b| stable(b)).collect(), seen, end)
}

/// A `/metrics` answer carries the process's own CPU time and memory
/// (`process_*`), which differ between the two runs being compared: it is
/// compared by its status line only.
fn stable(bytes: &[u8]) -> Vec<u8> {
    let metrics = bytes
        .windows(b"process_cpu_seconds_total".len())
        .any(|w| w == b"process_cpu_seconds_total");
    match metrics {
        true => bytes.split(|&b| b == b'\n').next().unwrap_or(b"").to_vec(),
        false => bytes.to_vec(),
    }
}

/// The harness's settings, from the input's first two bytes.
fn setup(flags: u8, max: u8) -> Setup {
    let read_limit = [512, 2048, 16384, 2 << 20][usize::from(flags & 3)];
    Setup {
        max_message: 64 + 32 * usize::from(max),
        max_backlog_read: read_limit,
        max_backlog: 2 * read_limit,
        draining: flags & 4 != 0,
        full: flags & 8 != 0,
    }
}

pub fn check(data: &[u8]) {
    let [flags, max, splits, rest @ ..] = data else {
        return;
    };
    let setup = setup(*flags, *max);
    let n = usize::from(splits & 15);
    if rest.len() < 2 * n {
        return;
    }
    let (lens, mut stream) = rest.split_at(2 * n);
    let whole = stream;
    let mut chunks = Vec::with_capacity(n + 1);
    for l in lens.chunks_exact(2) {
        let len = usize::from(u16::from_le_bytes([l[0], l[1]]) & 0x0fff).min(stream.len());
        let (chunk, tail) = stream.split_at(len);
        chunks.push(chunk);
        stream = tail;
    }
    chunks.push(stream);

    let one = run(&setup, [whole]);
    check_steps(&one);
    check_outcome(&one);
    let split = run(&setup, chunks.iter().copied());
    check_steps(&split);
    assert_eq!(
        comparable(&split),
        comparable(&one),
        "split {:?} differs from one chunk",
        chunks.iter().map(|c| c.len()).collect::<Vec<_>>()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn seed(name: &str) -> Trace {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/seeds/inbound")
            .join(name);
        let data = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let [flags, max, _, rest @ ..] = &data[..] else {
            panic!("short seed");
        };
        let n = usize::from(data[2] & 15);
        run(&setup(*flags, *max), [&rest[2 * n..]])
    }

    fn status(t: &Trace) -> Option<u16> {
        let r = t.sent.first()?;
        std::str::from_utf8(r.get(9..12)?).ok()?.parse().ok()
    }

    fn messages(t: &Trace) -> Vec<&[u8]> {
        t.seen
            .iter()
            .filter_map(|s| match s {
                Seen::Message { payload, .. } => Some(&payload[..]),
                _ => None,
            })
            .collect()
    }

    /// The seeds reach what they are named for (a harness that parsed
    /// nothing would pass every other check).
    #[test]
    fn the_seeds_reach_their_cases() {
        let t = seed("echo_frames");
        assert_eq!(status(&t), Some(101));
        let bin: Vec<u8> = (0..40).collect();
        assert_eq!(messages(&t), [&b"hello"[..], &bin, b"fragment"]);
        assert_eq!((t.end.ws, t.end.close_code), (State::Closed, 1000));
        // 101, two echoes, a pong, the echo of the fragmented one, close.
        assert_eq!(t.sent.len(), 6);

        let t = seed("ws_sub_pub");
        assert_eq!(status(&t), Some(101));
        assert_eq!(messages(&t).len(), 4);
        assert!(t.sent.len() >= 5, "broker replies: {:?}", t.sent);

        for (name, code) in [("healthz", 200), ("metrics", 200), ("pipelined", 200)] {
            let t = seed(name);
            assert_eq!((status(&t), t.sent.len()), (Some(code), 1), "{name}");
            assert!(matches!(t.seen[..], [Seen::Http { .. }]), "{name}");
        }
        for (name, code) in [
            ("healthz_draining", 503),
            ("garbage", 400),
            ("upgrade_draining", 503),
            ("upgrade_full", 503),
            ("upgrade_404", 404),
            ("upgrade_healthz", 200),
            ("pipelined_upgrade", 200),
        ] {
            let t = seed(name);
            assert_eq!((status(&t), t.sent.len()), (Some(code), 1), "{name}");
            assert_eq!(t.end.phase, Phase::Flushing, "{name}");
        }
        let t = seed("partial_head");
        assert_eq!(
            (t.end.phase, t.sent.len(), t.end.rx_len),
            (Phase::Handshake, 0, 60)
        );

        let t = seed("ping_flood");
        let resumes = t.steps.iter().filter(|(s, _)| *s == Step::Resumed).count();
        assert!(resumes > 5, "{resumes} resumes");
        assert_eq!(t.sent.len(), 151);
        assert!(!t.end.read_paused);
        let t = seed("echo_flood");
        assert!(t.steps.iter().any(|(s, _)| *s == Step::Resumed));
        assert_eq!(messages(&t).len(), 40);

        for (name, code) in [
            ("unmasked", 1002),
            ("too_big", 1009),
            ("bad_utf8", 1007),
            ("close_empty", 1005),
        ] {
            let t = seed(name);
            assert_eq!(
                (t.end.ws, t.end.close_code),
                (State::Closed, code),
                "{name}"
            );
            assert!(messages(&t).is_empty(), "{name}");
        }
        let t = seed("long_frame_split");
        assert_eq!(messages(&t), [&[b'L'; 1500][..]]);
    }
}
