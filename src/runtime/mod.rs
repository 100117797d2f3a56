//! The io_uring runtime: one shard per core, each a thread with its own ring,
//! its own listener and its own connections. This is the only code that
//! touches the ring; it speaks WebSocket through the sans-IO core and hands
//! complete messages to an [`App`], knowing nothing of routes, topics or
//! JSON.
//!
//! One concept per file:
//! - [`app`]: the [`App`] trait and the types its callbacks take;
//! - [`io`]: the application's handle on its shard ([`Io`]);
//! - [`config`], [`server`]: setting a runtime up, starting and stopping it
//!   (`capacity`: what caps the connection count, said at start-up);
//! - `shard`: the loop and its completions; `inbound`: received bytes
//!   through the handshake and the WebSocket core; `flush`: the sends and
//!   teardown steps of a turn; `deadlines`: the timer tick; `dial`: client
//!   mode; `write_delay`: the opt-in send batching; `backpressure`,
//!   `recv_rate`, `handshakes`: the bounds on what one client can make a
//!   shard hold (input not read while answers pile up, slow unfinished
//!   messages, idle handshakes); [`peer`]: each connection's peer
//!   address and the per-address limits; `proxied`: the real client
//!   behind a proxy (PROXY protocol, trusted `X-Forwarded-For`);
//! - `log`: the refusals and closes the runtime decides, logged with
//!   the peer address (through [`crate::logs`]);
//! - [`external`]: mail to a shard from a thread that is not one (a
//!   cluster bridge), through a queue and an eventfd the shard polls;
//! - `inbound_check`: a socket-free harness around `inbound` for the
//!   `inbound` fuzz target (not API);
//! - `table`, `conn`: the connection table and one connection's state
//!   (`close_reason`: the reasons of asked-for closes, interned to a byte);
//!   `bufring`, `mailbox`, `timer`, `token`, `uring`, `listener`: the
//!   io_uring and cross-shard mechanisms under them.
//!
//! See `docs/architecture.md` for a connection's life and why each io_uring
//! feature is used.

mod accept;
pub mod app;
mod backpressure;
pub mod bufring;
mod capacity;
mod close_reason;
pub mod config;
mod conn;
mod deadlines;
mod deferred;
mod dial;
pub mod external;
mod flush;
mod handshakes;
mod http;
mod inbound;
#[doc(hidden)]
pub mod inbound_check;
pub mod io;
mod listener;
mod log;
pub mod mailbox;
pub mod peer;
mod proxied;
mod recv_rate;
pub mod server;
mod shard;
pub mod stats;
mod table;
mod timer;
mod tls;
mod token;
mod uring;
mod write_delay;

pub use app::{Accepted, App, ConnId, HttpReply};
pub use config::{Config, StartError, TlsListen};
pub use dial::{errno_text, Dial, TlsDial};
pub use external::{inboxes, inboxes_weighed, ExternalInbox, ExternalSender};
pub use io::{ConnInfo, Io};
pub use server::{raise_fd_limit, restrict_cpus, Server};
pub use stats::ShardStats;
