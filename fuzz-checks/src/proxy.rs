//! Arbitrary bytes as the first bytes of a connection under
//! `--proxy-protocol` (`proxy::header::parse`), and as the value of a
//! trusted proxy's `X-Forwarded-For` / `Forwarded` (`proxy::forwarded`).
//!
//! Invariants: nothing panics; a header found took no more than the input
//! nor more than the caps (107 bytes for v1, 16 + 4 KiB for v2), parsing
//! just those bytes finds the same header, and the bytes short of them
//! (one short, and half) ask for more; "need more" only below the caps.
//! The forwarded walk answers the peer itself or an address the value
//! held, never panics.

use ringfan::proxy::forwarded::{client, parse_cidr, Scheme, Trusted};
use ringfan::proxy::header::{parse, MAX_V1, MAX_V2_BODY};
use std::net::SocketAddr;

pub fn check(data: &[u8]) {
    match parse(data) {
        Ok(Some((h, n))) => {
            assert!(
                n <= data.len() && n <= 16 + MAX_V2_BODY,
                "{n} of {}",
                data.len()
            );
            if h.version == 1 {
                assert!(n <= MAX_V1, "v1 header of {n} bytes");
            }
            assert_eq!(parse(&data[..n]), Ok(Some((h, n))));
            assert_eq!(parse(&data[..n - 1]), Ok(None));
            assert_eq!(parse(&data[..n / 2]), Ok(None));
        }
        Ok(None) => assert!(data.len() < 16 + MAX_V2_BODY, "need more at {}", data.len()),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    let peer: SocketAddr = "127.0.0.1:1".parse().expect("peer");
    let trusted = Trusted::new(vec![
        parse_cidr("127.0.0.0/8").expect("cidr"),
        parse_cidr("10.0.0.0/8").expect("cidr"),
    ]);
    // Without a digit there is no address to name.
    let digits = data.iter().any(u8::is_ascii_hexdigit);
    for scheme in [Scheme::XForwardedFor, Scheme::Forwarded] {
        let got = client(peer, &trusted, scheme, &[data, data]);
        assert!(got == peer || digits, "{got} from {data:?}");
    }
}
