//! In-memory tests: a rustls client against [`TlsSession`], with a CA and
//! certificates generated at test time.

use std::io::{Read, Write};
use std::sync::Arc;

use rustls::version::{TLS12, TLS13};
use rustls::{ClientConfig, ClientConnection, ProtocolVersion};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

use super::test_certs::TestPki;
use super::{ConfigError, TlsServer, TlsSession, TlsSettings};

/// Moves bytes both ways until neither side has anything to say; returns
/// the plaintext the server decrypted.
pub(super) fn pump(client: &mut ClientConnection, server: &mut TlsSession) -> Vec<u8> {
    let mut plaintext = Vec::new();
    loop {
        let mut to_server = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut to_server).unwrap();
        }
        let mut to_client = Vec::new();
        if !to_server.is_empty() {
            server
                .feed(&to_server, &mut plaintext, &mut to_client)
                .unwrap();
        }
        if to_server.is_empty() && to_client.is_empty() {
            return plaintext;
        }
        let mut rd = &to_client[..];
        while !rd.is_empty() {
            client.read_tls(&mut rd).unwrap();
            client.process_new_packets().unwrap();
        }
    }
}

pub(super) fn connect(
    server: &TlsServer,
    client: &Arc<ClientConfig>,
    sni: &str,
) -> (ClientConnection, TlsSession) {
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    let mut c = ClientConnection::new(client.clone(), name).unwrap();
    let mut s = TlsSession::new(server.config()).unwrap();
    pump(&mut c, &mut s);
    assert!(!c.is_handshaking() && !s.is_handshaking());
    assert!(s.is_established(), "still on rustls' connection");
    (c, s)
}

fn leaf_der(chain: &std::path::Path) -> CertificateDer<'static> {
    CertificateDer::pem_file_iter(chain)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
}

fn served_leaf(c: &ClientConnection) -> CertificateDer<'static> {
    c.peer_certificates().unwrap()[0].clone().into_owned()
}

pub(super) fn one_cert(pki: &TestPki, names: &[&str]) -> TlsServer {
    TlsServer::new(TlsSettings {
        certs: vec![pki.leaf(names)],
    })
    .unwrap()
}

/// Splits a ciphertext stream into TLS records: (content type, length).
pub(super) fn records(mut bytes: &[u8]) -> Vec<(u8, usize)> {
    let mut out = Vec::new();
    while bytes.len() >= 5 {
        let len = u16::from_be_bytes([bytes[3], bytes[4]]) as usize;
        out.push((bytes[0], len));
        bytes = &bytes[5 + len..];
    }
    assert!(bytes.is_empty());
    out
}

#[test]
fn handshake_tls13_and_tls12_with_alpn() {
    let pki = TestPki::new();
    let server = one_cert(&pki, &["a.test"]);
    for (version, expect) in [
        (&TLS13, ProtocolVersion::TLSv1_3),
        (&TLS12, ProtocolVersion::TLSv1_2),
    ] {
        let client = Arc::new(pki.client(&[version]));
        let (_c, s) = connect(&server, &client, "a.test");
        assert_eq!(s.protocol_version(), Some(expect));
        assert_eq!(s.alpn(), Some(&b"http/1.1"[..]));
        assert_eq!(s.sni(), Some("a.test"));
        assert!(!s.resumed());
    }
}

#[test]
fn sni_picks_the_right_certificate_and_unknown_gets_the_default() {
    let pki = TestPki::new();
    let a = pki.leaf(&["a.test"]);
    let b = pki.leaf(&["b.test", "*.wild.test"]);
    let server = TlsServer::new(TlsSettings {
        certs: vec![a.clone(), b.clone()],
    })
    .unwrap();
    let client = Arc::new(pki.client(&[&TLS13]));
    let (c, _) = connect(&server, &client, "b.test");
    assert_eq!(served_leaf(&c), leaf_der(&b.0));
    let (c, _) = connect(&server, &client, "x.wild.test");
    assert_eq!(served_leaf(&c), leaf_der(&b.0));
    let (c, _) = connect(&server, &client, "a.test");
    assert_eq!(served_leaf(&c), leaf_der(&a.0));

    // Unknown name: the default (first) certificate, which the client then
    // rejects because it does not cover the name.
    let name = ServerName::try_from("other.test").unwrap();
    let mut c = ClientConnection::new(client.clone(), name).unwrap();
    let mut s = TlsSession::new(server.config()).unwrap();
    let mut hello = Vec::new();
    c.write_tls(&mut hello).unwrap();
    let mut out = Vec::new();
    s.feed(&hello, &mut Vec::new(), &mut out).unwrap();
    c.read_tls(&mut &out[..]).unwrap();
    let err = c.process_new_packets().unwrap_err();
    assert!(
        matches!(err, rustls::Error::InvalidCertificate(_)),
        "{err:?}"
    );

    // No SNI at all: the default, which here is valid for a.test.
    let mut no_sni = pki.client(&[&TLS13]);
    no_sni.enable_sni = false;
    let (c, s) = connect(&server, &Arc::new(no_sni), "a.test");
    assert_eq!(s.sni(), None);
    assert_eq!(served_leaf(&c), leaf_der(&a.0));
}

#[test]
fn plaintext_both_ways_and_one_mib_in_full_records() {
    let pki = TestPki::new();
    let server = one_cert(&pki, &["a.test"]);
    let client = Arc::new(pki.client(&[&TLS13]));
    let (mut c, mut s) = connect(&server, &client, "a.test");

    c.writer().write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(pump(&mut c, &mut s), b"GET / HTTP/1.1\r\n\r\n");

    // One MiB split across many slices, as a turn's queue would be.
    let big: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let parts: Vec<&[u8]> = big.chunks(1000).collect();
    let mut out = Vec::new();
    s.seal(&parts, &mut out).unwrap();
    let recs = records(&out);
    assert!(recs.iter().all(|&(ty, len)| ty == 23 && len <= 16384 + 256));
    // 64 full 16 KiB records: the slices do not fragment the stream.
    assert_eq!(recs.len(), 64, "{} records", recs.len());

    let mut rd = &out[..];
    let mut got = Vec::new();
    while !rd.is_empty() {
        c.read_tls(&mut rd).unwrap();
        c.process_new_packets().unwrap();
        let _ = c.reader().read_to_end(&mut got);
    }
    assert_eq!(got.len(), big.len());
    assert!(got == big);

    let mut bye = Vec::new();
    s.close_notify(&mut bye);
    c.read_tls(&mut &bye[..]).unwrap();
    assert!(c.process_new_packets().unwrap().peer_has_closed());
}

#[test]
fn second_connection_resumes() {
    let pki = TestPki::new();
    let server = one_cert(&pki, &["a.test"]);
    for version in [&TLS13, &TLS12] {
        // The client's session store lives in its config: share it.
        let client = Arc::new(pki.client(&[version]));
        let (mut c, mut s) = connect(&server, &client, "a.test");
        // TLS 1.3 tickets arrive after the handshake; let them through.
        c.writer().write_all(b"x").unwrap();
        pump(&mut c, &mut s);
        assert!(!s.resumed());
        let (_c2, s2) = connect(&server, &client, "a.test");
        assert!(s2.resumed(), "{version:?} did not resume");
    }
}

#[test]
fn reload_serves_new_certificate_to_new_handshakes_only() {
    let pki = TestPki::new();
    let (chain, key) = pki.leaf(&["a.test"]);
    let server = TlsServer::new(TlsSettings {
        certs: vec![(chain.clone(), key.clone())],
    })
    .unwrap();
    let old = leaf_der(&chain);
    let client = Arc::new(pki.client(&[&TLS13]));
    let (mut c, mut s) = connect(&server, &client, "a.test");

    let (chain2, key2) = pki.leaf(&["a.test"]);
    std::fs::copy(&chain2, &chain).unwrap();
    std::fs::copy(&key2, &key).unwrap();
    server.reload().unwrap();

    let fresh = Arc::new(pki.client(&[&TLS13])); // no ticket: full handshake
    let (c2, _) = connect(&server, &fresh, "a.test");
    assert_eq!(served_leaf(&c2), leaf_der(&chain2));
    assert_ne!(served_leaf(&c2), old);

    // The established session keeps working both ways.
    c.writer().write_all(b"still here").unwrap();
    assert_eq!(pump(&mut c, &mut s), b"still here");
    let mut out = Vec::new();
    s.seal(&[b"pong"], &mut out).unwrap();
    c.read_tls(&mut &out[..]).unwrap();
    c.process_new_packets().unwrap();
    let mut got = Vec::new();
    let _ = c.reader().read_to_end(&mut got);
    assert_eq!(got, b"pong");

    // A failed reload keeps the current certificates and names the file.
    std::fs::write(&key, "not a key").unwrap();
    let err = server.reload().unwrap_err();
    assert!(err.to_string().contains(&*key.to_string_lossy()), "{err}");
    let (c3, _) = connect(&server, &fresh_client(&pki), "a.test");
    assert_eq!(served_leaf(&c3), leaf_der(&chain2));
}

fn fresh_client(pki: &TestPki) -> Arc<ClientConfig> {
    Arc::new(pki.client(&[&TLS13]))
}

#[test]
fn configuration_errors_name_the_file() {
    let pki = TestPki::new();
    let (chain, key) = pki.leaf(&["a.test"]);
    let (_, other_key) = pki.leaf(&["b.test"]);
    let missing = pki.dir().join("missing.pem");
    let empty = pki.write("empty", "");
    let rsa_like = pki.write(
        "dsa",
        "-----BEGIN PRIVATE KEY-----\nMAkCAQAwAwYBKgQA\n-----END PRIVATE KEY-----\n",
    );
    let cases: Vec<(
        (std::path::PathBuf, std::path::PathBuf),
        &std::path::Path,
        &str,
    )> = vec![
        ((missing.clone(), key.clone()), &missing, "Read"),
        ((chain.clone(), missing.clone()), &missing, "Read"),
        ((empty.clone(), key.clone()), &empty, "EmptyChain"),
        ((chain.clone(), empty.clone()), &empty, "NoKey"),
        (
            (chain.clone(), other_key.clone()),
            &other_key,
            "KeyMismatch",
        ),
        (
            (chain.clone(), rsa_like.clone()),
            &rsa_like,
            "UnsupportedKey",
        ),
    ];
    for (pair, file, kind) in cases {
        let err = TlsServer::new(TlsSettings { certs: vec![pair] })
            .err()
            .unwrap();
        assert!(format!("{err:?}").starts_with(kind), "{kind}: {err:?}");
        assert!(err.to_string().contains(&*file.to_string_lossy()), "{err}");
    }
    assert!(matches!(
        TlsServer::new(TlsSettings::default()).err().unwrap(),
        ConfigError::NoCertificates
    ));
}

#[test]
fn garbage_gets_an_error_with_an_alert() {
    let pki = TestPki::new();
    let server = one_cert(&pki, &["a.test"]);
    for garbage in [
        &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        &[0x16, 0x03, 0x03, 0x00, 0x04, 0xff, 0xff, 0xff, 0xff][..],
        &[0x17, 0x03, 0x03, 0x00, 0x01, 0x00][..],
        // An SSLv2-framed ClientHello, and a record claiming version 2.0.
        &[
            0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10,
        ][..],
        &[0x16, 0x02, 0x00, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00][..],
    ] {
        let mut s = TlsSession::new(server.config()).unwrap();
        let err = s
            .feed(garbage, &mut Vec::new(), &mut Vec::new())
            .unwrap_err();
        assert_eq!(err.alert.first(), Some(&0x15), "{garbage:?}: {err:?}");
        assert_eq!(err.alert[5], 2, "fatal: {err:?}");
        // Once failed, more input fails again rather than panicking.
        assert!(s.feed(b"more", &mut Vec::new(), &mut Vec::new()).is_err());
    }
}

#[test]
fn client_hello_one_byte_at_a_time_completes() {
    let pki = TestPki::new();
    let server = one_cert(&pki, &["a.test"]);
    let client = Arc::new(pki.client(&[&TLS13]));
    let mut c = ClientConnection::new(client, ServerName::try_from("a.test").unwrap()).unwrap();
    let mut s = TlsSession::new(server.config()).unwrap();
    let mut hello = Vec::new();
    c.write_tls(&mut hello).unwrap();
    let mut out = Vec::new();
    for byte in hello.chunks(1) {
        s.feed(byte, &mut Vec::new(), &mut out).unwrap();
    }
    assert!(!out.is_empty());
    c.read_tls(&mut &out[..]).unwrap();
    c.process_new_packets().unwrap();
    pump(&mut c, &mut s);
    assert!(!s.is_handshaking() && !c.is_handshaking());
}

#[test]
fn tls10_and_tls11_client_hellos_are_refused() {
    let pki = TestPki::new();
    let server = one_cert(&pki, &["a.test"]);
    for legacy in [[3u8, 1], [3, 2]] {
        // A ClientHello with only a legacy version and a TLS 1.0-era suite
        // (TLS_RSA_WITH_AES_128_CBC_SHA); no supported_versions extension.
        let mut body = vec![legacy[0], legacy[1]];
        body.extend_from_slice(&[7; 32]); // random
        body.extend_from_slice(&[0, 0, 2, 0x00, 0x2f, 1, 0]);
        let mut hs = vec![1, 0, 0, body.len() as u8];
        hs.extend_from_slice(&body);
        let mut rec = vec![0x16, 3, 1, 0, hs.len() as u8];
        rec.extend_from_slice(&hs);
        let mut s = TlsSession::new(server.config()).unwrap();
        let err = s.feed(&rec, &mut Vec::new(), &mut Vec::new()).unwrap_err();
        // rustls refuses these before looking at the version: a client
        // that old sends no signature_algorithms (TLS 1.2+), so the answer
        // is a fatal handshake_failure.
        assert!(
            matches!(err.error, rustls::Error::PeerIncompatible(_)),
            "{err:?}"
        );
        assert_eq!(&err.alert[..], &[21, 3, 3, 0, 2, 2, 40], "{err:?}");
    }
}

#[test]
fn handshake_completed_is_reported_once() {
    let pki = TestPki::new();
    let server = one_cert(&pki, &["a.test"]);
    let client = Arc::new(pki.client(&[&TLS12]));
    let mut c = ClientConnection::new(client, ServerName::try_from("a.test").unwrap()).unwrap();
    let mut s = TlsSession::new(server.config()).unwrap();
    let mut completions = 0;
    for _ in 0..10 {
        let mut to_server = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut to_server).unwrap();
        }
        if to_server.is_empty() {
            break;
        }
        let mut out = Vec::new();
        let feed = s.feed(&to_server, &mut Vec::new(), &mut out).unwrap();
        completions += usize::from(feed.handshake_completed);
        c.read_tls(&mut &out[..]).unwrap();
        c.process_new_packets().unwrap();
    }
    assert_eq!(completions, 1);
    assert_eq!(s.handshake_kind(), Some(super::HandshakeKind::Full));
}

/// A TLS 1.2 client asking to renegotiate (an encrypted ClientHello after
/// the handshake). The established session never renegotiates: as rustls
/// does, it answers the first with a no_renegotiation warning and fails
/// the connection at the next with `TooManyRenegotiationRequests`, and
/// (which rustls' connection could not) with an encrypted fatal alert.
#[test]
fn renegotiation_attempts_are_refused() {
    use rustls::crypto::cipher::{OutboundChunks, OutboundPlainMessage};
    use rustls::{ConnectionTrafficSecrets, ContentType, SupportedCipherSuite};

    let pki = TestPki::new();
    let server = one_cert(&pki, &["a.test"]);
    let mut config = pki.client(&[&TLS12]);
    config.enable_secret_extraction = true;
    let (c, mut s) = connect(&server, &Arc::new(config.clone()), "a.test");
    let Some(SupportedCipherSuite::Tls12(suite)) = c.negotiated_cipher_suite() else {
        panic!("not TLS 1.2");
    };
    let (mut seq, secrets) = c.dangerous_extract_secrets().unwrap().tx;
    let (key, iv) = match secrets {
        ConnectionTrafficSecrets::Aes256Gcm { key, iv }
        | ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (key, iv),
        _ => panic!("unexpected suite"),
    };
    let mut enc = suite
        .aead_alg
        .encrypter(key, &iv.as_ref()[..4], &iv.as_ref()[4..]);

    // A real ClientHello, without its record header.
    let mut fresh =
        ClientConnection::new(Arc::new(config), ServerName::try_from("a.test").unwrap()).unwrap();
    let mut hello = Vec::new();
    fresh.write_tls(&mut hello).unwrap();
    let hello = &hello[5..];

    let mut outcome = None;
    for attempt in 0..100 {
        let record = enc
            .encrypt(
                OutboundPlainMessage {
                    typ: ContentType::Handshake,
                    version: ProtocolVersion::TLSv1_2,
                    payload: OutboundChunks::Single(hello),
                },
                seq,
            )
            .unwrap()
            .encode();
        seq += 1;
        let mut out = Vec::new();
        match s.feed(&record, &mut Vec::new(), &mut out) {
            // The warning: one encrypted alert record, nothing else.
            Ok(_) => assert_eq!(records(&out), vec![(21, out.len() - 5)], "{attempt}"),
            Err(err) => {
                assert!(
                    matches!(
                        err.error,
                        rustls::Error::PeerMisbehaved(
                            rustls::PeerMisbehaved::TooManyRenegotiationRequests
                        )
                    ),
                    "{err:?}"
                );
                assert!(attempt > 0, "the first attempt only gets a warning");
                assert_eq!(records(&err.alert), vec![(21, err.alert.len() - 5)]);
                outcome = Some(attempt);
                break;
            }
        }
    }
    assert!(outcome.is_some(), "repeated renegotiation never failed");
}

#[test]
fn a_client_session_talks_to_a_server_session() {
    // The runtime's outbound side (the load generator's wss://) drives a
    // client `TlsSession` the same way: its ClientHello comes from
    // `pending`, everything after from `feed` and `seal`.
    let pki = TestPki::new();
    let server = one_cert(&pki, &["localhost"]);
    let name = ServerName::try_from("localhost").unwrap();
    let mut c = TlsSession::client(Arc::new(pki.client(&[&TLS13, &TLS12])), name).unwrap();
    let mut s = TlsSession::new(server.config()).unwrap();
    let (mut to_server, mut to_client) = (Vec::new(), Vec::new());
    c.pending(&mut to_server);
    assert!(!to_server.is_empty(), "no ClientHello");
    let (mut c_plain, mut s_plain) = (Vec::new(), Vec::new());
    let mut done = (false, false);
    for _ in 0..8 {
        let f = s.feed(&to_server, &mut s_plain, &mut to_client).unwrap();
        done.1 |= f.handshake_completed;
        to_server.clear();
        let f = c.feed(&to_client, &mut c_plain, &mut to_server).unwrap();
        done.0 |= f.handshake_completed;
        to_client.clear();
        if done == (true, true) && to_server.is_empty() {
            break;
        }
    }
    assert_eq!(done, (true, true));
    assert_eq!(s.sni(), Some("localhost"));
    assert_eq!(c.sni(), None);
    c.seal(&[b"GET / HTTP/1.1\r\n", b"\r\n"], &mut to_server)
        .unwrap();
    s.feed(&to_server, &mut s_plain, &mut to_client).unwrap();
    assert_eq!(s_plain, b"GET / HTTP/1.1\r\n\r\n");
    s.seal(&[b"HTTP/1.1 200 OK\r\n\r\n"], &mut to_client)
        .unwrap();
    c.feed(&to_client, &mut c_plain, &mut Vec::new()).unwrap();
    assert!(c_plain.ends_with(b"200 OK\r\n\r\n"), "{c_plain:?}");
}

#[test]
fn client_config_trusts_its_ca_file_and_insecure_trusts_anything() {
    let pki = TestPki::new();
    let server = one_cert(&pki, &["localhost"]);
    let other = TestPki::new();
    let handshake = |config: Arc<ClientConfig>| {
        let name = ServerName::try_from("localhost").unwrap();
        let mut c = TlsSession::client(config, name).unwrap();
        let mut s = TlsSession::new(server.config()).unwrap();
        let (mut to_s, mut to_c, mut p) = (Vec::new(), Vec::new(), Vec::new());
        c.pending(&mut to_s);
        for _ in 0..4 {
            s.feed(&to_s, &mut p, &mut to_c).map_err(|e| e.error)?;
            to_s.clear();
            c.feed(&to_c, &mut p, &mut to_s).map_err(|e| e.error)?;
            to_c.clear();
        }
        Ok::<bool, rustls::Error>(!c.is_handshaking())
    };
    let ca = pki.write("ca.pem", &pki.ca_pem());
    let trusted = super::client_config(super::Trust::Ca(&ca)).unwrap();
    assert_eq!(handshake(trusted), Ok(true));
    let wrong_ca = other.write("ca.pem", &other.ca_pem());
    let untrusted = super::client_config(super::Trust::Ca(&wrong_ca)).unwrap();
    assert!(matches!(
        handshake(untrusted),
        Err(rustls::Error::InvalidCertificate(_))
    ));
    let insecure = super::client_config(super::Trust::Insecure).unwrap();
    assert_eq!(handshake(insecure), Ok(true));
    let empty = pki.write("empty.pem", "");
    let e = super::client_config(super::Trust::Ca(&empty)).unwrap_err();
    assert!(e.to_string().contains("empty.pem"), "{e}");
}
