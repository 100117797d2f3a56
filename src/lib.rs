//! ringfan: a WebSocket pub/sub fan-out broker on io_uring.
//!
//! Layers, bottom up (see `docs/architecture.md`):
//! - [`ws`]: the sans-IO WebSocket protocol core.
//! - [`runtime`]: the io_uring thread-per-core server that drives it.

pub mod broker;
pub mod runtime;
pub mod server;
pub mod ws;
