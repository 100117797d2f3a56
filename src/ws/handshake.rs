//! The server side of the opening handshake (RFC 6455 §4.2).
//!
//! `accept` looks at the bytes received so far and says what to do: wait,
//! upgrade, hand a plain HTTP request to the caller, or reject with a
//! complete error response. It knows no routes: the request's path goes
//! to the caller, who decides what is served where.

use super::deflate::{self, Agreed};
use super::http;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use sha1::{Digest, Sha1};

/// Largest request head we read; a longer one gets 431.
pub const MAX_HEAD: usize = 8 * 1024;
/// More headers than this is not a WebSocket client we want.
const MAX_HEADERS: usize = 48;
/// The subprotocol of `protocol.md`, echoed back when offered.
pub const SUBPROTOCOL: &str = "ringfan.v1";
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

#[derive(Debug, Clone, Default)]
pub struct Config {
    /// `Origin` values allowed to connect; None allows any. A request with
    /// no `Origin` (a non-browser client) is never refused for that.
    pub allowed_origins: Option<Vec<String>>,
    /// Accept permessage-deflate offers (`--deflate`; see `ws::deflate`).
    pub deflate: bool,
}

/// A plain HTTP request (one that asked for no WebSocket upgrade): what
/// the caller needs to route it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Box<str>,
    /// The path, without the query string.
    pub path: Box<str>,
    /// The query string (after `?`), if any, undecoded.
    pub query: Option<Box<str>>,
    /// The body's length (`Content-Length`; 0 without one). The body
    /// follows the head; the caller waits for all of it.
    pub content_length: usize,
    /// The client will send more requests on this connection: HTTP/1.1
    /// without `Connection: close`, or HTTP/1.0 with `keep-alive`.
    pub keep_alive: bool,
    /// The `Authorization: Bearer` credential, for the caller to judge.
    pub bearer: Option<Box<str>>,
    /// `If-None-Match` as sent (`--static` answers `304` to a match).
    pub if_none_match: Option<Box<str>>,
}

impl Request {
    /// A bodiless request (what an upgrade asked on a plain endpoint is
    /// answered as).
    pub fn get(path: &str) -> Self {
        Self {
            method: "GET".into(),
            path: path.into(),
            query: None,
            content_length: 0,
            keep_alive: false,
            bearer: None,
            if_none_match: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// The request's path, without the query string: the caller routes it.
    pub path: Box<str>,
    /// The `101 Switching Protocols` response to send.
    pub response: Bytes,
    /// `ringfan.v1` was offered and selected.
    pub subprotocol: bool,
    /// A token from `?token=` or `Authorization: Bearer`, for the auth
    /// layer to check; the handshake itself does not judge it.
    pub token: Option<String>,
    /// permessage-deflate was offered and accepted.
    pub deflate: Option<Agreed>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The head is not complete yet; read more.
    Partial,
    /// A valid upgrade request; the first `consumed` bytes were the request
    /// head, anything after them is already WebSocket frames.
    Upgrade { consumed: usize, upgrade: Upgrade },
    /// A plain HTTP request; its answer is the caller's (see
    /// [`http::response`], and [`upgrade_required`] for a WebSocket
    /// endpoint asked without an upgrade).
    Http { consumed: usize, request: Request },
    /// Send `response` and close.
    Reject { status: u16, response: Bytes },
}

/// The answer to a plain request for a WebSocket endpoint: 405 for a
/// method other than GET, else 426 naming the protocol to upgrade to.
pub fn upgrade_required(method: &str) -> Bytes {
    if method != "GET" {
        return http::error(405, &[("Allow", "GET")], "a WebSocket handshake is a GET");
    }
    http::error(
        426,
        &[("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")],
        "this endpoint needs a WebSocket upgrade",
    )
}

fn reject(status: u16, headers: &[(&str, &str)], message: &str) -> Outcome {
    Outcome::Reject {
        status,
        response: http::error(status, headers, message),
    }
}

/// `Sec-WebSocket-Accept` for a client's key.
pub fn accept_key(key: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(key);
    h.update(GUID.as_bytes());
    B64.encode(h.finalize())
}

/// Does `origin` match an `--allow-origin` entry? Exact (case-insensitive),
/// or a host pattern `scheme://*.example.com[:port]` whose `*` stands for
/// one or more whole DNS labels (`https://a.example.com`,
/// `https://a.b.example.com`; not `https://example.com`, nor
/// `https://evil-example.com`: the dot before the suffix is part of it).
pub fn origin_allowed(allowed: &str, origin: &[u8]) -> bool {
    let Some(at) = allowed.find("://*.") else {
        return allowed.as_bytes().eq_ignore_ascii_case(origin);
    };
    let scheme = &allowed.as_bytes()[..at + 3];
    let suffix = &allowed.as_bytes()[at + 4..];
    let Some(rest) = origin
        .get(..scheme.len())
        .filter(|s| s.eq_ignore_ascii_case(scheme))
        .map(|_| &origin[scheme.len()..])
    else {
        return false;
    };
    if rest.len() <= suffix.len() {
        return false;
    }
    let (labels, tail) = rest.split_at(rest.len() - suffix.len());
    tail.eq_ignore_ascii_case(suffix)
        && labels
            .split(|&b| b == b'.')
            .all(|l| !l.is_empty() && l.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'-'))
}

/// Does a comma-separated header value hold `token` (case-insensitive)?
pub(crate) fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// What the handshake needs from the request's headers, in one pass.
#[derive(Default)]
struct Headers<'h> {
    /// How many `Host` headers: RFC 9112 §3.2 has a server answer 400 to
    /// more than one (a proxy in front may route by one, we by another).
    hosts: usize,
    /// `Upgrade` holds the token `websocket`.
    upgrade: bool,
    /// `Connection` holds the token `Upgrade`.
    connection: bool,
    /// `Connection` holds `close` / `keep-alive`.
    close: bool,
    keep_alive: bool,
    /// `Content-Length` values: how many, and the value (None: not a
    /// number). RFC 9112 §6.3: several that differ, or one that is not a
    /// number, is an unrecoverable framing error (400).
    lengths: usize,
    length: Option<usize>,
    /// Any `Transfer-Encoding` (chunked bodies are not read: 411).
    transfer_encoding: bool,
    version: Option<&'h [u8]>,
    key: Option<&'h [u8]>,
    keys: usize,
    origin: Option<&'h [u8]>,
    /// More than one `Origin` would let the allow-list judge one while
    /// whatever sits behind us (a proxy, a log) reads another.
    origins: usize,
    subprotocol: bool,
    bearer: Option<&'h [u8]>,
    if_none_match: Option<&'h [u8]>,
    /// Every `Sec-WebSocket-Extensions` value, in order.
    extensions: Vec<&'h [u8]>,
}

impl<'h> Headers<'h> {
    fn scan(headers: &[httparse::Header<'h>]) -> Self {
        let mut s = Self::default();
        for h in headers {
            let name = h.name;
            if name.eq_ignore_ascii_case("host") {
                s.hosts += 1;
            } else if name.eq_ignore_ascii_case("upgrade") {
                s.upgrade |= has_token(h.value, "websocket");
            } else if name.eq_ignore_ascii_case("connection") {
                s.connection |= has_token(h.value, "upgrade");
                s.close |= has_token(h.value, "close");
                s.keep_alive |= has_token(h.value, "keep-alive");
            } else if name.eq_ignore_ascii_case("content-length") {
                let v = std::str::from_utf8(h.value.trim_ascii())
                    .ok()
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse().ok());
                if s.lengths == 0 || s.length == v {
                    s.length = v;
                } else {
                    s.length = None;
                }
                s.lengths += 1;
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                s.transfer_encoding = true;
            } else if name.eq_ignore_ascii_case("sec-websocket-version") {
                s.version = Some(h.value);
            } else if name.eq_ignore_ascii_case("sec-websocket-key") {
                s.key = Some(h.value);
                s.keys += 1;
            } else if name.eq_ignore_ascii_case("origin") {
                s.origin = Some(h.value);
                s.origins += 1;
            } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
                s.subprotocol |= has_token(h.value, SUBPROTOCOL);
            } else if name.eq_ignore_ascii_case("authorization") {
                let v = h.value.trim_ascii();
                if v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ") {
                    s.bearer = Some(v[7..].trim_ascii());
                }
            } else if name.eq_ignore_ascii_case("if-none-match") {
                s.if_none_match = Some(h.value.trim_ascii());
            } else if name.eq_ignore_ascii_case("sec-websocket-extensions") {
                s.extensions.push(h.value);
            }
        }
        s
    }
}

/// Examine the request bytes received so far.
pub fn accept(buf: &[u8], config: &Config) -> Outcome {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let consumed = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD => n,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => return Outcome::Partial,
        Ok(_) | Err(httparse::Error::TooManyHeaders) => {
            return reject(431, &[], "request head too large")
        }
        Err(_) => return reject(400, &[], "malformed HTTP request"),
    };
    let target = req.path.unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let h = Headers::scan(req.headers);
    let method = req.method.unwrap_or("GET");
    if h.hosts > 1 {
        return reject(400, &[], "more than one Host header");
    }
    if !h.upgrade {
        if h.transfer_encoding {
            return reject(
                411,
                &[],
                "send the body with Content-Length (Transfer-Encoding is not accepted)",
            );
        }
        let content_length = match (h.lengths, h.length) {
            (0, _) => 0,
            (_, Some(n)) => n,
            (_, None) => return reject(400, &[], "bad Content-Length"),
        };
        let keep_alive = match req.version {
            Some(1) => !h.close,
            _ => h.keep_alive && !h.close,
        };
        let request = Request {
            method: method.into(),
            path: path.into(),
            query: query.map(Into::into),
            content_length,
            keep_alive,
            bearer: h
                .bearer
                .map(|b| String::from_utf8_lossy(b).into_owned().into_boxed_str()),
            if_none_match: h
                .if_none_match
                .map(|v| String::from_utf8_lossy(v).into_owned().into_boxed_str()),
        };
        return Outcome::Http { consumed, request };
    }
    if method != "GET" {
        return reject(405, &[("Allow", "GET")], "a WebSocket handshake is a GET");
    }
    if req.version != Some(1) {
        return reject(400, &[], "a WebSocket handshake needs HTTP/1.1");
    }
    if h.hosts == 0 {
        return reject(400, &[], "missing Host header");
    }
    if !h.connection {
        return reject(400, &[], "Connection header must include Upgrade");
    }
    if h.version.map(|v| v.trim_ascii()) != Some(b"13") {
        return reject(
            426,
            &[("Sec-WebSocket-Version", "13")],
            "unsupported Sec-WebSocket-Version; this server speaks 13",
        );
    }
    let key = match h.key {
        Some(k) if h.keys == 1 => k.trim_ascii(),
        _ => return reject(400, &[], "exactly one Sec-WebSocket-Key is required"),
    };
    match B64.decode(key) {
        Ok(raw) if raw.len() == 16 => {}
        _ => return reject(400, &[], "Sec-WebSocket-Key must be 16 bytes in base64"),
    }
    if h.origins > 1 {
        return reject(400, &[], "more than one Origin header");
    }
    if let (Some(allowed), Some(origin)) = (&config.allowed_origins, h.origin) {
        let origin = origin.trim_ascii();
        if !allowed.iter().any(|a| origin_allowed(a, origin)) {
            return reject(403, &[], "origin not allowed");
        }
    }
    let token = query
        .and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("token="))
                .map(|t| t.to_string())
        })
        .or_else(|| h.bearer.map(|b| String::from_utf8_lossy(b).into_owned()));

    let deflate = if config.deflate {
        deflate::negotiate(h.extensions.iter().copied())
    } else {
        None
    };

    let mut r = BytesMut::with_capacity(240);
    r.put_slice(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ");
    r.put_slice(accept_key(key).as_bytes());
    r.put_slice(b"\r\n");
    if h.subprotocol {
        r.put_slice(b"Sec-WebSocket-Protocol: ");
        r.put_slice(SUBPROTOCOL.as_bytes());
        r.put_slice(b"\r\n");
    }
    if let Some((_, answer)) = &deflate {
        r.put_slice(b"Sec-WebSocket-Extensions: ");
        r.put_slice(answer.as_bytes());
        r.put_slice(b"\r\n");
    }
    r.put_slice(b"\r\n");
    Outcome::Upgrade {
        consumed,
        upgrade: Upgrade {
            path: path.into(),
            response: r.freeze(),
            subprotocol: h.subprotocol,
            token,
            deflate: deflate.map(|(agreed, _)| agreed),
        },
    }
}

#[cfg(test)]
#[path = "handshake_tests.rs"]
mod tests;
