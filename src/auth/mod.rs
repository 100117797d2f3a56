//! JWT verification for connection entitlements (issue #13): which
//! patterns a client may subscribe and publish to, from a signed token.
//!
//! Self-contained: it knows topic patterns (to validate the claim) and
//! nothing of the runtime. The caller owns the clock (`now_unix` is
//! passed in) and reloading: on SIGHUP it calls [`KeySet::load`] and
//! [`Denylist::load`] again and swaps the `Arc`s, keeping the old ones
//! when a load fails (every error names its file and reason).
//!
//! - [`keys`]: key sources, formats and kid naming; [`KeySet`].
//! - [`verify`]: [`Rules`] and [`Verifier::verify`].
//! - [`claims`]: the [`Claims`] a token grants.
//! - [`denylist`]: revoked `jti`s.
//! - [`mint`]: HS token minting for the load generator and tests.
//!
//! Crypto is jsonwebtoken's `rust_crypto` backend (RustCrypto crates):
//! pure Rust, so the broker builds on a bare machine with only rustc;
//! the `aws_lc_rs` backend needs cmake and a C toolchain.

pub mod claims;
pub mod denylist;
mod error;
mod file;
pub mod keys;
pub mod mint;
pub mod verify;

#[cfg(test)]
mod tests;

pub use claims::Claims;
pub use denylist::Denylist;
pub use error::AuthError;
/// Re-exported so callers (the load generator) need no direct
/// dependency on jsonwebtoken to name an algorithm.
pub use jsonwebtoken::Algorithm;
pub use keys::{KeyConfig, KeySet};
pub use mint::mint_hs;
pub use verify::{Rules, Verifier};
