//! `ringfan`: the broker binary.

use clap::{Parser, ValueEnum};
use ringfan::broker::{Broker, BrokerConfig, BrokerStats, Rate, SlowPolicy, MAX_SHARDS};
use ringfan::runtime::config::DEFAULT_LISTEN;
use ringfan::runtime::{Config, Server, TlsListen};
use ringfan::server::auth::{AuthConfig, Gate, Mode};
use ringfan::server::{Node, Routes};
use ringfan::tls::{TlsServer, TlsSettings};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// Every default below is read from the library's own `Default`s (the
// runtime's `Config`, the broker's `BrokerConfig`, the server's `Routes`),
// so `--help` shows what the code does and there is one place to change.
fn rt() -> Config {
    Config::default()
}
fn br() -> BrokerConfig {
    BrokerConfig::default()
}

/// Entitlements (issue #13; docs/protocol.md, "Authentication").
#[derive(clap::Args, Debug)]
struct AuthArgs {
    /// Who may connect: off (tokens ignored, everyone may do everything),
    /// optional (a token grants its permissions, no token the anonymous
    /// ones), required (no valid token, no service).
    #[arg(long, value_enum, default_value_t = Mode::Off)]
    auth: Mode,
    /// HS256/384/512 secret: a file's raw bytes (>= 32; trailing newline
    /// dropped). Repeatable; its kid is the file name up to the first dot.
    #[arg(long, value_name = "PATH")]
    jwt_secret_file: Vec<std::path::PathBuf>,
    /// HS secret from an environment variable (kid: the variable's name).
    /// Repeatable. Never a value on the command line, which `ps` shows.
    #[arg(long, value_name = "VAR")]
    jwt_secret_env: Vec<String>,
    /// RS256/ES256/EdDSA public key, PEM. Repeatable; kid as for secrets.
    #[arg(long, value_name = "PATH")]
    jwt_public_key: Vec<std::path::PathBuf>,
    /// A local JWKS file of public keys (kid from each key).
    #[arg(long, value_name = "PATH")]
    jwks_file: Option<std::path::PathBuf>,
    /// Seconds of clock skew allowed on exp and nbf.
    #[arg(long, default_value_t = ringfan::auth::verify::DEFAULT_LEEWAY_S)]
    jwt_leeway: u64,
    /// Accepted iss (repeatable); without any, iss is not checked.
    #[arg(long, value_name = "ISS")]
    jwt_issuer: Vec<String>,
    /// Accepted aud (repeatable); without any, a token with aud is refused.
    #[arg(long, value_name = "AUD")]
    jwt_audience: Vec<String>,
    /// The claim holding {"sub": [patterns], "pub": [patterns]}.
    #[arg(long, default_value = ringfan::auth::claims::DEFAULT_PERMISSIONS_CLAIM)]
    jwt_claim: String,
    /// Refuse tokens without exp.
    #[arg(long)]
    jwt_require_exp: bool,
    /// Token IDs (jti) refused, one per line; reloaded on SIGHUP with the
    /// keys, and connections holding one are closed 4004.
    #[arg(long, value_name = "PATH")]
    jti_denylist: Option<std::path::PathBuf>,
    /// Pattern a connection without a token may subscribe to, under
    /// --auth optional (repeatable; default none).
    #[arg(long, value_name = "PATTERN")]
    anonymous_sub: Vec<String>,
    /// Topic pattern a connection without a token may publish to.
    #[arg(long, value_name = "PATTERN")]
    anonymous_pub: Vec<String>,
    /// Seconds a connection upgraded without a token has to send
    /// {"op":"auth"} under --auth required; then it is closed 4001.
    #[arg(long, default_value_t = 10)]
    auth_timeout: u64,
    /// Seconds before a token's exp that the client hears "expiring".
    #[arg(long, default_value_t = 60)]
    expiring_lead: u64,
    /// Connections one user (the token's sub) may hold over all shards;
    /// 0: no cap.
    #[arg(long, default_value_t = 0)]
    max_connections_per_user: u32,
}

/// `--listen`: an address, or `off`.
#[derive(Clone, Copy, Debug)]
struct Listen(Option<SocketAddr>);

impl std::str::FromStr for Listen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "off" {
            return Ok(Self(None));
        }
        s.parse()
            .map(|a| Self(Some(a)))
            .map_err(|e| format!("{e} (an address such as 127.0.0.1:8080, or off)"))
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(a) => write!(f, "{a}"),
            None => f.write_str("off"),
        }
    }
}

/// TLS (`wss://`, `https://`).
#[derive(clap::Args, Debug)]
struct TlsArgs {
    /// Address and port for TLS connections (wss://, and https:// for
    /// /healthz and /metrics), alongside --listen or instead of it
    /// (--listen off). Needs --tls-cert and --tls-key.
    #[arg(long, value_name = "ADDR", requires = "tls_cert")]
    listen_tls: Option<SocketAddr>,
    /// PEM certificate chain (leaf first). Repeat with --tls-key for more
    /// certificates, picked by the client's SNI (exact name, then a
    /// `*.` wildcard); the first is served when none matches. Reloaded
    /// on SIGHUP.
    #[arg(long = "tls-cert", value_name = "FILE", requires = "listen_tls")]
    tls_cert: Vec<PathBuf>,
    /// PEM private key of the --tls-cert at the same position.
    #[arg(long = "tls-key", value_name = "FILE")]
    tls_key: Vec<PathBuf>,
    /// Most TLS handshake flights a shard computes per loop turn (a full
    /// one signs with the certificate's key); connections past it wait
    /// for the next turns, so a storm of handshakes cannot starve fan-out.
    #[arg(long, default_value_t = rt().tls_handshakes_per_turn)]
    tls_handshakes_per_turn: usize,
}

/// The TLS listener the flags ask for, its certificates loaded; exits with
/// a message naming the file when they cannot be.
fn tls_listen(a: &TlsArgs) -> Option<TlsListen> {
    let addr = a.listen_tls?;
    if a.tls_cert.len() != a.tls_key.len() {
        eprintln!(
            "ringfan: --tls-cert and --tls-key come in pairs: {} certificates, {} keys",
            a.tls_cert.len(),
            a.tls_key.len()
        );
        std::process::exit(2);
    }
    let settings = TlsSettings {
        certs: a
            .tls_cert
            .iter()
            .cloned()
            .zip(a.tls_key.iter().cloned())
            .collect(),
    };
    match TlsServer::new(settings) {
        Ok(server) => Some(TlsListen {
            addr,
            server: Arc::new(server),
        }),
        Err(e) => {
            eprintln!("ringfan: --tls-cert: {e}");
            std::process::exit(2);
        }
    }
}

/// ringfan: a WebSocket pub/sub fan-out broker on io_uring.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    auth: AuthArgs,
    /// Address and port to listen on (all shards share it via
    /// SO_REUSEPORT), or `off` for none (TLS only, with --listen-tls).
    #[arg(long, default_value_t = Listen(Some(DEFAULT_LISTEN)))]
    listen: Listen,
    #[command(flatten)]
    tls: TlsArgs,
    /// Number of shards (threads, each with its own io_uring). Default: one
    /// per available core.
    #[arg(long)]
    shards: Option<usize>,
    /// Do not pin shard threads to cores.
    #[arg(long)]
    no_pin: bool,
    /// Largest message accepted on /ws, in bytes; larger ones close with 1009.
    #[arg(long, default_value_t = br().max_message)]
    max_message: usize,
    /// Largest message accepted on /echo, in bytes.
    #[arg(long, default_value_t = Routes::default().max_message_echo)]
    max_message_echo: usize,
    /// Serve /echo, which echoes every message (conformance testing). Off
    /// by default: it accepts --max-message-echo bytes from anyone.
    #[arg(long, default_value_t = Routes::default().echo)]
    echo: bool,
    /// Deprecated: /echo is now off unless --echo; kept so that setups
    /// that turned it off keep starting.
    #[arg(long, hide = true, conflicts_with = "echo")]
    no_echo: bool,
    /// Allowed Origin (repeatable). Without any, every origin is allowed;
    /// requests without Origin (non-browser clients) are always allowed.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origins: Vec<String>,
    /// Seconds a client has to complete the HTTP upgrade.
    #[arg(long, default_value_t = rt().handshake_timeout.as_secs())]
    handshake_timeout: u64,
    /// Seconds of silence after which the server pings a client.
    #[arg(long, default_value_t = rt().idle_ping.as_secs())]
    idle_ping: u64,
    /// Seconds a client has to answer a ping before it is closed.
    #[arg(long, default_value_t = rt().pong_timeout.as_secs())]
    pong_timeout: u64,
    /// Seconds a closing connection has to finish its close handshake.
    #[arg(long, default_value_t = rt().close_timeout.as_secs())]
    close_timeout: u64,
    /// Seconds, on SIGTERM/SIGINT, to flush queues and close with 1001.
    #[arg(long, default_value_t = rt().drain_timeout.as_secs())]
    drain_timeout: u64,
    /// Most connections per shard (the direct descriptor table; capped by
    /// the hard RLIMIT_NOFILE).
    #[arg(long, default_value_t = rt().max_connections_per_shard)]
    max_connections_per_shard: u32,
    /// Size of each receive buffer in the provided buffer ring, in bytes.
    #[arg(long, default_value_t = rt().recv_buffer_size)]
    recv_buffer_size: usize,
    /// Receive buffers offered per shard at start (grows on demand up to
    /// --recv-buffers-max).
    #[arg(long, default_value_t = rt().recv_buffers)]
    recv_buffers: u16,
    /// Most receive buffers per shard.
    #[arg(long, default_value_t = rt().recv_buffers_max)]
    recv_buffers_max: u16,
    /// What happens to a subscriber whose outgoing queue is full.
    #[arg(long, value_enum, default_value_t = Policy::from(br().policy))]
    slow_consumer: Policy,
    /// Bytes a subscriber may have queued before --slow-consumer applies.
    #[arg(long, default_value_t = br().max_queued)]
    max_queued_bytes: usize,
    /// Bytes any connection may have queued at all (echo replies, acks…);
    /// past it the connection is closed with 1008. At most 1 GiB.
    #[arg(long, default_value_t = rt().max_backlog)]
    max_backlog_bytes: usize,
    /// Stop reading from a connection whose own send backlog is over this
    /// many bytes (each frame counted with 64 bytes of overhead) until it
    /// is down to half: a client that sends but never reads is held back,
    /// not closed. Keep it above --max-queued-bytes. At most 1 GiB.
    #[arg(long, default_value_t = rt().max_backlog_read)]
    max_backlog_read: usize,
    /// Bytes/s a connection holding more than --min-recv-rate-pending bytes
    /// of an unfinished message must keep sending (judged over 5 s), or it
    /// is closed with 1008 "receive too slow". 0 turns the check off.
    #[arg(long, default_value_t = rt().min_recv_rate)]
    min_recv_rate: u32,
    /// Bytes of an unfinished message a connection may hold without
    /// --min-recv-rate applying.
    #[arg(long, default_value_t = rt().min_recv_rate_pending)]
    min_recv_rate_pending: usize,
    /// Most connections per shard still in their HTTP handshake; past it
    /// the oldest is closed.
    #[arg(long, default_value_t = rt().max_handshakes)]
    max_handshakes_per_shard: usize,
    /// Milliseconds a handshake may take while the shard's descriptor table
    /// is more than 3/4 full and the handshakes in progress could take every
    /// free slot; older ones are closed, oldest first.
    #[arg(long, default_value_t = rt().handshake_timeout_busy.as_millis() as u64)]
    handshake_timeout_busy_ms: u64,
    /// Most request heads a shard parses in one loop turn; the rest wait,
    /// their bytes kept, for the next turns, so that a storm of new
    /// connections cannot hold up fan-out.
    #[arg(long, default_value_t = rt().handshakes_per_turn)]
    handshakes_per_turn: usize,
    /// Most connections open from one client address (IPv4, or IPv6 /64),
    /// over all shards; past it new ones get 429. 0 = no limit (the
    /// default: behind a proxy or a carrier NAT all clients share one).
    #[arg(long, default_value_t = rt().max_connections_per_ip)]
    max_connections_per_ip: u32,
    /// Most new connections one client address may open per second
    /// (bursts of one second's worth); past it, 429 with Retry-After: 1.
    /// 0 = no limit.
    #[arg(long, default_value_t = rt().max_handshakes_per_ip)]
    max_handshakes_per_ip: u32,
    /// Kernel send buffer per connection, in bytes (SO_SNDBUF: the kernel
    /// caps it at net.core.wmem_max, then doubles it). Bounds what a
    /// stalled subscriber holds in the kernel before the slow-consumer
    /// policy sees it; 0 = kernel autotuning.
    #[arg(long, default_value_t = rt().send_buffer)]
    socket_send_buffer: usize,
    /// Hold data for up to this many milliseconds so that each send carries
    /// more messages: less CPU per delivery for that much more latency.
    /// 0 sends every loop turn (control frames are never held).
    #[arg(long, default_value_t = rt().write_delay.as_millis() as u64)]
    write_delay_ms: u64,
    /// Cross-shard mail slots per shard. A shard that falls this far behind
    /// gets no more: publishes for its topics are answered rate_limited and
    /// messages for its subscribers are shed (they see the seq gap).
    #[arg(long, default_value_t = rt().mailbox_capacity)]
    mailbox_capacity: usize,
    /// Most subscriptions per connection (more gets err too_large).
    #[arg(long, default_value_t = br().max_subscriptions)]
    max_subscriptions: usize,
    /// Bytes of last values kept for snapshots, per shard; past it some are
    /// forgotten, in no particular order (seq keeps counting).
    #[arg(long, default_value_t = br().max_lvc_bytes)]
    max_snapshot_bytes: usize,
    /// Topics a shard keeps (seq counter and last value). At the cap it
    /// forgets topics no one subscribes to (their seq restarts at 1);
    /// with none such, publishes to new topics get rate_limited.
    #[arg(long, default_value_t = br().max_topics)]
    max_topics_per_shard: usize,
    /// New topics one connection may create per 10 seconds (refilled
    /// evenly); past it its publishes get rate_limited.
    #[arg(long, default_value_t = br().max_new_topics_per_conn)]
    max_new_topics_per_conn: u64,
    /// Patterns one `sub` with "snapshot":true may list (more: too_large).
    #[arg(long, default_value_t = br().max_snapshot_patterns)]
    max_snapshot_patterns: usize,
    /// Snapshot subscriptions of one connection in flight at once (more:
    /// rate_limited until the earlier one's ack).
    #[arg(long, default_value_t = br().max_snapshots_per_conn)]
    max_snapshots_per_conn: usize,
    /// Snapshot subscriptions in flight per shard, all connections
    /// together (more: rate_limited).
    #[arg(long, default_value_t = br().max_snapshots_per_shard)]
    max_snapshots_per_shard: usize,
    /// pub requests per second per connection; more get err rate_limited.
    /// 0 = no limit (1000 is a sensible cap for untrusted clients).
    #[arg(long, default_value_t = br().pub_rate.per_s)]
    max_pub_rate: u32,
    /// pub requests a connection may send at once above --max-pub-rate.
    #[arg(long, default_value_t = br().pub_rate.burst)]
    pub_burst: u32,
    /// Patterns per second per connection in sub and unsub requests (each
    /// pattern counts); more get err rate_limited. 0 = no limit.
    #[arg(long, default_value_t = br().sub_rate.per_s)]
    max_sub_rate: u32,
    /// Patterns a connection may sub/unsub at once above --max-sub-rate.
    #[arg(long, default_value_t = br().sub_rate.burst)]
    sub_burst: u32,
    /// Deepest nesting of arrays/objects in a pub's data (deeper gets err
    /// bad_json): subscribers' parsers get the data verbatim.
    #[arg(long, default_value_t = br().max_json_depth)]
    max_json_depth: usize,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Policy {
    /// Close the connection with 1008 "slow consumer".
    Disconnect,
    /// Drop the newest messages for it (its seq shows the gap).
    Drop,
    /// Keep only the latest pending message per topic.
    Conflate,
}

impl From<SlowPolicy> for Policy {
    fn from(p: SlowPolicy) -> Self {
        match p {
            SlowPolicy::Disconnect => Policy::Disconnect,
            SlowPolicy::Drop => Policy::Drop,
            SlowPolicy::Conflate => Policy::Conflate,
        }
    }
}

impl From<Policy> for SlowPolicy {
    fn from(p: Policy) -> Self {
        match p {
            Policy::Disconnect => SlowPolicy::Disconnect,
            Policy::Drop => SlowPolicy::Drop,
            Policy::Conflate => SlowPolicy::Conflate,
        }
    }
}

/// The JWT gate for `--auth optional|required`; exits naming the file and
/// reason when a key or the denylist cannot be loaded.
fn auth_gate(a: AuthArgs) -> Option<Arc<Gate>> {
    let mode = a.auth;
    if mode == Mode::Off {
        return None;
    }
    let rules = ringfan::auth::Rules {
        leeway_s: a.jwt_leeway,
        require_exp: a.jwt_require_exp,
        issuers: a.jwt_issuer,
        audiences: a.jwt_audience,
        permissions_claim: a.jwt_claim,
        ..Default::default()
    };
    let config = AuthConfig {
        mode,
        keys: ringfan::auth::KeyConfig {
            hs_secret_files: a.jwt_secret_file,
            hs_secret_env: a.jwt_secret_env,
            pem_files: a.jwt_public_key,
            jwks_file: a.jwks_file,
        },
        rules,
        denylist: a.jti_denylist,
        anonymous_sub: a.anonymous_sub,
        anonymous_pub: a.anonymous_pub,
        auth_timeout: Duration::from_secs(a.auth_timeout),
        expiring_lead: Duration::from_secs(a.expiring_lead),
        max_per_user: a.max_connections_per_user,
    };
    match Gate::new(config) {
        Ok(g) => Some(Arc::new(g)),
        Err(e) => {
            eprintln!("ringfan: --auth: {e}");
            std::process::exit(2);
        }
    }
}

/// SIGHUP reloads the keys and the denylist, and the TLS certificates; a
/// failed reload keeps the ones in use and says why. Connections already
/// open keep theirs either way.
fn reload_on_sighup(gate: Option<Arc<Gate>>, tls: Option<Arc<TlsServer>>) {
    if gate.is_none() && tls.is_none() {
        return;
    }
    let mut signals = match signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringfan: cannot watch SIGHUP ({e}): keys and certificates will not reload");
            return;
        }
    };
    std::thread::spawn(move || {
        for _ in signals.forever() {
            if let Some(gate) = &gate {
                match gate.reload() {
                    Ok(what) => println!("ringfan: reloaded {what}"),
                    Err(e) => eprintln!("ringfan: reload failed, keeping the keys in use: {e}"),
                }
            }
            if let Some(tls) = &tls {
                match tls.reload() {
                    Ok(()) => println!("ringfan: reloaded tls certificates"),
                    Err(e) => eprintln!(
                        "ringfan: tls reload failed, keeping the certificates in use: {e}"
                    ),
                }
            }
        }
    });
}

fn main() {
    // mimalloc asks for transparent huge pages on its arenas (MADV_HUGEPAGE,
    // which the stock `madvise` THP mode honours), so each shard thread's
    // first touch made 2 MiB resident: 16 shards started at ~210 MiB of
    // anonymous memory, ~140 MiB of it huge pages holding a few KiB each.
    // Without them memory follows use (~70 MiB, most of it the receive
    // buffers). The flag is checked when a page is faulted in, so it works
    // although the allocator reserved its arena before `main`.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    let args = Args::parse();
    let has_origins = !args.allow_origins.is_empty();
    let defaults = Config::default();
    let tls = tls_listen(&args.tls);
    let tls_server = tls.as_ref().map(|t| t.server.clone());
    if args.listen.0.is_none() && tls.is_none() {
        eprintln!("ringfan: --listen off needs --listen-tls: nothing would listen");
        std::process::exit(2);
    }
    let config = Config {
        listen: args.listen.0,
        tls,
        tls_handshakes_per_turn: args.tls.tls_handshakes_per_turn.max(1),
        shards: args
            .shards
            .unwrap_or(defaults.shards.min(MAX_SHARDS))
            .max(1),
        pin: !args.no_pin,
        handshake: ringfan::ws::handshake::Config {
            allowed_origins: (!args.allow_origins.is_empty()).then_some(args.allow_origins),
        },
        handshake_timeout: Duration::from_secs(args.handshake_timeout),
        idle_ping: Duration::from_secs(args.idle_ping),
        pong_timeout: Duration::from_secs(args.pong_timeout),
        close_timeout: Duration::from_secs(args.close_timeout),
        drain_timeout: Duration::from_secs(args.drain_timeout),
        max_connections_per_shard: args.max_connections_per_shard,
        recv_buffer_size: args.recv_buffer_size,
        recv_buffers: args.recv_buffers,
        recv_buffers_max: args.recv_buffers_max,
        max_backlog: args.max_backlog_bytes,
        max_backlog_read: args.max_backlog_read,
        min_recv_rate: args.min_recv_rate,
        min_recv_rate_pending: args.min_recv_rate_pending,
        max_handshakes: args.max_handshakes_per_shard.max(1),
        handshake_timeout_busy: Duration::from_millis(args.handshake_timeout_busy_ms),
        handshakes_per_turn: args.handshakes_per_turn.max(1),
        max_connections_per_ip: args.max_connections_per_ip,
        max_handshakes_per_ip: args.max_handshakes_per_ip,
        mailbox_capacity: args.mailbox_capacity.max(1),
        send_buffer: args.socket_send_buffer,
        write_delay: Duration::from_millis(args.write_delay_ms),
        ..defaults
    };
    let shards = config.shards;
    if shards > MAX_SHARDS {
        eprintln!("ringfan: --shards {shards}: at most {MAX_SHARDS} shards are supported");
        std::process::exit(2);
    }
    let broker = BrokerConfig {
        policy: args.slow_consumer.into(),
        max_queued: args.max_queued_bytes,
        max_message: args.max_message,
        max_subscriptions: args.max_subscriptions,
        max_lvc_bytes: args.max_snapshot_bytes,
        max_topics: args.max_topics_per_shard.max(1),
        max_new_topics_per_conn: args.max_new_topics_per_conn,
        max_snapshot_patterns: args.max_snapshot_patterns,
        max_snapshots_per_conn: args.max_snapshots_per_conn,
        max_snapshots_per_shard: args.max_snapshots_per_shard,
        pub_rate: Rate {
            per_s: args.max_pub_rate,
            burst: args.pub_burst,
        },
        sub_rate: Rate {
            per_s: args.max_sub_rate,
            burst: args.sub_burst,
        },
        max_json_depth: args.max_json_depth,
        snapshot_step: ringfan::broker::config::SNAPSHOT_STEP,
    };
    let routes = Routes {
        echo: args.echo && !args.no_echo,
        max_message_echo: args.max_message_echo,
    };
    let gate = auth_gate(args.auth);
    let stats: Arc<[BrokerStats]> = (0..shards).map(|_| BrokerStats::default()).collect();
    let shard_gate = gate.clone();
    let make = move |_| {
        let node = Node::new(Broker::new(broker.clone(), stats.clone()), routes.clone());
        match &shard_gate {
            Some(g) => node.with_auth(g.clone()),
            None => node,
        }
    };
    let server = match Server::start(config, make) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringfan: {e}");
            std::process::exit(1);
        }
    };
    let flag = server.drain_flag();
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        // A second signal while draining exits at once.
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 1, flag.clone());
        let _ = signal_hook::flag::register(sig, flag.clone());
    }
    let loopback = server
        .local_addr()
        .into_iter()
        .chain(server.tls_addr())
        .all(|a| a.ip().is_loopback());
    if gate.is_none() && !loopback && !has_origins {
        println!(
            "ringfan: note: auth is off and no --allow-origin is set on a non-loopback address: anyone who reaches the port may subscribe to every topic and publish anywhere (see --auth)"
        );
    }
    reload_on_sighup(gate, tls_server);
    for note in server.notes() {
        println!("ringfan: {note}");
    }
    // The plain line first: scripts that read the first "listening on"
    // line get the plain port, as before TLS existed.
    if let Some(addr) = server.local_addr() {
        println!("ringfan: listening on {addr} ({shards} shards)");
    }
    if let Some(addr) = server.tls_addr() {
        println!("ringfan: tls listening on {addr} ({shards} shards)");
    }
    server.join();
}
