//! How a runtime is set up: [`Config`] with its defaults (the one place
//! they are written; the binary's flags show these), and the one-line
//! [`StartError`].

use crate::ws::handshake;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

/// Where a server listens unless told otherwise: loopback only, so that a
/// first run exposes nothing.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 8080));

#[derive(Debug, Clone)]
pub struct Config {
    /// Where to accept connections; `None` for a client-only runtime.
    pub listen: Option<SocketAddr>,
    pub shards: usize,
    /// Pin shard i to core i (mod the cores available).
    pub pin: bool,
    pub handshake: handshake::Config,
    pub handshake_timeout: Duration,
    /// Ping a connection that sent nothing for this long.
    pub idle_ping: Duration,
    /// Close a connection whose ping went unanswered this long.
    pub pong_timeout: Duration,
    /// How long a close handshake, or the final flush, may take.
    pub close_timeout: Duration,
    /// On shutdown, how long to flush queues and exchange closes.
    pub drain_timeout: Duration,
    /// Direct descriptor table size per shard (capped by RLIMIT_NOFILE).
    pub max_connections_per_shard: u32,
    pub recv_buffer_size: usize,
    pub recv_buffers: u16,
    pub recv_buffers_max: u16,
    pub ring_entries: u32,
    pub listen_backlog: i32,
    /// SO_SNDBUF for accepted connections, in bytes (the kernel caps it at
    /// net.core.wmem_max, then doubles it); 0 leaves the kernel's
    /// autotuning, which lets one connection hold up to tcp_wmem's max
    /// before the app's own queue sees it back up.
    pub send_buffer: usize,
    /// Cross-shard mail slots per shard (divided over its peers). Mail the
    /// app sends with `Io::try_post` is refused once its target's ring is
    /// full; `Io::post` mail waits in an unbounded backlog instead.
    pub mailbox_capacity: usize,
    /// Most bytes one connection may have queued for sending; past it the
    /// connection is closed with 1008. The broker's slow-consumer policy
    /// acts much earlier; this bounds everything else (echo, acks, errors).
    pub max_backlog: usize,
    /// Hold data frames this long before sending them, so that one send
    /// carries more of them: less CPU per message for up to this much more
    /// latency. Zero (the default) sends every loop turn. Control frames,
    /// handshakes and closing connections are never held, and a queue of
    /// 64 KiB goes at once.
    pub write_delay: Duration,
    /// How often an idle shard wakes to run timers and notice a shutdown.
    /// Cross-shard mail never waits for it (doorbells wake the shard).
    pub tick: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: Some(DEFAULT_LISTEN),
            shards: std::thread::available_parallelism().map_or(1, |n| n.get()),
            pin: true,
            handshake: handshake::Config::default(),
            handshake_timeout: Duration::from_secs(10),
            idle_ping: Duration::from_secs(30),
            pong_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(5),
            max_connections_per_shard: 1 << 20,
            recv_buffer_size: 16 * 1024,
            recv_buffers: 256,
            recv_buffers_max: 4096,
            ring_entries: 4096,
            listen_backlog: 65535,
            send_buffer: 256 << 10,
            mailbox_capacity: 65536,
            max_backlog: 64 << 20,
            write_delay: Duration::ZERO,
            tick: Duration::from_millis(100),
        }
    }
}

/// Why the server could not start: one line, saying what to do.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}
