use super::*;
use proptest::prelude::*;

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

fn v1(line: &[u8]) -> Result<Option<(Header, usize)>, Error> {
    parse(line)
}

fn inet(src: &str, dst: &str) -> Option<Addresses> {
    Some(Addresses {
        source: sa(src),
        destination: sa(dst),
    })
}

/// A v2 header: command (0 LOCAL, 1 PROXY), family/transport byte, body.
fn v2(command: u8, fam: u8, body: &[u8]) -> Vec<u8> {
    let mut h = V2_SIGNATURE.to_vec();
    h.push(0x20 | command);
    h.push(fam);
    h.extend_from_slice(&(body.len() as u16).to_be_bytes());
    h.extend_from_slice(body);
    h
}

fn v2_inet(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, tlvs: &[u8]) -> Vec<u8> {
    let mut b = src.to_vec();
    b.extend_from_slice(&dst);
    b.extend_from_slice(&sport.to_be_bytes());
    b.extend_from_slice(&dport.to_be_bytes());
    b.extend_from_slice(tlvs);
    v2(1, 0x11, &b)
}

#[test]
fn v1_spec_examples() {
    // The spec's own examples (section 2.1).
    let line = b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n";
    assert_eq!(
        v1(line),
        Ok(Some((
            Header {
                version: 1,
                addresses: inet("255.255.255.255:65535", "255.255.255.255:65535")
            },
            line.len()
        )))
    );
    let line = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_eq!(line.len(), 104, "the longest line there is");
    let (h, n) = v1(line).unwrap().unwrap();
    assert_eq!(n, 104);
    assert_eq!(
        h.addresses,
        inet(
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
        )
    );
    for line in [
        &b"PROXY UNKNOWN\r\n"[..],
        b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
    ] {
        assert_eq!(
            v1(line),
            Ok(Some((
                Header {
                    version: 1,
                    addresses: None
                },
                line.len()
            )))
        );
    }
    let line = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n";
    let (h, n) = v1(line).unwrap().unwrap();
    assert_eq!(h.addresses, inet("192.168.0.1:56324", "192.168.0.11:443"));
    assert_eq!(&line[n..], b"GET / HTTP/1.1\r\n");
}

#[test]
fn v1_refusals_say_why() {
    let cases: &[(&[u8], Error)] = &[
        (b"GET / HTTP/1.1\r\n", Error::NotProxy),
        (b"proxy TCP4", Error::NotProxy),
        (
            b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
            Error::V1("protocol is not TCP4, TCP6 or UNKNOWN"),
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            Error::V1("not four fields separated by single spaces"),
        ),
        (
            b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
            Error::V1("not four fields separated by single spaces"),
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
            Error::V1("not four fields separated by single spaces"),
        ),
        (
            b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
            Error::V1("bad IPv4 address"),
        ),
        (
            b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
            Error::V1("bad IPv4 address"),
        ),
        (
            b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
            Error::V1("bad IPv6 address"),
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            Error::V1("port over 65535"),
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n",
            Error::V1("bad port"),
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
            Error::V1("bad port"),
        ),
        (
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
            Error::V1("CR not followed by LF"),
        ),
        (
            b"PROXY TCP4 1.2.3.4\n",
            Error::V1("a control character before CRLF"),
        ),
    ];
    for (line, want) in cases {
        assert_eq!(v1(line), Err(*want), "{}", String::from_utf8_lossy(line));
    }
}

#[test]
fn v1_length_is_capped_at_107() {
    // 105 bytes of line plus CRLF fits (UNKNOWN lets us pad)...
    let mut line = b"PROXY UNKNOWN ".to_vec();
    line.resize(105, b'x');
    line.extend_from_slice(b"\r\n");
    assert_eq!(line.len(), 107);
    assert!(matches!(v1(&line), Ok(Some((_, 107)))));
    // ...one more byte does not, whether or not the CRLF is there yet.
    let mut long = b"PROXY UNKNOWN ".to_vec();
    long.resize(106, b'x');
    assert_eq!(v1(&long), Ok(None), "106 bytes: the CRLF may still come");
    long.push(b'\r');
    assert_eq!(v1(&long), Err(Error::V1TooLong));
    long.push(b'\n');
    assert_eq!(v1(&long), Err(Error::V1TooLong));
    let mut endless = b"PROXY TCP4 ".to_vec();
    endless.resize(4096, b'1');
    assert_eq!(v1(&endless), Err(Error::V1TooLong));
}

#[test]
fn v2_proxy_inet_inet6_and_local() {
    let h = v2_inet([192, 0, 2, 1], [198, 51, 100, 7], 56324, 443, &[]);
    assert_eq!(h.len(), 28);
    let mut with_data = h.clone();
    with_data.extend_from_slice(b"\x16\x03\x01");
    assert_eq!(
        parse(&with_data),
        Ok(Some((
            Header {
                version: 2,
                addresses: inet("192.0.2.1:56324", "198.51.100.7:443")
            },
            28
        )))
    );
    let mut b = Vec::new();
    b.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
    b.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
    b.extend_from_slice(&1234u16.to_be_bytes());
    b.extend_from_slice(&80u16.to_be_bytes());
    let h = v2(1, 0x21, &b);
    assert_eq!(
        parse(&h),
        Ok(Some((
            Header {
                version: 2,
                addresses: inet("[2001:db8::1]:1234", "[2001:db8::2]:80")
            },
            52
        )))
    );
    // LOCAL (a health check from the proxy itself): addresses, if any,
    // are ignored; UNSPEC too.
    for h in [v2(0, 0x00, &[]), v2(0, 0x11, &[0; 12]), v2(1, 0x00, &[])] {
        assert_eq!(
            parse(&h),
            Ok(Some((
                Header {
                    version: 2,
                    addresses: None
                },
                h.len()
            )))
        );
    }
    // AF_UNIX names no IP address.
    assert!(matches!(
        parse(&v2(1, 0x31, &[0; 216])),
        Ok(Some((
            Header {
                addresses: None,
                ..
            },
            232
        )))
    ));
    // UDP over INET still names the client.
    let mut udp = v2_inet([10, 0, 0, 1], [10, 0, 0, 2], 1, 2, &[]);
    udp[13] = 0x12;
    assert!(matches!(
        parse(&udp),
        Ok(Some((
            Header {
                addresses: Some(_),
                ..
            },
            28
        )))
    ));
}

#[test]
fn v2_tlvs_are_skipped_within_bounds() {
    // ALPN "h2", an authority, a NOOP with no value.
    let tlvs = [
        &[0x01, 0, 2][..],
        b"h2",
        &[0x02, 0, 11],
        b"example.com",
        &[0x04, 0, 0],
    ]
    .concat();
    let h = v2_inet([1, 2, 3, 4], [5, 6, 7, 8], 9, 10, &tlvs);
    let (hdr, n) = parse(&h).unwrap().unwrap();
    assert_eq!(n, h.len());
    assert_eq!(hdr.addresses, inet("1.2.3.4:9", "5.6.7.8:10"));
    // A TLV that runs past the announced length, or a cut TLV header.
    let bad = v2_inet([1, 2, 3, 4], [5, 6, 7, 8], 9, 10, &[0x01, 0, 5, b'h']);
    assert_eq!(parse(&bad), Err(Error::V2("TLV runs past the header")));
    let bad = v2_inet([1, 2, 3, 4], [5, 6, 7, 8], 9, 10, &[0x01, 0]);
    assert_eq!(parse(&bad), Err(Error::V2("truncated TLV")));
}

#[test]
fn v2_refusals_say_why() {
    let mut h = v2_inet([1, 2, 3, 4], [5, 6, 7, 8], 9, 10, &[]);
    h[12] = 0x11;
    assert_eq!(parse(&h), Err(Error::V2("version is not 2")));
    // Known at the 13th byte, before the rest arrives.
    assert_eq!(parse(&h[..13]), Err(Error::V2("version is not 2")));
    h[12] = 0x22;
    assert_eq!(
        parse(&h),
        Err(Error::V2("command is neither LOCAL nor PROXY"))
    );
    let mut h = v2_inet([1, 2, 3, 4], [5, 6, 7, 8], 9, 10, &[]);
    h[13] = 0x41;
    assert_eq!(
        parse(&h),
        Err(Error::V2("unknown address family or transport"))
    );
    h[13] = 0x13;
    assert_eq!(
        parse(&h),
        Err(Error::V2("unknown address family or transport"))
    );
    // INET6 addresses need 36 bytes.
    assert_eq!(
        parse(&v2(1, 0x21, &[0; 12])),
        Err(Error::V2("length shorter than its addresses"))
    );
    // Over the cap: refused from the fixed part alone.
    let mut h = v2(1, 0x11, &[]);
    h[14..16].copy_from_slice(&((MAX_V2_BODY + 1) as u16).to_be_bytes());
    assert_eq!(parse(&h[..16]), Err(Error::V2TooLong));
    h[14..16].copy_from_slice(&(MAX_V2_BODY as u16).to_be_bytes());
    assert_eq!(parse(&h[..16]), Ok(None));
}

#[test]
fn every_prefix_of_a_header_asks_for_more() {
    let headers: Vec<Vec<u8>> = vec![
        b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n".to_vec(),
        b"PROXY UNKNOWN\r\n".to_vec(),
        v2_inet([1, 2, 3, 4], [5, 6, 7, 8], 9, 10, &[0x01, 0, 2, b'h', b'2']),
        v2(0, 0, &[]),
    ];
    for h in headers {
        for cut in 0..h.len() {
            assert_eq!(parse(&h[..cut]), Ok(None), "{cut} of {h:?}");
        }
        assert!(matches!(parse(&h), Ok(Some((_, n))) if n == h.len()));
    }
}

fn any_header() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            any::<u16>(),
            any::<u16>()
        )
            .prop_map(|(s, d, sp, dp)| {
                format!(
                    "PROXY TCP4 {} {} {sp} {dp}\r\n",
                    Ipv4Addr::from(s),
                    Ipv4Addr::from(d)
                )
                .into_bytes()
            }),
        (
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            any::<u16>(),
            any::<u16>()
        )
            .prop_map(|(s, d, sp, dp)| {
                format!(
                    "PROXY TCP6 {} {} {sp} {dp}\r\n",
                    Ipv6Addr::from(s),
                    Ipv6Addr::from(d)
                )
                .into_bytes()
            }),
        (
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            any::<u16>(),
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 0..40)
        )
            .prop_map(|(s, d, sp, dp, v)| {
                let mut tlv = vec![0xE0, 0, v.len() as u8];
                tlv.extend_from_slice(&v);
                v2_inet(s, d, sp, dp, &tlv)
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Random bytes never panic, and whatever is accepted fits the caps.
    #[test]
    fn random_input_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(Some((_, n))) = parse(&buf) {
            prop_assert!(n <= buf.len() && n <= 16 + MAX_V2_BODY);
        }
    }

    /// Random bytes after either magic (where the parser does its work)
    /// never panic.
    #[test]
    fn random_after_the_magic_never_panics(v2m in any::<bool>(), tail in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut buf = if v2m { V2_SIGNATURE.to_vec() } else { b"PROXY ".to_vec() };
        buf.extend_from_slice(&tail);
        if let Ok(Some((_, n))) = parse(&buf) {
            prop_assert!(n <= buf.len());
        }
    }

    /// A valid header followed by anything: found, with its exact length,
    /// the addresses round-trip, and every prefix asks for more.
    #[test]
    fn valid_headers_parse_and_truncations_wait(h in any_header(), tail in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut buf = h.clone();
        buf.extend_from_slice(&tail);
        let parsed = parse(&buf);
        prop_assert!(matches!(parsed, Ok(Some((Header { addresses: Some(_), .. }, n))) if n == h.len()), "{:?}", parsed);
        for cut in 0..h.len() {
            prop_assert_eq!(parse(&h[..cut]), Ok(None));
        }
    }

    /// One byte of a valid header changed: an error or a header, never a
    /// panic, never a length past the input.
    #[test]
    fn mutated_headers_never_panic(h in any_header(), at in any::<usize>(), b in any::<u8>()) {
        let mut buf = h.clone();
        let i = at % buf.len();
        buf[i] = b;
        if let Ok(Some((_, n))) = parse(&buf) {
            prop_assert!(n <= buf.len());
        }
    }
}
