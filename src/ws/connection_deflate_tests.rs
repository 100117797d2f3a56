//! Compressed messages (permessage-deflate, RFC 7692) through the
//! connection: RSV1 rules, whole and fragmented compressed messages split
//! anywhere, the inflated size limit, bad data, and UTF-8 after inflating.

use super::*;
use crate::ws::deflate::{deflate, Agreed};
use crate::ws::frame::put_header;
use crate::ws::mask::apply_mask;

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn server(deflate: bool) -> Connection {
    let mut c = Connection::new(Role::Server, 1000);
    c.set_deflate(deflate.then_some(Agreed {
        server_window_bits: 15,
    }));
    c
}

/// A masked client frame; `rsv1` marks a compressed message's first frame.
fn frame(fin: bool, rsv1: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    put_header(&mut v, fin, OpCode::Binary, payload.len(), Some(MASK));
    v[0] = (if fin { 0x80 } else { 0 }) | (if rsv1 { 0x40 } else { 0 }) | opcode;
    let start = v.len();
    v.extend_from_slice(payload);
    apply_mask(&mut v[start..], MASK, 0);
    v
}

fn packed(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    assert!(deflate(text, &mut out));
    out
}

#[derive(Debug, PartialEq)]
enum Got {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Pong(Vec<u8>),
    Fail(u16, &'static str),
}

/// Feeds `bytes` cut into `cuts`-sized pieces, as a runtime would.
fn run(conn: &mut Connection, bytes: &[u8], cut: usize) -> Vec<Got> {
    let mut got = Vec::new();
    let mut pending = Vec::new();
    for piece in bytes.chunks(cut.max(1)) {
        pending.extend_from_slice(piece);
        loop {
            match conn.read(&mut pending) {
                Ok(Read::Frame { consumed, event }) => {
                    match event {
                        Some(Event::Message(m)) => got.push(match m.kind {
                            MessageKind::Text => Got::Text(m.payload.to_vec()),
                            MessageKind::Binary => Got::Binary(m.payload.to_vec()),
                        }),
                        Some(Event::Ping { payload, .. }) => got.push(Got::Pong(payload.to_vec())),
                        _ => {}
                    }
                    pending.drain(..consumed);
                    if pending.is_empty() {
                        break;
                    }
                }
                Ok(Read::Incomplete { .. }) => break,
                Err(f) => {
                    got.push(Got::Fail(f.error.code, f.error.reason));
                    return got;
                }
            }
        }
    }
    got
}

const QUOTE: &[u8] = br#"{"op":"pub","topic":"md.NASDAQ.AAPL","data":{"bid":189.51,"ask":189.52,"bid_size":300,"ask_size":200}}"#;

#[test]
fn a_compressed_message_whole_or_fragmented_split_anywhere() {
    let p = packed(QUOTE);
    let (a, b) = p.split_at(p.len() / 3);
    let (b, c) = b.split_at(b.len() / 2);
    let mut stream = frame(true, true, 1, &p);
    // Fragmented: RSV1 on the first frame only, a ping in the middle.
    stream.extend(frame(false, true, 1, a));
    stream.extend(frame(false, false, 0, b));
    stream.extend(frame(true, false, 9, b"hi"));
    stream.extend(frame(true, false, 0, c));
    // And plain messages still work alongside.
    stream.extend(frame(true, false, 2, b"plain"));
    for cut in [1, 2, 3, 7, 64, stream.len()] {
        let got = run(&mut server(true), &stream, cut);
        assert_eq!(
            got,
            [
                Got::Text(QUOTE.to_vec()),
                Got::Pong(b"hi".to_vec()),
                Got::Text(QUOTE.to_vec()),
                Got::Binary(b"plain".to_vec()),
            ],
            "cut {cut}"
        );
    }
}

#[test]
fn rsv1_rules() {
    let p = packed(QUOTE);
    let cases: [(Vec<u8>, bool, &str); 4] = [
        (frame(true, true, 1, &p), false, "reserved bits set"),
        (
            frame(true, true, 9, b"x"),
            true,
            "RSV1 set on a control frame",
        ),
        (
            [
                frame(false, true, 1, &p[..4]),
                frame(true, true, 0, &p[4..]),
            ]
            .concat(),
            true,
            "RSV1 set on a continuation frame",
        ),
        (
            frame(true, true, 1, &[0xff, 0xff, 0xff]),
            true,
            "invalid compressed data",
        ),
    ];
    for (bytes, deflate, reason) in cases {
        let got = run(&mut server(deflate), &bytes, bytes.len());
        assert_eq!(got.last(), Some(&Got::Fail(1002, reason)));
    }
}

#[test]
fn the_limit_applies_to_the_inflated_size() {
    // 5,000 bytes compress far below the 1,000-byte limit.
    let big = vec![b'a'; 5000];
    let p = packed(&big);
    assert!(p.len() < 100);
    let got = run(&mut server(true), &frame(true, true, 2, &p), 10);
    assert_eq!(got, [Got::Fail(1009, "message too big once inflated")]);
    let fragmented = [
        frame(false, true, 2, &p[..10]),
        frame(true, false, 0, &p[10..]),
    ]
    .concat();
    let got = run(&mut server(true), &fragmented, 10);
    assert_eq!(got, [Got::Fail(1009, "message too big once inflated")]);
    // Just under the limit passes.
    let ok = vec![b'a'; 1000];
    let got = run(&mut server(true), &frame(true, true, 2, &packed(&ok)), 10);
    assert_eq!(got, [Got::Binary(ok)]);
}

#[test]
fn utf8_is_checked_after_inflating() {
    let bad = b"caf\xc3";
    let p = packed(&[bad.as_slice(); 8].concat());
    let got = run(&mut server(true), &frame(true, true, 1, &p), 3);
    assert_eq!(got, [Got::Fail(1007, "invalid UTF-8 in text message")]);
    // The same bytes as binary are fine.
    let got = run(&mut server(true), &frame(true, true, 2, &p), 3);
    assert_eq!(got, [Got::Binary([bad.as_slice(); 8].concat())]);
}

#[test]
fn no_buffer_is_kept_after_a_compressed_message() {
    let mut conn = server(true);
    let got = run(&mut conn, &frame(true, true, 1, &packed(QUOTE)), 5);
    assert_eq!(got, [Got::Text(QUOTE.to_vec())]);
    conn.release_delivered();
    assert!(conn.assembled.is_none(), "an idle connection holds nothing");
}
