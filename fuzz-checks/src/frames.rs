//! Arbitrary bytes as a WebSocket byte stream to `Connection::read`, fed the
//! way a runtime feeds it: in chunks, into one pending buffer whose
//! unconsumed bytes are kept exactly as the decoder left them (it unmasks
//! and validates in place; see the buffer contract in connection.rs).
//!
//! Input layout:
//!   byte 0      bit 0: role (0 server, 1 client); bit 1: we sent a close
//!               before reading (state CloseSent)
//!   bytes 1..3  max message size, 64 + (u16 LE % 4033), so 64..=4096
//!   byte 3      number of split points, 0..=15 (low 4 bits)
//!   then        one u16 LE per split point: a chunk length, 0..=4095
//!   rest        the stream, cut into those chunks (the last takes the rest)
//!
//! Asserts: no panic; the events (owned copies) and the failure are the same
//! as when the whole stream arrives in one chunk; Text messages are UTF-8;
//! no message exceeds the max size; a Frame consumes at least one byte and
//! at most the buffer; Incomplete's frame_len exceeds the buffer; every
//! frame we are handed to send (pong, close reply, failure close) decodes as
//! one frame of the right opcode, masked iff we are the client, and says
//! what it should (a failure's close carries the failure's code).

use ringfan::ws::close::is_valid_on_wire;
use ringfan::ws::frame::{parse_close, parse_header};
use ringfan::ws::mask::apply_mask_reference;
use ringfan::ws::{Connection, Event, MessageKind, OpCode, ProtocolError, Read, Role, State};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Message(MessageKind, Vec<u8>),
    /// payload, and the payload of the pong we were handed (decoded)
    Ping(Vec<u8>, Option<Vec<u8>>),
    Pong(Vec<u8>),
    /// code, reason, and the payload of our reply (decoded)
    Close(Option<u16>, String, Option<Vec<u8>>),
}

#[derive(Debug, PartialEq, Eq)]
struct Run {
    events: Vec<Ev>,
    /// The error, and the payload of the close frame to send (decoded).
    failure: Option<(ProtocolError, Option<Vec<u8>>)>,
}

/// Decode a frame the connection gave us to send: exactly one final frame
/// of `opcode`, masked iff we are the client. Returns the clear payload.
fn decode_own(bytes: &[u8], role: Role, opcode: OpCode) -> Vec<u8> {
    let h = parse_header(bytes)
        .unwrap_or_else(|e| panic!("own {opcode:?} frame rejected: {e}: {bytes:?}"))
        .unwrap_or_else(|| panic!("own {opcode:?} frame incomplete: {bytes:?}"));
    assert!(h.fin, "own frame not final");
    assert_eq!(h.opcode, opcode, "own frame opcode");
    assert_eq!(h.mask.is_some(), role == Role::Client, "own frame masking");
    assert_eq!(h.frame_len(), Some(bytes.len()), "own frame length");
    let mut payload = bytes[h.len..].to_vec();
    if let Some(m) = h.mask {
        apply_mask_reference(&mut payload, m, 0);
    }
    payload
}

fn run<'d>(
    role: Role,
    max: usize,
    close_first: bool,
    chunks: impl IntoIterator<Item = &'d [u8]>,
) -> Run {
    let mut conn = Connection::new(role, max);
    if close_first {
        let c = conn.close(1000, "bye").expect("first close");
        let p = decode_own(&c, role, OpCode::Close);
        assert_eq!(p, b"\x03\xe8bye");
        assert_eq!(conn.state(), State::CloseSent);
    }
    let mut events = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    'chunks: for chunk in chunks {
        pending.extend_from_slice(chunk);
        loop {
            let before = conn.state();
            let len = pending.len();
            let (consumed, ev) = match conn.read(&mut pending) {
                Ok(Read::Incomplete { frame_len }) => {
                    if let Some(n) = frame_len {
                        assert!(n > len, "Incomplete with frame_len {n} <= buffer {len}");
                    }
                    break;
                }
                Ok(Read::Frame { consumed, event }) => {
                    assert!(consumed <= len, "consumed {consumed} > buffer {len}");
                    let ev = event.map(|e| own_event(e, role, max, before));
                    (consumed, ev)
                }
                Err(f) => {
                    assert_eq!(conn.state(), State::Closed, "state after failure");
                    assert!(
                        matches!(f.error.code, 1002 | 1007 | 1009),
                        "failure code {}",
                        f.error.code
                    );
                    assert_eq!(f.close.is_some(), before == State::Open, "failure close");
                    let close = f.close.as_ref().map(|c| {
                        let p = decode_own(c, role, OpCode::Close);
                        let body = parse_close(&p).expect("failure close does not parse");
                        assert_eq!(body.code, Some(f.error.code), "failure close code");
                        p
                    });
                    events_done(&events);
                    return Run {
                        events,
                        failure: Some((f.error, close)),
                    };
                }
            };
            if let Some(e) = ev {
                events.push(e);
            }
            pending.drain(..consumed);
            if consumed == 0 {
                // Only once closed: then read swallows whatever is there,
                // including nothing, and never says Incomplete.
                assert_eq!(conn.state(), State::Closed, "Frame consumed 0 bytes");
                continue 'chunks;
            }
        }
    }
    events_done(&events);
    Run {
        events,
        failure: None,
    }
}

/// Nothing is reported after the peer's close.
fn events_done(events: &[Ev]) {
    if let Some(i) = events.iter().position(|e| matches!(e, Ev::Close(..))) {
        assert_eq!(i, events.len() - 1, "events after Close: {events:?}");
    }
}

fn own_event(e: Event<'_>, role: Role, max: usize, before: State) -> Ev {
    match e {
        Event::Message(m) => {
            assert!(
                m.payload.len() <= max,
                "message of {} > max {max}",
                m.payload.len()
            );
            if m.kind == MessageKind::Text {
                assert!(std::str::from_utf8(m.payload).is_ok(), "Text not UTF-8");
            }
            assert_eq!(before, State::Open, "message delivered while closing");
            Ev::Message(m.kind, m.payload.to_vec())
        }
        Event::Ping { payload, pong } => {
            assert!(payload.len() <= 125);
            assert_eq!(pong.is_some(), before == State::Open, "pong presence");
            let pong = pong.map(|p| {
                let p = decode_own(&p, role, OpCode::Pong);
                assert_eq!(p, payload, "pong payload");
                p
            });
            Ev::Ping(payload.to_vec(), pong)
        }
        Event::Pong(p) => {
            assert!(p.len() <= 125);
            Ev::Pong(p.to_vec())
        }
        Event::Close { body, reply } => {
            if let Some(c) = body.code {
                assert!(is_valid_on_wire(c), "close code {c} accepted");
            }
            assert_eq!(
                reply.is_some(),
                before == State::Open,
                "close reply presence"
            );
            let reply = reply.map(|r| {
                let p = decode_own(&r, role, OpCode::Close);
                let want = body
                    .code
                    .map(|c| c.to_be_bytes().to_vec())
                    .unwrap_or_default();
                assert_eq!(p, want, "close reply echoes the code");
                p
            });
            Ev::Close(body.code, body.reason.to_string(), reply)
        }
    }
}

/// One fuzz input (layout above); panics on a broken invariant.
pub fn check(data: &[u8]) {
    if data.len() < 4 {
        return;
    }
    let role = if data[0] & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let close_first = data[0] & 2 != 0;
    let max = 64 + (u16::from_le_bytes([data[1], data[2]]) as usize % 4033);
    let splits = (data[3] & 0x0f) as usize;
    let mut rest = &data[4..];
    let mut lens = Vec::with_capacity(splits);
    for _ in 0..splits {
        if rest.len() < 2 {
            break;
        }
        lens.push((u16::from_le_bytes([rest[0], rest[1]]) & 0x0fff) as usize);
        rest = &rest[2..];
    }
    let stream = rest;

    let mut chunks = Vec::with_capacity(lens.len() + 1);
    let mut at = 0;
    for n in lens {
        let end = (at + n).min(stream.len());
        chunks.push(&stream[at..end]);
        at = end;
    }
    chunks.push(&stream[at..]);

    let whole = run(role, max, close_first, [stream]);
    let split = run(role, max, close_first, chunks.iter().copied());
    assert_eq!(
        split,
        whole,
        "chunked feeding differs from whole (chunks {:?})",
        chunks.iter().map(|c| c.len()).collect::<Vec<_>>()
    );
}
