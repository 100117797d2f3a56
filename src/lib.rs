//! ringfan: a WebSocket pub/sub fan-out broker on io_uring.
//!
//! Layers, bottom up (see `docs/architecture.md`); every import points
//! down:
//! - [`ws`]: the sans-IO WebSocket protocol core (bytes in, events out).
//! - [`metrics`], [`sendbuf`], [`rate`] and [`logs`]: leaves both layers
//!   above use (per-shard counters; a frame as queues hold it; token
//!   buckets; rate-limited connection events through `tracing`).
//! - [`runtime`]: the io_uring thread-per-core server that drives `ws`; it
//!   knows no topics, JSON or routes.
//! - [`broker`]: the pub/sub data structures behind its own narrow
//!   [`broker::Host`] seam; it knows no io_uring.
//! - [`auth`]: JWT verification for connection entitlements (issue #13);
//!   it uses only `broker::topic` (to validate patterns) and never the
//!   runtime, so the server decides when and with what clock to call it.
//! - [`tls`]: sans-IO TLS termination with rustls (issue #14): config
//!   from PEM files with SNI and reload, and a per-connection session; it
//!   imports neither the runtime nor the broker.
//! - [`server`]: the application the binary runs: routes, and the broker
//!   over the runtime.

pub mod auth;
pub mod broker;
pub mod cluster;
pub mod logs;
pub mod metrics;
pub mod proxy;
pub mod rate;
pub mod runtime;
pub mod sendbuf;
pub mod server;
pub mod tls;
pub mod ws;
