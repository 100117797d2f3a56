//! How a runtime is set up: [`Config`] with its defaults (the one place
//! they are written; the binary's flags show these), and the one-line
//! [`StartError`].

use crate::tls::TlsServer;
use crate::ws::handshake;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

/// Where a server listens unless told otherwise: loopback only, so that a
/// first run exposes nothing.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 8080));

#[derive(Debug, Clone)]
pub struct Config {
    /// Where to accept connections; `None` for a client-only runtime (or
    /// one that listens for TLS only).
    pub listen: Option<SocketAddr>,
    /// Where to accept TLS connections (`wss://`, `https://`), alongside
    /// `listen` or instead of it.
    pub tls: Option<TlsListen>,
    /// Most TLS handshake flights a shard computes in one loop turn (see
    /// `runtime::tls`); connections past it wait, their bytes kept.
    pub tls_handshakes_per_turn: usize,
    /// Where to accept admin connections (the admin API: plain HTTP, no
    /// WebSocket), alongside the other listeners; `None` for none.
    pub admin: Option<SocketAddr>,
    pub shards: usize,
    /// Pin shard i to core i (mod the cores available).
    pub pin: bool,
    pub handshake: handshake::Config,
    pub handshake_timeout: Duration,
    /// How long an HTTP keep-alive connection may sit between requests
    /// (or with an unfinished one) before it is closed.
    pub http_keepalive: Duration,
    /// Largest plain HTTP request body (`POST /publish`); a longer one
    /// gets 413 before any of it is read.
    pub max_request_body: usize,
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
    /// Each queued frame counts its length plus [`FRAME_OVERHEAD`].
    ///
    /// At most [`MAX_BACKLOG_LIMIT`] (1 GiB), as is `max_backlog_read`:
    /// a connection's queue counts its bytes in 32 bits.
    ///
    /// [`FRAME_OVERHEAD`]: super::conn::FRAME_OVERHEAD
    pub max_backlog: usize,
    /// Stop reading from a connection whose own backlog is over this
    /// (backpressure); read again once it is down to half. Keep it above
    /// what the application itself queues for a connection (the broker's
    /// `--max-queued-bytes`), so that a subscriber that is merely behind
    /// is still read.
    pub max_backlog_read: usize,
    /// permessage-deflate: fan-out messages shorter than this go plain
    /// even to connections that agreed to deflate (`--deflate-min-size`;
    /// see `sendbuf::DEFLATE_MIN` for why 64).
    pub deflate_min: usize,
    /// A connection holding more than `min_recv_rate_pending` bytes of an
    /// unfinished frame or fragmented message must keep sending at least
    /// `min_recv_rate` bytes/s (judged over `RATE_WINDOW`), or it is closed
    /// with 1008. 0 turns the check off.
    pub min_recv_rate: u32,
    pub min_recv_rate_pending: usize,
    /// Most connections per shard still in their HTTP handshake; past it
    /// the oldest is closed to make room.
    pub max_handshakes: usize,
    /// When a shard's descriptor table is more than 3/4 full and its
    /// handshakes in progress could take every free slot left, handshakes
    /// older than this are closed, oldest first, so that `/healthz` and
    /// upgrades find a slot.
    pub handshake_timeout_busy: Duration,
    /// Most request heads a shard parses in one loop turn; the rest wait,
    /// their bytes kept, for the next turns. A storm of new connections
    /// then cannot make one turn long enough to delay fan-out. The admin
    /// listener's heads are parsed past it (they count in it while it
    /// lasts): probes must not wait behind a storm.
    pub handshakes_per_turn: usize,
    /// Most connections open from one client address (an IPv4 address, or
    /// an IPv6 /64), over all shards; past it a new one is answered 429.
    /// 0 (the default) turns it off: behind a proxy or a carrier NAT every
    /// client shares one address.
    pub max_connections_per_ip: u32,
    /// Most new connections one client address may open per second (a
    /// token bucket holding one second's worth); past it, 429 with
    /// `Retry-After: 1`. 0 (the default) turns it off.
    pub max_handshakes_per_ip: u32,
    /// Hold data frames this long before sending them, so that one send
    /// carries more of them: less CPU per message for up to this much more
    /// latency. Zero (the default) sends every loop turn. Control frames,
    /// handshakes and closing connections are never held, and a queue of
    /// 64 KiB goes at once.
    pub write_delay: Duration,
    /// Behind proxies: the PROXY protocol on every listener, and the
    /// trusted proxies whose `X-Forwarded-For`/`Forwarded` names the
    /// client (`runtime::proxied`).
    pub proxy: crate::proxy::ProxyConfig,
    /// How often an idle shard wakes to run timers and notice a shutdown.
    /// Cross-shard mail never waits for it (doorbells wake the shard).
    pub tick: Duration,
}

/// A TLS listener: its address and the certificates it serves (shared by
/// every shard, reloadable).
#[derive(Clone)]
pub struct TlsListen {
    pub addr: SocketAddr,
    pub server: Arc<TlsServer>,
}

impl std::fmt::Debug for TlsListen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListen")
            .field("addr", &self.addr)
            .finish()
    }
}

/// The most [`Config::max_backlog`] and [`Config::max_backlog_read`] may
/// be: a connection's send queue counts its bytes in a `u32` (every
/// connection holds one), and must still fit the limit plus one frame of
/// up to 3 GiB. Far above any useful setting (the defaults are 4 and
/// 2 MiB).
pub const MAX_BACKLOG_LIMIT: usize = 1 << 30;

impl Config {
    /// Settings the runtime cannot honour, said in one line.
    pub fn check(&self) -> Result<(), StartError> {
        for (name, v) in [
            ("max_backlog (--max-backlog-bytes)", self.max_backlog),
            (
                "max_backlog_read (--max-backlog-read)",
                self.max_backlog_read,
            ),
        ] {
            if v > MAX_BACKLOG_LIMIT {
                return Err(StartError(format!(
                    "{name} is {v}: at most {MAX_BACKLOG_LIMIT} (1 GiB), since a connection's send queue counts its bytes in 32 bits"
                )));
            }
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: Some(DEFAULT_LISTEN),
            tls: None,
            admin: None,
            // A connection with a full TLS 1.3 handshake (X25519, an
            // ECDSA P-256 signature) costs ~250 us of server CPU here from
            // accept to close, a resumed one ~215 us (docs/benchmarks.md,
            // "Full and resumed handshakes"): 16 flights bound a turn's
            // handshake work to ~4 ms.
            tls_handshakes_per_turn: 16,
            shards: std::thread::available_parallelism().map_or(1, |n| n.get()),
            pin: true,
            handshake: handshake::Config::default(),
            handshake_timeout: Duration::from_secs(10),
            // nginx's default keepalive_timeout: longer than the idle
            // timeouts of common client pools (Python's urllib3 keeps none
            // by default, Node's agent 4-5 s), so the client, not the
            // server, ends an idle connection and never races a request
            // against our close.
            http_keepalive: Duration::from_secs(75),
            // A batch of 1,000 market-data messages of ~200 bytes is
            // ~250 KiB of JSON; 1 MiB leaves room without letting one
            // request hold much of a shard's memory.
            max_request_body: 1 << 20,
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
            // Above what the broker queues for a subscriber itself (1 MiB
            // under its policy, plus one message of up to 1 MiB when the
            // queue was empty), with room for acks: 4 MiB. 64 MiB let one
            // client that never reads hold ~1 GiB of pongs in frames.
            max_backlog: 4 << 20,
            // Over the broker's 1 MiB slow-consumer limit plus a message,
            // under the 4 MiB hard limit: a flood of pings stops being
            // read at ~32k queued pongs instead of being closed.
            max_backlog_read: 2 << 20,
            deflate_min: crate::sendbuf::DEFLATE_MIN,
            // A 1 MiB message may take up to 256 s at 4 KiB/s: slow links
            // pass, a client that trickles a byte now and then does not.
            min_recv_rate: 4096,
            min_recv_rate_pending: 64 << 10,
            // A handshake takes about a round trip (< 0.3 s): 4,096 per
            // shard is ~13,000 new connections a second per shard.
            max_handshakes: 4096,
            handshake_timeout_busy: Duration::from_secs(1),
            // An upgrade costs ~10 µs here (parse, SHA-1, the app's
            // checks, the 101): 256 is ~2.5 ms of a turn.
            handshakes_per_turn: 256,
            max_connections_per_ip: 0,
            max_handshakes_per_ip: 0,
            write_delay: Duration::ZERO,
            proxy: Default::default(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlog_limits_must_fit_a_u32_queue_count() {
        assert!(Config::default().check().is_ok());
        let at_most = Config {
            max_backlog: MAX_BACKLOG_LIMIT,
            max_backlog_read: MAX_BACKLOG_LIMIT,
            ..Config::default()
        };
        assert!(at_most.check().is_ok());
        for over in [
            Config {
                max_backlog: MAX_BACKLOG_LIMIT + 1,
                ..Config::default()
            },
            Config {
                max_backlog_read: usize::MAX,
                ..Config::default()
            },
        ] {
            let e = over.check().unwrap_err().0;
            assert!(e.contains("at most"), "{e}");
        }
    }
}
