//! What the established session (`tls/established.rs`) does that rustls'
//! connection used to do for us: rekeying at the confidentiality limit,
//! refusing KeyUpdate floods and bad records with an alert the client can
//! read, and holding nothing when idle. The interface tests (`tests.rs`,
//! `unbuffered_tests.rs`) run through it too: `connect` checks every
//! session they use has been handed over.

use std::io::{Read, Write};
use std::sync::Arc;

use rustls::version::{TLS12, TLS13};
use rustls::{AlertDescription, ClientConnection, SupportedProtocolVersion};

use super::test_certs::TestPki;
use super::tests::{connect, one_cert, pump, records};

const VERSIONS: [&SupportedProtocolVersion; 2] = [&TLS13, &TLS12];

/// Hands `bytes` to the client; returns what it decrypted, or its error.
fn client_reads(c: &mut ClientConnection, bytes: &[u8]) -> Result<Vec<u8>, rustls::Error> {
    let mut rd = bytes;
    let mut got = Vec::new();
    while !rd.is_empty() {
        c.read_tls(&mut rd).unwrap();
        c.process_new_packets()?;
        let _ = c.reader().read_to_end(&mut got);
    }
    Ok(got)
}

#[test]
fn tls13_rekeys_at_the_confidentiality_limit() {
    let pki = TestPki::new();
    let server = one_cert(&pki, &["a.test"]);
    let (mut c, mut s) = connect(&server, &Arc::new(pki.client(&[&TLS13])), "a.test");
    s.limit_tx_records(3);
    let mut got = Vec::new();
    let mut kinds = Vec::new();
    for i in 0..10u8 {
        let mut out = Vec::new();
        s.seal(&[&[i; 100]], &mut out).unwrap();
        kinds.push(records(&out).len());
        got.extend(client_reads(&mut c, &out).unwrap());
    }
    // Records 0-2 under the first key; then a KeyUpdate before the 4th.
    // The new key starts its own count at the real limit (2^24.5).
    assert_eq!(kinds, [1, 1, 1, 2, 1, 1, 1, 1, 1, 1]);
    let want: Vec<u8> = (0..10u8).flat_map(|i| [i; 100]).collect();
    assert_eq!(got, want);
    // Still talking both ways.
    c.writer().write_all(b"ping").unwrap();
    assert_eq!(pump(&mut c, &mut s), b"ping");
}

#[test]
fn tls12_ends_at_the_confidentiality_limit() {
    let pki = TestPki::new();
    let server = one_cert(&pki, &["a.test"]);
    let (mut c, mut s) = connect(&server, &Arc::new(pki.client(&[&TLS12])), "a.test");
    s.limit_tx_records(2);
    for _ in 0..2 {
        let mut out = Vec::new();
        s.seal(&[b"ok"], &mut out).unwrap();
        assert_eq!(client_reads(&mut c, &out).unwrap(), b"ok");
    }
    let err = s.seal(&[b"one too many"], &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("confidentiality limit"), "{err}");
    // The alert is still under the old key, which the client reads.
    assert_eq!(
        client_reads(&mut c, &err.alert).unwrap_err(),
        rustls::Error::AlertReceived(AlertDescription::InternalError)
    );
    assert!(s.seal(&[b"x"], &mut Vec::new()).is_err(), "stays failed");
}

#[test]
fn a_flood_of_key_updates_is_refused() {
    let pki = TestPki::new();
    let server = one_cert(&pki, &["a.test"]);
    let (mut c, mut s) = connect(&server, &Arc::new(pki.client(&[&TLS13])), "a.test");
    let mut outcome = None;
    for round in 0..40 {
        c.refresh_traffic_keys().unwrap();
        let mut bytes = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut bytes).unwrap();
        }
        let mut out = Vec::new();
        if let Err(err) = s.feed(&bytes, &mut Vec::new(), &mut out) {
            outcome = Some((round, err));
            break;
        }
        // We answer lazily, before our next record: nothing yet.
        assert!(out.is_empty());
    }
    let (round, err) = outcome.expect("never refused");
    assert_eq!(round, 32, "32 are allowed without data between them");
    assert!(
        matches!(
            err.error,
            rustls::Error::PeerMisbehaved(rustls::PeerMisbehaved::TooManyKeyUpdateRequests)
        ),
        "{err:?}"
    );
    assert_eq!(
        client_reads(&mut c, &err.alert).unwrap_err(),
        rustls::Error::AlertReceived(AlertDescription::UnexpectedMessage)
    );
}

#[test]
fn key_updates_with_data_between_them_go_on_forever() {
    let pki = TestPki::new();
    let server = one_cert(&pki, &["a.test"]);
    let (mut c, mut s) = connect(&server, &Arc::new(pki.client(&[&TLS13])), "a.test");
    for round in 0..100 {
        c.refresh_traffic_keys().unwrap();
        c.writer().write_all(b"d").unwrap();
        assert_eq!(pump(&mut c, &mut s), b"d", "round {round}");
    }
    let mut out = Vec::new();
    s.seal(&[b"pong"], &mut out).unwrap();
    assert_eq!(client_reads(&mut c, &out).unwrap(), b"pong");
}

#[test]
fn bad_records_get_an_alert_the_client_can_read() {
    let pki = TestPki::new();
    let server = one_cert(&pki, &["a.test"]);
    for version in VERSIONS {
        let client = Arc::new(pki.client(&[version]));
        // (record, what the server reports, what the client reads)
        let forged = {
            let mut r = vec![0x17, 3, 3, 0, 40];
            r.extend_from_slice(&[7; 40]);
            r
        };
        let not_tls = [0x17, 9, 9, 0, 1, 0];
        let cases: [(&[u8], AlertDescription); 2] = [
            (&forged, AlertDescription::BadRecordMac),
            (&not_tls, AlertDescription::DecodeError),
        ];
        for (record, alert) in cases {
            let (mut c, mut s) = connect(&server, &client, "a.test");
            let err = s
                .feed(record, &mut Vec::new(), &mut Vec::new())
                .unwrap_err();
            assert_eq!(records(&err.alert).len(), 1, "{version:?}: {err:?}");
            assert_eq!(
                client_reads(&mut c, &err.alert).unwrap_err(),
                rustls::Error::AlertReceived(alert),
                "{version:?}"
            );
            assert_eq!(s.held_capacity(), 0);
            // Failed for good: the same error, no second alert.
            let again = s
                .feed(b"more", &mut Vec::new(), &mut Vec::new())
                .unwrap_err();
            assert!(again.alert.is_empty());
        }
    }
}

#[test]
fn an_idle_established_session_holds_nothing() {
    let pki = TestPki::new();
    let server = one_cert(&pki, &["a.test"]);
    for version in VERSIONS {
        let (mut c, mut s) = connect(&server, &Arc::new(pki.client(&[version])), "a.test");
        c.writer().write_all(&[1; 3000]).unwrap();
        let mut bytes = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut bytes).unwrap();
        }
        let mut plain = Vec::new();
        for piece in bytes.chunks(700) {
            s.feed(piece, &mut plain, &mut Vec::new()).unwrap();
            assert!(s.held_capacity() <= bytes.len());
        }
        assert_eq!(plain, [1; 3000]);
        assert_eq!(s.held_capacity(), 0, "{version:?}");
        assert!(s.is_established());
    }
}
