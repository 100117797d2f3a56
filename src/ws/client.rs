//! The client side of the opening handshake (RFC 6455 §4.1), for the load
//! generator and tests: build a request with a fresh key, verify the answer.

use super::deflate::{self, Agreed};
use super::handshake::{accept_key, has_token};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// The server answered with another status (its body is not read).
    Status(u16),
    Malformed,
    MissingUpgrade,
    BadAccept,
    /// The server selected a subprotocol we did not offer.
    UnexpectedProtocol,
    /// The server agreed to an extension we did not offer, or answered
    /// our permessage-deflate offer with parameters it may not send.
    UnexpectedExtension,
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Status(s) => write!(f, "server answered HTTP {s}"),
            Self::Malformed => f.write_str("malformed handshake response"),
            Self::MissingUpgrade => f.write_str("response lacks Upgrade/Connection"),
            Self::BadAccept => f.write_str("wrong Sec-WebSocket-Accept"),
            Self::UnexpectedProtocol => f.write_str("server chose a subprotocol not offered"),
            Self::UnexpectedExtension => {
                f.write_str("server agreed to an extension not offered, or to bad parameters")
            }
        }
    }
}

impl std::error::Error for ClientError {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// Bytes of the response head; anything after is WebSocket frames.
    pub consumed: usize,
    pub protocol: Option<String>,
    /// The server agreed to the permessage-deflate we offered.
    pub deflate: Option<Agreed>,
}

#[derive(Debug, Clone)]
pub struct ClientHandshake {
    expected_accept: String,
    offered: Vec<String>,
    /// A `Sec-WebSocket-Extensions` header offering permessage-deflate was
    /// among the extra headers.
    offered_deflate: bool,
}

impl ClientHandshake {
    /// A handshake for `ws://host{path}`; returns it and the request bytes.
    pub fn new(host: &str, path: &str, protocols: &[&str]) -> (Self, Vec<u8>) {
        Self::with_headers(host, path, protocols, &[])
    }

    /// [`ClientHandshake::new`] with extra request headers, e.g.
    /// `("Authorization", "Bearer <jwt>")`, written as `Name: value` after
    /// the standard ones. A header whose name or value holds CR or LF
    /// would end the head early, so it is left out.
    pub fn with_headers(
        host: &str,
        path: &str,
        protocols: &[&str],
        headers: &[(String, String)],
    ) -> (Self, Vec<u8>) {
        let mut raw = [0u8; 16];
        fastrand::fill(&mut raw);
        let key = B64.encode(raw);
        let mut req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        );
        if !protocols.is_empty() {
            req.push_str("Sec-WebSocket-Protocol: ");
            req.push_str(&protocols.join(", "));
            req.push_str("\r\n");
        }
        let clean = |t: &str| !t.contains(['\r', '\n']);
        for (name, value) in headers {
            if !name.is_empty() && clean(name) && clean(value) {
                req.push_str(name);
                req.push_str(": ");
                req.push_str(value);
                req.push_str("\r\n");
            }
        }
        req.push_str("\r\n");
        let offered_deflate = headers.iter().any(|(n, v)| {
            n.eq_ignore_ascii_case("sec-websocket-extensions")
                && v.to_ascii_lowercase().contains(deflate::NAME)
        });
        let hs = Self {
            expected_accept: accept_key(key.as_bytes()),
            offered: protocols.iter().map(|p| p.to_string()).collect(),
            offered_deflate,
        };
        (hs, req.into_bytes())
    }

    /// Check the response received so far; `Ok(None)` means read more.
    pub fn verify(&self, buf: &[u8]) -> Result<Option<Accepted>, ClientError> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        let consumed = match resp.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() <= super::handshake::MAX_HEAD => {
                return Ok(None)
            }
            _ => return Err(ClientError::Malformed),
        };
        match resp.code {
            Some(101) => {}
            Some(c) => return Err(ClientError::Status(c)),
            None => return Err(ClientError::Malformed),
        }
        let (mut upgrade, mut connection, mut accept_ok) = (false, false, false);
        let mut protocol = None;
        let mut deflate = None;
        for h in resp.headers.iter() {
            if h.name.eq_ignore_ascii_case("sec-websocket-extensions") {
                // Only what we offered may be agreed (RFC 6455 section 9.1).
                let agreed = self
                    .offered_deflate
                    .then(|| deflate::accepted(h.value))
                    .flatten();
                if agreed.is_none() || deflate.is_some() {
                    return Err(ClientError::UnexpectedExtension);
                }
                deflate = agreed;
            }
            if h.name.eq_ignore_ascii_case("upgrade") {
                upgrade |= has_token(h.value, "websocket");
            } else if h.name.eq_ignore_ascii_case("connection") {
                connection |= has_token(h.value, "upgrade");
            } else if h.name.eq_ignore_ascii_case("sec-websocket-accept") {
                accept_ok = h.value.trim_ascii() == self.expected_accept.as_bytes();
            } else if h.name.eq_ignore_ascii_case("sec-websocket-protocol") {
                let p = String::from_utf8_lossy(h.value.trim_ascii()).into_owned();
                if !self.offered.contains(&p) {
                    return Err(ClientError::UnexpectedProtocol);
                }
                protocol = Some(p);
            }
        }
        if !(upgrade && connection) {
            return Err(ClientError::MissingUpgrade);
        }
        if !accept_ok {
            return Err(ClientError::BadAccept);
        }
        Ok(Some(Accepted {
            consumed,
            protocol,
            deflate,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::handshake::{self, Config, Outcome};
    use super::*;

    #[test]
    fn client_and_server_agree() {
        let (hs, req) = ClientHandshake::new("localhost:8080", "/ws", &["ringfan.v1"]);
        let mut buf = req.clone();
        buf.extend_from_slice(b"\x81\x80abcd"); // a frame right behind the head
        let (consumed, up) = match handshake::accept(&buf, &Config::default()) {
            Outcome::Upgrade { consumed, upgrade } => (consumed, upgrade),
            other => panic!("{other:?}"),
        };
        assert_eq!(consumed, req.len());
        assert!(up.subprotocol);
        let mut resp = up.response.to_vec();
        resp.extend_from_slice(b"\x81\x00");
        // Every prefix of the head is "read more".
        let head_len = up.response.len();
        for n in 0..head_len {
            assert_eq!(hs.verify(&resp[..n]), Ok(None), "prefix {n}");
        }
        let acc = hs.verify(&resp).unwrap().unwrap();
        assert_eq!(acc.consumed, head_len);
        assert_eq!(acc.protocol.as_deref(), Some("ringfan.v1"));
    }

    #[test]
    fn extra_headers_reach_the_server_and_unsafe_ones_are_left_out() {
        let headers = [
            (
                "Authorization".to_string(),
                "Bearer aaa.bbb.ccc".to_string(),
            ),
            ("X-Evil".to_string(), "a\r\nHost: other".to_string()),
            ("Bad\nName".to_string(), "v".to_string()),
        ];
        let (hs, req) = ClientHandshake::with_headers("h:1", "/ws", &[], &headers);
        let text = std::str::from_utf8(&req).unwrap();
        assert!(
            text.contains("\r\nAuthorization: Bearer aaa.bbb.ccc\r\n"),
            "{text}"
        );
        assert!(!text.contains("Evil") && !text.contains("Bad"), "{text}");
        assert!(text.ends_with("\r\n\r\n"));
        // The server reads the token from the header (the auth layer's input).
        let up = match handshake::accept(&req, &Config::default()) {
            Outcome::Upgrade { consumed, upgrade } => {
                assert_eq!(consumed, req.len());
                upgrade
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(up.token.as_deref(), Some("aaa.bbb.ccc"));
        assert!(hs.verify(&up.response).unwrap().is_some());
        // And from the query, with no header.
        let (_, req) = ClientHandshake::new("h:1", "/ws?token=q.r.s", &[]);
        match handshake::accept(&req, &Config::default()) {
            Outcome::Upgrade { upgrade, .. } => {
                assert_eq!(&*upgrade.path, "/ws");
                assert_eq!(upgrade.token.as_deref(), Some("q.r.s"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn keys_are_fresh() {
        let (_, a) = ClientHandshake::new("h", "/", &[]);
        let (_, b) = ClientHandshake::new("h", "/", &[]);
        assert_ne!(a, b);
    }

    #[test]
    fn rejects_wrong_accept_and_status() {
        let (hs, _) = ClientHandshake::new("h", "/ws", &[]);
        let bad = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: AAAA\r\n\r\n";
        assert_eq!(hs.verify(bad), Err(ClientError::BadAccept));
        let e = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(hs.verify(e), Err(ClientError::Status(403)));
        let no_up = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n";
        assert_eq!(hs.verify(no_up), Err(ClientError::MissingUpgrade));
    }

    #[test]
    fn rejects_protocol_not_offered() {
        let (hs, req) = ClientHandshake::new("h", "/ws", &[]);
        let key_line = std::str::from_utf8(&req)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap()
            .to_string();
        let resp = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: other\r\n\r\n",
            accept_key(key_line.as_bytes())
        );
        assert_eq!(
            hs.verify(resp.as_bytes()),
            Err(ClientError::UnexpectedProtocol)
        );
    }

    #[test]
    fn deflate_is_agreed_only_when_offered() {
        let offer = [(
            "Sec-WebSocket-Extensions".to_string(),
            "permessage-deflate; client_no_context_takeover".to_string(),
        )];
        let on = Config {
            deflate: true,
            ..Config::default()
        };
        let response = |req: &[u8], config: &Config| match handshake::accept(req, config) {
            Outcome::Upgrade { upgrade, .. } => upgrade.response.to_vec(),
            other => panic!("{other:?}"),
        };
        let (hs, req) = ClientHandshake::with_headers("h:1", "/ws", &[], &offer);
        let acc = hs.verify(&response(&req, &on)).unwrap().unwrap();
        assert_eq!(acc.deflate.map(|a| a.server_window_bits), Some(15));
        // The server declined: no extension, still a connection.
        let acc = hs
            .verify(&response(&req, &Config::default()))
            .unwrap()
            .unwrap();
        assert_eq!(acc.deflate, None);
        // Not offered, yet agreed: the client must fail (RFC 6455 9.1).
        let (plain, req) = ClientHandshake::new("h:1", "/ws", &[]);
        let mut forged = response(&req, &Config::default());
        let at = forged.len() - 2;
        forged.splice(
            at..at,
            b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
                .iter()
                .copied(),
        );
        assert_eq!(plain.verify(&forged), Err(ClientError::UnexpectedExtension));
        // Offered, but answered with a parameter that does not exist.
        let mut bad = response(&req, &Config::default());
        let at = bad.len() - 2;
        bad.splice(
            at..at,
            b"Sec-WebSocket-Extensions: permessage-deflate; x=1\r\n"
                .iter()
                .copied(),
        );
        assert_eq!(hs.verify(&bad), Err(ClientError::UnexpectedExtension));
    }
}
