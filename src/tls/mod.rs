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
//! - [`session`]: one connection's TLS state machine.
//!
//! # Crypto provider: `ring`, not `aws-lc-rs`
//!
//! rustls 0.23 defaults to `aws-lc-rs`; we build with `ring` and switch the
//! default off (`default-features = false` on `rustls`, and `rcgen`'s
//! default is already `ring`). Why:
//! - Building. `aws-lc-sys` compiles the AWS-LC C library (hundreds of C
//!   and assembly files) at build time. Recent releases no longer insist on
//!   `cmake` on Linux x86_64/aarch64 (they drive `cc` directly with
//!   pre-generated bindings), but other targets and the FIPS feature still
//!   need `cmake` (and `bindgen`/libclang where no pre-generated bindings
//!   exist), and the C build adds minutes on the 2-core CI machine. `ring`
//!   needs only the C compiler rustc already links with, compiles in
//!   seconds, and the repository already avoids `aws-lc-sys` for the same
//!   reason (`jsonwebtoken` is built with `rust_crypto`).
//! - Speed. What the broker's hot path spends is AES-128/256-GCM and
//!   ChaCha20-Poly1305 on records up to 16 KiB; both providers use the same
//!   lineage of hand-written assembly (from BoringSSL/OpenSSL) for those, so
//!   bulk throughput is close. `aws-lc-rs` is ahead on handshakes: faster
//!   P-256/P-384 ECDSA signing and RSA signing (about 1.5-2x in rustls'
//!   published benchmarks) and it offers the post-quantum `X25519MLKEM768`
//!   key exchange. Resumed handshakes (tickets, which we enable) do no
//!   certificate signature at all, so the gap matters only for full
//!   handshakes. If full handshakes per core become the bottleneck, switching
//!   is one feature flag and one `default_provider()` call in
//!   [`config`]; nothing else names the provider. Not measured here (no
//!   time in this step); `docs/benchmarks.md` should carry both numbers when
//!   the listener exists.
//!
//! # Buffered connection, not the unbuffered API (yet)
//!
//! See [`session`] for the decision and the per-idle-connection memory it
//! costs.

pub mod config;
pub mod resolver;
pub mod session;

#[cfg(test)]
mod test_certs;
#[cfg(test)]
mod tests;

pub use config::{ConfigError, TlsServer, TlsSettings};
pub use session::{Feed, HandshakeKind, TlsError, TlsSession};
