//! Arbitrary bytes as an HTTP request head to the server handshake
//! (`handshake::accept`, under eight configs: origins × deflate) and as a response head to the
//! client handshake (`ClientHandshake::verify`).
//!
//! Invariants: nothing panics; a Reject's response is a complete HTTP
//! response with that status, `Connection: close` and a Content-Length that
//! matches its body; an Upgrade or Http outcome consumed no more than the
//! input (nor more than MAX_HEAD), and the same outcome comes back from the
//! consumed head alone; an Upgrade's response is a 101 with the accept key;
//! Partial only below MAX_HEAD. For verify: Ok(Some) only for a complete
//! 101 that consumed no more than the input, with an offered protocol.
//!
//! Where the input holds `{ACCEPT}`, the verify pass also runs on a copy
//! with it replaced by the accept value the client expects, so the fuzzer
//! reaches the success path (the client key is fixed by seeding fastrand).

use ringfan::ws::client::{Accepted, ClientError, ClientHandshake};
use ringfan::ws::handshake::{accept, accept_key, Config, Outcome, MAX_HEAD};
use std::sync::OnceLock;

const PLACEHOLDER: &[u8] = b"{ACCEPT}";

struct Fixture {
    configs: Vec<Config>,
    /// (handshake, its expected Sec-WebSocket-Accept, protocols offered)
    clients: Vec<(ClientHandshake, String, Vec<&'static str>)>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let mut configs = Vec::new();
        for origins in [
            None,
            Some(vec![
                "https://example.com".to_string(),
                "http://localhost:8080".to_string(),
            ]),
        ] {
            for deflate in [false, true] {
                configs.push(Config {
                    allowed_origins: origins.clone(),
                    deflate,
                });
            }
        }
        // ClientHandshake::new draws its key from fastrand's thread-local
        // generator; seed it so runs (and crash reproductions) agree.
        fastrand::seed(0x72696e6766616e);
        let mut clients = Vec::new();
        for protocols in [vec![], vec!["ringfan.v1"], vec!["chat", "ringfan.v1"]] {
            let (hs, req) = ClientHandshake::new("localhost:8080", "/ws", &protocols);
            let req = String::from_utf8(req).unwrap();
            let key = req
                .lines()
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                .unwrap();
            let expected = accept_key(key.as_bytes());
            clients.push((hs, expected, protocols));
        }
        Fixture { configs, clients }
    })
}

fn header<'h>(headers: &'h [httparse::Header<'_>], name: &str) -> Option<&'h [u8]> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

fn check_accept(data: &[u8], config: &Config) {
    let outcome = accept(data, config);
    match &outcome {
        Outcome::Partial => {
            assert!(data.len() <= MAX_HEAD, "Partial for {} bytes", data.len());
        }
        Outcome::Reject { status, response } => {
            let mut hs = [httparse::EMPTY_HEADER; 16];
            let mut resp = httparse::Response::new(&mut hs);
            let n = match resp.parse(response) {
                Ok(httparse::Status::Complete(n)) => n,
                other => panic!("Reject response does not parse: {other:?}: {response:?}"),
            };
            assert_eq!(resp.code, Some(*status), "status line vs Reject status");
            assert!((400..600).contains(status), "Reject with status {status}");
            let conn = header(resp.headers, "connection").expect("Reject without Connection");
            assert!(conn.eq_ignore_ascii_case(b"close"), "Connection: {conn:?}");
            let len: usize = std::str::from_utf8(header(resp.headers, "content-length").unwrap())
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(len, response.len() - n, "Content-Length vs body");
        }
        Outcome::Upgrade { consumed, upgrade } => {
            assert!(
                *consumed <= data.len(),
                "consumed {consumed} > {}",
                data.len()
            );
            assert!(*consumed <= MAX_HEAD);
            // The path is the request target's, without its query.
            assert!(
                !upgrade.path.contains('?'),
                "path with a query: {:?}",
                upgrade.path
            );
            let mut hs = [httparse::EMPTY_HEADER; 16];
            let mut resp = httparse::Response::new(&mut hs);
            let n = match resp.parse(&upgrade.response) {
                Ok(httparse::Status::Complete(n)) => n,
                other => panic!("101 response does not parse: {other:?}"),
            };
            assert_eq!(n, upgrade.response.len(), "101 response has a body");
            assert_eq!(resp.code, Some(101));
            assert!(header(resp.headers, "sec-websocket-accept").is_some());
            assert_eq!(
                header(resp.headers, "sec-websocket-protocol").is_some(),
                upgrade.subprotocol
            );
        }
        Outcome::Http { consumed, .. } => {
            assert!(
                *consumed <= data.len(),
                "consumed {consumed} > {}",
                data.len()
            );
            assert!(*consumed <= MAX_HEAD);
        }
    }
    // The head decides alone: the bytes behind it (frames) change nothing.
    if let Outcome::Upgrade { consumed, .. } | Outcome::Http { consumed, .. } = outcome {
        assert_eq!(
            accept(&data[..consumed], config),
            outcome,
            "head alone differs"
        );
    }
}

fn check_verify(data: &[u8], hs: &ClientHandshake, protocols: &[&str]) {
    match hs.verify(data) {
        Ok(None) => assert!(data.len() <= MAX_HEAD, "Ok(None) for {} bytes", data.len()),
        Ok(Some(Accepted {
            consumed,
            protocol,
            deflate,
        })) => {
            // These clients offer no extension: none may be agreed.
            assert!(deflate.is_none(), "deflate agreed though not offered");
            assert!(
                consumed <= data.len(),
                "consumed {consumed} > {}",
                data.len()
            );
            if let Some(p) = &protocol {
                assert!(
                    protocols.contains(&p.as_str()),
                    "protocol {p:?} not offered"
                );
            }
            let mut h = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut h);
            assert_eq!(resp.parse(data), Ok(httparse::Status::Complete(consumed)));
            assert_eq!(resp.code, Some(101));
            // Same answer from the head alone.
            assert_eq!(
                hs.verify(&data[..consumed]),
                Ok(Some(Accepted {
                    consumed,
                    protocol,
                    deflate
                }))
            );
        }
        Err(ClientError::Status(s)) => assert_ne!(s, 101),
        Err(_) => {}
    }
}

fn replace_all(data: &[u8], from: &[u8], to: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() + to.len());
    let mut i = 0;
    let mut hit = false;
    while i < data.len() {
        if data[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
            hit = true;
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    hit.then_some(out)
}

/// One fuzz input; panics on a broken invariant.
pub fn check(data: &[u8]) {
    let f = fixture();
    for config in &f.configs {
        check_accept(data, config);
    }
    for (hs, expected, protocols) in &f.clients {
        check_verify(data, hs, protocols);
        if let Some(sub) = replace_all(data, PLACEHOLDER, expected.as_bytes()) {
            check_verify(&sub, hs, protocols);
        }
    }
}
