//! Tests of what the unbuffered server session does with its input and
//! state that the interface tests (`tests.rs`) do not pin down: holding
//! partial records and freeing them, the bound on held input, KeyUpdate,
//! close_notify both ways, sealing during a TLS 1.2 handshake, and input
//! split at random points, each checked against the buffered session.

use std::io::{Read, Write};
use std::sync::Arc;

use rustls::version::{TLS12, TLS13};
use rustls::{AlertDescription, ClientConnection, SupportedProtocolVersion};
use rustls_pki_types::ServerName;

use super::test_certs::TestPki;
use super::tests::{connect, one_cert, pump, records};
use super::unbuffered::MAX_HELD;
use super::TlsSession;

const VERSIONS: [&SupportedProtocolVersion; 2] = [&TLS13, &TLS12];

/// Everything the client has to send.
fn client_bytes(c: &mut ClientConnection) -> Vec<u8> {
    let mut bytes = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut bytes).unwrap();
    }
    bytes
}

/// Hands `bytes` to the client and returns the plaintext it decrypted.
fn client_reads(c: &mut ClientConnection, bytes: &[u8]) -> Vec<u8> {
    let mut rd = bytes;
    let mut got = Vec::new();
    while !rd.is_empty() {
        c.read_tls(&mut rd).unwrap();
        c.process_new_packets().unwrap();
        let _ = c.reader().read_to_end(&mut got);
    }
    got
}

#[test]
fn a_partial_record_is_held_until_complete_then_freed() {
    let pki = TestPki::new();
    let server = one_cert(&pki, &["a.test"]);
    for version in VERSIONS {
        let (mut c, mut s) = connect(&server, &Arc::new(pki.client(&[version])), "a.test");
        assert_eq!(s.held_capacity(), 0);
        c.writer().write_all(&[b'x'; 1000]).unwrap();
        let record = client_bytes(&mut c);
        let (first, rest) = record.split_at(record.len() / 2);
        let mut plain = Vec::new();
        let feed = s.feed(first, &mut plain, &mut Vec::new()).unwrap();
        assert_eq!(feed.plaintext, 0);
        // Exactly the bytes received, not a read-sized buffer.
        assert_eq!(s.held_capacity(), first.len(), "{version:?}");
        let feed = s.feed(rest, &mut plain, &mut Vec::new()).unwrap();
        assert_eq!(feed.plaintext, 1000);
        assert_eq!(plain, [b'x'; 1000]);
        assert_eq!(s.held_capacity(), 0, "{version:?}: not freed");
    }
}

#[test]
fn a_full_record_a_byte_at_a_time_never_holds_more_than_a_record() {
    let pki = TestPki::new();
    let server = one_cert(&pki, &["a.test"]);
    for version in VERSIONS {
        let (mut c, mut s) = connect(&server, &Arc::new(pki.client(&[version])), "a.test");
        let message: Vec<u8> = (0..16_384u32).map(|i| i as u8).collect();
        c.writer().write_all(&message).unwrap();
        let record = client_bytes(&mut c);
        assert_eq!(records(&record).len(), 1);
        let mut plain = Vec::new();
        for byte in record.chunks(1) {
            s.feed(byte, &mut plain, &mut Vec::new()).unwrap();
            assert!(s.held_capacity() <= MAX_HELD, "{}", s.held_capacity());
        }
        assert!(plain == message, "{version:?}");
        assert_eq!(s.held_capacity(), 0);
    }
}

/// The client's whole stream (handshake, then a message of up to 40 KB)
/// fed to a server session in pieces cut at random points (one byte, a few,
/// or any number). Returns the plaintext and the number of records the
/// server answered with in each flight.
fn split_run(
    new: fn(Arc<rustls::ServerConfig>) -> Result<TlsSession, super::TlsError>,
    server: &super::TlsServer,
    pki: &TestPki,
    version: &'static SupportedProtocolVersion,
    seed: u64,
) -> (Vec<u8>, Vec<usize>, TlsSession) {
    // A client of its own each time: a shared one would resume.
    let client = Arc::new(pki.client(&[version]));
    let mut rng = fastrand::Rng::with_seed(seed);
    let name = ServerName::try_from("a.test").unwrap();
    let mut c = ClientConnection::new(client, name).unwrap();
    let mut s = new(server.config()).unwrap();
    let message: Vec<u8> = (0..rng.usize(1..40_000)).map(|i| i as u8).collect();
    c.writer().write_all(&message).unwrap();
    let mut plain = Vec::new();
    let mut flights = Vec::new();
    for _ in 0..10 {
        let bytes = client_bytes(&mut c);
        if bytes.is_empty() {
            break;
        }
        let mut out = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let n = match rng.u8(..4) {
                0 => 1,
                1 => rng.usize(1..=rest.len().min(10)),
                _ => rng.usize(1..=rest.len()),
            };
            let at = bytes.len() - rest.len();
            let (piece, more) = rest.split_at(n);
            s.feed(piece, &mut plain, &mut out)
                .unwrap_or_else(|e| panic!("seed {seed} at {at}+{n}: {e}"));
            rest = more;
        }
        flights.push(records(&out).len());
        client_reads(&mut c, &out);
    }
    assert!(!s.is_handshaking(), "seed {seed}");
    assert!(plain == message, "seed {seed}: wrong plaintext");
    (plain, flights, s)
}

/// The same splits through the unbuffered and the buffered session give
/// the same plaintext and answers, and the unbuffered one ends up holding
/// nothing.
#[test]
fn input_split_anywhere_matches_the_buffered_session() {
    let pki = TestPki::new();
    let server = one_cert(&pki, &["a.test"]);
    for version in VERSIONS {
        for seed in 0..40u64 {
            let (plain, flights, s) = split_run(TlsSession::new, &server, &pki, version, seed);
            let (plain_b, flights_b, _) =
                split_run(TlsSession::new_buffered, &server, &pki, version, seed);
            assert!(plain == plain_b);
            assert_eq!(flights, flights_b, "{version:?} seed {seed}");
            assert_eq!(s.held_capacity(), 0);
        }
    }
}

#[test]
fn a_record_longer_than_tls_allows_is_refused_at_its_header() {
    let pki = TestPki::new();
    let server = one_cert(&pki, &["a.test"]);
    let header = |len: u16| {
        let [hi, lo] = len.to_be_bytes();
        [0x17, 3, 3, hi, lo]
    };

    // During the handshake: a plaintext decode_error from rustls.
    let mut s = TlsSession::new(server.config()).unwrap();
    let err = s
        .feed(&header(16_641), &mut Vec::new(), &mut Vec::new())
        .unwrap_err();
    assert_eq!(err.alert, [21, 3, 3, 0, 2, 2, 50], "{err:?}");

    for version in VERSIONS {
        let client = Arc::new(pki.client(&[version]));
        // The longest allowed is held (it fails later, as garbage).
        let (_c, mut s) = connect(&server, &client, "a.test");
        let mut big = header(16_640).to_vec();
        big.resize(MAX_HELD - 1, 0);
        s.feed(&big, &mut Vec::new(), &mut Vec::new()).unwrap();
        assert_eq!(s.held_capacity(), MAX_HELD - 1);
        let err = s.feed(&[0], &mut Vec::new(), &mut Vec::new()).unwrap_err();
        assert!(matches!(err.error, rustls::Error::DecryptError), "{err:?}");
        assert_eq!(s.held_capacity(), 0);

        // One byte longer: refused before its body arrives, with an
        // encrypted alert the client reads as decode_error.
        let (mut c, mut s) = connect(&server, &client, "a.test");
        let err = s
            .feed(&header(16_641), &mut Vec::new(), &mut Vec::new())
            .unwrap_err();
        assert!(!err.alert.is_empty(), "{version:?}: {err:?}");
        c.read_tls(&mut &err.alert[..]).unwrap();
        assert_eq!(
            c.process_new_packets().unwrap_err(),
            rustls::Error::AlertReceived(AlertDescription::DecodeError)
        );
        assert_eq!(s.held_capacity(), 0);
    }
}

/// A handshake message spread over records is kept whole until complete;
/// one that would make the session hold more than a maximum-size record
/// is refused (the buffered connection allowed 64 KiB).
#[test]
fn a_handshake_message_needing_more_than_one_record_of_memory_is_refused() {
    let pki = TestPki::new();
    let server = one_cert(&pki, &["a.test"]);
    let record = |body: &[u8]| {
        let mut r = vec![0x16, 3, 1];
        r.extend_from_slice(&(body.len() as u16).to_be_bytes());
        r.extend_from_slice(body);
        r
    };
    // A ClientHello announcing 20,000 bytes, in 15,000-byte records.
    let mut first = vec![1, 0, 0x4e, 0x20];
    first.resize(15_000, 7);
    let mut s = TlsSession::new(server.config()).unwrap();
    s.feed(&record(&first), &mut Vec::new(), &mut Vec::new())
        .unwrap();
    assert_eq!(s.held_capacity(), 15_005);
    let err = s
        .feed(
            &record(&[7; 5_000])[..2_000],
            &mut Vec::new(),
            &mut Vec::new(),
        )
        .unwrap_err();
    assert!(
        matches!(
            err.error,
            rustls::Error::InvalidMessage(rustls::InvalidMessage::HandshakePayloadTooLarge)
        ),
        "{err:?}"
    );
    assert_eq!(err.alert, [21, 3, 3, 0, 2, 2, 50]);
    assert_eq!(s.held_capacity(), 0);
}

#[test]
fn key_updates_from_the_client_are_followed() {
    let pki = TestPki::new();
    let server = one_cert(&pki, &["a.test"]);
    let (mut c, mut s) = connect(&server, &Arc::new(pki.client(&[&TLS13])), "a.test");
    for round in 0..5 {
        // rustls' client asks for an update of our keys too
        // (update_requested): our KeyUpdate goes out before our next record.
        c.refresh_traffic_keys().unwrap();
        c.writer().write_all(b"after update").unwrap();
        assert_eq!(pump(&mut c, &mut s), b"after update", "round {round}");
        let mut out = Vec::new();
        s.seal(&[b"pong"], &mut out).unwrap();
        assert_eq!(records(&out).len(), 2, "KeyUpdate, then the data");
        assert_eq!(client_reads(&mut c, &out), b"pong", "round {round}");
    }
}

#[test]
fn close_notify_both_ways() {
    let pki = TestPki::new();
    let server = one_cert(&pki, &["a.test"]);
    for version in VERSIONS {
        let (mut c, mut s) = connect(&server, &Arc::new(pki.client(&[version])), "a.test");
        // Data, close_notify and junk in one read: the data arrives, the
        // close is reported, the junk is ignored and nothing is held.
        c.writer().write_all(b"bye").unwrap();
        c.send_close_notify();
        let mut bytes = client_bytes(&mut c);
        bytes.extend_from_slice(&[0x17, 3, 3, 0, 40, 1, 2, 3]);
        let mut plain = Vec::new();
        let feed = s.feed(&bytes, &mut plain, &mut Vec::new()).unwrap();
        assert_eq!((plain.as_slice(), feed.peer_closed), (&b"bye"[..], true));
        assert_eq!(s.held_capacity(), 0);
        let feed = s.feed(b"more", &mut plain, &mut Vec::new()).unwrap();
        assert!(feed.peer_closed && plain == b"bye");

        // Half-closed: we may still send, then close ourselves.
        let mut out = Vec::new();
        s.seal(&[b"last words"], &mut out).unwrap();
        assert_eq!(client_reads(&mut c, &out), b"last words");
        let mut bye = Vec::new();
        s.close_notify(&mut bye);
        c.read_tls(&mut &bye[..]).unwrap();
        assert!(c.process_new_packets().unwrap().peer_has_closed());
        let mut again = Vec::new();
        s.close_notify(&mut again);
        assert!(again.is_empty(), "one close_notify only");
        assert!(s.seal(&[b"too late"], &mut Vec::new()).is_err());
    }
}

/// Data sealed before the handshake lets the server encrypt (TLS 1.2,
/// until the client's Finished) is kept and sent right after it, as the
/// buffered connection did.
#[test]
fn data_sealed_during_a_tls12_handshake_follows_it() {
    let pki = TestPki::new();
    let server = one_cert(&pki, &["a.test"]);
    let client = Arc::new(pki.client(&[&TLS12]));
    let mut c = ClientConnection::new(client, ServerName::try_from("a.test").unwrap()).unwrap();
    let mut s = TlsSession::new(server.config()).unwrap();
    let mut out = Vec::new();
    s.seal(&[b"hel", b"lo"], &mut out).unwrap();
    assert!(out.is_empty());
    let mut got = Vec::new();
    for _ in 0..4 {
        let bytes = client_bytes(&mut c);
        let mut out = Vec::new();
        s.feed(&bytes, &mut Vec::new(), &mut out).unwrap();
        got.extend(client_reads(&mut c, &out));
    }
    assert!(!s.is_handshaking());
    assert_eq!(got, b"hello");
}

#[test]
fn sixty_four_small_frames_make_one_record() {
    let pki = TestPki::new();
    let server = one_cert(&pki, &["a.test"]);
    for version in VERSIONS {
        let (mut c, mut s) = connect(&server, &Arc::new(pki.client(&[version])), "a.test");
        let frame = [b'f'; 100];
        let frames = vec![&frame[..]; 64];
        let mut out = Vec::new();
        s.seal(&frames, &mut out).unwrap();
        assert_eq!(records(&out).len(), 1, "{version:?}");
        assert_eq!(client_reads(&mut c, &out), [b'f'; 6400]);
        // A long slice after short ones: still full records.
        let long = vec![b'l'; 40_000];
        let mut out = Vec::new();
        s.seal(&[&frame[..], &long[..], &frame[..]], &mut out)
            .unwrap();
        let lens: Vec<usize> = records(&out).iter().map(|r| r.1).collect();
        assert_eq!(lens.len(), 3, "{version:?}: {lens:?}");
        assert_eq!(client_reads(&mut c, &out).len(), 40_200);
    }
}

/// The unbuffered connection has no `server_name()`: the SNI comes from
/// the certificate resolver, which rustls calls for resumed handshakes too.
#[test]
fn sni_is_reported_for_full_and_resumed_handshakes() {
    let pki = TestPki::new();
    let server = one_cert(&pki, &["a.test", "b.test"]);
    for version in VERSIONS {
        let client = Arc::new(pki.client(&[version]));
        let (mut c, mut s) = connect(&server, &client, "B.test");
        assert_eq!(s.sni(), Some("b.test"), "lower-cased, as rustls gives it");
        c.writer().write_all(b"x").unwrap();
        pump(&mut c, &mut s); // TLS 1.3 tickets follow the handshake
        let (_c, s2) = connect(&server, &client, "b.test");
        assert!(s2.resumed(), "{version:?}");
        assert_eq!(s2.sni(), Some("b.test"), "{version:?}");
    }
}

/// Before rustls can encrypt, `close_notify` is a plaintext alert, and
/// nothing can be sealed after it.
#[test]
fn close_notify_before_the_handshake_is_plaintext() {
    let pki = TestPki::new();
    let server = one_cert(&pki, &["a.test"]);
    let mut s = TlsSession::new(server.config()).unwrap();
    let mut out = Vec::new();
    s.close_notify(&mut out);
    assert_eq!(out, [21, 3, 3, 0, 2, 1, 0]);
    assert!(s.seal(&[b"x"], &mut Vec::new()).is_err());
}
