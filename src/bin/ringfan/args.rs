//! The command line: every flag, with its default read from the library's
//! own `Default`s.

use clap::{Parser, ValueEnum};
use ringfan::broker::{BrokerConfig, SlowPolicy};
use ringfan::runtime::config::DEFAULT_LISTEN;
use ringfan::runtime::Config;
use ringfan::server::auth::Mode;
use ringfan::server::Routes;
use std::net::SocketAddr;
use std::path::PathBuf;

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
pub struct AuthArgs {
    /// Who may connect: off (tokens ignored, everyone may do everything),
    /// optional (a token grants its permissions, no token the anonymous
    /// ones), required (no valid token, no service).
    #[arg(long, value_enum, default_value_t = Mode::Off)]
    pub auth: Mode,
    /// HS256/384/512 secret: a file's raw bytes (>= 32; trailing newline
    /// dropped). Repeatable; its kid is the file name up to the first dot.
    #[arg(long, value_name = "PATH")]
    pub jwt_secret_file: Vec<std::path::PathBuf>,
    /// HS secret from an environment variable (kid: the variable's name).
    /// Repeatable. Never a value on the command line, which `ps` shows.
    #[arg(long, value_name = "VAR")]
    pub jwt_secret_env: Vec<String>,
    /// RS256/ES256/EdDSA public key, PEM. Repeatable; kid as for secrets.
    #[arg(long, value_name = "PATH")]
    pub jwt_public_key: Vec<std::path::PathBuf>,
    /// A local JWKS file of public keys (kid from each key).
    #[arg(long, value_name = "PATH")]
    pub jwks_file: Option<std::path::PathBuf>,
    /// Seconds of clock skew allowed on exp and nbf.
    #[arg(long, default_value_t = ringfan::auth::verify::DEFAULT_LEEWAY_S)]
    pub jwt_leeway: u64,
    /// Accepted iss (repeatable); without any, iss is not checked.
    #[arg(long, value_name = "ISS")]
    pub jwt_issuer: Vec<String>,
    /// Accepted aud (repeatable); without any, a token with aud is refused.
    #[arg(long, value_name = "AUD")]
    pub jwt_audience: Vec<String>,
    /// The claim holding {"sub": [patterns], "pub": [patterns]}.
    #[arg(long, default_value = ringfan::auth::claims::DEFAULT_PERMISSIONS_CLAIM)]
    pub jwt_claim: String,
    /// Refuse tokens without exp.
    #[arg(long)]
    pub jwt_require_exp: bool,
    /// Token IDs (jti) refused, one per line; reloaded on SIGHUP with the
    /// keys, and connections holding one are closed 4004.
    #[arg(long, value_name = "PATH")]
    pub jti_denylist: Option<std::path::PathBuf>,
    /// Pattern a connection without a token may subscribe to, under
    /// --auth optional (repeatable; default none).
    #[arg(long, value_name = "PATTERN")]
    pub anonymous_sub: Vec<String>,
    /// Topic pattern a connection without a token may publish to.
    #[arg(long, value_name = "PATTERN")]
    pub anonymous_pub: Vec<String>,
    /// Seconds a connection upgraded without a token has to send
    /// {"op":"auth"} under --auth required; then it is closed 4001.
    #[arg(long, default_value_t = 10)]
    pub auth_timeout: u64,
    /// Seconds before a token's exp that the client hears "expiring".
    #[arg(long, default_value_t = 60)]
    pub expiring_lead: u64,
    /// Connections one user (the token's sub) may hold over all shards;
    /// 0: no cap.
    #[arg(long, default_value_t = 0)]
    pub max_connections_per_user: u32,
}

/// `--listen`: an address, or `off`.
#[derive(Clone, Copy, Debug)]
pub struct Listen(pub Option<SocketAddr>);

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
pub struct TlsArgs {
    /// Address and port for TLS connections (wss://, and https:// for
    /// /healthz and /metrics), alongside --listen or instead of it
    /// (--listen off). Needs --tls-cert and --tls-key.
    #[arg(long, value_name = "ADDR", requires = "tls_cert")]
    pub listen_tls: Option<SocketAddr>,
    /// PEM certificate chain (leaf first). Repeat with --tls-key for more
    /// certificates, picked by the client's SNI (exact name, then a
    /// `*.` wildcard); the first is served when none matches. Reloaded
    /// on SIGHUP.
    #[arg(long = "tls-cert", value_name = "FILE", requires = "listen_tls")]
    pub tls_cert: Vec<PathBuf>,
    /// PEM private key of the --tls-cert at the same position.
    #[arg(long = "tls-key", value_name = "FILE")]
    pub tls_key: Vec<PathBuf>,
    /// Most TLS handshake flights a shard computes per loop turn (a full
    /// one signs with the certificate's key); connections past it wait
    /// for the next turns, so a storm of handshakes cannot starve fan-out.
    #[arg(long, default_value_t = rt().tls_handshakes_per_turn)]
    pub tls_handshakes_per_turn: usize,
}

/// ringfan: a WebSocket pub/sub fan-out broker on io_uring.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Args {
    #[command(flatten)]
    pub log: crate::logging::LogArgs,
    #[command(flatten)]
    pub auth: AuthArgs,
    /// Address and port to listen on (all shards share it via
    /// SO_REUSEPORT), or `off` for none (TLS only, with --listen-tls).
    #[arg(long, default_value_t = Listen(Some(DEFAULT_LISTEN)))]
    pub listen: Listen,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub cluster: crate::cluster::ClusterArgs,
    /// Number of shards (threads, each with its own io_uring). Default: one
    /// per available core.
    #[arg(long)]
    pub shards: Option<usize>,
    /// Do not pin shard threads to cores.
    #[arg(long)]
    pub no_pin: bool,
    /// Largest message accepted on /ws, in bytes; larger ones close with 1009.
    #[arg(long, default_value_t = br().max_message)]
    pub max_message: usize,
    /// Largest message accepted on /echo, in bytes.
    #[arg(long, default_value_t = Routes::default().max_message_echo)]
    pub max_message_echo: usize,
    /// Serve /echo, which echoes every message (conformance testing). Off
    /// by default: it accepts --max-message-echo bytes from anyone.
    #[arg(long, default_value_t = Routes::default().echo)]
    pub echo: bool,
    /// Deprecated: /echo is now off unless --echo; kept so that setups
    /// that turned it off keep starting.
    #[arg(long, hide = true, conflicts_with = "echo")]
    pub no_echo: bool,
    /// permessage-deflate (RFC 7692): on accepts clients' offers (always
    /// without context takeover, so idle connections keep no compression
    /// state); off declines them. On by default: a publish is compressed
    /// once in the process and shared, and at 1 M deliveries/s the
    /// broker's CPU per delivery measured no higher than plain
    /// (docs/benchmarks.md, issue #17).
    #[arg(long, value_enum, default_value_t = Deflate::On)]
    pub deflate: Deflate,
    /// With --deflate on: published messages shorter than this many bytes
    /// go uncompressed (below 64 bytes of JSON deflate saves at most a
    /// byte for ~3 us of work).
    #[arg(long, value_name = "BYTES", default_value_t = ringfan::sendbuf::DEFLATE_MIN)]
    pub deflate_min_size: usize,
    /// Allowed Origin (repeatable). Without any, every origin is allowed;
    /// requests without Origin (non-browser clients) are always allowed.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allow_origins: Vec<String>,
    /// Serve the admin API (plain HTTP: /healthz, /readyz, /metrics,
    /// POST /publish, and /admin/ with --admin-token-file) on this
    /// address; `--admin-listen` alone means 127.0.0.1:9081. Off unless
    /// this or --admin-token-file is given. Keep it on loopback or a
    /// private network: it has no TLS.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:9081")]
    pub admin_listen: Option<Listen>,
    /// The admin token (one word, at least 16 characters) that /admin/
    /// requests must carry as `Authorization: Bearer`. Turns the admin
    /// listener on (at 127.0.0.1:9081 unless --admin-listen says).
    #[arg(long, value_name = "PATH")]
    pub admin_token_file: Option<PathBuf>,
    /// API keys for `POST /publish`, one per line, each optionally followed
    /// by the topic patterns it may publish to (default: all). Reloaded
    /// on SIGHUP. Without it (and with --auth off) anyone may publish over
    /// HTTP, as over WebSocket.
    #[arg(long, value_name = "PATH")]
    pub publish_key_file: Option<PathBuf>,
    /// Serve this directory's files over HTTP GET/HEAD on the public
    /// listeners (plain and TLS), on every path no endpoint takes: `/` is
    /// its index.html (e.g. `--static demo`, the live board). Read at
    /// start-up and on SIGHUP; files over 1 MiB are refused (413). Off by
    /// default.
    #[arg(long = "static", value_name = "DIR")]
    pub static_dir: Option<PathBuf>,
    /// Largest HTTP request body (`POST /publish`), in bytes; larger gets
    /// 413.
    #[arg(long, default_value_t = rt().max_request_body)]
    pub max_request_body: usize,
    /// Seconds an HTTP keep-alive connection may stay idle between
    /// requests.
    #[arg(long, default_value_t = rt().http_keepalive.as_secs())]
    pub http_keepalive_timeout: u64,
    /// Seconds a client has to complete the HTTP upgrade.
    #[arg(long, default_value_t = rt().handshake_timeout.as_secs())]
    pub handshake_timeout: u64,
    /// Seconds of silence after which the server pings a client.
    #[arg(long, default_value_t = rt().idle_ping.as_secs())]
    pub idle_ping: u64,
    /// Seconds a client has to answer a ping before it is closed.
    #[arg(long, default_value_t = rt().pong_timeout.as_secs())]
    pub pong_timeout: u64,
    /// Seconds a closing connection has to finish its close handshake.
    #[arg(long, default_value_t = rt().close_timeout.as_secs())]
    pub close_timeout: u64,
    /// Seconds, on SIGTERM/SIGINT, to flush queues and close with 1001.
    #[arg(long, default_value_t = rt().drain_timeout.as_secs())]
    pub drain_timeout: u64,
    /// Most connections per shard (the direct descriptor table; capped by
    /// the hard RLIMIT_NOFILE).
    #[arg(long, default_value_t = rt().max_connections_per_shard)]
    pub max_connections_per_shard: u32,
    /// Size of each receive buffer in the provided buffer ring, in bytes.
    #[arg(long, default_value_t = rt().recv_buffer_size)]
    pub recv_buffer_size: usize,
    /// Receive buffers offered per shard at start (grows on demand up to
    /// --recv-buffers-max).
    #[arg(long, default_value_t = rt().recv_buffers)]
    pub recv_buffers: u16,
    /// Most receive buffers per shard.
    #[arg(long, default_value_t = rt().recv_buffers_max)]
    pub recv_buffers_max: u16,
    /// What happens to a subscriber whose outgoing queue is full.
    #[arg(long, value_enum, default_value_t = Policy::from(br().policy))]
    pub slow_consumer: Policy,
    /// Bytes a subscriber may have queued before --slow-consumer applies.
    #[arg(long, default_value_t = br().max_queued)]
    pub max_queued_bytes: usize,
    /// Bytes any connection may have queued at all (echo replies, acks…);
    /// past it the connection is closed with 1008. At most 1 GiB.
    #[arg(long, default_value_t = rt().max_backlog)]
    pub max_backlog_bytes: usize,
    /// Stop reading from a connection whose own send backlog is over this
    /// many bytes (each frame counted with 64 bytes of overhead) until it
    /// is down to half: a client that sends but never reads is held back,
    /// not closed. Keep it above --max-queued-bytes. At most 1 GiB.
    #[arg(long, default_value_t = rt().max_backlog_read)]
    pub max_backlog_read: usize,
    /// Bytes/s a connection holding more than --min-recv-rate-pending bytes
    /// of an unfinished message must keep sending (judged over 5 s), or it
    /// is closed with 1008 "receive too slow". 0 turns the check off.
    #[arg(long, default_value_t = rt().min_recv_rate)]
    pub min_recv_rate: u32,
    /// Bytes of an unfinished message a connection may hold without
    /// --min-recv-rate applying.
    #[arg(long, default_value_t = rt().min_recv_rate_pending)]
    pub min_recv_rate_pending: usize,
    /// Most connections per shard still in their HTTP handshake; past it
    /// the oldest is closed.
    #[arg(long, default_value_t = rt().max_handshakes)]
    pub max_handshakes_per_shard: usize,
    /// Milliseconds a handshake may take while the shard's descriptor table
    /// is more than 3/4 full and the handshakes in progress could take every
    /// free slot; older ones are closed, oldest first.
    #[arg(long, default_value_t = rt().handshake_timeout_busy.as_millis() as u64)]
    pub handshake_timeout_busy_ms: u64,
    /// Most request heads a shard parses in one loop turn; the rest wait,
    /// their bytes kept, for the next turns, so that a storm of new
    /// connections cannot hold up fan-out. The admin listener's requests
    /// are not held back.
    #[arg(long, default_value_t = rt().handshakes_per_turn)]
    pub handshakes_per_turn: usize,
    /// Most connections open from one client address (IPv4, or IPv6 /64),
    /// over all shards; past it new ones get 429. 0 = no limit (the
    /// default: behind a proxy or a carrier NAT all clients share one).
    #[arg(long, default_value_t = rt().max_connections_per_ip)]
    pub max_connections_per_ip: u32,
    /// Most new connections one client address may open per second
    /// (bursts of one second's worth); past it, 429 with Retry-After: 1.
    /// 0 = no limit.
    #[arg(long, default_value_t = rt().max_handshakes_per_ip)]
    pub max_handshakes_per_ip: u32,
    /// Every connection, on every listener, starts with a PROXY protocol
    /// header (v1 or v2, before TLS) naming the client, which the
    /// per-address limits and logs then see; one without is closed
    /// unanswered. Only for listeners that nothing but the proxy reaches.
    #[arg(long)]
    pub proxy_protocol: bool,
    /// A proxy network (CIDR, or one address) whose connections' client
    /// is named by --forwarded-header: the rightmost address in it not
    /// itself trusted. Repeatable. Without any, the header is ignored.
    #[arg(long, value_name = "CIDR", value_parser = ringfan::proxy::forwarded::parse_cidr)]
    pub trusted_proxy: Vec<ipnet::IpNet>,
    /// Which header the trusted proxies write: only that one is read (a
    /// proxy passes the other through from the client untouched).
    #[arg(long, value_enum, default_value_t = ForwardedHeader::XForwardedFor)]
    pub forwarded_header: ForwardedHeader,
    /// Kernel send buffer per connection, in bytes (SO_SNDBUF: the kernel
    /// caps it at net.core.wmem_max, then doubles it). Bounds what a
    /// stalled subscriber holds in the kernel before the slow-consumer
    /// policy sees it; 0 = kernel autotuning.
    #[arg(long, default_value_t = rt().send_buffer)]
    pub socket_send_buffer: usize,
    /// Hold data for up to this many milliseconds so that each send carries
    /// more messages: less CPU per delivery for that much more latency.
    /// 0 sends every loop turn (control frames are never held).
    #[arg(long, default_value_t = rt().write_delay.as_millis() as u64)]
    pub write_delay_ms: u64,
    /// Cross-shard mail slots per shard. A shard that falls this far behind
    /// gets no more: publishes for its topics are answered rate_limited and
    /// messages for its subscribers are shed (they see the seq gap).
    #[arg(long, default_value_t = rt().mailbox_capacity)]
    pub mailbox_capacity: usize,
    /// Most subscriptions per connection (more gets err too_large).
    #[arg(long, default_value_t = br().max_subscriptions)]
    pub max_subscriptions: usize,
    /// Bytes of last values kept for snapshots, per shard; past it some are
    /// forgotten, in no particular order (seq keeps counting).
    #[arg(long, default_value_t = br().max_lvc_bytes)]
    pub max_snapshot_bytes: usize,
    /// Topics a shard keeps (seq counter and last value). At the cap it
    /// forgets topics no one subscribes to (their seq restarts at 1);
    /// with none such, publishes to new topics get rate_limited.
    #[arg(long, default_value_t = br().max_topics)]
    pub max_topics_per_shard: usize,
    /// New topics one connection may create per 10 seconds (refilled
    /// evenly); past it its publishes get rate_limited.
    #[arg(long, default_value_t = br().max_new_topics_per_conn)]
    pub max_new_topics_per_conn: u64,
    /// Patterns one `sub` with "snapshot":true may list (more: too_large).
    #[arg(long, default_value_t = br().max_snapshot_patterns)]
    pub max_snapshot_patterns: usize,
    /// Snapshot subscriptions of one connection in flight at once (more:
    /// rate_limited until the earlier one's ack).
    #[arg(long, default_value_t = br().max_snapshots_per_conn)]
    pub max_snapshots_per_conn: usize,
    /// Snapshot subscriptions in flight per shard, all connections
    /// together (more: rate_limited).
    #[arg(long, default_value_t = br().max_snapshots_per_shard)]
    pub max_snapshots_per_shard: usize,
    /// pub requests per second per connection; more get err rate_limited.
    /// 0 = no limit (1000 is a sensible cap for untrusted clients).
    #[arg(long, default_value_t = br().pub_rate.per_s)]
    pub max_pub_rate: u32,
    /// pub requests a connection may send at once above --max-pub-rate.
    #[arg(long, default_value_t = br().pub_rate.burst)]
    pub pub_burst: u32,
    /// Patterns per second per connection in sub and unsub requests (each
    /// pattern counts); more get err rate_limited. 0 = no limit.
    #[arg(long, default_value_t = br().sub_rate.per_s)]
    pub max_sub_rate: u32,
    /// Patterns a connection may sub/unsub at once above --max-sub-rate.
    #[arg(long, default_value_t = br().sub_rate.burst)]
    pub sub_burst: u32,
    /// Deepest nesting of arrays/objects in a pub's data (deeper gets err
    /// bad_json): subscribers' parsers get the data verbatim.
    #[arg(long, default_value_t = br().max_json_depth)]
    pub max_json_depth: usize,
}

/// `--deflate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Deflate {
    Off,
    On,
}

/// `--forwarded-header`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1` (nginx, HAProxy's forwardfor).
    XForwardedFor,
    /// `Forwarded: for=client` (RFC 7239).
    Forwarded,
}

impl From<ForwardedHeader> for ringfan::proxy::Scheme {
    fn from(h: ForwardedHeader) -> Self {
        match h {
            ForwardedHeader::XForwardedFor => Self::XForwardedFor,
            ForwardedHeader::Forwarded => Self::Forwarded,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Policy {
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
