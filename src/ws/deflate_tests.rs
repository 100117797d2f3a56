//! permessage-deflate negotiation (RFC 7692 section 7.1) and the
//! one-message deflate/inflate round trip, bounds included.

use super::*;

fn agree(values: &[&str]) -> Option<(u8, String)> {
    negotiate(values.iter().map(|v| v.as_bytes())).map(|(a, s)| (a.server_window_bits, s))
}

const ANSWER: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

#[test]
fn a_plain_offer_gets_no_context_takeover_both_ways() {
    assert_eq!(agree(&["permessage-deflate"]), Some((15, ANSWER.into())));
    // What browsers send.
    assert_eq!(
        agree(&["permessage-deflate; client_max_window_bits"]),
        Some((15, ANSWER.into()))
    );
    assert_eq!(
        agree(&["PerMessage-Deflate ;Client_No_Context_Takeover ; server_no_context_takeover"]),
        Some((15, ANSWER.into()))
    );
}

#[test]
fn server_max_window_bits_is_echoed() {
    for bits in 8..=15u8 {
        let offer = format!("permessage-deflate; server_max_window_bits={bits}");
        let quoted = format!("permessage-deflate; server_max_window_bits=\"{bits}\"");
        for o in [offer, quoted] {
            assert_eq!(
                agree(&[&o]),
                Some((bits, format!("{ANSWER}; server_max_window_bits={bits}"))),
                "{o}"
            );
        }
    }
}

#[test]
fn bad_offers_are_declined_and_a_later_one_accepted() {
    let bad = [
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; server_max_window_bits=+9",
        "permessage-deflate; client_max_window_bits=1x",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_max_window_bits; client_max_window_bits=9",
        "permessage-deflate; mystery",
    ];
    for b in bad {
        assert_eq!(agree(&[b]), None, "{b}");
        // Declining one offer is not refusing the extension: the next
        // offer, in the same header or another, is considered.
        let two = format!("{b}, permessage-deflate; server_max_window_bits=10");
        assert_eq!(agree(&[&two]).map(|a| a.0), Some(10), "{two}");
        assert_eq!(agree(&[b, "permessage-deflate"]).map(|a| a.0), Some(15));
    }
}

#[test]
fn an_unterminated_quote_spoils_the_rest_of_its_header_only() {
    let broken = "permessage-deflate; server_max_window_bits=\"9, permessage-deflate";
    assert_eq!(agree(&[broken]), None);
    assert_eq!(
        agree(&[broken, "permessage-deflate"]).map(|a| a.0),
        Some(15)
    );
}

#[test]
fn other_extensions_are_ignored() {
    assert_eq!(agree(&["x-webkit-deflate-frame"]), None);
    assert_eq!(agree(&[]), None);
    assert_eq!(
        agree(&["foo; bar=\"a,b\", permessage-deflate"]),
        Some((15, ANSWER.into()))
    );
}

#[test]
fn small_windows_only_compress_what_fits() {
    let a = Agreed {
        server_window_bits: 8,
    };
    assert!(a.fits_window(256) && !a.fits_window(257));
    // The full window takes any length: our compressor's window is 15.
    let full = Agreed {
        server_window_bits: 15,
    };
    assert!(full.fits_window(16 << 20));
}

fn quote(i: usize) -> String {
    format!(
        r#"{{"op":"msg","topic":"md.NASDAQ.AAPL","seq":{i},"data":{{"bid":189.{i:02},"ask":189.{:02},"last":189.5,"size":100,"t":1733312000123}}}}"#,
        (i + 1) % 100
    )
}

#[test]
fn round_trip_and_smaller() {
    let mut packed = Vec::new();
    let mut back = Vec::new();
    for i in 0..50 {
        let q = quote(i);
        assert!(deflate(q.as_bytes(), &mut packed), "{q}");
        assert!(packed.len() < q.len());
        inflate(&packed, 1 << 20, &mut back).unwrap();
        assert_eq!(back, q.as_bytes());
    }
    let big: Vec<u8> = (0..300_000)
        .map(|i| b"abcdefgh"[i % 8] ^ (i / 4096) as u8)
        .collect();
    assert!(deflate(&big, &mut packed));
    inflate(&packed, 1 << 20, &mut back).unwrap();
    assert!(back == big);
}

#[test]
fn incompressible_data_is_left_alone() {
    let mut rng = fastrand::Rng::with_seed(7);
    let noise: Vec<u8> = (0..2000).map(|_| rng.u8(..)).collect();
    let mut packed = vec![1, 2, 3];
    assert!(!deflate(&noise, &mut packed));
    assert!(packed.is_empty());
    assert!(!deflate(b"", &mut packed));
}

#[test]
fn a_decompression_bomb_stops_at_the_limit() {
    // 10 MiB of zeros at the best ratio deflate has (~1000:1).
    let zeros = vec![0u8; 10 << 20];
    let mut c = Compress::new(Compression::best(), false);
    let mut packed = Vec::with_capacity(64 << 10);
    c.compress_vec(&zeros, &mut packed, FlushCompress::Sync)
        .unwrap();
    assert!(packed.len() < 20_000, "{}", packed.len());
    let mut out = Vec::new();
    assert_eq!(
        inflate(&packed, 1 << 20, &mut out),
        Err(InflateError::TooBig)
    );
    assert!(out.capacity() <= (1 << 20) + 1, "{}", out.capacity());
    // Exactly at the limit is fine.
    assert_eq!(inflate(&packed, 10 << 20, &mut out), Ok(()));
    assert_eq!(out.len(), 10 << 20);
}

#[test]
fn invalid_data_is_refused_and_the_next_message_still_inflates() {
    let mut out = Vec::new();
    // BTYPE 11 is reserved.
    assert_eq!(
        inflate(&[0xff, 0xff, 0xff], 1000, &mut out),
        Err(InflateError::Invalid)
    );
    // A stored block whose length check fails.
    assert_eq!(
        inflate(&[0x00, 0x05, 0x00, 0x00, 0x00], 1000, &mut out),
        Err(InflateError::Invalid)
    );
    let mut packed = Vec::new();
    assert!(deflate(quote(1).as_bytes(), &mut packed));
    inflate(&packed, 1000, &mut out).unwrap();
    assert_eq!(out, quote(1).as_bytes());
    // A message that sets BFINAL itself (some compressors do) also works.
    let mut c = Compress::new(Compression::new(6), false);
    let mut fin = Vec::with_capacity(1000);
    c.compress_vec(quote(2).as_bytes(), &mut fin, FlushCompress::Finish)
        .unwrap();
    inflate(&fin, 1000, &mut out).unwrap();
    assert_eq!(out, quote(2).as_bytes());
}

#[test]
fn rfc7692_examples() {
    // Section 7.2.3.1: "Hello" compressed, and the same with no
    // compression (a stored block).
    let mut out = Vec::new();
    inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 100, &mut out).unwrap();
    assert_eq!(out, b"Hello");
    inflate(
        &[
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ],
        100,
        &mut out,
    )
    .unwrap();
    assert_eq!(out, b"Hello");
}

#[test]
fn compress_always_marks_a_valid_message_whatever_the_window() {
    let mut packed = Vec::new();
    let mut back = Vec::new();
    let mut rng = fastrand::Rng::with_seed(3);
    for bits in [8u8, 9, 12, 15] {
        let a = Agreed {
            server_window_bits: bits,
        };
        for len in [0usize, 1, 16, 255, 256, 257, 4096, 70_000, 200_000] {
            let text: Vec<u8> = (0..len).map(|i| b"quote "[i % 6]).collect();
            let noise: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            for payload in [text, noise] {
                compress(a, &payload, &mut packed);
                inflate(&packed, 1 << 20, &mut back).unwrap();
                assert!(back == payload, "bits {bits} len {len}");
                if !a.fits_window(len) {
                    // Stored: the window is never used.
                    assert_eq!(packed.len(), len + 5 * (len / 65_535 + 1) + 1);
                }
            }
        }
    }
    // RFC 7692 section 7.2.3.3, and an empty message (section 7.2.3.6).
    stored(b"Hello", &mut packed);
    assert_eq!(
        packed,
        [0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00]
    );
    stored(b"", &mut packed);
    inflate(&packed, 10, &mut back).unwrap();
    assert!(back.is_empty());
}
