//! The wire messages the load generator reads and writes (protocol v1, see
//! `protocol.md`).
//!
//! Why this is hand-written rather than `serde_json::from_slice`: a
//! generator that must account several million deliveries per second on one
//! core has a budget of a few hundred nanoseconds per message for *everything*
//! (WebSocket decode, parse, latency histogram), and a serde parse of a
//! `msg` costs about as much as that on its own. The broker frames every
//! message in exactly one shape, so [`parse`] first matches that shape
//! byte for byte (fixed prefixes, a digit loop for `seq`, a word-at-a-time
//! scan of the payload that validates it as JSON), which costs tens of
//! nanoseconds.
//!
//! The fast path only answers when it is *certain* that serde_json would
//! accept the text and read the same fields out of it. Anything else —
//! another key order, whitespace, escapes in the topic, numbers with an
//! exponent (whose range serde_json checks), surrogate escapes, deep
//! nesting, malformed bytes — goes to a slow path that lets serde_json decide
//! validity and meaning, and only locates the borrowed spans itself. So
//! [`parse`] agrees with serde_json on every input by construction; the
//! property tests below check exactly that.
//!
//! Nothing here panics on network input: all access is through `get`,
//! `strip_prefix` and checked arithmetic.
//!
//! The writers ([`write_payload`], [`write_pub`], [`write_sub`]) append to a
//! caller-owned buffer so the send path allocates nothing per message.

use std::borrow::Cow;
use std::fmt;

/// A message from the broker, borrowing from the frame it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server<'a> {
    /// A delivery. `data` is the publisher's bytes exactly as framed.
    Msg {
        topic: &'a str,
        seq: u64,
        snapshot: bool,
        data: &'a [u8],
    },
    /// Success of the request that carried `id`.
    Ack { id: u64 },
    /// Failure, of the request with `id` when there is one.
    Err { id: Option<u64>, code: &'a str },
    /// Valid JSON that is not a message we understand: not an object, no or
    /// an unknown `op`, or a `topic`/`code` written with escapes (which we
    /// cannot lend out unescaped; the broker never writes them).
    Other,
}

/// The text was not JSON, or a known `op` lacked a field or had one of the
/// wrong type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadMsg {
    /// What was wrong, for logs and counters.
    pub reason: &'static str,
}

impl fmt::Display for BadMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad server message: {}", self.reason)
    }
}

impl std::error::Error for BadMsg {}

const fn bad(reason: &'static str) -> BadMsg {
    BadMsg { reason }
}

/// Parses one server text frame — the receive hot path.
///
/// The broker's exact shapes take a fast path: fixed prefixes, a word-wise
/// digit parse for `seq`, and a scan that validates `data` as JSON (a
/// shortcut for compact flat objects, which is what this generator and the
/// feed simulator publish; string bytes a word at a time). Any other text
/// goes to serde_json. Either way the answer is
/// what serde_json reads from the text, and [`BadMsg`] when serde_json
/// rejects it. Never panics.
#[inline]
pub fn parse(text: &[u8]) -> Result<Server<'_>, BadMsg> {
    match parse_fast(text) {
        Some(m) => Ok(m),
        None => parse_slow(text),
    }
}

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
/// else, which then goes through [`parse`].
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

/// The smallest size [`write_payload`] can produce exactly for `t_ns`:
/// `{"t":N,"p":""}`.
pub fn payload_min_len(t_ns: u64) -> usize {
    13 + itoa::Buffer::new().format(t_ns).len()
}

/// 256 bytes of `abc…zabc…` padding; cycling letters rather than one repeated
/// byte keeps the payload from looking degenerate to anything on the path.
const PAD: [u8; 256] = {
    let mut a = [0u8; 256];
    let mut i = 0;
    while i < a.len() {
        a[i] = b'a' + (i % 26) as u8;
        i += 1;
    }
    a
};

/// Appends the JSON object `{"t":t_ns,"p":"abc…"}` of exactly `size` bytes,
/// or the minimal object `{"t":t_ns}` when `size` is below
/// [`payload_min_len`]. [`stamp`] reads `t_ns` back.
pub fn write_payload(buf: &mut Vec<u8>, t_ns: u64, size: usize) {
    let mut num = itoa::Buffer::new();
    let t = num.format(t_ns).as_bytes();
    let min = 13 + t.len();
    buf.reserve(size.max(min));
    buf.extend_from_slice(br#"{"t":"#);
    buf.extend_from_slice(t);
    if size < min {
        buf.push(b'}');
        return;
    }
    buf.extend_from_slice(br#","p":""#);
    let mut left = size - min;
    while left > 0 {
        let n = left.min(PAD.len());
        buf.extend_from_slice(PAD.get(..n).unwrap_or_default());
        left -= n;
    }
    buf.extend_from_slice(br#""}"#);
}

/// Appends `{"op":"pub","topic":"…","data":…,"id":N}` (no `id` when `None`).
/// `data` must already be JSON; it is copied verbatim.
pub fn write_pub(buf: &mut Vec<u8>, topic: &str, id: Option<u64>, data: &[u8]) {
    buf.reserve(48 + topic.len() + data.len());
    buf.extend_from_slice(br#"{"op":"pub","topic":"#);
    write_str(buf, topic);
    buf.extend_from_slice(br#","data":"#);
    buf.extend_from_slice(data);
    if let Some(id) = id {
        buf.extend_from_slice(br#","id":"#);
        buf.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
    }
    buf.push(b'}');
}

/// Appends `{"op":"sub","topics":[…],"id":N}`, with `"snapshot":true` when
/// asked for.
pub fn write_sub(buf: &mut Vec<u8>, topics: &[&str], id: u64, snapshot: bool) {
    buf.extend_from_slice(br#"{"op":"sub","topics":["#);
    for (i, t) in topics.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        write_str(buf, t);
    }
    buf.extend_from_slice(br#"],"id":"#);
    buf.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
    if snapshot {
        buf.extend_from_slice(br#","snapshot":true"#);
    }
    buf.push(b'}');
}

/// Appends `s` as a JSON string. Protocol topics and symbols never need
/// escaping, so that case is one check and a copy; anything else is escaped
/// correctly rather than producing invalid JSON.
pub fn write_str(buf: &mut Vec<u8>, s: &str) {
    buf.push(b'"');
    if s.bytes().all(|c| c >= 0x20 && c != b'"' && c != b'\\') {
        buf.extend_from_slice(s.as_bytes());
    } else {
        for c in s.bytes() {
            match c {
                b'"' => buf.extend_from_slice(br#"\""#),
                b'\\' => buf.extend_from_slice(br"\\"),
                b'\n' => buf.extend_from_slice(br"\n"),
                b'\r' => buf.extend_from_slice(br"\r"),
                b'\t' => buf.extend_from_slice(br"\t"),
                0..=0x1f => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    buf.extend_from_slice(br"\u00");
                    buf.push(HEX[usize::from(c >> 4)]);
                    buf.push(HEX[usize::from(c & 0xf)]);
                }
                _ => buf.push(c),
            }
        }
    }
    buf.push(b'"');
}

// ---------------------------------------------------------------------------
// Fast path: the broker's exact shapes.

const MSG_PREFIX: &[u8] = br#"{"op":"msg","topic":""#;
const ACK_PREFIX: &[u8] = br#"{"op":"ack","id":"#;
const ERR_PREFIX: &[u8] = br#"{"op":"err","#;

/// `Some` only when certain; `None` means "ask the slow path".
#[inline(always)]
fn parse_fast(b: &[u8]) -> Option<Server<'_>> {
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

/// `v` is exactly one JSON value of the subset we vouch for, with no
/// surrounding whitespace.
#[inline]
fn whole_value(v: &[u8]) -> bool {
    if let Some(end) = skip_flat_object(v) {
        return end == v.len();
    }
    matches!(v.first(), Some(&c) if !is_ws(c)) && skip_strict(v, 0) == Some(v.len())
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

/// All eight bytes of the word are ASCII digits.
#[inline]
fn all_digits(w: u64) -> bool {
    const NIBBLE: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    const THREES: u64 = 0x3030_3030_3030_3030;
    w & NIBBLE == THREES && w.wrapping_add(ONES * 6) & NIBBLE == THREES
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

#[inline(always)]
fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

/// The byte at `i`, or 0 past the end. A zero byte is invalid wherever the
/// scanner looks (outside strings it is no token; inside, a raw control
/// character), so running off the end takes the same "not JSON" branch as a
/// bad byte, without a check of its own.
#[inline(always)]
fn at(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

/// The eight bytes at `i` as a little-endian word, if there are eight.
#[inline(always)]
fn word(b: &[u8], i: usize) -> Option<u64> {
    b.get(i..)
        .and_then(<[u8]>::first_chunk::<8>)
        .map(|w| u64::from_le_bytes(*w))
}

#[inline(always)]
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while is_ws(at(b, i)) {
        i += 1;
    }
    i
}

/// Deeper data is left to serde_json (whose own limit is 128 levels for the
/// whole message).
const MAX_DEPTH: u32 = 64;
/// Longer numbers are left to serde_json, which rejects values that round to
/// infinity (a 310-digit integer does).
const MAX_NUMBER_LEN: usize = 300;

/// Validating skip over one JSON value starting at `b[i]` (leading
/// whitespace allowed); returns the index just past it. `None` when the
/// bytes are not JSON *or* fall outside the subset we can vouch for without
/// serde_json: exponents, `\uD800`–`\uDFFF` escapes, numbers over
/// [`MAX_NUMBER_LEN`] bytes, nesting over [`MAX_DEPTH`].
///
/// Iterative, with the kinds of the open containers as bits of a `u64`, so
/// hostile nesting costs no stack.
fn skip_strict(b: &[u8], mut i: usize) -> Option<usize> {
    let mut objects: u64 = 0; // bit d: the container at depth d+1 is an object
    let mut depth: u32 = 0;
    'value: loop {
        i = skip_ws(b, i);
        match at(b, i) {
            b'"' => i = skip_string(b, i + 1)?,
            b'-' | b'0'..=b'9' => i = skip_number(b, i)?,
            open @ (b'{' | b'[') => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                let obj = open == b'{';
                objects = (objects & !(1 << depth)) | (u64::from(obj) << depth);
                depth += 1;
                i = skip_ws(b, i + 1);
                match at(b, i) {
                    b'}' if obj => {
                        depth -= 1;
                        i += 1;
                    }
                    b']' if !obj => {
                        depth -= 1;
                        i += 1;
                    }
                    b'"' if obj => {
                        i = skip_key(b, i + 1)?;
                        continue 'value;
                    }
                    _ if obj => return None,
                    _ => continue 'value,
                }
            }
            b't' => i = skip_literal(b, i, b"true")?,
            b'f' => i = skip_literal(b, i, b"false")?,
            b'n' => i = skip_literal(b, i, b"null")?,
            _ => return None,
        }
        // After a value: close containers until the next element starts.
        loop {
            if depth == 0 {
                return Some(i);
            }
            i = skip_ws(b, i);
            let obj = (objects >> (depth - 1)) & 1 != 0;
            match at(b, i) {
                b',' => {
                    i = skip_ws(b, i + 1);
                    if obj {
                        if at(b, i) != b'"' {
                            return None;
                        }
                        i = skip_key(b, i + 1)?;
                    }
                    continue 'value;
                }
                b'}' if obj => {
                    depth -= 1;
                    i += 1;
                }
                b']' if !obj => {
                    depth -= 1;
                    i += 1;
                }
                _ => return None,
            }
        }
    }
}

/// The common case of [`skip_strict`], several times faster: a compact
/// object whose values are strings, numbers and literals (every payload this
/// generator and the feed simulator publish). `None` on anything else —
/// whitespace, nesting, or a value outside the subset — and the caller
/// falls back to [`skip_strict`].
#[inline(always)]
fn skip_flat_object(b: &[u8]) -> Option<usize> {
    if at(b, 0) != b'{' {
        return None;
    }
    if at(b, 1) == b'}' {
        return Some(2);
    }
    let mut i = 1;
    loop {
        if at(b, i) != b'"' {
            return None;
        }
        i = skip_string(b, i + 1)?;
        if at(b, i) != b':' {
            return None;
        }
        i += 1;
        i = match at(b, i) {
            b'"' => skip_string(b, i + 1)?,
            b'-' | b'0'..=b'9' => skip_number(b, i)?,
            b't' => skip_literal(b, i, b"true")?,
            b'f' => skip_literal(b, i, b"false")?,
            b'n' => skip_literal(b, i, b"null")?,
            _ => return None,
        };
        match at(b, i) {
            b',' => i += 1,
            b'}' => return Some(i + 1),
            _ => return None,
        }
    }
}

/// From just after a key's opening quote: the key, whitespace, the colon;
/// returns the index after the colon.
#[inline(always)]
fn skip_key(b: &[u8], i: usize) -> Option<usize> {
    let j = skip_ws(b, skip_string(b, i)?);
    (at(b, j) == b':').then_some(j + 1)
}

#[inline(always)]
fn skip_literal(b: &[u8], i: usize, lit: &[u8]) -> Option<usize> {
    (b.get(i..i + lit.len())? == lit).then_some(i + lit.len())
}

#[inline(always)]
fn skip_number(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + usize::from(at(b, start) == b'-');
    match at(b, i) {
        b'0' => i += 1,
        b'1'..=b'9' => i = skip_digits(b, i + 1),
        _ => return None,
    }
    if at(b, i) == b'.' {
        let j = skip_digits(b, i + 1);
        if j == i + 1 {
            return None;
        }
        i = j;
    }
    if matches!(at(b, i), b'e' | b'E') || i - start > MAX_NUMBER_LEN {
        return None;
    }
    Some(i)
}

#[inline(always)]
fn skip_digits(b: &[u8], mut i: usize) -> usize {
    while word(b, i).is_some_and(all_digits) {
        i += 8;
    }
    while at(b, i).is_ascii_digit() {
        i += 1;
    }
    i
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Flags (high bit of the byte) the bytes of the little-endian word that are
/// `"`, `\` or control characters. These has-zero / has-less-than bit tricks
/// can also flag a byte *above* a true hit, never below one, so the lowest
/// flag is exact (and a zero mask means none).
#[inline(always)]
fn attention(w: u64) -> u64 {
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let quote = has_zero(w ^ (ONES * u64::from(b'"')));
    let backslash = has_zero(w ^ (ONES * u64::from(b'\\')));
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    quote | backslash | control
}

/// Index of the first `"`, `\` or control byte in `b[j..]`, or `b.len()`.
/// ORs the bytes it passes (and perhaps a few after) into `seen`, so the
/// caller can tell from `seen & HIGH` whether a UTF-8 check is needed.
///
/// Two words (sixteen bytes) a step with one branch: portable, no `unsafe`,
/// about as fast per byte as serde_json's own string skipping. String bytes
/// are cheap next to the per-message cost at the sizes where the delivery
/// rate matters.
#[inline(always)]
fn find_special(b: &[u8], mut j: usize, seen: &mut u64) -> usize {
    while let Some((w0, rest)) = b.get(j..).and_then(<[u8]>::split_first_chunk::<8>) {
        let w0 = u64::from_le_bytes(*w0);
        let m0 = attention(w0);
        *seen |= w0;
        if m0 != 0 {
            return j + (m0.trailing_zeros() / 8) as usize;
        }
        let Some((w1, _)) = rest.split_first_chunk::<8>() else {
            j += 8;
            break;
        };
        let w1 = u64::from_le_bytes(*w1);
        let m1 = attention(w1);
        *seen |= w1;
        if m1 != 0 {
            return j + 8 + (m1.trailing_zeros() / 8) as usize;
        }
        j += 16;
    }
    loop {
        let c = at(b, j);
        if c == b'"' || c == b'\\' || c < 0x20 {
            return j; // at the end, `at` gave 0 and j == b.len()
        }
        *seen |= u64::from(c);
        j += 1;
    }
}

/// From just after a string's opening quote; returns the index after the
/// closing quote. Non-ASCII strings are checked as UTF-8 once at the end,
/// as serde_json would.
#[inline(always)]
fn skip_string(b: &[u8], start: usize) -> Option<usize> {
    let mut j = start;
    let mut seen = 0u64;
    loop {
        j = find_special(b, j, &mut seen);
        match at(b, j) {
            b'"' => break,
            b'\\' => j = skip_escape(b, j)?,
            _ => return None, // a raw control character, or the end
        }
    }
    if seen & HIGH != 0 {
        std::str::from_utf8(b.get(start..j)?).ok()?;
    }
    Some(j + 1)
}

/// An escape at `b[j]` (the backslash); returns the index after it.
/// Surrogate escapes are serde_json's call (pairing rules).
#[inline(always)]
fn skip_escape(b: &[u8], j: usize) -> Option<usize> {
    match at(b, j + 1) {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(j + 2),
        b'u' => {
            let mut cp = 0u32;
            for &c in b.get(j + 2..j + 6)? {
                cp = cp * 16 + char::from(c).to_digit(16)?;
            }
            (!(0xD800..=0xDFFF).contains(&cp)).then_some(j + 6)
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Slow path: serde_json decides; we only find the spans to lend out.

fn parse_slow(text: &[u8]) -> Result<Server<'_>, BadMsg> {
    use serde_json::Value;

    let v: Value = serde_json::from_slice(text).map_err(|_| bad("not JSON"))?;
    let Value::Object(obj) = &v else {
        return Ok(Server::Other);
    };
    let Some(Value::String(op)) = obj.get("op") else {
        return Ok(Server::Other);
    };
    let u64_field = |key: &'static str, reason: &'static str| {
        obj.get(key).and_then(Value::as_u64).ok_or(bad(reason))
    };
    match op.as_str() {
        "msg" => {
            if !obj.get("topic").is_some_and(Value::is_string) {
                return Err(bad("msg without a string topic"));
            }
            let seq = u64_field("seq", "msg without an unsigned seq")?;
            let snapshot = match obj.get("snapshot") {
                None => false,
                Some(Value::Bool(s)) => *s,
                Some(_) => return Err(bad("msg with a non-boolean snapshot")),
            };
            if !obj.contains_key("data") {
                return Err(bad("msg without data"));
            }
            let spans = Spans::find(text).ok_or(bad("unlocatable field"))?;
            let (Some(topic), Some(data)) = (spans.topic, spans.data) else {
                return Err(bad("unlocatable field"));
            };
            let Some(topic) = unescaped(topic) else {
                return Ok(Server::Other);
            };
            Ok(Server::Msg {
                topic,
                seq,
                snapshot,
                data,
            })
        }
        "ack" => Ok(Server::Ack {
            id: u64_field("id", "ack without an unsigned id")?,
        }),
        "err" => {
            let id = match obj.get("id") {
                None | Some(Value::Null) => None,
                Some(id) => Some(id.as_u64().ok_or(bad("err with a non-integer id"))?),
            };
            if !obj.get("code").is_some_and(Value::is_string) {
                return Err(bad("err without a string code"));
            }
            let spans = Spans::find(text).ok_or(bad("unlocatable field"))?;
            let code = spans.code.ok_or(bad("unlocatable field"))?;
            Ok(match unescaped(code) {
                Some(code) => Server::Err { id, code },
                None => Server::Other,
            })
        }
        _ => Ok(Server::Other),
    }
}

/// The body of a JSON string literal (quotes included in `lit`) when it has
/// no escapes, so it can be lent out as is.
fn unescaped(lit: &[u8]) -> Option<&str> {
    let body = lit.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    if body.contains(&b'\\') {
        return None;
    }
    std::str::from_utf8(body).ok()
}

/// Raw spans of the top-level fields we lend out; the last occurrence wins,
/// as in serde_json's map.
#[derive(Default)]
struct Spans<'a> {
    topic: Option<&'a [u8]>,
    code: Option<&'a [u8]>,
    data: Option<&'a [u8]>,
}

impl<'a> Spans<'a> {
    /// Walks the top-level object of text that serde_json has already
    /// accepted, so the scanning only has to find ends, not validate.
    fn find(b: &'a [u8]) -> Option<Self> {
        let mut spans = Spans::default();
        let mut i = skip_ws(b, 0);
        if b.get(i) != Some(&b'{') {
            return None;
        }
        i = skip_ws(b, i + 1);
        if b.get(i) == Some(&b'}') {
            return Some(spans);
        }
        loop {
            let key_end = loose_string_end(b, i)?;
            let key_lit = b.get(i..key_end)?;
            let key: Cow<'_, str> = match unescaped(key_lit) {
                Some(k) => Cow::Borrowed(k),
                None => Cow::Owned(serde_json::from_slice::<String>(key_lit).ok()?),
            };
            i = skip_ws(b, key_end);
            if b.get(i) != Some(&b':') {
                return None;
            }
            let start = skip_ws(b, i + 1);
            let end = loose_value_end(b, start)?;
            let value = b.get(start..end)?;
            match &*key {
                "topic" => spans.topic = Some(value),
                "code" => spans.code = Some(value),
                "data" => spans.data = Some(value),
                _ => {}
            }
            i = skip_ws(b, end);
            match b.get(i)? {
                b',' => i = skip_ws(b, i + 1),
                b'}' => return Some(spans),
                _ => return None,
            }
        }
    }
}

/// End (past the closing quote) of the valid string literal at `b[i]`.
fn loose_string_end(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'"') {
        return None;
    }
    let mut j = i + 1;
    loop {
        match b.get(j)? {
            b'\\' => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
}

/// End of the valid JSON value at `b[i]`.
fn loose_value_end(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => loose_string_end(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match b.get(j)? {
                    b'"' => j = loose_string_end(b, j)?,
                    b'{' | b'[' => {
                        depth += 1;
                        j += 1;
                    }
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        j += 1;
                        if depth == 0 {
                            return Some(j);
                        }
                    }
                    _ => j += 1,
                }
            }
        }
        _ => {
            let mut j = i;
            while matches!(b.get(j), Some(&c) if !is_ws(c) && !matches!(c, b',' | b'}' | b']')) {
                j += 1;
            }
            Some(j)
        }
    }
}

#[cfg(test)]
mod tests {

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
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    fn msg(topic: &str, seq: u64, data: &str) -> Vec<u8> {
        format!(r#"{{"op":"msg","topic":"{topic}","seq":{seq},"data":{data}}}"#).into_bytes()
    }

    #[test]
    fn exact_msg() {
        let t = msg("md.NASDAQ.AAPL", 42, r#"{"bid":189.2,"ask":189.3}"#);
        assert_eq!(parse_fast(&t), parse(&t).ok());
        assert_eq!(
            parse(&t),
            Ok(Server::Msg {
                topic: "md.NASDAQ.AAPL",
                seq: 42,
                snapshot: false,
                data: br#"{"bid":189.2,"ask":189.3}"#,
            })
        );
    }

    #[test]
    fn exact_snapshot() {
        let t = br#"{"op":"msg","topic":"a.b","seq":41,"snapshot":true,"data":[1,"x",null]}"#;
        assert!(parse_fast(t).is_some());
        assert_eq!(
            parse(t),
            Ok(Server::Msg {
                topic: "a.b",
                seq: 41,
                snapshot: true,
                data: br#"[1,"x",null]"#,
            })
        );
        let t = br#"{"op":"msg","topic":"a.b","seq":41,"snapshot":false,"data":0}"#;
        assert!(matches!(
            parse(t),
            Ok(Server::Msg {
                snapshot: false,
                data: b"0",
                ..
            })
        ));
    }

    #[test]
    fn ack_and_err() {
        assert_eq!(parse(br#"{"op":"ack","id":7}"#), Ok(Server::Ack { id: 7 }));
        assert!(parse_fast(br#"{"op":"ack","id":7}"#).is_some());
        let with_id = br#"{"op":"err","id":3,"code":"forbidden","message":"no publish permission on md.NASDAQ.AAPL"}"#;
        assert!(parse_fast(with_id).is_some());
        assert_eq!(
            parse(with_id),
            Ok(Server::Err {
                id: Some(3),
                code: "forbidden"
            })
        );
        let no_id = br#"{"op":"err","code":"bad_json","message":"expected value"}"#;
        assert!(parse_fast(no_id).is_some());
        assert_eq!(
            parse(no_id),
            Ok(Server::Err {
                id: None,
                code: "bad_json"
            })
        );
        let bare = br#"{"op":"err","code":"internal"}"#;
        assert_eq!(
            parse(bare),
            Ok(Server::Err {
                id: None,
                code: "internal"
            })
        );
        // Slow path variants.
        assert_eq!(
            parse(br#"{"code":"rate_limited","op":"err","id":null}"#),
            Ok(Server::Err {
                id: None,
                code: "rate_limited"
            })
        );
        assert_eq!(
            parse(br#" { "id" : 9 , "op" : "ack" } "#),
            Ok(Server::Ack { id: 9 })
        );
    }

    #[test]
    fn other_orders_and_whitespace() {
        let want = Server::Msg {
            topic: "x.y",
            seq: 5,
            snapshot: true,
            data: br#"{"t":1, "p": [ 1 ]}"#,
        };
        for t in [
            r#"{"seq":5,"data":{"t":1, "p": [ 1 ]},"topic":"x.y","op":"msg","snapshot":true}"#,
            "{\n  \"op\": \"msg\",\n  \"topic\": \"x.y\",\n  \"seq\": 5,\n  \"snapshot\": true,\n  \"data\": {\"t\":1, \"p\": [ 1 ]}\n}\n",
            r#"{"op":"msg","topic":"x.y","seq":5,"snapshot":true,"data":{"t":1, "p": [ 1 ]} }"#,
            r#"{"op":"msg","topic":"x.y","seq":5,"snapshot":true,"data":{"t":1, "p": [ 1 ]},"extra":{"a":"}"}}"#,
            r#"{"op":"m\u0073g","top\u0069c":"x.y","seq":5,"snapshot":true,"data":0,"data":{"t":1, "p": [ 1 ]}}"#,
        ] {
            assert_eq!(parse(t.as_bytes()), Ok(want), "{t}");
        }
    }

    #[test]
    fn fallbacks_that_serde_decides() {
        // Exponent, surrogate pair, escaped topic, deep nesting: the fast
        // path hands them to serde_json.
        let t = msg("a", 1, "1e400");
        assert!(parse_fast(&t).is_none());
        assert!(parse(&t).is_err());
        let t = msg("a", 1, "1e3");
        let want = Server::Msg {
            topic: "a",
            seq: 1,
            snapshot: false,
            data: b"1e3",
        };
        assert_eq!(parse(&t), Ok(want));
        let t = msg("a", 1, r#""\ud83d\ude00""#);
        assert!(parse_fast(&t).is_none());
        assert!(matches!(parse(&t), Ok(Server::Msg { .. })));
        let t = msg("a", 1, r#""\ud800""#);
        assert_eq!(
            parse(&t).is_ok(),
            serde_json::from_slice::<Value>(&t).is_ok()
        );
        assert_eq!(
            parse(br#"{"op":"msg","topic":"a\u002eb","seq":1,"data":1}"#),
            Ok(Server::Other)
        );
        let deep = format!("{}{}", "[".repeat(110), "]".repeat(110));
        assert!(parse_fast(&msg("a", 1, &deep)).is_none());
        assert!(matches!(parse(&msg("a", 1, &deep)), Ok(Server::Msg { .. })));
        let deeper = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        assert!(parse(&msg("a", 1, &deeper)).is_err());
    }

    #[test]
    fn escapes_and_unicode_on_the_fast_path() {
        for data in [
            r#""\/\b\f\n\r\t\"\\\u0041\u00e9\uFFFF""#,
            r#"{"k\u00e9y":"värde ✓ 😀","n":-0.5,"z":0,"a":[true,false,null,{}]}"#,
            r#"{"t":1,"p":"padding that is longer than one word of eight bytes"}"#,
            "\"é\"",
            "-12.0625",
            "[]",
        ] {
            let t = msg("a", 1, data);
            assert!(parse_fast(&t).is_some(), "{data}");
            assert_eq!(
                parse(&t),
                Ok(Server::Msg {
                    topic: "a",
                    seq: 1,
                    snapshot: false,
                    data: data.as_bytes(),
                })
            );
            check_agrees(&t);
        }
    }

    #[test]
    fn other_json() {
        for t in [
            "[]",
            "1",
            r#""msg""#,
            "{}",
            r#"{"op":"hello"}"#,
            r#"{"op":1}"#,
            r#"{"topic":"a","seq":1,"data":1}"#,
        ] {
            assert_eq!(parse(t.as_bytes()), Ok(Server::Other), "{t}");
        }
    }

    #[test]
    fn malformed() {
        // Broken framing: an error either way.
        for t in [
            &b""[..],
            b"{",
            b"}",
            b"\xff\xfe",
            br#"{"op":"msg","topic":"a","seq":1,"data":}"#,
            br#"{"op":"msg","topic":"a","seq":1,"data":{"a":1}"#,
            br#"{"op":"msg","topic":"a","seq":1,"data":1}}"#,
            br#"{"op":"msg","topic":"a","seq":01,"data":1}"#,
            br#"{"op":"msg","topic":"a","seq":1,"data":"x"#,
            br#"{"op":"msg","topic":"a","seq":1,"data":tru}"#,
            br#"{"op":"msg","topic":"a","seq":1,"data":-}"#,
            br#"{"op":"msg","topic":"a","seq":1,"data":1.}"#,
            br#"{"op":"msg","topic":"a\","seq":1,"data":1}"#,
            b"{\"op\":\"msg\",\"topic\":\"a\xc3\",\"seq\":1,\"data\":1}",
            br#"{"op":"msg","topic":"a","seq":18446744073709551616,"data":1}"#,
            br#"{"op":"msg","topic":"a","seq":-1,"data":1}"#,
            br#"{"op":"msg","topic":"a","seq":1.5,"data":1}"#,
            br#"{"op":"msg","topic":"a","seq":1}"#,
            br#"{"op":"msg","topic":5,"seq":1,"data":1}"#,
            br#"{"op":"msg","topic":"a","seq":1,"snapshot":1,"data":1}"#,
            br#"{"op":"ack"}"#,
            br#"{"op":"ack","id":"1"}"#,
            br#"{"op":"ack","id":1"#,
            br#"{"op":"err","id":-3,"code":"x"}"#,
            br#"{"op":"err","id":3}"#,
            br#"{"op":"err","code":"x","message":}"#,
        ] {
            let shown = String::from_utf8_lossy(t);
            assert!(parse(t).is_err(), "{shown}");
        }
        // Broken data in an exact frame, and the shape of a frame with data
        // that does not end where the frame says.
        for t in [
            &br#"{"op":"msg","topic":"a","seq":1,"data":{]}"#[..],
            br#"{"op":"msg","topic":"a","seq":1,"data":1},"x":{}"#,
            br#"{"op":"msg","topic":"a","seq":1,"data":"\x"}"#,
            b"{\"op\":\"msg\",\"topic\":\"a\",\"seq\":1,\"data\":\"\x01\"}",
            b"{\"op\":\"msg\",\"topic\":\"a\",\"seq\":1,\"data\":\"\xc3\"}",
            br#"{"op":"msg","topic":"a","seq":1,"data":[1,]}"#,
        ] {
            let shown = String::from_utf8_lossy(t);
            assert!(parse_fast(t).is_none(), "{shown}");
            assert!(parse(t).is_err(), "{shown}");
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

    #[test]
    fn payload_sizes() {
        for t in [0, 7, 1_234_567_890_123, u64::MAX] {
            let min = payload_min_len(t);
            for size in [0, 1, min - 1, min, min + 1, 64, 1000, 70_000] {
                let mut buf = b"prefix".to_vec();
                write_payload(&mut buf, t, size);
                let p = &buf[6..];
                if size >= min {
                    assert_eq!(p.len(), size);
                } else {
                    assert_eq!(p, format!(r#"{{"t":{t}}}"#).as_bytes());
                }
                let v: Value = serde_json::from_slice(p).unwrap();
                assert_eq!(v["t"].as_u64(), Some(t));
                assert_eq!(stamp(p), Some(t));
                assert!(p
                    .iter()
                    .skip(min - 2)
                    .take(size.saturating_sub(min))
                    .all(u8::is_ascii_lowercase));
            }
        }
    }

    #[test]
    fn writers() {
        let mut buf = Vec::new();
        write_pub(&mut buf, "md.NASDAQ.AAPL", Some(3), br#"{"bid":1}"#);
        assert_eq!(
            buf,
            br#"{"op":"pub","topic":"md.NASDAQ.AAPL","data":{"bid":1},"id":3}"#
        );
        buf.clear();
        write_pub(&mut buf, "a", None, b"null");
        assert_eq!(buf, br#"{"op":"pub","topic":"a","data":null}"#);
        buf.clear();
        write_sub(&mut buf, &["md.NASDAQ.AAPL", "md.*.MSFT"], 1, true);
        assert_eq!(
            buf,
            br#"{"op":"sub","topics":["md.NASDAQ.AAPL","md.*.MSFT"],"id":1,"snapshot":true}"#
        );
        buf.clear();
        write_sub(&mut buf, &[], 2, false);
        assert_eq!(buf, br#"{"op":"sub","topics":[],"id":2}"#);
        buf.clear();
        write_str(&mut buf, "q\"b\\n\n\u{1}é");
        let s: String = serde_json::from_slice(&buf).unwrap();
        assert_eq!(s, "q\"b\\n\n\u{1}é");
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            any::<String>().prop_map(Value::String),
            "[a-z\"\\\\/ \t\u{0}-\u{1f}é€😀]{0,40}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec(("[a-z\"\\\\é]{0,6}", inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    /// What serde_json says the message means, in our terms.
    fn serde_view(text: &[u8]) -> Option<(String, u64, bool, Value)> {
        let v: Value = serde_json::from_slice(text).ok()?;
        Some((
            v.get("topic")?.as_str()?.to_owned(),
            v.get("seq")?.as_u64()?,
            v.get("snapshot").and_then(Value::as_bool).unwrap_or(false),
            v.get("data")?.clone(),
        ))
    }

    fn check_agrees(text: &[u8]) {
        let ours = parse(text);
        let theirs: Result<Value, _> = serde_json::from_slice(text);
        if theirs.is_err() {
            assert!(
                ours.is_err(),
                "we accepted what serde_json rejects: {ours:?}"
            );
        }
        if let Ok(Server::Msg {
            topic,
            seq,
            snapshot,
            data,
        }) = ours
        {
            let (t, s, snap, d) = serde_view(text).expect("serde_json agrees it is a msg");
            assert_eq!((topic, seq, snapshot), (t.as_str(), s, snap));
            assert_eq!(serde_json::from_slice::<Value>(data).unwrap(), d);
        }
    }

    proptest! {
        #[test]
        fn agrees_with_serde(
            topic in "[A-Za-z0-9_:@.*>-]{1,40}",
            seq in any::<u64>(),
            snapshot in any::<bool>(),
            data in json_value(),
            pretty in any::<bool>(),
        ) {
            let data = if pretty {
                serde_json::to_vec_pretty(&data).unwrap()
            } else {
                serde_json::to_vec(&data).unwrap()
            };
            let mut text = format!(r#"{{"op":"msg","topic":"{topic}","seq":{seq},"#).into_bytes();
            if snapshot {
                text.extend_from_slice(br#""snapshot":true,"#);
            }
            text.extend_from_slice(br#""data":"#);
            text.extend_from_slice(&data);
            text.push(b'}');
            let want = Server::Msg { topic: &topic, seq, snapshot, data: &data };
            prop_assert_eq!(parse(&text), Ok(want));
            check_agrees(&text);

            // Same fields, another order and spacing: the slow path.
            let mut other = br#" { "data" : "#.to_vec();
            other.extend_from_slice(&data);
            other.extend_from_slice(format!(
                r#" , "seq":{seq}, "snapshot": {snapshot}, "topic" :"{topic}","op":"msg" }}"#
            ).as_bytes());
            prop_assert_eq!(parse(&other), Ok(want));
        }

        #[test]
        fn mutations_never_disagree(
            data in json_value(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..4),
        ) {
            let mut text = msg("md.X.Y", 9, &serde_json::to_string(&data).unwrap());
            for (at, byte, kind) in edits {
                let i = at.index(text.len() + 1);
                match kind {
                    0 if i < text.len() => text[i] = byte,
                    1 => text.insert(i, byte),
                    _ if i < text.len() => { text.remove(i); }
                    _ => {}
                }
            }
            check_agrees(&text);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse(&bytes);
            let _ = stamp(&bytes);
        }

        #[test]
        fn swar_matches_bytewise(
            bytes in prop::array::uniform8(prop_oneof![
                Just(b'"'), Just(b'\\'), 0u8..0x21, any::<u8>(), 0x80u8..=0xff
            ])
        ) {
            let w = u64::from_le_bytes(bytes);
            let first = bytes.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
            prop_assert_eq!(attention(w) != 0, first.is_some());
            prop_assert_eq!(first.unwrap_or(8), (attention(w).trailing_zeros() / 8) as usize);
            // And through the 16/8/1-byte stepping at every offset.
            let mut long = vec![b'a'; 21];
            long.extend_from_slice(&bytes);
            long.extend_from_slice(b"bcdefghijklmnopqrstu");
            for start in 0..long.len() {
                let naive = long[start..]
                    .iter()
                    .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
                    .map_or(long.len(), |k| start + k);
                prop_assert_eq!(find_special(&long, start, &mut 0), naive);
            }
        }

        #[test]
        fn digits_match_naive(n in any::<u64>(), extra in 0u32..3) {
            let s = format!("{n}{}", "9".repeat(extra as usize));
            let naive = s.parse::<u64>().ok();
            let tail = format!("{s},");
            prop_assert_eq!(fast_u64(tail.as_bytes()), naive.map(|n| (n, &b","[..])));
            prop_assert_eq!(fast_u64(s.as_bytes()), naive.map(|n| (n, &b""[..])));
        }

        #[test]
        fn payload_roundtrip(t in any::<u64>(), size in 0usize..2048) {
            let mut buf = Vec::new();
            write_payload(&mut buf, t, size);
            if size >= payload_min_len(t) {
                prop_assert_eq!(buf.len(), size);
            }
            let v: Value = serde_json::from_slice(&buf).unwrap();
            prop_assert_eq!(v["t"].as_u64(), Some(t));
            prop_assert_eq!(stamp(&buf), Some(t));
            let framed = {
                let mut m = msg("a", 1, "");
                m.pop();
                m.extend_from_slice(&buf);
                m.push(b'}');
                m
            };
            prop_assert!(parse_fast(&framed).is_some());
        }
    }

    /// `cargo test -p ringfan-loadgen --release --lib -- --ignored --nocapture parse_speed`
    /// (best of five runs, so a busy machine shows less noise).
    #[test]
    #[ignore = "timing, not a check"]
    fn parse_speed() {
        use std::hint::black_box;
        use std::time::{Duration, Instant};
        fn best(n: u32, mut f: impl FnMut() -> u64) -> Duration {
            (0..5)
                .map(|_| {
                    let start = Instant::now();
                    let acc = (0..n).fold(0u64, |a, _| a.wrapping_add(f()));
                    black_box(acc);
                    start.elapsed() / n
                })
                .min()
                .unwrap()
        }
        let feed = r#"{"t":1700000000123456789,"type":"quote","sym":"AAPL","bid":189.21,"ask":189.23,"bsz":300,"asz":500}"#;
        for size in [0, 64, 256, 1024] {
            let mut data = feed.as_bytes().to_vec();
            if size > 0 {
                data.clear();
                write_payload(&mut data, 1_700_000_000_123_456_789, size);
            }
            let text = msg(
                "md.NASDAQ.AAPL",
                123_456,
                std::str::from_utf8(&data).unwrap(),
            );
            let ours = best(500_000, || match parse(black_box(&text)) {
                Ok(Server::Msg { seq, data, .. }) => seq ^ stamp(data).unwrap_or(0),
                _ => 0,
            });
            let serde = best(50_000, || {
                let v: Value = serde_json::from_slice(black_box(&text)).unwrap();
                v["seq"].as_u64().unwrap()
            });
            let what = if size == 0 {
                "feed".to_owned()
            } else {
                format!("{size} B")
            };
            println!("{what:>7} payload: parse+stamp {ours:?}, serde_json::Value {serde:?}");
        }
    }
}
