//! Running behind proxies, sans IO: the PROXY protocol header a TCP proxy
//! puts before a connection's bytes ([`header`]), and the client address
//! an HTTP proxy names in `X-Forwarded-For`/`Forwarded` ([`forwarded`]).
//! The runtime feeds them (`runtime::proxied`); they know no sockets.

pub mod forwarded;
pub mod header;

pub use forwarded::{Scheme, Trusted};

/// How connections reach us (the runtime's `Config::proxy`).
#[derive(Debug, Clone, Default)]
pub struct ProxyConfig {
    /// Every accepted connection starts with a PROXY protocol header (v1
    /// or v2), before TLS; one without is closed unanswered.
    pub protocol: bool,
    /// Peers (or PROXY sources) whose `scheme` header names the client.
    pub trusted: Trusted,
    pub scheme: Scheme,
}
