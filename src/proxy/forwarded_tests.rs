use super::*;

fn trusted(nets: &[&str]) -> Trusted {
    Trusted::new(nets.iter().map(|n| parse_cidr(n).expect("cidr")).collect())
}

fn sa(s: &str) -> SocketAddr {
    s.parse().expect("socket address")
}

fn xff(peer: &str, t: &Trusted, values: &[&str]) -> SocketAddr {
    let v: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
    client(sa(peer), t, Scheme::XForwardedFor, &v)
}

fn fwd(peer: &str, t: &Trusted, values: &[&str]) -> SocketAddr {
    let v: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
    client(sa(peer), t, Scheme::Forwarded, &v)
}

#[test]
fn cidrs_and_single_addresses() {
    assert_eq!(parse_cidr("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
    assert_eq!(parse_cidr("127.0.0.1").unwrap().to_string(), "127.0.0.1/32");
    assert_eq!(parse_cidr("::1").unwrap().to_string(), "::1/128");
    assert_eq!(parse_cidr(" fd00::/8 ").unwrap().to_string(), "fd00::/8");
    for bad in ["10.0.0.0/33", "nope", "", "10.0.0/8", "1.2.3.4/-1"] {
        let e = parse_cidr(bad).unwrap_err();
        assert!(e.contains("not a CIDR"), "{bad}: {e}");
    }
    // Host bits set are dropped: 10.1.2.3/8 trusts 10.0.0.0/8.
    let t = trusted(&["10.1.2.3/8"]);
    assert!(t.contains("10.200.0.1".parse().unwrap()));
    // An IPv4 peer on an IPv6 socket is its IPv4 address.
    let t = trusted(&["127.0.0.1/32"]);
    assert!(t.contains("::ffff:127.0.0.1".parse().unwrap()));
    assert!(!t.contains("::1".parse().unwrap()));
    assert!(!Trusted::default().contains("127.0.0.1".parse().unwrap()));
}

#[test]
fn untrusted_peer_is_the_client_whatever_it_says() {
    let t = trusted(&["10.0.0.0/8"]);
    assert_eq!(
        xff("192.0.2.9:5000", &t, &["1.1.1.1"]),
        sa("192.0.2.9:5000")
    );
    assert_eq!(
        fwd("192.0.2.9:5000", &t, &["for=1.1.1.1"]),
        sa("192.0.2.9:5000")
    );
    assert_eq!(
        xff("192.0.2.9:5000", &Trusted::default(), &["1.1.1.1"]),
        sa("192.0.2.9:5000")
    );
}

#[test]
fn rightmost_untrusted_is_the_client() {
    let t = trusted(&["10.0.0.0/8", "127.0.0.1"]);
    // client, a spoofed entry the client sent, then our proxies.
    assert_eq!(
        xff("127.0.0.1:1", &t, &["6.6.6.6, 203.0.113.5, 10.0.0.2"]),
        sa("203.0.113.5:0")
    );
    // Several header lines are one list, in order.
    assert_eq!(
        xff(
            "127.0.0.1:1",
            &t,
            &["6.6.6.6", "203.0.113.5", "10.0.0.2,10.0.0.3"]
        ),
        sa("203.0.113.5:0")
    );
    // No header: the peer.
    assert_eq!(xff("127.0.0.1:1", &t, &[]), sa("127.0.0.1:1"));
    // Everyone trusted: the leftmost.
    assert_eq!(
        xff("127.0.0.1:1", &t, &["10.9.9.9, 10.0.0.2"]),
        sa("10.9.9.9:0")
    );
    // IPv6, bracketed or not, with or without port; IPv4 with a port.
    assert_eq!(
        xff("127.0.0.1:1", &t, &["2001:db8::1"]),
        sa("[2001:db8::1]:0")
    );
    assert_eq!(
        xff("127.0.0.1:1", &t, &["[2001:db8::1]:443"]),
        sa("[2001:db8::1]:443")
    );
    assert_eq!(
        xff("127.0.0.1:1", &t, &["198.51.100.4:8080"]),
        sa("198.51.100.4:8080")
    );
    // An IPv4-mapped entry is the IPv4 address (and is judged as one).
    assert_eq!(
        xff("127.0.0.1:1", &t, &["1.2.3.4, ::ffff:10.0.0.7"]),
        sa("1.2.3.4:0")
    );
}

#[test]
fn malformed_entries_stop_the_walk() {
    let t = trusted(&["10.0.0.0/8", "127.0.0.1"]);
    // The entry next to our proxy is garbage: the proxy is all we know,
    // and the address further left is not believed.
    assert_eq!(
        xff("127.0.0.1:1", &t, &["203.0.113.5, garbage"]),
        sa("127.0.0.1:1")
    );
    assert_eq!(
        xff("127.0.0.1:1", &t, &["203.0.113.5, unknown, 10.0.0.2"]),
        sa("10.0.0.2:0")
    );
    assert_eq!(
        xff("127.0.0.1:1", &t, &["203.0.113.5,,"]),
        sa("127.0.0.1:1")
    );
    assert_eq!(xff("127.0.0.1:1", &t, &[""]), sa("127.0.0.1:1"));
    assert_eq!(
        xff("127.0.0.1:1", &t, &["1.2.3.4:99999"]),
        sa("127.0.0.1:1")
    );
    assert_eq!(xff("127.0.0.1:1", &t, &["[::1"]), sa("127.0.0.1:1"));
    // Garbage further left than the client does not matter.
    assert_eq!(
        xff("127.0.0.1:1", &t, &["%%%, 203.0.113.5"]),
        sa("203.0.113.5:0")
    );
}

#[test]
fn forwarded_rfc7239_examples() {
    let t = trusted(&["127.0.0.1", "10.0.0.0/8"]);
    // RFC 7239 §4 and §7.1 examples.
    assert_eq!(
        fwd("127.0.0.1:1", &t, &["for=\"_gazonk\""]),
        sa("127.0.0.1:1")
    );
    assert_eq!(
        fwd("127.0.0.1:1", &t, &["For=\"[2001:db8:cafe::17]:4711\""]),
        sa("[2001:db8:cafe::17]:4711")
    );
    assert_eq!(
        fwd(
            "127.0.0.1:1",
            &t,
            &["for=192.0.2.60;proto=http;by=203.0.113.43"]
        ),
        sa("192.0.2.60:0")
    );
    assert_eq!(
        fwd("127.0.0.1:1", &t, &["for=192.0.2.43, for=198.51.100.17"]),
        sa("198.51.100.17:0")
    );
    assert_eq!(
        fwd(
            "127.0.0.1:1",
            &t,
            &["for=192.0.2.43, for=\"[2001:db8:cafe::17]\", for=10.0.0.4"]
        ),
        sa("[2001:db8:cafe::17]:0")
    );
    assert_eq!(fwd("127.0.0.1:1", &t, &["for=unknown"]), sa("127.0.0.1:1"));
    // A quoted comma does not split elements.
    assert_eq!(
        fwd(
            "127.0.0.1:1",
            &t,
            &["for=192.0.2.1;x=\"a,b\", for=\"192.0.2.2:80\""]
        ),
        sa("192.0.2.2:80")
    );
    // No for=, two for=, a broken pair, an escape: malformed.
    for bad in [
        "proto=https",
        "for=1.2.3.4;for=5.6.7.8",
        "for",
        "for=\"1.2.3.4\\\"\"",
        "for=\"1.2.3.4",
    ] {
        assert_eq!(fwd("127.0.0.1:1", &t, &[bad]), sa("127.0.0.1:1"), "{bad}");
    }
}

#[test]
fn only_the_chosen_header_is_read() {
    let head = b"GET /ws HTTP/1.1\r\nHost: x\r\nForwarded: for=6.6.6.6\r\nX-Forwarded-For: 1.1.1.1\r\nx-forwarded-for: 2.2.2.2\r\n\r\n";
    assert_eq!(
        values_in_head(head, Scheme::XForwardedFor),
        vec![&b"1.1.1.1"[..], b"2.2.2.2"]
    );
    assert_eq!(
        values_in_head(head, Scheme::Forwarded),
        vec![&b"for=6.6.6.6"[..]]
    );
    assert!(values_in_head(b"GET / HTTP/1.1\r\n", Scheme::Forwarded).is_empty());
}

proptest::proptest! {
    /// Any bytes: no panic, and the answer is the peer unless the value
    /// held an address.
    #[test]
    fn any_value_is_safe(v in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200), f in proptest::prelude::any::<bool>()) {
        let t = trusted(&["127.0.0.0/8"]);
        let scheme = if f { Scheme::Forwarded } else { Scheme::XForwardedFor };
        let c = client(sa("127.0.0.1:1"), &t, scheme, &[&v]);
        let digits = v.iter().any(u8::is_ascii_hexdigit);
        proptest::prop_assert!(c == sa("127.0.0.1:1") || digits, "{c} from {v:?}");
    }

    /// Lists of trusted, untrusted and malformed entries: the walk
    /// agrees with a plain reading of the rule.
    #[test]
    fn the_walk_follows_the_rule(list in proptest::collection::vec(0usize..4, 0..8)) {
        const ENTRIES: [&str; 4] = ["127.0.0.5", "192.0.2.1", "192.0.2.2", "junk"];
        let t = trusted(&["127.0.0.0/8"]);
        let value = list.iter().map(|&i| ENTRIES[i]).collect::<Vec<_>>().join(", ");
        let got = xff("127.0.0.1:1", &t, &[&value]);
        let mut want = sa("127.0.0.1:1");
        for &i in list.iter().rev() {
            if i == 3 {
                break;
            }
            want = SocketAddr::new(ENTRIES[i].parse().unwrap(), 0);
            if i != 0 {
                break;
            }
        }
        proptest::prop_assert_eq!(got, want, "{}", value);
    }
}
