//! ringfan: a WebSocket pub/sub fan-out broker on io_uring.
//!
//! Layers, bottom up (see `docs/architecture.md`):
//! - [`ws`]: the sans-IO WebSocket protocol core.

pub mod ws;
