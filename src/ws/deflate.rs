//! permessage-deflate (RFC 7692), sans IO: the negotiation, and deflating
//! and inflating one whole message at a time.
//!
//! # No context takeover, both ways
//!
//! Our answer always carries `server_no_context_takeover` and
//! `client_no_context_takeover` (a server may add the latter even when the
//! offer lacked it, RFC 7692 section 7.1.1.2). Each message is then
//! compressed on its own, which is what lets one compressed publish serve
//! every subscriber that negotiated deflate, and it means no connection
//! keeps a compressor or a 32 KiB inflate window between messages: the
//! per-thread ones here are reset for every message, so an idle connection
//! costs what it did without deflate.
//!
//! # Window bits
//!
//! A client may ask us to use a smaller window (`server_max_window_bits`,
//! 8-15); we accept any and echo it. Rather than a compressor per window
//! size, under a window below 15 bits a message longer than the window
//! goes out uncompressed (a
//! back-reference cannot reach further back than the message is long, so
//! a message of at most 2^bits bytes obeys any window of `bits`); with a
//! 256-byte window that still covers typical quotes (~150 B).
//! `client_max_window_bits` is never sent: the inflater takes any window.
//!
//! # Crate
//!
//! `flate2` on `zlib-rs` (a pure-Rust zlib, as fast as zlib-ng in its own
//! benchmarks): a streaming inflater that fills a bounded `Vec`, so a
//! decompression bomb stops at the message limit plus one byte, and raw
//! deflate with a sync flush for the outbound side.

use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The extension's name in `Sec-WebSocket-Extensions`.
pub const NAME: &str = "permessage-deflate";

/// What every compressed message ends with once deflated with a sync
/// flush, removed before sending and put back before inflating (RFC 7692
/// section 7.2.1).
const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];

/// Compression level for outbound messages: 1 (zlib's fastest). Market
/// data JSON is short; a higher level finds little more in 150 bytes and
/// costs more per publish.
const LEVEL: u32 = 1;

/// Window of the compressor used for short messages, and the longest
/// message it takes (see `DEFLATE_SMALL`).
const SMALL_WINDOW_BITS: u8 = 10;
const SMALL_MAX: usize = 1 << SMALL_WINDOW_BITS;

/// What was agreed with one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreed {
    /// The largest window our messages may use (`server_max_window_bits`,
    /// 8-15; 15 when the client did not ask).
    pub server_window_bits: u8,
}

impl Agreed {
    /// Whether a message of `len` bytes may go out compressed under this
    /// agreement (see "Window bits" above): always under the full 32 KiB
    /// window our compressors use at most, else when the message is no
    /// longer than the window.
    pub fn fits_window(&self, len: usize) -> bool {
        self.server_window_bits >= 15 || len <= 1 << self.server_window_bits
    }
}

/// One offer's parameters, as far as we read them.
#[derive(Default)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    client_max_window_bits: Option<Option<u8>>,
}

/// Picks the first acceptable permessage-deflate offer among the values of
/// every `Sec-WebSocket-Extensions` header (in order), and returns what
/// was agreed and the header value to answer with. Offers with unknown,
/// repeated or invalid parameters are declined (section 7.1: the server
/// MUST decline them, and may accept a later one); other extensions are
/// ignored. `None`: no offer we can accept.
pub fn negotiate<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Option<(Agreed, String)> {
    for value in values {
        let Ok(value) = std::str::from_utf8(value) else {
            continue;
        };
        for extension in split_outside_quotes(value, ',') {
            let mut parts = split_outside_quotes(extension, ';').into_iter();
            let name = parts.next().unwrap_or("").trim();
            if !name.eq_ignore_ascii_case(NAME) {
                continue;
            }
            let Some(offer) = parse_offer(parts) else {
                continue;
            };
            let bits = offer.server_max_window_bits.unwrap_or(15);
            let mut answer =
                format!("{NAME}; server_no_context_takeover; client_no_context_takeover");
            if let Some(b) = offer.server_max_window_bits {
                answer.push_str(&format!("; server_max_window_bits={b}"));
            }
            return Some((
                Agreed {
                    server_window_bits: bits,
                },
                answer,
            ));
        }
    }
    None
}

/// The client side: a server's `Sec-WebSocket-Extensions` answer to our
/// offer (`permessage-deflate` with no parameters but the four of RFC 7692,
/// each at most once), as what we may expect of its messages; `None` when
/// it is not a valid permessage-deflate answer. The load generator's
/// inflater takes any window, so only `server_max_window_bits` is kept.
pub fn accepted(value: &[u8]) -> Option<Agreed> {
    let value = std::str::from_utf8(value).ok()?;
    let extensions = split_outside_quotes(value, ',');
    let [only] = extensions.as_slice() else {
        return None;
    };
    let mut parts = split_outside_quotes(only, ';').into_iter();
    if !parts.next()?.trim().eq_ignore_ascii_case(NAME) {
        return None;
    }
    let offer = parse_offer(parts)?;
    Some(Agreed {
        server_window_bits: offer.server_max_window_bits.unwrap_or(15),
    })
}

fn parse_offer<'a>(params: impl Iterator<Item = &'a str>) -> Option<Offer> {
    let mut offer = Offer::default();
    for param in params {
        let (key, value) = match param.split_once('=') {
            Some((k, v)) => (k.trim(), Some(unquote(v.trim())?)),
            None => (param.trim(), None),
        };
        match (key.to_ascii_lowercase().as_str(), value) {
            ("server_no_context_takeover", None) if !offer.server_no_context_takeover => {
                offer.server_no_context_takeover = true;
            }
            ("client_no_context_takeover", None) if !offer.client_no_context_takeover => {
                offer.client_no_context_takeover = true;
            }
            ("server_max_window_bits", Some(v)) if offer.server_max_window_bits.is_none() => {
                offer.server_max_window_bits = Some(window_bits(v)?);
            }
            ("client_max_window_bits", v) if offer.client_max_window_bits.is_none() => {
                offer.client_max_window_bits = Some(match v {
                    Some(v) => Some(window_bits(v)?),
                    None => None,
                });
            }
            _ => return None,
        }
    }
    Some(offer)
}

/// 8 to 15, in plain decimal (no sign, no leading zero: section 7.1.2).
fn window_bits(v: &str) -> Option<u8> {
    if v.is_empty() || v.len() > 2 || v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok().filter(|b| (8..=15).contains(b))
}

/// A parameter value: a token, or a quoted string (RFC 7230) whose content
/// must itself be a token (RFC 7692 section 7.1).
fn unquote(v: &str) -> Option<&str> {
    let inner = match v.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"')?,
        None => v,
    };
    (!inner.contains(['"', '\\'])).then_some(inner)
}

/// Splits on `sep` where it is not inside a quoted string.
fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

thread_local! {
    // Per thread, reset per message: no connection owns one (see above).
    // zlib-rs' states are ~7 KB (inflate, plus its 32 KiB window when in
    // use) and ~270 KB (deflate at level 1) per thread.
    static INFLATE: RefCell<Decompress> = RefCell::new(Decompress::new(false));
    static DEFLATE: RefCell<Compress> = RefCell::new(Compress::new(Compression::new(LEVEL), false));
    // For messages up to `SMALL_MAX`: a 1 KiB window compresses them to
    // the same bytes (no back-reference can reach further than the
    // message is long) and its state is far smaller to reset, which is
    // most of the cost of compressing a 150-byte quote.
    static DEFLATE_SMALL: RefCell<Compress> = RefCell::new(
        Compress::new_with_window_bits(Compression::new(LEVEL), false, SMALL_WINDOW_BITS),
    );
}

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates to more than the limit (a close with 1009).
    TooBig,
    /// Not valid DEFLATE data (a protocol error, 1002).
    Invalid,
}

/// Inflates one message's payload (as received, without the tail) into
/// `out`, which never grows past `max + 1` bytes: what a decompression
/// bomb costs is bounded by the message limit, not by its ratio.
pub fn inflate(compressed: &[u8], max: usize, out: &mut Vec<u8>) -> Result<(), InflateError> {
    out.clear();
    INFLATE.with(|d| {
        let mut d = d.borrow_mut();
        let result = inflate_into(&mut d, compressed, max, out);
        // Reset after use, not before (the state starts clean): clean for
        // the next message whatever happened, one reset per message.
        d.reset(false);
        result
    })
}

fn inflate_into(
    d: &mut Decompress,
    compressed: &[u8],
    max: usize,
    out: &mut Vec<u8>,
) -> Result<(), InflateError> {
    let limit = max.saturating_add(1);
    for mut input in [compressed, &TAIL[..]] {
        loop {
            if out.len() == out.capacity() {
                if out.len() >= limit {
                    return Err(InflateError::TooBig);
                }
                // Double, within the limit: a bomb's `out` stays bounded.
                let want = out.len().max(compressed.len() * 4).max(1024);
                out.reserve_exact(want.min(limit - out.len()));
            }
            let before_in = d.total_in();
            let before_out = out.len();
            let status = d
                .decompress_vec(input, out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Invalid)?;
            if out.len() > max {
                return Err(InflateError::TooBig);
            }
            let consumed = (d.total_in() - before_in) as usize;
            input = &input[consumed..];
            if status == Status::StreamEnd {
                // The peer ended the stream (BFINAL) itself: the tail and
                // anything after are not part of it.
                return Ok(());
            }
            let room_left = out.len() < out.capacity();
            if input.is_empty() && room_left {
                break;
            }
            if consumed == 0 && out.len() == before_out && room_left {
                // No progress with input and room: the data is cut short
                // or malformed.
                return Err(InflateError::Invalid);
            }
        }
    }
    Ok(())
}

/// The compressed form of `payload` under `agreed`, always (even when it
/// is no smaller): DEFLATE when the message fits the window the peer
/// allows, else the same bytes in stored (uncompressed) DEFLATE blocks,
/// which need no window. For a sender that marks every message it sends
/// as compressed (`/echo`: some clients mishandle an uncompressed message
/// on a connection that negotiated deflate).
pub fn compress(agreed: Agreed, payload: &[u8], out: &mut Vec<u8>) {
    if !agreed.fits_window(payload.len()) || !deflate_into(payload, out) {
        stored(payload, out);
    }
}

/// `payload` in stored DEFLATE blocks (at most 65,535 bytes each), ending
/// as a sync flush does once its 4-byte tail is removed (RFC 7692 section
/// 7.2.3.3 shows "Hello" this way).
pub fn stored(payload: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(payload.len() + 5 * (payload.len() / 65_535 + 1) + 1);
    for block in payload.chunks(65_535) {
        let len = block.len() as u16;
        out.push(0); // BFINAL 0, BTYPE 00 (stored), padded to the byte
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    // The empty stored block's header; its LEN/NLEN are the tail.
    out.push(0);
}

/// Deflates `payload` as one message (no context kept) into `out`,
/// without the tail. Returns false, leaving `out` empty, when compressing
/// would not make it smaller: the message then goes out as it is.
pub fn deflate(payload: &[u8], out: &mut Vec<u8>) -> bool {
    if !deflate_into(payload, out) || out.len() >= payload.len() {
        out.clear();
        return false;
    }
    true
}

/// Deflates `payload` into `out` (without the tail), whatever the size;
/// false if the compressor failed (it does not, on a valid state).
fn deflate_into(payload: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    let which = if payload.len() <= SMALL_MAX {
        &DEFLATE_SMALL
    } else {
        &DEFLATE
    };
    which.with(|c| {
        let mut c = c.borrow_mut();
        let done = deflate_with(&mut c, payload, out);
        // Reset after use, not before: the state is clean for the next
        // message whatever happened (one reset per message, not two).
        c.reset();
        done
    })
}

fn deflate_with(c: &mut Compress, payload: &[u8], out: &mut Vec<u8>) -> bool {
    // Deflate never expands by more than 5 bytes per 16 KiB block plus
    // a few for the flush; larger than the input is useless anyway.
    out.reserve(payload.len() + 16);
    let mut input = payload;
    loop {
        let before = c.total_in();
        if c.compress_vec(input, out, FlushCompress::Sync).is_err() {
            out.clear();
            return false;
        }
        input = &input[(c.total_in() - before) as usize..];
        if input.is_empty() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity().max(64));
    }
    if out.ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
    }
    true
}

#[cfg(test)]
#[path = "deflate_tests.rs"]
mod tests;
