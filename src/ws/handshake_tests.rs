use super::*;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn request(path: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .into_bytes()
}

fn status(o: &Outcome) -> u16 {
    match o {
        Outcome::Reject { status, response } => {
            let text = std::str::from_utf8(response).unwrap();
            assert!(text.starts_with(&format!("HTTP/1.1 {status} ")), "{text}");
            assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
            *status
        }
        Outcome::Upgrade { .. } => 101,
        Outcome::Http { request, .. } => {
            // The caller's answer to a plain request for a WebSocket
            // endpoint.
            let r = upgrade_required(&request.method);
            let text = std::str::from_utf8(&r).unwrap();
            text[9..12].parse().unwrap()
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn upgrade(o: Outcome) -> (usize, Upgrade) {
    match o {
        Outcome::Upgrade { consumed, upgrade } => (consumed, upgrade),
        other => panic!("expected upgrade, got {other:?}"),
    }
}

#[test]
fn rfc_sample_accept_key() {
    // RFC 6455 §1.3.
    assert_eq!(accept_key(KEY.as_bytes()), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

#[test]
fn valid_upgrade() {
    let req = request("/ws", "");
    let (consumed, up) = upgrade(accept(&req, &Config::default()));
    assert_eq!(consumed, req.len());
    assert_eq!(&*up.path, "/ws");
    assert!(!up.subprotocol);
    let text = std::str::from_utf8(&up.response).unwrap();
    assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert!(!text.contains("Sec-WebSocket-Protocol"));
    assert!(text.ends_with("\r\n\r\n"));
}

#[test]
fn every_prefix_is_partial() {
    let req = request("/ws", "");
    for n in 0..req.len() {
        assert_eq!(
            accept(&req[..n], &Config::default()),
            Outcome::Partial,
            "{n}"
        );
    }
}

#[test]
fn header_names_and_tokens_are_case_insensitive_lists() {
    let req = b"GET /ws HTTP/1.1\r\nhost: x\r\nupgrade: WebSocket\r\nCONNECTION: keep-alive, UPGRADE\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n";
    upgrade(accept(req, &Config::default()));
}

#[test]
fn connection_header_may_repeat() {
    let req = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    upgrade(accept(req, &Config::default()));
}

#[test]
fn subprotocol_selected_when_offered() {
    let req = request("/ws", "Sec-WebSocket-Protocol: chat, ringfan.v1\r\n");
    let (_, up) = upgrade(accept(&req, &Config::default()));
    assert!(up.subprotocol);
    let text = std::str::from_utf8(&up.response).unwrap();
    assert!(text.contains("\r\nSec-WebSocket-Protocol: ringfan.v1\r\n"));
    // Offered only something else: no header, handshake still succeeds.
    let req = request("/ws", "Sec-WebSocket-Protocol: chat\r\n");
    let (_, up) = upgrade(accept(&req, &Config::default()));
    assert!(!up.subprotocol);
}

#[test]
fn frames_behind_the_head_are_not_consumed() {
    let mut req = request("/ws", "");
    let head = req.len();
    req.extend_from_slice(&[0x81, 0x80, 1, 2, 3, 4]);
    let (consumed, _) = upgrade(accept(&req, &Config::default()));
    assert_eq!(consumed, head);
}

#[test]
fn the_path_goes_to_the_caller() {
    // No routes here: any path upgrades, and the query string is not part
    // of the path.
    for (target, path) in [
        ("/echo", "/echo"),
        ("/nope", "/nope"),
        ("/", "/"),
        ("/ws?x=1", "/ws"),
    ] {
        let (_, up) = upgrade(accept(&request(target, ""), &Config::default()));
        assert_eq!(&*up.path, path, "{target}");
    }
}

#[test]
fn plain_http_requests_go_to_the_caller() {
    let http = |req: &[u8]| match accept(req, &Config::default()) {
        Outcome::Http { consumed, request } => {
            assert_eq!(consumed, req.len());
            (request.method.to_string(), request.path.to_string())
        }
        other => panic!("expected plain HTTP, got {other:?}"),
    };
    assert_eq!(
        http(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("GET".into(), "/healthz".into())
    );
    assert_eq!(
        http(b"GET /metrics?x HTTP/1.0\r\n\r\n"),
        ("GET".into(), "/metrics".into())
    );
    assert_eq!(
        http(b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("POST".into(), "/metrics".into())
    );
    // An upgrade is one only with `Upgrade: websocket`.
    let h2c = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n";
    assert_eq!(http(h2c), ("GET".into(), "/ws".into()));
}

#[test]
fn a_plain_request_for_a_websocket_endpoint_is_told_how() {
    let r = upgrade_required("GET");
    let text = std::str::from_utf8(&r).unwrap();
    assert!(text.starts_with("HTTP/1.1 426 "), "{text}");
    assert!(text.contains("\r\nUpgrade: websocket\r\n"), "{text}");
    assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"), "{text}");
    let r = upgrade_required("POST");
    let text = std::str::from_utf8(&r).unwrap();
    assert!(text.starts_with("HTTP/1.1 405 "), "{text}");
    assert!(text.contains("\r\nAllow: GET\r\n"), "{text}");
}

#[test]
fn method_must_be_get() {
    let req = String::from_utf8(request("/ws", ""))
        .unwrap()
        .replacen("GET", "POST", 1);
    let o = accept(req.as_bytes(), &Config::default());
    assert_eq!(status(&o), 405);
}

#[test]
fn http_1_0_is_refused() {
    let req = String::from_utf8(request("/ws", ""))
        .unwrap()
        .replacen("HTTP/1.1", "HTTP/1.0", 1);
    assert_eq!(status(&accept(req.as_bytes(), &Config::default())), 400);
}

fn without(header: &str) -> Vec<u8> {
    String::from_utf8(request("/ws", ""))
        .unwrap()
        .split("\r\n")
        .filter(|l| !l.starts_with(header))
        .collect::<Vec<_>>()
        .join("\r\n")
        .into_bytes()
}

#[test]
fn missing_host_is_400() {
    assert_eq!(status(&accept(&without("Host:"), &Config::default())), 400);
}

#[test]
fn missing_upgrade_is_426() {
    let o = accept(&without("Upgrade:"), &Config::default());
    assert_eq!(status(&o), 426);
    let req = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    assert_eq!(status(&accept(req, &Config::default())), 426);
}

#[test]
fn connection_without_upgrade_is_400() {
    assert_eq!(
        status(&accept(&without("Connection:"), &Config::default())),
        400
    );
    let req = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    assert_eq!(status(&accept(req, &Config::default())), 400);
}

#[test]
fn other_versions_get_426_naming_13() {
    for v in ["8", "12", "14", "", "13, 8"] {
        let req = String::from_utf8(request("/ws", "")).unwrap().replacen(
            "Sec-WebSocket-Version: 13",
            &format!("Sec-WebSocket-Version: {v}"),
            1,
        );
        let o = accept(req.as_bytes(), &Config::default());
        assert_eq!(status(&o), 426, "version {v:?}");
        let Outcome::Reject { response, .. } = o else {
            unreachable!()
        };
        let text = std::str::from_utf8(&response).unwrap();
        assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"), "{text}");
    }
    let o = accept(&without("Sec-WebSocket-Version:"), &Config::default());
    assert_eq!(status(&o), 426);
}

#[test]
fn key_must_decode_to_16_bytes() {
    for k in [
        "",
        "abc",
        "dGhlIHNhbXBsZSBub25jZQ",
        "dGhlIHNhbXBsZSBub25jZXg=",
        "!!!!!!!!!!!!!!!!!!!!!!==",
    ] {
        let req = String::from_utf8(request("/ws", ""))
            .unwrap()
            .replacen(KEY, k, 1);
        assert_eq!(
            status(&accept(req.as_bytes(), &Config::default())),
            400,
            "key {k:?}"
        );
    }
    assert_eq!(
        status(&accept(&without("Sec-WebSocket-Key:"), &Config::default())),
        400
    );
    // Two keys are ambiguous.
    let req = request("/ws", "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n");
    assert_eq!(status(&accept(&req, &Config::default())), 400);
}

#[test]
fn origin_allow_list() {
    let cfg = Config {
        allowed_origins: Some(vec!["https://app.example.com".into()]),
        ..Config::default()
    };
    let ok = request("/ws", "Origin: https://app.example.com\r\n");
    upgrade(accept(&ok, &cfg));
    let ok_case = request("/ws", "Origin: HTTPS://APP.EXAMPLE.COM\r\n");
    upgrade(accept(&ok_case, &cfg));
    let bad = request("/ws", "Origin: https://evil.example.com\r\n");
    assert_eq!(status(&accept(&bad, &cfg)), 403);
    // No Origin: a non-browser client, not refused for that.
    upgrade(accept(&request("/ws", ""), &cfg));
    // No allow-list: any origin.
    upgrade(accept(&bad, &Config::default()));
}

#[test]
fn several_origin_headers_are_400() {
    let body = |o: &Outcome| match o {
        Outcome::Reject { response, .. } => String::from_utf8_lossy(response).into_owned(),
        other => panic!("expected a rejection, got {other:?}"),
    };
    let allowed = Config {
        allowed_origins: Some(vec!["https://app.example.com".into()]),
        ..Config::default()
    };
    // Before: the last one was judged, so an allowed origin after an evil
    // one let the evil one through to anything reading the first.
    let two = request(
        "/ws",
        "Origin: https://evil.example.com\r\nOrigin: https://app.example.com\r\n",
    );
    for cfg in [&allowed, &Config::default()] {
        let o = accept(&two, cfg);
        assert_eq!(status(&o), 400);
        assert!(
            body(&o).ends_with("more than one Origin header\n"),
            "{}",
            body(&o)
        );
    }
    // Names are case-insensitive: `origin` and `ORIGIN` are two as well.
    let two = request(
        "/ws",
        "origin: https://app.example.com\r\nORIGIN: https://app.example.com\r\n",
    );
    assert_eq!(status(&accept(&two, &allowed)), 400);
    // One is still fine.
    upgrade(accept(
        &request("/ws", "Origin: https://app.example.com\r\n"),
        &allowed,
    ));
}

#[test]
fn head_over_8k_is_431() {
    let filler = format!("X-Filler: {}\r\n", "a".repeat(MAX_HEAD));
    let req = request("/ws", &filler);
    assert_eq!(status(&accept(&req, &Config::default())), 431);
    // Incomplete but already past the limit: no point waiting for more.
    assert_eq!(
        status(&accept(&req[..MAX_HEAD + 1], &Config::default())),
        431
    );
    // Just under the limit is fine.
    let base = request("/ws", "").len();
    let pad = MAX_HEAD - base - "X-Filler: \r\n".len();
    let req = request("/ws", &format!("X-Filler: {}\r\n", "a".repeat(pad)));
    assert_eq!(req.len(), MAX_HEAD);
    upgrade(accept(&req, &Config::default()));
}

#[test]
fn too_many_headers_is_431() {
    let many: String = (0..60).map(|i| format!("X-H{i}: v\r\n")).collect();
    assert_eq!(
        status(&accept(&request("/ws", &many), &Config::default())),
        431
    );
}

#[test]
fn garbage_is_400() {
    for g in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
        b"GET\x00/ HTTP/1.1\r\n\r\n",
        b"HELLO\r\n\r\n",
    ] {
        assert_eq!(status(&accept(g, &Config::default())), 400, "{g:?}");
    }
}

#[test]
fn token_from_query_or_bearer() {
    let (_, up) = upgrade(accept(
        &request("/ws?a=b&token=s3cr3t", ""),
        &Config::default(),
    ));
    assert_eq!(up.token.as_deref(), Some("s3cr3t"));
    let (_, up) = upgrade(accept(
        &request("/ws", "Authorization: Bearer abc.def\r\n"),
        &Config::default(),
    ));
    assert_eq!(up.token.as_deref(), Some("abc.def"));
    let (_, up) = upgrade(accept(
        &request("/ws", "Authorization: Basic abc\r\n"),
        &Config::default(),
    ));
    assert_eq!(up.token, None);
}

#[test]
fn origin_host_patterns() {
    let p = "https://*.example.com";
    for ok in [
        "https://a.example.com",
        "https://a.b.example.com",
        "HTTPS://App.Example.COM",
        "https://x-1.example.com",
    ] {
        assert!(origin_allowed(p, ok.as_bytes()), "{ok}");
    }
    for bad in [
        "https://example.com",
        "https://.example.com",
        "https://a..example.com",
        "https://evil-example.com",
        "https://a.example.com.evil.org",
        "http://a.example.com",
        "https://a.example.com:8443",
        "https://a_b.example.com",
        "https://a.example.co",
        "",
    ] {
        assert!(!origin_allowed(p, bad.as_bytes()), "{bad}");
    }
    assert!(origin_allowed(
        "https://*.example.com:8443",
        b"https://a.example.com:8443"
    ));
    assert!(!origin_allowed(
        "https://*.example.com:8443",
        b"https://a.example.com"
    ));
    // Exact entries stay exact and case-insensitive.
    assert!(origin_allowed(
        "https://app.example.com",
        b"https://APP.example.com"
    ));
    assert!(!origin_allowed(
        "https://app.example.com",
        b"https://x.app.example.com"
    ));
}

/// Response headers of an accepted upgrade, lower-cased names.
fn response_header(o: &Outcome, name: &str) -> Option<String> {
    let Outcome::Upgrade { upgrade, .. } = o else {
        panic!("not an upgrade: {o:?}");
    };
    String::from_utf8_lossy(&upgrade.response)
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
}

#[test]
fn permessage_deflate_is_answered_only_when_enabled() {
    let offer = request(
        "/ws",
        "Sec-WebSocket-Extensions: x-foo, permessage-deflate; client_max_window_bits\r\n",
    );
    let off = accept(&offer, &Config::default());
    assert_eq!(response_header(&off, "sec-websocket-extensions"), None);
    let Outcome::Upgrade { upgrade, .. } = &off else {
        unreachable!()
    };
    assert_eq!(upgrade.deflate, None);

    let on = Config {
        deflate: true,
        ..Config::default()
    };
    let yes = accept(&offer, &on);
    assert_eq!(
        response_header(&yes, "sec-websocket-extensions").as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
    let Outcome::Upgrade { upgrade, .. } = &yes else {
        unreachable!()
    };
    assert_eq!(upgrade.deflate.map(|a| a.server_window_bits), Some(15));

    // Offers over two headers: the first acceptable one wins.
    let two = request(
        "/ws",
        "Sec-WebSocket-Extensions: permessage-deflate; bogus\r\n\
         Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=9\r\n",
    );
    let yes = accept(&two, &on);
    assert_eq!(
        response_header(&yes, "sec-websocket-extensions").as_deref(),
        Some(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=9"
        )
    );
    // Nothing acceptable: no extension, still an upgrade.
    let none = request(
        "/ws",
        "Sec-WebSocket-Extensions: permessage-deflate; x=1\r\n",
    );
    assert_eq!(
        response_header(&accept(&none, &on), "sec-websocket-extensions"),
        None
    );
}
