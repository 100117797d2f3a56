//! The invariants ringfan's fuzz targets check, one module per target.
//!
//! The `cargo fuzz` targets in `fuzz/` (nightly, libFuzzer) are one-line
//! wrappers around these `check` functions; `tests/replay.rs` runs every
//! committed input (`fuzz/seeds/<target>/` and the minimised corpus
//! `fuzz/corpus-min/<target>/`) through the same functions on stable, so
//! plain `cargo test` (and CI) exercises what the fuzzers found.

pub mod broker;
pub mod frames;
pub mod handshake;
pub mod inbound;
pub mod inflate;
pub mod proxy;
pub mod wire;

/// A target's check: panics on a broken invariant.
pub type Check = fn(&[u8]);

/// Every target by name, for the replay test.
pub const TARGETS: &[(&str, Check)] = &[
    ("broker", broker::check),
    ("frames", frames::check),
    ("handshake", handshake::check),
    ("inbound", inbound::check),
    ("inflate", inflate::check),
    ("proxy", proxy::check),
    ("wire", wire::check),
];
