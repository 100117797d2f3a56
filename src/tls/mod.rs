//! TLS termination for `wss://` (issue #14), sans-IO: bytes in, bytes out.
//!
//! This module knows nothing of io_uring, sockets or the broker; the
//! runtime will drive a [`TlsSession`] per connection the way it drives the
//! WebSocket core, handing it ciphertext it received and sending what it
//! returns. Two parts:
//! - [`config`]: a `rustls::ServerConfig` from PEM files: several
//!   certificates picked by SNI ([`resolver`]), TLS 1.3 and 1.2, ALPN
//!   `http/1.1`, session tickets plus a bounded session cache, and
//!   [`TlsServer::reload`] for SIGHUP.
//! - [`session`]: one connection's TLS state machine: the server side on
//!   rustls' unbuffered API during the handshake (`unbuffered`) and on
//!   `established` after it, the client side for the runtime's outbound
//!   connections on the buffered connection (`buffered`);
//! - [`client`]: the client configuration (a CA file, or `--insecure`).
//!
//! # Crypto provider: `aws-lc-rs`, not `ring`
//!
//! Both were built and measured on this project's machine (Debian 12, AMD
//! EPYC with VAES/AVX-512, rustc's `cc`/gcc and perl, no cmake, clang, Go
//! or NASM), in a scratch crate running rustls 0.23 client and server in
//! memory, release build, one core:
//!
//! | provider  | full TLS 1.3 handshakes/s | resumed/s | server seal, AES-256-GCM |
//! |-----------|---------------------------|-----------|--------------------------|
//! | ring      | 3,080-3,150               | 4,860-4,980 | 2,470-2,520 MiB/s     |
//! | aws-lc-rs | 3,500-3,510               | 5,680-5,760 | 5,500-5,770 MiB/s     |
//!
//! (Handshake rates include the client's side, ECDSA P-256 certificates.)
//! The seal column is what fan-out pays: every subscriber's stream has its
//! own keys, so each delivery is encrypted once per subscriber, and
//! aws-lc-rs does it 2.2x faster here (it has VAES/AVX-512 AES-GCM code
//! that ring lacks). That is the margin the issue's "TLS saturation at
//! least half of plain" target needs most.
//!
//! Building: `aws-lc-sys` 0.47 compiles AWS-LC with the `cc` crate and
//! pre-generated bindings on Linux x86_64/aarch64, so it needs no cmake,
//! clang or Go there; it needs the C compiler rustc already links with
//! (and perl, part of every Debian base system). The scratch crate with
//! both providers, rustls and rcgen built from scratch in 45 s with 2 jobs.
//! Other targets, and the FIPS feature, would still want cmake; this
//! broker targets Linux only (io_uring). `rustls`' default `aws_lc_rs`
//! feature is kept and `ring` is not compiled at all: `rcgen` (tests) is
//! switched from its default `ring` to `aws_lc_rs`. `prefer-post-quantum`
//! is left off so X25519 stays the first key share (the hybrid ML-KEM share
//! adds about 1 KB to each hello in a reconnect storm); clients that ask
//! for the hybrid group still get it. Switching provider is one
//! `default_provider()` and one `Ticketer` in [`config`].
//!
//! # Server connections: unbuffered, then established
//!
//! The handshake runs on rustls' unbuffered API; after it the session
//! leaves rustls' connection for `established` (rustls' record protection
//! from the extracted secrets). An idle, established TLS connection costs
//! 1,290 B (TLS 1.3) or 248 B (TLS 1.2) of Rust memory all told; on the
//! unbuffered connection it was 2,592 / 2,230 B, on the buffered one about
//! 6.4 KB. See [`session`] for the figures.

mod buffered;
pub mod client;
pub mod config;
mod established;
pub mod resolver;
pub mod session;
mod unbuffered;

#[cfg(test)]
mod established_tests;
#[cfg(test)]
mod idle_memory_tests;
#[cfg(test)]
mod test_certs;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod unbuffered_tests;

pub use client::{client_config, Trust};
pub use config::{ConfigError, TlsServer, TlsSettings};
pub use rustls::pki_types::ServerName;
pub use session::{Feed, HandshakeKind, TlsError, TlsSession};
