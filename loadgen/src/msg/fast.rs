//! Fast path: the broker's exact shapes, matched byte for byte. Every
//! reader here answers only when it is certain; `None` sends the text to
//! the slow path (or, for [`stamp`] and [`delivery`], to [`super::parse`]).

use super::scan::{all_digits, find_special, whole_value, ONES};
use super::Server;

/// The latency stamp of a payload that starts with `{"t":N` (as every
/// payload this generator publishes does), or `None`.
///
/// Only the prefix is looked at; the number must be a plain JSON integer
/// that fits a `u64` and be followed by `,` or `}`.
#[inline]
pub fn stamp(data: &[u8]) -> Option<u64> {
    let rest = data.strip_prefix(br#"{"t":"#)?;
    let (t, rest) = fast_u64(rest)?;
    match rest.first() {
        Some(b',' | b'}') => Some(t),
        _ => None,
    }
}

/// What the generator needs from a delivery, and only that: its seq and
/// the send time at the front of its data, plus the data's length. For the
/// broker's exact framing (`{"op":"msg","topic":"…","seq":N,` then
/// optionally `"snapshot":true,`, then `"data":…}`); None for anything
/// else, which then goes through [`parse`](super::parse).
///
/// This is the receive hot path at millions of messages a second, so it
/// does not re-validate the data as JSON (the frame layer validated it as
/// UTF-8, and the broker passes it through unparsed): validating it took a
/// fifth of the generator's CPU.
#[inline]
pub fn delivery(text: &[u8]) -> Option<Delivery> {
    let (_, seq, snapshot, data) = msg_parts(text.strip_prefix(MSG_PREFIX)?)?;
    Some(Delivery {
        seq,
        snapshot,
        stamp: stamp(data),
        data_len: data.len(),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub seq: u64,
    pub snapshot: bool,
    pub stamp: Option<u64>,
    pub data_len: usize,
}

const MSG_PREFIX: &[u8] = br#"{"op":"msg","topic":""#;
const ACK_PREFIX: &[u8] = br#"{"op":"ack","id":"#;
const ERR_PREFIX: &[u8] = br#"{"op":"err","#;

/// `Some` only when certain; `None` means "ask the slow path".
#[inline(always)]
pub(super) fn parse_fast(b: &[u8]) -> Option<Server<'_>> {
    if let Some(rest) = b.strip_prefix(MSG_PREFIX) {
        fast_msg(rest)
    } else if let Some(rest) = b.strip_prefix(ACK_PREFIX) {
        let (id, rest) = fast_u64(rest)?;
        (rest == b"}").then_some(Server::Ack { id })
    } else if let Some(rest) = b.strip_prefix(ERR_PREFIX) {
        fast_err(rest)
    } else {
        None
    }
}

#[inline]
fn fast_msg(rest: &[u8]) -> Option<Server<'_>> {
    let (topic, seq, snapshot, data) = msg_parts(rest)?;
    let topic = std::str::from_utf8(topic).ok()?;
    whole_value(data).then_some(Server::Msg {
        topic,
        seq,
        snapshot,
        data,
    })
}

/// The broker's `msg` framing after [`MSG_PREFIX`]: topic (unescaped), seq,
/// snapshot flag and data, the data not checked. The one grammar both
/// [`parse`] (which then validates the data) and [`delivery`] (which does
/// not) read.
#[inline(always)]
fn msg_parts(rest: &[u8]) -> Option<(&[u8], u64, bool, &[u8])> {
    let end = find_special(rest, 0, &mut 0);
    let (topic, rest) = rest.split_at_checked(end)?;
    let rest = rest.strip_prefix(br#"","seq":"#)?;
    let (seq, rest) = fast_u64(rest)?;
    let (snapshot, rest) = if let Some(r) = rest.strip_prefix(br#","data":"#) {
        (false, r)
    } else if let Some(r) = rest.strip_prefix(br#","snapshot":true,"data":"#) {
        (true, r)
    } else {
        (false, rest.strip_prefix(br#","snapshot":false,"data":"#)?)
    };
    Some((topic, seq, snapshot, rest.strip_suffix(b"}")?))
}

fn fast_err(rest: &[u8]) -> Option<Server<'_>> {
    let (id, rest) = match rest.strip_prefix(br#""id":"#) {
        Some(r) => {
            let (id, r) = fast_u64(r)?;
            (Some(id), r.strip_prefix(b",")?)
        }
        None => (None, rest),
    };
    let (code, rest) = fast_str(rest.strip_prefix(br#""code":""#)?)?;
    if rest != b"}" {
        let message = rest.strip_prefix(br#","message":"#)?.strip_suffix(b"}")?;
        if !whole_value(message) {
            return None;
        }
    }
    Some(Server::Err { id, code })
}

/// The body of a string whose opening quote has been consumed, when it has
/// no escapes (so it can be lent out as is); returns it and what follows the
/// closing quote.
#[inline]
fn fast_str(rest: &[u8]) -> Option<(&str, &[u8])> {
    let k = find_special(rest, 0, &mut 0);
    let (s, tail) = rest.split_at_checked(k)?;
    if tail.first() != Some(&b'"') {
        return None;
    }
    Some((std::str::from_utf8(s).ok()?, tail.get(1..)?))
}

/// A JSON integer (no sign, no leading zero, no fraction or exponent) that
/// fits a `u64`, and what follows it. Anything else is left to serde_json,
/// which gets to say whether `1.0` or `1e3` is a number or an error.
#[inline]
fn fast_u64(rest: &[u8]) -> Option<(u64, &[u8])> {
    let mut n: u64 = 0;
    let mut i = 0;
    while let Some((w, _)) = rest.get(i..).and_then(<[u8]>::split_first_chunk::<8>) {
        let w = u64::from_le_bytes(*w);
        if !all_digits(w) {
            break;
        }
        n = n.checked_mul(100_000_000)?.checked_add(eight_digits(w))?;
        i += 8;
    }
    while let Some(&d) = rest.get(i) {
        if !d.is_ascii_digit() {
            break;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        i += 1;
    }
    let (digits, tail) = rest.split_at_checked(i)?;
    if digits.is_empty()
        || (digits.len() > 1 && digits.first() == Some(&b'0'))
        || matches!(tail.first(), Some(b'.' | b'e' | b'E'))
    {
        return None;
    }
    Some((n, tail))
}

/// Eight ASCII digits, the first in the lowest byte, to their value (the
/// well-known SWAR reduction: pairs, then quads, then the whole), so that a
/// 19-digit nanosecond stamp is two word steps and three digit steps rather
/// than a 19-long multiply chain.
#[inline]
fn eight_digits(w: u64) -> u64 {
    const MASK: u64 = 0x0000_00FF_0000_00FF;
    const MUL1: u64 = 100 + (1_000_000 << 32);
    const MUL2: u64 = 1 + (10_000 << 32);
    let v = w.wrapping_sub(ONES * u64::from(b'0'));
    let v = v.wrapping_mul(10).wrapping_add(v >> 8);
    (v & MASK)
        .wrapping_mul(MUL1)
        .wrapping_add(((v >> 16) & MASK).wrapping_mul(MUL2))
        >> 32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{parse, write_payload};
    use proptest::prelude::*;

    #[test]
    fn delivery_reads_seq_and_stamp_of_the_broker_framing() {
        let f = br#"{"op":"msg","topic":"md.X.A","seq":42,"data":{"t":123,"p":"xx"}}"#;
        let d = delivery(f).unwrap();
        assert_eq!(
            (d.seq, d.snapshot, d.stamp, d.data_len),
            (42, false, Some(123), 18)
        );
        let f = br#"{"op":"msg","topic":"t","seq":7,"snapshot":true,"data":[1]}"#;
        let d = delivery(f).unwrap();
        assert_eq!((d.seq, d.snapshot, d.stamp, d.data_len), (7, true, None, 3));
        // Anything else is for the full parser.
        assert!(delivery(br#"{"op":"ack","id":1}"#).is_none());
        assert!(delivery(br#"{"topic":"t","op":"msg","seq":1,"data":1}"#).is_none());
        assert!(delivery(br#"{"op":"msg","topic":"a\"b","seq":1,"data":1}"#).is_none());
        assert!(delivery(br#"{"op":"msg","topic":"t","seq":1,"data":1"#).is_none());
        assert!(delivery(br#"{"op":"msg","topic":"t","seq":x,"data":1}"#).is_none());
        assert!(delivery(b"").is_none());
    }

    proptest::proptest! {
        #[test]
        fn delivery_agrees_with_parse(topic in "[a-z.]{1,20}", seq in 0u64..u64::MAX, t in 0u64..u64::MAX, pad in 0usize..64) {
            let mut data = Vec::new();
            write_payload(&mut data, t, 20 + pad);
            let text = format!(r#"{{"op":"msg","topic":"{topic}","seq":{seq},"data":{}}}"#, String::from_utf8(data.clone()).unwrap());
            let d = delivery(text.as_bytes()).unwrap();
            match parse(text.as_bytes()).unwrap() {
                Server::Msg { seq: s, data: dd, .. } => {
                    proptest::prop_assert_eq!(d.seq, s);
                    proptest::prop_assert_eq!(d.data_len, dd.len());
                    proptest::prop_assert_eq!(d.stamp, stamp(dd));
                }
                _ => proptest::prop_assert!(false),
            }
        }
    }

    #[test]
    fn stamps() {
        assert_eq!(stamp(br#"{"t":123456789,"p":"xxxx"}"#), Some(123456789));
        assert_eq!(stamp(br#"{"t":0}"#), Some(0));
        assert_eq!(stamp(br#"{"t":18446744073709551615}"#), Some(u64::MAX));
        for bad in [
            &br#"{"t":18446744073709551616}"#[..],
            br#"{"t":1.5}"#,
            br#"{"t":1"#,
            br#"{"t":-1}"#,
            br#"{"t":01}"#,
            br#"{"t":"1"}"#,
            br#"{ "t":1}"#,
            br#"[1]"#,
            b"",
        ] {
            assert_eq!(stamp(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    proptest! {
        #[test]
        fn digits_match_naive(n in any::<u64>(), extra in 0u32..3) {
            let s = format!("{n}{}", "9".repeat(extra as usize));
            let naive = s.parse::<u64>().ok();
            let tail = format!("{s},");
            prop_assert_eq!(fast_u64(tail.as_bytes()), naive.map(|n| (n, &b","[..])));
            prop_assert_eq!(fast_u64(s.as_bytes()), naive.map(|n| (n, &b""[..])));
        }
    }
}
