//! Flags every scenario shares, and turning them into a [`Plan`].

use crate::limits::{self, PortRange, Ports};
use crate::plan::{self, Data, Endpoint, Plan, Publishing, Scenario, Via};
use clap::Args;
use ringfan::runtime::TlsDial;
use ringfan::tls::ServerName;
use ringfan::tls::Trust;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug, Clone, serde::Serialize)]
pub struct Common {
    /// The broker: ws://HOST:PORT/PATH, or wss:// (with --ca or
    /// --insecure). Several (comma-separated or repeated: the nodes of a
    /// cluster): subscribers are spread over them round-robin, each
    /// topic's evenly, and so are publishers unless --publish-url says.
    #[arg(long, value_delimiter = ',', default_value = "ws://127.0.0.1:8080/ws")]
    #[serde(serialize_with = "ser_urls")]
    pub url: Vec<String>,
    /// Where publishers connect instead: a URL, or the index (from 0) of
    /// one of --url; several (comma-separated or repeated) take publishers
    /// round-robin. E.g. `--url B,C --publish-url A`: publish on one
    /// node, deliver on the others.
    #[arg(long, value_delimiter = ',', value_name = "URL|INDEX")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub publish_url: Vec<String>,
    /// wss://: trust the CA certificates in this PEM file (the server's
    /// certificate must name the URL's host).
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    pub ca: Option<PathBuf>,
    /// wss://: trust any certificate (handshake signatures are still
    /// checked, so the handshake costs what it does for real clients).
    #[arg(long)]
    pub insecure: bool,
    /// Client shards (threads, each with its own io_uring). Each ring holds
    /// at most RLIMIT_NOFILE connections, so more connections than that
    /// need more shards; they are added automatically, with a note.
    #[arg(long, default_value_t = 1)]
    pub shards: usize,
    /// CPUs to run on, e.g. `1` or `2-5,8`; shards are pinned over them.
    #[arg(long)]
    pub cpus: Option<String>,
    /// Source addresses 127.0.0.1 … 127.0.0.K to spread connections over.
    /// 0 = enough for the connection count when the target is loopback
    /// (each takes 90 % of the ports connect() gets fast: half of
    /// net.ipv4.ip_local_port_range, 14,116 on a stock kernel), none
    /// otherwise.
    #[arg(long, default_value_t = 0)]
    pub sources: usize,
    /// Bind each connection's source port exactly, from LO-HI (e.g.
    /// 1024-65535), instead of letting the kernel pick from its ephemeral
    /// range: every port of the range is as fast as the first, and the
    /// range is not the kernel's. A port another socket holds is skipped.
    /// Each port carries one connection per broker address (--url).
    #[arg(long, value_parser = crate::limits::parse_ports, value_name = "LO-HI")]
    #[serde(skip)]
    pub source_ports: Option<(u16, u16)>,
    /// After publishing stops, how long to wait for deliveries in flight
    /// before the missing ones count as lost [default: 5s; conns: 60s].
    #[arg(long, value_parser = duration)]
    #[serde(serialize_with = "ser_opt_duration")]
    pub grace: Option<Duration>,
    /// Offer permessage-deflate (RFC 7692) on every connection; compressed
    /// messages from the broker are inflated, and the report gives the
    /// bytes received per delivery (`client_rx_bytes_per_delivery`).
    #[arg(long)]
    pub deflate: bool,
    /// Handshakes in flight per shard while connecting.
    #[arg(long, default_value_t = 256)]
    pub connect_window: usize,
    /// Give up on a connection whose connect + handshake takes longer.
    #[arg(long, default_value = "30s", value_parser = duration)]
    #[serde(serialize_with = "ser_duration")]
    pub connect_timeout: Duration,
    /// How often each shard checks its send schedule. Latency counts from
    /// the intended time, so a coarse tick shows up in the figures (and in
    /// the send lag), never hides [default: 100us; conns: 5ms].
    #[arg(long, value_parser = duration)]
    #[serde(serialize_with = "ser_opt_duration")]
    pub tick: Option<Duration>,
    /// The broker's PID: report its resident memory per connection and its
    /// CPU time per delivery (from /proc).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Write every figure and the run's parameters as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write latency percentiles and throughput over time as SVG.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// No live progress line.
    #[arg(long, short)]
    pub quiet: bool,
    /// Exit with status 0 even when the run found problems (loss,
    /// duplicates, reordering, failed connections, `err` replies): report
    /// them only. Without it such a run exits with status 3.
    #[arg(long)]
    pub report_only: bool,
    #[command(flatten)]
    pub auth: crate::auth::AuthArgs,
    /// Accepted for old scripts and ignored: exiting with status 3 on
    /// problems is the default now (see --report-only).
    #[arg(long, hide = true, conflicts_with = "report_only")]
    #[serde(skip)]
    pub strict: bool,
}

/// How publishers publish, for the scenarios that publish on a schedule
/// (fanout, feed, storm).
#[derive(Args, Debug, Clone, serde::Serialize)]
pub struct Publish {
    /// `ws`: each publisher is a WebSocket connection sending `pub`s.
    /// `http`: each publisher is an HTTP/1.1 keep-alive connection sending
    /// `POST /publish` to the same host and port (https for a wss://
    /// URL), on a thread of its own; in closed loop --window requests are pipelined
    /// on it.
    #[arg(long, value_enum, default_value_t = PublishVia::Ws)]
    pub publish_via: PublishVia,
    /// Messages per HTTP request (`{"messages":[…]}` when above 1), at
    /// most 10,000 (the broker's limit). Closed loop sends full batches;
    /// open loop sends what is due, up to this many a request.
    #[arg(long, default_value_t = 1)]
    pub batch: u32,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishVia {
    Ws,
    Http,
}

/// The broker's most messages in one `POST /publish`.
pub const MAX_BATCH: u32 = 10_000;

impl Publish {
    pub fn via(&self) -> Result<Via, String> {
        match self.publish_via {
            PublishVia::Ws if self.batch != 1 => Err(format!(
                "--batch {} needs --publish-via http (a WebSocket `pub` carries one message)",
                self.batch
            )),
            PublishVia::Ws => Ok(Via::Ws),
            PublishVia::Http if !(1..=MAX_BATCH).contains(&self.batch) => Err(format!(
                "--batch must be 1 to {MAX_BATCH} messages a request (got {})",
                self.batch
            )),
            PublishVia::Http => Ok(Via::Http { batch: self.batch }),
        }
    }
}

/// The measured window, for the scenarios that publish on a schedule
/// (`conns` broadcasts once instead).
#[derive(Args, Debug, Clone, serde::Serialize)]
pub struct Timing {
    /// Measured time, after the warm-up (e.g. 10s, 500ms, 2m).
    #[arg(long, default_value = "10s", value_parser = duration)]
    #[serde(serialize_with = "ser_duration")]
    pub duration: Duration,
    /// Publishing before measuring starts (counted, not timed).
    #[arg(long, default_value = "2s", value_parser = duration)]
    #[serde(serialize_with = "ser_duration")]
    pub warmup: Duration,
}

impl Timing {
    /// No measured window: `conns`.
    pub const NONE: Timing = Timing {
        duration: Duration::ZERO,
        warmup: Duration::ZERO,
    };
}

/// Durations read back as they were given (`2.5s`), not as serde's
/// `{secs, nanos}`.
pub fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{}s", d.as_secs_f64()))
}

pub fn ser_opt_duration<S: serde::Serializer>(
    d: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_duration(d, s),
        None => s.serialize_none(),
    }
}

/// The URLs as given to one `--url`, comma-separated: a single URL reads
/// as it always did.
fn ser_urls<S: serde::Serializer>(urls: &[String], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&urls.join(","))
}

impl Common {
    /// The broker URLs as the report names them (comma-separated), with
    /// where publishers go when --publish-url says.
    pub fn target(&self) -> String {
        let urls = self.url.join(",");
        match resolve_publish(&self.url, &self.publish_url) {
            Ok(p) if !p.is_empty() => format!("{urls} (publishing to {})", p.join(",")),
            _ => urls,
        }
    }
}

/// --publish-url's entries as URLs: an index picks one of --url.
pub fn resolve_publish(urls: &[String], publish: &[String]) -> Result<Vec<String>, String> {
    publish
        .iter()
        .map(|p| match p.trim().parse::<usize>() {
            Ok(i) => urls.get(i).cloned().ok_or_else(|| {
                format!(
                    "--publish-url {i}: there are {} --url(s), indexed from 0",
                    urls.len()
                )
            }),
            Err(_) => Ok(p.trim().to_string()),
        })
        .collect()
}

/// `10`, `10s`, `250ms`, `100us`, `2m`.
pub fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let v: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "s" => v,
        "ms" => v / 1e3,
        "us" | "µs" => v / 1e6,
        "m" => v * 60.0,
        _ => return Err(format!("bad duration unit in {s:?} (use s, ms, us, m)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("bad duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A parsed `--url`: where to connect, the request path, and for wss://
/// the host name the certificate must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub addr: SocketAddr,
    pub path: String,
    pub tls_host: Option<String>,
}

/// ws://HOST:PORT/PATH or wss://HOST:PORT/PATH (default ports 80, 443).
pub fn parse_url(url: &str) -> Result<Url, String> {
    let (rest, tls, default_port) = if let Some(r) = url.strip_prefix("ws://") {
        (r, false, 80)
    } else if let Some(r) = url.strip_prefix("wss://") {
        (r, true, 443)
    } else {
        return Err(format!(
            "--url must start with ws:// or wss:// (got {url:?})"
        ));
    };
    let (hostport, path) = rest
        .find('/')
        .map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    let (host, hostport) = match hostport.rfind(':') {
        Some(i) if !hostport.ends_with(']') => (&hostport[..i], hostport.to_string()),
        _ => (hostport, format!("{hostport}:{default_port}")),
    };
    let addr = hostport
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {hostport}: {e}"))?
        .next()
        .ok_or_else(|| format!("{hostport} resolves to nothing"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok(Url {
        addr,
        path: path.to_string(),
        tls_host: tls.then(|| host.to_string()),
    })
}

/// The brokers of `--url` (or of `--publish-url`), parsed, each with
/// the TLS side of its dial.
fn endpoints(c: &Common, urls: &[String]) -> Result<Vec<Endpoint>, String> {
    urls.iter()
        .map(|u| {
            let url = parse_url(u.trim())?;
            let tls = tls_dial(c, &url)?;
            Ok(Endpoint {
                addr: url.addr,
                path: url.path,
                tls,
            })
        })
        .collect()
}

/// The TLS side of every connection for a wss:// URL (`None` for ws://).
fn tls_dial(c: &Common, url: &Url) -> Result<Option<TlsDial>, String> {
    let Some(host) = &url.tls_host else {
        let any_tls = c
            .url
            .iter()
            .chain(&c.publish_url)
            .any(|u| u.trim().starts_with("wss://"));
        if (c.ca.is_some() || c.insecure) && !any_tls {
            return Err("--ca and --insecure are for wss:// URLs".into());
        }
        return Ok(None);
    };
    let trust = match (&c.ca, c.insecure) {
        (Some(ca), _) => Trust::Ca(ca),
        (None, true) => Trust::Insecure,
        (None, false) => return Err(
            "wss:// needs --ca FILE (the CA that signed the server's certificate) or --insecure"
                .into(),
        ),
    };
    let config = ringfan::tls::client_config(trust).map_err(|e| format!("--ca: {e}"))?;
    let name = ServerName::try_from(host.clone())
        .map_err(|e| format!("--url: {host:?} is not a host name or address: {e}"))?;
    Ok(Some(TlsDial { config, name }))
}

/// What a scenario asks of the run; `plan` adds the common flags and the
/// layout (shards, source addresses).
pub struct Load {
    pub scenario: Scenario,
    pub timing: Timing,
    /// Conns: how long to hold every connection before the broadcast.
    pub hold: Duration,
    /// Subscribe with `snapshot: true`.
    pub snapshot: bool,
    pub topics: Vec<String>,
    pub subs_per_topic: Vec<u64>,
    pub publishers: u64,
    pub echoers: u64,
    pub rate: f64,
    pub window: u32,
    pub payload: usize,
    pub data: Data,
    pub publishing: Publishing,
    pub via: Via,
}

impl Load {
    /// A load of `scenario` with nothing in it yet (no topics or
    /// connections, closed loop, one in flight, empty payloads, no hold or
    /// snapshot), for a scenario to fill in what it has.
    pub fn of(scenario: Scenario, timing: Timing) -> Self {
        Load {
            scenario,
            timing,
            hold: Duration::ZERO,
            snapshot: false,
            topics: Vec::new(),
            subs_per_topic: Vec::new(),
            publishers: 0,
            echoers: 0,
            rate: 0.0,
            window: 1,
            payload: 0,
            data: Data::Pad,
            publishing: Publishing::Uniform,
            via: Via::Ws,
        }
    }
}

pub fn plan(c: &Common, load: Load) -> Result<Plan, String> {
    let Load {
        scenario,
        timing,
        hold,
        snapshot,
        topics,
        subs_per_topic,
        publishers,
        echoers,
        rate,
        window,
        payload,
        data,
        publishing,
        via,
    } = load;
    if c.url.is_empty() {
        return Err("--url: no broker given".into());
    }
    let targets = endpoints(c, &c.url)?;
    let publish = resolve_publish(&c.url, &c.publish_url)?;
    if !publish.is_empty() && publishers == 0 {
        return Err(format!(
            "--publish-url: {} has no publishers",
            scenario.name()
        ));
    }
    let publish_targets = endpoints(c, &publish)?;
    let auth = c.auth.resolve()?;
    if !(rate >= 0.0 && rate.is_finite()) {
        return Err("--rate must be >= 0".into());
    }
    let subscribers: u64 = subs_per_topic.iter().sum();
    let ws_publishers = if via == Via::Ws { publishers } else { 0 };
    let total = subscribers + ws_publishers + echoers;
    // Each shard's ring can hold RLIMIT_NOFILE connections (the kernel caps
    // a direct descriptor table there), less some headroom.
    let per_ring = per_ring();
    let mut shards = c.shards.max(1);
    let needed = total.div_ceil(per_ring) as usize;
    if needed > shards {
        eprintln!(
            "ringfan-loadgen: {total} connections need at least {needed} shards at RLIMIT_NOFILE {}; using {needed}",
            per_ring + 256
        );
        shards = needed;
    }
    let ports = match c.source_ports {
        Some((lo, hi)) => Ports::Explicit { lo, hi },
        None => Ports::Kernel(PortRange::read()?),
    };
    // Loopback sources only when every broker is on IPv4 loopback.
    let loopback = plan::all_loopback(targets.iter().chain(&publish_targets));
    let sources = if c.sources > 0 {
        plan::loopback_sources(c.sources)
    } else if loopback {
        plan::loopback_sources(ports.sources_for(total))
    } else {
        Vec::new()
    };
    let in_flight = (shards * c.connect_window.max(1)) as u64;
    let share = plan::port_share(sources.len(), &targets);
    let verdict = limits::check(total, &sources, &ports, share, in_flight, loopback);
    if verdict.fatal {
        return Err(verdict.line);
    }
    if verdict.slow || !c.quiet {
        eprintln!("ringfan-loadgen: {}", verdict.line);
    }
    let mut p = Plan {
        scenario,
        endpoints: targets,
        publish_endpoints: publish_targets,
        topics,
        subs_per_topic,
        subscribers,
        publishers,
        echoers,
        rate,
        window: window.max(1),
        payload,
        data,
        publishing,
        via,
        burst: None,
        warmup: timing.warmup,
        duration: timing.duration,
        grace: c.grace.unwrap_or(scenario.default_grace()),
        hold,
        sources,
        source_ports: c.source_ports,
        shards,
        connect_window: c.connect_window.max(1),
        deflate: c.deflate,
        connect_timeout: c.connect_timeout,
        tick: c
            .tick
            .unwrap_or(scenario.default_tick())
            .max(Duration::from_micros(10)),
        snapshot,
        storm: None,
        held_apart: false,
        auth,
        prefix: Vec::new(),
    };
    p.seal();
    Ok(p)
}

/// Connections one client shard's ring can hold: RLIMIT_NOFILE (the
/// kernel caps a direct descriptor table there), less some headroom.
pub fn per_ring() -> u64 {
    ringfan::runtime::raise_fd_limit()
        .saturating_sub(256)
        .max(1)
}

/// Restrict this process (and the shards it starts, which pin themselves
/// over the allowed CPUs) to `spec`, e.g. `1` or `0-3,8`.
pub fn pin(spec: &Option<String>) -> Result<(), String> {
    match spec {
        Some(spec) => ringfan::runtime::restrict_cpus(spec),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(duration("100us").unwrap(), Duration::from_micros(100));
        assert_eq!(duration("2m").unwrap(), Duration::from_secs(120));
        assert!(duration("ten").is_err());
        assert!(duration("5h").is_err());
    }

    #[test]
    fn urls() {
        let Url {
            addr: a,
            path: p,
            tls_host,
        } = parse_url("ws://127.0.0.1:9000/ws").unwrap();
        assert_eq!(tls_host, None);
        assert_eq!(a, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(p, "/ws");
        let p = parse_url("ws://127.0.0.1:9000").unwrap().path;
        assert_eq!(p, "/");
        assert!(parse_url("http://x").is_err());
        let u = parse_url("wss://localhost:9443/ws").unwrap();
        assert_eq!(u.tls_host.as_deref(), Some("localhost"));
        assert_eq!((u.addr.port(), u.path.as_str()), (9443, "/ws"));
        let u = parse_url("wss://127.0.0.1").unwrap();
        assert_eq!(
            (u.addr.port(), u.tls_host.as_deref()),
            (443, Some("127.0.0.1"))
        );
    }
}
