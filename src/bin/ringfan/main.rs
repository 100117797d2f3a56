//! `ringfan`: the broker binary.

mod args;
mod cluster;
mod layered;
mod logging;

use args::{AuthArgs, TlsArgs};
use ringfan::broker::{Broker, BrokerConfig, BrokerStats, Rate, MAX_SHARDS};
use ringfan::runtime::{Config, Server, TlsListen};
use ringfan::server::admin::AdminToken;
use ringfan::server::api_keys::ApiKeys;
use ringfan::server::auth::{AuthConfig, Gate, Mode};
use ringfan::server::static_files::StaticFiles;
use ringfan::server::{Node, Routes};
use ringfan::tls::{TlsServer, TlsSettings};
use std::sync::Arc;
use std::time::Duration;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The TLS listener the flags ask for, its certificates loaded; exits with
/// a message naming the file when they cannot be.
fn tls_listen(a: &TlsArgs) -> Option<TlsListen> {
    let addr = a.listen_tls?;
    if a.tls_cert.len() != a.tls_key.len() {
        logging::fatal(
            2,
            format_args!(
                "--tls-cert and --tls-key come in pairs: {} certificates, {} keys",
                a.tls_cert.len(),
                a.tls_key.len()
            ),
        );
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
        Err(e) => logging::fatal(2, format_args!("--tls-cert: {e}")),
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
        Err(e) => logging::fatal(2, format_args!("--auth: {e}")),
    }
}

/// SIGHUP reloads the keys and the denylist, the TLS certificates and the
/// `--static` files; a failed reload keeps the ones in use and says why.
/// Connections already open keep theirs either way.
fn reload_on_sighup(
    gate: Option<Arc<Gate>>,
    tls: Option<Arc<TlsServer>>,
    keys: Option<Arc<ApiKeys>>,
    files: Option<Arc<StaticFiles>>,
) {
    if gate.is_none() && tls.is_none() && keys.is_none() && files.is_none() {
        return;
    }
    let mut signals = match signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(
                event = "sighup_unwatched",
                error = %e,
                "cannot watch SIGHUP: keys and certificates will not reload"
            );
            return;
        }
    };
    std::thread::spawn(move || {
        for _ in signals.forever() {
            if let Some(gate) = &gate {
                match gate.reload() {
                    Ok(what) => {
                        println!("ringfan: reloaded {what}");
                        tracing::info!(
                            event = "reloaded",
                            what = "keys",
                            detail = what,
                            "reloaded"
                        );
                    }
                    Err(e) => logging::reload_failed(
                        "keys",
                        &e,
                        format_args!("reload failed, keeping the keys in use: {e}"),
                    ),
                }
            }
            if let Some(keys) = &keys {
                match keys.reload() {
                    Ok(n) => println!("ringfan: reloaded {n} publish key(s)"),
                    Err(e) => eprintln!(
                        "ringfan: publish key reload failed, keeping the keys in use: {e}"
                    ),
                }
            }
            if let Some(files) = &files {
                match files.reload() {
                    Ok(site) => println!(
                        "ringfan: reloaded {} static file(s), {} bytes",
                        site.files(),
                        site.bytes()
                    ),
                    Err(e) => {
                        eprintln!("ringfan: --static reload failed, keeping the files in use: {e}")
                    }
                }
            }
            if let Some(tls) = &tls {
                match tls.reload() {
                    Ok(()) => {
                        println!("ringfan: reloaded tls certificates");
                        tracing::info!(event = "reloaded", what = "tls", "reloaded");
                    }
                    Err(e) => logging::reload_failed(
                        "tls",
                        &e.to_string(),
                        format_args!("tls reload failed, keeping the certificates in use: {e}"),
                    ),
                }
            }
        }
    });
}

/// `--admin-listen` without an address, or only `--admin-token-file`.
const ADMIN_DEFAULT: std::net::SocketAddr =
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9081);

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
    // Flags over RINGFAN_* variables over the --config file (layered.rs).
    let args = layered::parse();
    logging::init(&args.log);
    for note in layered::notes() {
        tracing::warn!(target: "ringfan", event = "config_note", "{note}");
    }
    let has_origins = !args.allow_origins.is_empty();
    let defaults = Config::default();
    let tls = tls_listen(&args.tls);
    let tls_server = tls.as_ref().map(|t| t.server.clone());
    if args.listen.0.is_none() && tls.is_none() {
        logging::fatal(
            2,
            format_args!("--listen off needs --listen-tls: nothing would listen"),
        );
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
            deflate: args.deflate == args::Deflate::On,
        },
        handshake_timeout: Duration::from_secs(args.handshake_timeout),
        admin: match (args.admin_listen, &args.admin_token_file) {
            (Some(l), _) => l.0,
            (None, Some(_)) => Some(ADMIN_DEFAULT),
            (None, None) => None,
        },
        http_keepalive: Duration::from_secs(args.http_keepalive_timeout.max(1)),
        max_request_body: args.max_request_body,
        idle_ping: Duration::from_secs(args.idle_ping),
        pong_timeout: Duration::from_secs(args.pong_timeout),
        close_timeout: Duration::from_secs(args.close_timeout),
        drain_timeout: Duration::from_secs(args.drain_timeout),
        max_connections_per_shard: args.max_connections_per_shard,
        recv_buffer_size: args.recv_buffer_size,
        recv_buffers: args.recv_buffers,
        recv_buffers_max: args.recv_buffers_max,
        max_backlog: args.max_backlog_bytes,
        deflate_min: args.deflate_min_size,
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
        proxy: ringfan::proxy::ProxyConfig {
            protocol: args.proxy_protocol,
            trusted: ringfan::proxy::Trusted::new(args.trusted_proxy),
            scheme: args.forwarded_header.into(),
        },
        ..defaults
    };
    let shards = config.shards;
    if shards > MAX_SHARDS {
        logging::fatal(
            2,
            format_args!("--shards {shards}: at most {MAX_SHARDS} shards are supported"),
        );
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
        deflate: args.deflate == args::Deflate::On,
    };
    let routes = Routes {
        echo: args.echo && !args.no_echo,
        max_message_echo: args.max_message_echo,
    };
    let keys = args
        .publish_key_file
        .as_deref()
        .map(|path| match ApiKeys::load(path) {
            Ok(k) => Arc::new(k),
            Err(e) => {
                eprintln!("ringfan: --publish-key-file: {e}");
                std::process::exit(2);
            }
        });
    let admin_token = args
        .admin_token_file
        .as_deref()
        .map(|path| match AdminToken::load(path) {
            Ok(t) => Arc::new(t),
            Err(e) => {
                eprintln!("ringfan: --admin-token-file: {e}");
                std::process::exit(2);
            }
        });
    let files = args
        .static_dir
        .as_deref()
        .map(|dir| match StaticFiles::load(dir) {
            Ok(f) => Arc::new(f),
            Err(e) => {
                eprintln!("ringfan: --static: {e}");
                std::process::exit(2);
            }
        });
    let joined = match cluster::join(&args.cluster, shards) {
        Ok(j) => j,
        Err(e) => logging::fatal(2, format_args!("{e}")),
    };
    let link = joined.as_ref().map(|j| (j.link(), j.bridge.stats()));
    let gate = auth_gate(args.auth);
    let stats: Arc<[BrokerStats]> = (0..shards).map(|_| BrokerStats::default()).collect();
    let (shard_gate, shard_keys, shard_files) = (gate.clone(), keys.clone(), files.clone());
    let make = move |shard| {
        let mut b = Broker::new(broker.clone(), stats.clone());
        if let Some((l, _)) = &link {
            b = b.with_cluster(ringfan::server::cluster::broker_link(l, shard));
        }
        let mut node = Node::new(b, routes.clone());
        if let Some((_, bridge_stats)) = &link {
            node = node.with_cluster_stats(bridge_stats.clone());
        }
        if let Some(g) = &shard_gate {
            node = node.with_auth(g.clone());
        }
        if let Some(k) = &shard_keys {
            node = node.with_publish_keys(k.clone());
        }
        if let Some(t) = &admin_token {
            node = node.with_admin_token(t.clone());
        }
        if let Some(f) = &shard_files {
            node = node.with_static(f.clone());
        }
        node
    };
    let (bridge, inboxes) = match joined {
        Some(j) => (Some(j.bridge), Some(j.inboxes)),
        None => (None, None),
    };
    let started = match inboxes {
        Some(inboxes) => Server::start_with_inboxes(config, inboxes, make),
        None => Server::start(config, make),
    };
    let server = match started {
        Ok(s) => s,
        Err(e) => logging::fatal(1, format_args!("{e}")),
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
    if let Some(f) = &files {
        let site = f.site();
        println!(
            "ringfan: serving {} static file(s), {} bytes",
            site.files(),
            site.bytes()
        );
    }
    reload_on_sighup(gate, tls_server, keys, files);
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
    if let Some(addr) = server.admin_addr() {
        println!("ringfan: admin listening on {addr}");
    }
    if let Some(b) = &bridge {
        // What the other nodes' admin view shows for this one: the bound
        // address (a `:0` flag has its port only now).
        let addr = server.local_addr().or(server.tls_addr());
        b.advertise(addr.map(|a| a.to_string()).unwrap_or_default());
        println!(
            "ringfan: cluster joined through NATS {}",
            args.cluster.cluster.join(",")
        );
    }
    log_start(&server, shards);
    server.join();
    // The bridge outlives the shards: their last answers go out first.
    drop(bridge);
    tracing::info!(event = "stopped", "stopped");
}

/// The start-up events: the process, then each listener.
fn log_start(server: &Server, shards: usize) {
    let listeners: Vec<String> = (server.local_addr().iter().map(|a| format!("ws://{a}")))
        .chain(server.tls_addr().iter().map(|a| format!("wss://{a}")))
        .chain(
            server
                .admin_addr()
                .iter()
                .map(|a| format!("admin http://{a}")),
        )
        .collect();
    tracing::info!(
        event = "started",
        version = env!("CARGO_PKG_VERSION"),
        shards,
        listeners = listeners.join(" "),
        "started"
    );
    for (addr, tls) in server
        .local_addr()
        .map(|a| (a, false))
        .into_iter()
        .chain(server.tls_addr().map(|a| (a, true)))
    {
        tracing::info!(event = "listening", addr = %addr, tls, shards, "listening");
    }
    if let Some(addr) = server.admin_addr() {
        tracing::info!(event = "listening", addr = %addr, admin = true, shards, "listening");
    }
}
