//! The server side of the opening handshake (RFC 6455 §4.2), and routing of
//! the one port's plain HTTP endpoints.
//!
//! `accept` looks at the bytes received so far and says what to do: wait,
//! upgrade, answer plain HTTP, or reject with a complete error response.

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
    /// Serve `/echo` (conformance testing).
    pub echo: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/ws`: the pub/sub socket.
    PubSub,
    /// `/echo`: echo every message.
    Echo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpRoute {
    Healthz,
    Metrics,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    pub route: Route,
    /// The `101 Switching Protocols` response to send.
    pub response: Bytes,
    /// `ringfan.v1` was offered and selected.
    pub subprotocol: bool,
    /// A token from `?token=` or `Authorization: Bearer`, for the auth
    /// layer to check; the handshake itself does not judge it.
    pub token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The head is not complete yet; read more.
    Partial,
    /// Upgrade; the first `consumed` bytes were the request head, anything
    /// after them is already WebSocket frames.
    Upgrade { consumed: usize, upgrade: Upgrade },
    /// A plain HTTP request for one of our endpoints; its answer (see
    /// [`http::response`]) is the caller's, who knows health and metrics.
    Http { consumed: usize, route: HttpRoute },
    /// Send `response` and close.
    Reject { status: u16, response: Bytes },
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

/// Does a comma-separated header value hold `token` (case-insensitive)?
pub(crate) fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
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
    let route = match path {
        "/ws" => Route::PubSub,
        "/echo" if config.echo => Route::Echo,
        "/healthz" | "/metrics" => {
            if req.method != Some("GET") {
                return reject(405, &[("Allow", "GET")], "only GET is allowed");
            }
            let route = if path == "/healthz" {
                HttpRoute::Healthz
            } else {
                HttpRoute::Metrics
            };
            return Outcome::Http { consumed, route };
        }
        _ => return reject(404, &[], "no such endpoint"),
    };
    if req.method != Some("GET") {
        return reject(405, &[("Allow", "GET")], "a WebSocket handshake is a GET");
    }
    if req.version != Some(1) {
        return reject(400, &[], "a WebSocket handshake needs HTTP/1.1");
    }

    let mut host = false;
    let mut upgrade = false;
    let mut connection = false;
    let mut version: Option<&[u8]> = None;
    let mut key: Option<&[u8]> = None;
    let mut keys = 0;
    let mut origin: Option<&[u8]> = None;
    let mut subprotocol = false;
    let mut bearer: Option<&[u8]> = None;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            host = true;
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade |= has_token(h.value, "websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            connection |= has_token(h.value, "upgrade");
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            version = Some(h.value);
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            key = Some(h.value);
            keys += 1;
        } else if name.eq_ignore_ascii_case("origin") {
            origin = Some(h.value);
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            subprotocol |= has_token(h.value, SUBPROTOCOL);
        } else if name.eq_ignore_ascii_case("authorization") {
            let v = h.value.trim_ascii();
            if v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ") {
                bearer = Some(v[7..].trim_ascii());
            }
        }
    }
    if !host {
        return reject(400, &[], "missing Host header");
    }
    if !upgrade {
        return reject(
            426,
            &[("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")],
            "this endpoint needs a WebSocket upgrade",
        );
    }
    if !connection {
        return reject(400, &[], "Connection header must include Upgrade");
    }
    if version.map(|v| v.trim_ascii()) != Some(b"13") {
        return reject(
            426,
            &[("Sec-WebSocket-Version", "13")],
            "unsupported Sec-WebSocket-Version; this server speaks 13",
        );
    }
    let key = match key {
        Some(k) if keys == 1 => k.trim_ascii(),
        _ => return reject(400, &[], "exactly one Sec-WebSocket-Key is required"),
    };
    match B64.decode(key) {
        Ok(raw) if raw.len() == 16 => {}
        _ => return reject(400, &[], "Sec-WebSocket-Key must be 16 bytes in base64"),
    }
    if let (Some(allowed), Some(origin)) = (&config.allowed_origins, origin) {
        let origin = origin.trim_ascii();
        if !allowed
            .iter()
            .any(|a| a.as_bytes().eq_ignore_ascii_case(origin))
        {
            return reject(403, &[], "origin not allowed");
        }
    }
    let token = query
        .and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("token="))
                .map(|t| t.to_string())
        })
        .or_else(|| bearer.map(|b| String::from_utf8_lossy(b).into_owned()));

    let mut r = BytesMut::with_capacity(160);
    r.put_slice(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ");
    r.put_slice(accept_key(key).as_bytes());
    r.put_slice(b"\r\n");
    if subprotocol {
        r.put_slice(b"Sec-WebSocket-Protocol: ");
        r.put_slice(SUBPROTOCOL.as_bytes());
        r.put_slice(b"\r\n");
    }
    r.put_slice(b"\r\n");
    Outcome::Upgrade {
        consumed,
        upgrade: Upgrade {
            route,
            response: r.freeze(),
            subprotocol,
            token,
        },
    }
}

#[cfg(test)]
#[path = "handshake_tests.rs"]
mod tests;
