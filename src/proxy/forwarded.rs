//! Who the client is behind trusted HTTP proxies: `X-Forwarded-For`
//! (de facto) or `Forwarded` (RFC 7239), sans IO.
//!
//! Each proxy appends the address it received the request from, so the
//! list reads client, proxy 1, proxy 2, ... and the last hop is the
//! connection's own peer. Only the entries written by proxies we trust
//! can be believed: anything to their left may be the client's own
//! invention. So the walk goes from the right: start at the peer; while
//! the current address is in a trusted CIDR, step one entry left; the
//! first address not trusted is the client. If every entry is trusted the
//! leftmost is taken (the client is one of our own networks).
//!
//! A malformed entry (`unknown`, an obfuscated `_name`, garbage, an empty
//! element) stops the walk and is never taken: the client is then the
//! trusted hop to its right, which could not say who was behind it.
//! Stepping over it would hand the choice to whoever wrote the entries
//! further left.
//!
//! Only one of the two headers is read (`Scheme`): a proxy that writes
//! `X-Forwarded-For` passes a client's own `Forwarded` header through
//! untouched, and reading that one would let the client name itself.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// Which header the trusted proxies write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scheme {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx's
    /// `$proxy_add_x_forwarded_for`, HAProxy's `option forwardfor`).
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client;proto=https, for="[2001:db8::1]:4711"`.
    Forwarded,
}

impl Scheme {
    /// The header's name, lower case.
    pub fn header(self) -> &'static str {
        match self {
            Self::XForwardedFor => "x-forwarded-for",
            Self::Forwarded => "forwarded",
        }
    }
}

/// The networks whose connections may name the client for them
/// (`--trusted-proxy`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trusted(Vec<IpNet>);

impl Trusted {
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self(nets.into_iter().map(|n| n.trunc()).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Is `ip` in one of the networks? IPv4-mapped IPv6 addresses
    /// (`::ffff:10.0.0.1`, what an IPv6 socket reports for an IPv4 peer)
    /// count as the IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }
}

/// Parse one `--trusted-proxy` value: a CIDR (`10.0.0.0/8`, `fd00::/8`)
/// or a single address (`127.0.0.1`, taken as /32 or /128).
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net);
    }
    s.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
        format!("{s:?} is not a CIDR (such as 10.0.0.0/8 or fd00::/8) nor an IP address")
    })
}

/// The client behind `peer`: `values` are the chosen header's values in
/// the order they came (several lines of one header form one list).
/// Returns `peer` itself when it is not trusted, when the header is
/// missing, or when the entry next to it is malformed. A port is kept
/// when the entry names one (`Forwarded`'s `"1.2.3.4:5"`), else it is 0.
pub fn client(peer: SocketAddr, trusted: &Trusted, scheme: Scheme, values: &[&[u8]]) -> SocketAddr {
    let mut current = peer;
    if !trusted.contains(current.ip()) {
        return current;
    }
    for value in values.iter().rev() {
        for element in split_list(value).rev() {
            let parsed = match scheme {
                Scheme::XForwardedFor => node(element),
                Scheme::Forwarded => forwarded_for(element).and_then(node),
            };
            let Some(addr) = parsed else {
                return current;
            };
            current = addr;
            if !trusted.contains(current.ip()) {
                return current;
            }
        }
    }
    current
}

/// The values of `scheme`'s header in a complete request head, in order
/// (empty if it has none, or if the head does not parse: the handshake
/// has judged it already, so that does not happen).
pub fn values_in_head(head: &[u8], scheme: Scheme) -> Vec<&[u8]> {
    // As many as the handshake allows (`ws::handshake`: 48), and more.
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    if !matches!(req.parse(head), Ok(httparse::Status::Complete(_))) {
        return Vec::new();
    }
    let name = scheme.header();
    req.headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
        .collect()
}

/// The elements of a comma-separated list, trimmed, with commas inside
/// quoted strings (RFC 9110 §5.6.4) not splitting. Empty elements are
/// kept (they are malformed, and stop the walk).
fn split_list(value: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    let mut cuts = Vec::new();
    let (mut quoted, mut escaped) = (false, false);
    for (i, &b) in value.iter().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if b == b',' && !quoted {
            cuts.push(i);
        }
    }
    let mut start = 0;
    let mut parts = Vec::with_capacity(cuts.len() + 1);
    for c in cuts {
        parts.push(value[start..c].trim_ascii());
        start = c + 1;
    }
    parts.push(value[start..].trim_ascii());
    parts.into_iter()
}

/// The `for=` value of one `Forwarded` element (`for=1.2.3.4;proto=http`),
/// unquoted; None if it has none, or more than one.
fn forwarded_for(element: &[u8]) -> Option<&[u8]> {
    let mut found = None;
    for pair in element.split(|&b| b == b';') {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        if pair[..eq].trim_ascii().eq_ignore_ascii_case(b"for") {
            if found.is_some() {
                return None;
            }
            let v = pair[eq + 1..].trim_ascii();
            // A quoted string; addresses hold no escapes, so one with a
            // backslash is not one.
            let v = match v.strip_prefix(b"\"") {
                Some(q) => q.strip_suffix(b"\"").filter(|q| !q.contains(&b'\\'))?,
                None => v,
            };
            found = Some(v);
        }
    }
    found
}

/// One node: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]` or
/// `[2001:db8::1]:80`. None for anything else (`unknown`, `_hidden`).
fn node(v: &[u8]) -> Option<SocketAddr> {
    let s = std::str::from_utf8(v).ok()?;
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip.to_canonical(), 0));
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let ip: Ipv6Addr = ip.parse().ok()?;
        let port = match after {
            "" => 0,
            p => p.strip_prefix(':')?.parse().ok()?,
        };
        return Some(SocketAddr::new(IpAddr::from(ip).to_canonical(), port));
    }
    // IPv4 with a port: IPv6 with one is bracketed, so one colon.
    let (ip, port) = s.split_once(':')?;
    let ip: std::net::Ipv4Addr = ip.parse().ok()?;
    Some(SocketAddr::new(ip.into(), port.parse().ok()?))
}

#[cfg(test)]
#[path = "forwarded_tests.rs"]
mod tests;
