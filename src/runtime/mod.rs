//! The io_uring runtime: one shard per core, each a thread with its own ring,
//! its own listener and its own connections. This is the only code that
//! touches the ring; it speaks WebSocket through the sans-IO core and hands
//! complete messages to an [`App`], knowing nothing of topics or JSON.
//!
//! See `docs/architecture.md` for a connection's life and why each io_uring
//! feature is used.

pub mod bufring;
mod conn;
mod listener;
pub mod mailbox;
mod shard;
pub mod stats;
mod timer;
mod token;
mod uring;

use crate::ws::handshake::{self, HttpRoute, Upgrade};
use crate::ws::Message;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

pub use conn::SendBuf;
pub use shard::{Io, Offered};

/// An outbound WebSocket connection to open ([`Io::connect`]): the
/// runtime's client mode, used by the load generator (and later by
/// clustering). It goes into the ring's direct descriptor table like an
/// accepted one, so a client holds more connections than its fd limit too.
#[derive(Debug, Clone)]
pub struct Dial {
    pub to: SocketAddr,
    /// Source address to bind (port chosen by the kernel at connect time):
    /// spreading connections over 127.0.0.x multiplies the ~28k ephemeral
    /// ports one source address gets.
    pub from: Option<std::net::IpAddr>,
    /// Request target, e.g. `/ws` or `/ws?token=...`.
    pub path: String,
    /// Subprotocols to offer.
    pub protocols: Vec<String>,
    /// Largest message accepted from the server.
    pub max_message: usize,
}
pub use stats::ShardStats;

/// A connection within its shard. Stale ids (the connection closed, its
/// slot reused) are recognised by the generation and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub key: u32,
    pub gen: u32,
}

/// What the runtime calls on the shard's thread. One instance per shard.
pub trait App: 'static {
    /// Messages shards send each other.
    type Mail: Send + 'static;

    /// A WebSocket handshake passed the protocol checks. Return the
    /// response that refuses it (a 401, a 404 for a route not served…) or
    /// accept it; the runtime then sends the `101`.
    fn upgrade(
        &mut self,
        io: &mut Io<'_, Self::Mail>,
        conn: ConnId,
        upgrade: &Upgrade,
    ) -> Result<(), Bytes>;

    /// A complete, validated message arrived.
    fn message(&mut self, io: &mut Io<'_, Self::Mail>, conn: ConnId, msg: Message<'_>);

    /// An upgraded connection stopped being open (closing or gone); it gets
    /// no more sends. Called once per upgraded connection.
    fn closed(&mut self, io: &mut Io<'_, Self::Mail>, conn: ConnId);

    /// The complete response to a plain HTTP request (`/healthz`,
    /// `/metrics`). The connection closes after it.
    fn http(&mut self, io: &mut Io<'_, Self::Mail>, route: HttpRoute) -> Bytes;

    /// Mail from another shard.
    fn mail(&mut self, io: &mut Io<'_, Self::Mail>, from: usize, mail: Self::Mail);

    /// Everything queued for the connection has been handed to the kernel
    /// (the moment to send what was held back for a slow consumer).
    fn writable(&mut self, _io: &mut Io<'_, Self::Mail>, _conn: ConnId) {}

    /// An outbound connection ([`Io::connect`]) completed its handshake and
    /// is open. [`App::closed`] follows when it stops being open.
    fn connected(&mut self, _io: &mut Io<'_, Self::Mail>, _conn: ConnId) {}

    /// An outbound connection failed before it opened (socket, connect,
    /// refused handshake, timeout). Called once; the id is dead after it.
    fn connect_failed(&mut self, _io: &mut Io<'_, Self::Mail>, _conn: ConnId, _why: &str) {}

    /// Called on every tick of the shard's timer ([`Config::tick`]), for
    /// applications that schedule their own work (a load generator's
    /// send schedule).
    fn tick(&mut self, _io: &mut Io<'_, Self::Mail>) {}
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Where to accept connections; `None` for a client-only runtime.
    pub listen: Option<SocketAddr>,
    pub shards: usize,
    /// Pin shard i to core i (mod the cores available).
    pub pin: bool,
    pub handshake: handshake::Config,
    /// Largest message on `/ws`.
    pub max_message: usize,
    /// Largest message on `/echo`.
    pub max_message_echo: usize,
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
    /// net.core.wmem_max, then doubles it); 0 leaves the kernel's autotuning, which lets one connection
    /// hold up to tcp_wmem's max before the app's own queue sees it back up.
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
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
            shards: std::thread::available_parallelism().map_or(1, |n| n.get()),
            pin: true,
            handshake: handshake::Config {
                allowed_origins: None,
                echo: true,
            },
            max_message: crate::ws::DEFAULT_MAX_MESSAGE,
            max_message_echo: 16 << 20,
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

/// A running server: its shards' threads.
pub struct Server {
    addr: Option<SocketAddr>,
    draining: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    stats: Arc<[ShardStats]>,
}

impl Server {
    /// Bind, set up every shard's ring, and start serving. `make_app` builds
    /// each shard's application on that shard's thread.
    pub fn start<A, F>(config: Config, make_app: F) -> Result<Server, StartError>
    where
        A: App,
        F: Fn(usize) -> A + Send + Sync + 'static,
    {
        let shards = config.shards.max(1);
        let table = raise_fd_limit().min(config.max_connections_per_shard as u64) as u32;
        let (listeners, addr) = match config.listen {
            Some(listen) => {
                let (fds, addr) =
                    listener::bind(listen, shards, config.listen_backlog, config.send_buffer)
                        .map_err(|e| StartError(format!("cannot listen on {listen}: {e}")))?;
                (fds.into_iter().map(Some).collect(), Some(addr))
            }
            None => ((0..shards).map(|_| None).collect::<Vec<_>>(), None),
        };
        let cores = if config.pin {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        let stats: Arc<[ShardStats]> = (0..shards).map(|_| ShardStats::default()).collect();
        let draining = Arc::new(AtomicBool::new(false));
        let make_app = Arc::new(make_app);
        let config = Arc::new(config);
        // The capacity is per shard, split over its peers: a mesh has n(n-1)
        // rings, and a fixed size per ring would grow memory with the square
        // of the shard count (16 shards: 640 MB at start-up). The ring is
        // also the bound on what a shard that fell behind makes others
        // hold: mail sent with `try_post` that does not fit comes back to
        // the app. A floor of 1,024 slots per ring keeps many-shard meshes
        // useful, unless the configured capacity is smaller still (tests).
        let per_peer = (config.mailbox_capacity / shards.saturating_sub(1).max(1))
            .max(1024.min(config.mailbox_capacity))
            .max(1);
        let mailboxes = mailbox::mesh::<A::Mail>(shards, per_peer);
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), StartError>>();
        let go = Arc::new(std::sync::Barrier::new(shards + 1));
        let failed = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::with_capacity(shards);
        for (i, (listener, mailbox)) in listeners.into_iter().zip(mailboxes).enumerate() {
            let core = cores.get(i % cores.len().max(1)).copied();
            let (config, stats, draining, make_app) = (
                config.clone(),
                stats.clone(),
                draining.clone(),
                make_app.clone(),
            );
            let (ready_tx, go, failed) = (ready_tx.clone(), go.clone(), failed.clone());
            let t = std::thread::Builder::new()
                .name(format!("ringfan-shard-{i}"))
                .spawn(move || {
                    if let Some(c) = core {
                        core_affinity::set_for_current(c);
                    }
                    let shard =
                        shard::Shard::new(i, &config, table, listener, mailbox, stats, draining);
                    let mut shard = match shard {
                        Ok(s) => {
                            let _ = ready_tx.send(Ok(()));
                            s
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            go.wait();
                            return;
                        }
                    };
                    // Every ring exists (so doorbells have somewhere to go)
                    // before any shard starts serving.
                    go.wait();
                    if failed.load(Ordering::SeqCst) {
                        return;
                    }
                    let app = make_app(i);
                    shard.run(app);
                })
                .map_err(|e| StartError(format!("cannot start shard thread: {e}")))?;
            threads.push(t);
        }
        drop(ready_tx);
        let mut first_err = None;
        for _ in 0..shards {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(_) => {
                    first_err
                        .get_or_insert(StartError("a shard thread died during start-up".into()));
                }
            }
        }
        if first_err.is_some() {
            failed.store(true, Ordering::SeqCst);
        }
        go.wait();
        if let Some(e) = first_err {
            for t in threads {
                let _ = t.join();
            }
            return Err(e);
        }
        Ok(Server {
            addr,
            draining,
            threads,
            stats,
        })
    }

    /// The bound address (None for a client-only runtime).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    pub fn stats(&self) -> &Arc<[ShardStats]> {
        &self.stats
    }

    /// A flag that, once set, drains and stops the server (for signal
    /// handlers).
    pub fn drain_flag(&self) -> Arc<AtomicBool> {
        self.draining.clone()
    }

    /// Start draining: stop accepting, flush, send 1001, close.
    pub fn shutdown(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Wait for every shard to finish.
    pub fn join(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Raise the soft RLIMIT_NOFILE to the hard limit: the kernel caps each
/// ring's direct descriptor table at it. Returns the limit in force (what
/// one shard's table can hold).
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}
