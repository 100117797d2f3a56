//! The PROXY protocol header (HAProxy's spec, versions 1 and 2), sans IO:
//! bytes in, a header (or "need more", or why not) out. No sockets, no
//! clocks, no allocation.
//!
//! A proxy that speaks it sends one header at the very start of each
//! connection, before any byte of the client's (before a TLS ClientHello
//! too), naming the client's address and port as the proxy saw them:
//!
//! - v1, one text line of at most 107 bytes:
//!   `PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n`, `TCP6` alike, or
//!   `PROXY UNKNOWN\r\n` (anything may follow `UNKNOWN` up to the CRLF);
//! - v2, binary: a 12-byte signature, version and command (`LOCAL`: the
//!   proxy's own connection, a health check; `PROXY`: a client's), family
//!   and transport, the length of the rest (addresses, then TLVs).
//!
//! Written here rather than taken from a crate: the runtime hands it the
//! bytes of each receive as they come and must tell "incomplete" from
//! "wrong" at every prefix (a peer that does not speak PROXY is closed at
//! its first bytes, not at the handshake deadline), under a hard size cap
//! and without allocating; the spec is short and frozen since 2020.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The longest v1 header the spec allows, CRLF included
/// (`PROXY TCP6 ` + two 39-character IPv6 addresses + two 5-digit ports +
/// spaces + CRLF = 104, rounded up by the spec to 107).
pub const MAX_V1: usize = 107;

/// The v2 signature: 12 bytes no text protocol can start with.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Most bytes after a v2 header's fixed 16 (addresses and TLVs) that we
/// take. The format allows 65,535; real senders send far less (HAProxy's
/// TLVs for ALPN, SNI, a unique ID and TLS details are a few hundred
/// bytes; an AWS load balancer's endpoint ID is under 100), and every
/// connection in its handshake may hold this much, so 4 KiB: at the
/// default 4,096 handshakes per shard, at most 16 MiB.
pub const MAX_V2_BODY: usize = 4096;

/// What a proxy told us about one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// 1 or 2.
    pub version: u8,
    /// The client's address and the one it connected to, when the proxy
    /// named them; `None` for v1 `UNKNOWN`, v2 `LOCAL` (the proxy's own
    /// connection), and v2 families with no IP address (`UNSPEC`, `UNIX`):
    /// the spec then has the receiver use the connection's own addresses.
    pub addresses: Option<Addresses>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    /// The client, as the proxy saw it.
    pub source: SocketAddr,
    /// Where the client connected (the proxy's listener).
    pub destination: SocketAddr,
}

/// Why the bytes are not a PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// They start with neither `PROXY ` nor the v2 signature: the peer
    /// does not speak the protocol (a client that bypassed the proxy, or
    /// a proxy not set up to send it).
    NotProxy,
    /// A v1 line longer than [`MAX_V1`] without its CRLF.
    V1TooLong,
    /// A v1 line that breaks the grammar; says which part.
    V1(&'static str),
    /// A v2 header announcing more than [`MAX_V2_BODY`] bytes.
    V2TooLong,
    /// A v2 header that breaks the format; says which part.
    V2(&'static str),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotProxy => f.write_str("not a PROXY protocol header"),
            Self::V1TooLong => write!(f, "PROXY v1 line longer than {MAX_V1} bytes"),
            Self::V1(what) => write!(f, "bad PROXY v1 header: {what}"),
            Self::V2TooLong => write!(f, "PROXY v2 header over {MAX_V2_BODY} bytes"),
            Self::V2(what) => write!(f, "bad PROXY v2 header: {what}"),
        }
    }
}

impl std::error::Error for Error {}

/// Look at the first bytes a connection received. `Ok(None)`: a valid
/// beginning, read more. `Ok(Some((header, n)))`: the header took the
/// first `n` bytes; what follows is the client's. Never reads past
/// [`MAX_V1`] or 16 + [`MAX_V2_BODY`] bytes, so a caller that keeps the
/// bytes while it waits holds at most that.
pub fn parse(buf: &[u8]) -> Result<Option<(Header, usize)>, Error> {
    const V1_MAGIC: &[u8] = b"PROXY ";
    let n = buf.len().min(V2_SIGNATURE.len());
    if buf[..n] == V2_SIGNATURE[..n] {
        if n < V2_SIGNATURE.len() {
            return Ok(None);
        }
        return parse_v2(buf);
    }
    let n = buf.len().min(V1_MAGIC.len());
    if buf[..n] == V1_MAGIC[..n] {
        if n < V1_MAGIC.len() {
            return Ok(None);
        }
        return parse_v1(buf);
    }
    Err(Error::NotProxy)
}

fn parse_v1(buf: &[u8]) -> Result<Option<(Header, usize)>, Error> {
    let window = &buf[..buf.len().min(MAX_V1)];
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        // A lone LF, or any control byte, can never become a valid line.
        if window.iter().any(|&b| b == b'\n' || b == 0) {
            return Err(Error::V1("a control character before CRLF"));
        }
        return if buf.len() >= MAX_V1 {
            Err(Error::V1TooLong)
        } else {
            Ok(None)
        };
    };
    if cr + 2 > MAX_V1 {
        // Its LF would be byte 108.
        return Err(Error::V1TooLong);
    }
    match buf.get(cr + 1) {
        None => return Ok(None),
        Some(b'\n') => {}
        Some(_) => return Err(Error::V1("CR not followed by LF")),
    }
    let line = &buf["PROXY ".len()..cr];
    let consumed = cr + 2;
    let mut parts = line.split(|&b| b == b' ');
    let proto = parts.next().unwrap_or_default();
    if proto == b"UNKNOWN" {
        // The spec: the receiver ignores whatever follows UNKNOWN.
        return Ok(Some((
            Header {
                version: 1,
                addresses: None,
            },
            consumed,
        )));
    }
    let v6 = match proto {
        b"TCP4" => false,
        b"TCP6" => true,
        _ => return Err(Error::V1("protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    let (Some(src), Some(dst), Some(sport), Some(dport), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(Error::V1("not four fields separated by single spaces"));
    };
    let ip = |field: &[u8]| -> Result<IpAddr, Error> {
        let s = std::str::from_utf8(field).map_err(|_| Error::V1("address not ASCII"))?;
        if v6 {
            s.parse::<Ipv6Addr>()
                .map(IpAddr::V6)
                .map_err(|_| Error::V1("bad IPv6 address"))
        } else {
            // std refuses leading zeros, as the spec does.
            s.parse::<Ipv4Addr>()
                .map(IpAddr::V4)
                .map_err(|_| Error::V1("bad IPv4 address"))
        }
    };
    let addresses = Addresses {
        source: SocketAddr::new(ip(src)?, port(sport)?),
        destination: SocketAddr::new(ip(dst)?, port(dport)?),
    };
    Ok(Some((
        Header {
            version: 1,
            addresses: Some(addresses),
        },
        consumed,
    )))
}

/// A v1 port: 0..=65535 in decimal, no sign, no leading zero.
fn port(field: &[u8]) -> Result<u16, Error> {
    let ok = !field.is_empty()
        && field.len() <= 5
        && field.iter().all(u8::is_ascii_digit)
        && (field[0] != b'0' || field.len() == 1);
    if !ok {
        return Err(Error::V1("bad port"));
    }
    let n = field
        .iter()
        .fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
    u16::try_from(n).map_err(|_| Error::V1("port over 65535"))
}

fn parse_v2(buf: &[u8]) -> Result<Option<(Header, usize)>, Error> {
    let Some(fixed) = buf.get(..16) else {
        // Judge what is there: a wrong version byte need not wait.
        if let Some(&vc) = buf.get(12) {
            check_version_command(vc)?;
        }
        return Ok(None);
    };
    let local = check_version_command(fixed[12])?;
    let family = fixed[13] >> 4;
    let transport = fixed[13] & 0x0f;
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if len > MAX_V2_BODY {
        return Err(Error::V2TooLong);
    }
    if family > 3 || transport > 2 {
        return Err(Error::V2("unknown address family or transport"));
    }
    let Some(body) = buf.get(16..16 + len) else {
        return Ok(None);
    };
    // AF_INET: 4 + 4 + 2 + 2; AF_INET6: 16 + 16 + 2 + 2; AF_UNIX: 108 + 108.
    let need = match family {
        1 => 12,
        2 => 36,
        3 => 216,
        _ => 0,
    };
    if len < need {
        return Err(Error::V2("length shorter than its addresses"));
    }
    tlvs(&body[need..])?;
    let addresses = match family {
        _ if local || transport == 0 => None,
        1 => {
            let ip = |o: usize| Ipv4Addr::new(body[o], body[o + 1], body[o + 2], body[o + 3]);
            Some(Addresses {
                source: SocketAddr::new(ip(0).into(), be16(body, 8)),
                destination: SocketAddr::new(ip(4).into(), be16(body, 10)),
            })
        }
        2 => {
            let ip = |o: usize| {
                let mut a = [0u8; 16];
                a.copy_from_slice(&body[o..o + 16]);
                IpAddr::V6(Ipv6Addr::from(a))
            };
            Some(Addresses {
                source: SocketAddr::new(ip(0), be16(body, 32)),
                destination: SocketAddr::new(ip(16), be16(body, 34)),
            })
        }
        // UNSPEC and UNIX name no IP address: use the connection's own.
        _ => None,
    };
    Ok(Some((
        Header {
            version: 2,
            addresses,
        },
        16 + len,
    )))
}

/// The 13th byte: version 2 in the high nibble, and the command, LOCAL
/// (0) or PROXY (1), in the low one. True for LOCAL.
fn check_version_command(b: u8) -> Result<bool, Error> {
    if b >> 4 != 2 {
        return Err(Error::V2("version is not 2"));
    }
    match b & 0x0f {
        0 => Ok(true),
        1 => Ok(false),
        _ => Err(Error::V2("command is neither LOCAL nor PROXY")),
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Walk the TLVs after the addresses (type 1 byte, length 2, value): none
/// is used, but each must fit in the header, as the spec requires; one
/// running past its end means the sender and we disagree on the format.
fn tlvs(mut rest: &[u8]) -> Result<(), Error> {
    while !rest.is_empty() {
        let Some(head) = rest.get(..3) else {
            return Err(Error::V2("truncated TLV"));
        };
        let len = usize::from(be16(head, 1));
        let Some(next) = rest.get(3 + len..) else {
            return Err(Error::V2("TLV runs past the header"));
        };
        rest = next;
    }
    Ok(())
}

#[cfg(test)]
#[path = "header_tests.rs"]
mod tests;
