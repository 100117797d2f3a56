//! permessage-deflate's inbound path (`ws::deflate::inflate`, the part a
//! peer controls) and its outbound round trip.
//!
//! Input layout:
//!   byte 0      bits 0-3: the message limit, 1 << (4 + n % 14) (16 B..128 KiB);
//!               bits 4-7: server window bits for `compress`, 8 + n % 8
//!   rest        bytes handed to `inflate` as a compressed message, and to
//!               `compress` as a message
//!
//! Asserts: no panic; inflating never holds more than the limit plus one
//! byte (a bomb is bounded by the limit, not by its ratio) and never
//! returns more than the limit; the result is the same when inflated
//! again (the per-thread state is reset between messages, whatever the
//! previous one left); whatever inflated is also what `flate2`'s own raw
//! inflater makes of it; and any message `compress` makes, under any
//! window, inflates back to itself.

use flate2::{Decompress, FlushDecompress, Status};
use ringfan::ws::deflate::{compress, inflate, Agreed, InflateError};

const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];

/// A plain, unbounded raw inflate of `data` + tail, for comparison: the
/// stream's output, or None if it is invalid.
fn reference(data: &[u8], max: usize) -> Option<Vec<u8>> {
    let mut d = Decompress::new(false);
    let mut out = Vec::with_capacity(max + 1);
    let input: Vec<u8> = [data, &TAIL].concat();
    let mut at = 0;
    loop {
        let before = d.total_in();
        let status = d
            .decompress_vec(&input[at..], &mut out, FlushDecompress::Sync)
            .ok()?;
        at += (d.total_in() - before) as usize;
        if status == Status::StreamEnd || at == input.len() || out.len() == out.capacity() {
            return Some(out);
        }
        if d.total_in() == before {
            return None;
        }
    }
}

pub fn check(data: &[u8]) {
    let Some((&head, body)) = data.split_first() else {
        return;
    };
    let max = 1usize << (4 + (head & 0x0f) % 14);
    let bits = 8 + (head >> 4) % 8;

    let mut out = Vec::new();
    let first = inflate(body, max, &mut out);
    assert!(
        out.capacity() <= max + 1,
        "held {} for a limit of {max}",
        out.capacity()
    );
    match first {
        Ok(()) => {
            assert!(out.len() <= max);
            if let Some(r) = reference(body, max) {
                assert!(r == out, "differs from flate2's raw inflate");
            }
        }
        Err(InflateError::TooBig) => {
            if let Some(r) = reference(body, max) {
                assert!(r.len() > max, "refused as too big at {} bytes", r.len());
            }
        }
        Err(InflateError::Invalid) => {}
    }
    let again_out = {
        let mut o = Vec::new();
        let again = inflate(body, max, &mut o);
        assert_eq!(again, first, "not the same twice");
        o
    };
    if first.is_ok() {
        assert!(again_out == out);
    }

    let agreed = Agreed {
        server_window_bits: bits,
    };
    let mut packed = Vec::new();
    compress(agreed, body, &mut packed);
    let mut back = Vec::new();
    inflate(&packed, body.len(), &mut back).expect("our own message inflates");
    assert!(back == body, "round trip");
}
