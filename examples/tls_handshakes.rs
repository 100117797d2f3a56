//! How many TLS handshakes a second can one ringfan core complete, full and
//! resumed, and what does each cost the server in CPU?
//!
//! A reconnect storm over `wss://` is a storm of TLS handshakes before it
//! is a storm of WebSocket upgrades: a full TLS 1.3 handshake costs the
//! server an X25519 key share and an ECDSA P-256 signature (in memory,
//! rustls + aws-lc-rs did ~3,500 a second on one core of this project's
//! VM, both sides counted: `src/tls/mod.rs`), a resumed one only the key
//! share (~5,700/s). `ringfan-loadgen` holds connections and moves
//! messages; this measures the handshake alone, against the real binary,
//! so the figure includes everything the shard does around it (accept,
//! the ring, the per-turn handshake budget, `/healthz`, close_notify).
//!
//! Start the broker yourself, then point this at its TLS listener. Each of
//! `--threads` client threads loops: TCP connect, a rustls client
//! handshake (aws-lc-rs, X25519 first, TLS 1.3), `GET /healthz` over it,
//! read the 200, send `close_notify`, read to the server's EOF (the broker
//! closes first after `Connection: close`, so the client's ports are not
//! left in TIME_WAIT), close.
//!
//! * `--mode full`: client resumption off (`Resumption::disabled()`), so
//!   every handshake is full.
//! * `--mode resumed`: each thread keeps its own session store, primed by
//!   one full handshake before the timed window; every timed handshake is
//!   checked to have resumed (`handshake_kind() == Resumed`), and those
//!   that did not are counted and shown.
//! * `--mode both`: full, then resumed.
//!
//! Per mode it prints handshakes/s; the server's CPU seconds over the
//! window from /proc/PID/stat (utime + stime; 10 ms ticks, so use runs of
//! seconds), hence server CPU µs per handshake and the handshakes/s one
//! server core would do at that cost (1e6 / µs) — the figure to quote when
//! the server is not saturated; the client's own CPU as a share of one
//! core (when it nears `--threads`, the client is the limit, not the
//! server); p50/p99 of the TLS handshake (from after the TCP connect to
//! the client's Finished) and of the whole cycle; and, as a cross-check,
//! the deltas of the broker's `ringfan_tls_handshakes_total` by result,
//! from `/metrics` on `--metrics-addr` (plain HTTP) or, without it, over
//! TLS on `--addr` (that scrape's own full handshake, one per snapshot, is
//! taken out of the delta).
//!
//! Exit status 1 when a mode completed no handshake (the first error is
//! shown), 2 for bad arguments.
//!
//! The server's CPU includes the `/healthz` request and the close, which a
//! WebSocket upgrade would replace with a similar amount of work; it is
//! the cost of a short-lived TLS connection, of which the handshake is the
//! bulk.
//!
//! What to expect (a trial on this project's 2-core VM, shared with other
//! builds at the time, so indicative only: server `--shards 1` on CPU 0,
//! this on CPU 1 with 4 threads, 5 s per mode): full ~2,800/s with the
//! client at 97 % of its core (the limit: it verifies two ECDSA
//! signatures per handshake), the server at ~225 µs per handshake (~4,400/s
//! per core); resumed ~4,250/s, ~205 µs (~4,900/s per core). Resumption
//! saves the server little because TLS 1.3 resumption (psk_dhe_ke) still
//! does the X25519 exchange; `perf` on the server put ~13-17 % of its
//! time in SHA-512 blocks (the TLS_AES_256_GCM_SHA384 key schedule, in
//! AWS-LC's `nohw` code on this AMD CPU), ~12 % in X25519, ~5 % in the
//! P-256 signature (full only) and most of the rest in the kernel (TCP
//! setup and teardown, wake-ups).
//!
//! ```text
//! cargo build --release --bin ringfan --example tls_handshakes
//! taskset -c 0 target/release/ringfan --shards 1 --listen 127.0.0.1:8080 \
//!     --listen-tls 127.0.0.1:8443 --tls-cert chain.pem --tls-key key.pem &
//! target/release/examples/tls_handshakes --addr 127.0.0.1:8443 --ca ca.pem \
//!     --server-pid $! --metrics-addr 127.0.0.1:8080 --threads 2 --cpus 1 \
//!     --duration 5s --mode both
//! ```

use clap::{Parser, ValueEnum};
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, HandshakeKind};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "Full and resumed TLS handshakes per second against a running ringfan")]
struct Opts {
    /// The broker's TLS listener (`--listen-tls`).
    #[arg(long, default_value = "127.0.0.1:8443")]
    addr: SocketAddr,
    /// The name sent as SNI and checked against the certificate.
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// Trust the CA certificates in this PEM file; without it any
    /// certificate is trusted (its handshake signature is still checked,
    /// so the client's cost is the real one).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// The broker's PID, for its CPU time (/proc/PID/stat).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Plain HTTP address for `/metrics` (`--listen`); without it
    /// `/metrics` is fetched over TLS on --addr.
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
    /// Client threads, each one connection at a time.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Timed window per mode, e.g. 5s, 500ms.
    #[arg(long, default_value = "5s", value_parser = duration)]
    duration: Duration,
    #[arg(long, value_enum, default_value_t = Mode::Both)]
    mode: Mode,
    /// CPUs the client runs on, e.g. `1` or `1-3`.
    #[arg(long)]
    cpus: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Full,
    Resumed,
    Both,
}

/// `5s`, `500ms`, `2m`, or plain seconds.
fn duration(s: &str) -> Result<Duration, String> {
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("bad duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

/// CPUs this process may run on (after --cpus).
fn allowed_cpus() -> usize {
    // SAFETY: sched_getaffinity fills the zeroed set of the size passed.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return 1;
        }
        (libc::CPU_COUNT(&set) as usize).max(1)
    }
}

/// A process's user + system CPU seconds, from /proc/PID/stat.
fn proc_cpu_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after its ')'
    // start at 3 (state), so utime (14) and stime (15) are 11 and 12.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    Some(ticks as f64 / hz as f64)
}

/// This process's user + system CPU seconds (every thread).
fn own_cpu_s() -> f64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// What one connection's cycle took, and how its handshake went.
struct Cycle {
    kind: Option<HandshakeKind>,
    handshake: Duration,
    total: Duration,
    /// The response body (`/metrics` is read through the same path).
    body: Vec<u8>,
}

/// Connect, handshake, `GET path`, read the response (whose status must
/// be 200), close_notify, read to EOF.
fn https_get(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    name: &ServerName<'static>,
    path: &str,
) -> Result<Cycle, String> {
    let start = Instant::now();
    let mut sock = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    sock.set_nodelay(true)
        .map_err(|e| format!("nodelay: {e}"))?;
    // A broker that stops answering must not hang the run.
    let _ = sock.set_read_timeout(Some(Duration::from_secs(10)));
    let mut conn =
        ClientConnection::new(config.clone(), name.clone()).map_err(|e| format!("tls: {e}"))?;
    let hs_start = Instant::now();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)
            .map_err(|e| format!("handshake: {e}"))?;
    }
    let handshake = hs_start.elapsed();
    let kind = conn.handshake_kind();
    let body = {
        let mut tls = rustls::Stream::new(&mut conn, &mut sock);
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        tls.write_all(request.as_bytes())
            .map_err(|e| format!("request: {e}"))?;
        read_response(&mut tls)?
    };
    conn.send_close_notify();
    // The broker may have closed already (it answers `Connection: close`):
    // a failed write or read here changes nothing.
    while conn.wants_write() {
        if conn.write_tls(&mut sock).is_err() {
            break;
        }
    }
    let mut sink = [0u8; 4096];
    while matches!(sock.read(&mut sink), Ok(n) if n > 0) {}
    Ok(Cycle {
        kind,
        handshake,
        total: start.elapsed(),
        body,
    })
}

/// Reads one HTTP response with a Content-Length; its body.
fn read_response(r: &mut impl Read) -> Result<Vec<u8>, String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let status = head.split(' ').nth(1).unwrap_or("");
            if status != "200" {
                let line = head.lines().next().unwrap_or("");
                return Err(format!("response: {line:?}"));
            }
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .ok_or("response without Content-Length")?;
            let body_start = end + 4;
            while buf.len() < body_start + len {
                match r.read(&mut chunk) {
                    Ok(0) => return Err("EOF inside the response body".into()),
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(e) => return Err(format!("response: {e}")),
                }
            }
            return Ok(buf[body_start..body_start + len].to_vec());
        }
        match r.read(&mut chunk) {
            Ok(0) => return Err("EOF before the response".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("response: {e}")),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `ringfan_tls_handshakes_total` by result (full, resumed, failed,
/// incomplete).
type Counts = [u64; 4];
const RESULTS: [&str; 4] = ["full", "resumed", "failed", "incomplete"];

fn parse_metrics(text: &str) -> Counts {
    let mut c = [0; 4];
    // One series per shard and result:
    // ringfan_tls_handshakes_total{shard="0",result="full"} 12
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("ringfan_tls_handshakes_total{") else {
            continue;
        };
        let Some((labels, v)) = rest.split_once("} ") else {
            continue;
        };
        for (i, r) in RESULTS.iter().enumerate() {
            if labels.contains(&format!("result=\"{r}\"")) {
                c[i] += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    c
}

/// Where `/metrics` comes from.
struct Metrics {
    plain: Option<SocketAddr>,
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
}

impl Metrics {
    /// The counters now; `None` (with a note) if the scrape failed.
    fn scrape(&self) -> Option<Counts> {
        let body = match self.plain {
            Some(a) => plain_get(a, "/metrics"),
            None => https_get(self.addr, &self.config, &self.name, "/metrics").map(|c| c.body),
        };
        match body {
            Ok(b) => Some(parse_metrics(&String::from_utf8_lossy(&b))),
            Err(e) => {
                eprintln!("tls_handshakes: /metrics: {e}");
                None
            }
        }
    }
}

fn plain_get(addr: SocketAddr, path: &str) -> Result<Vec<u8>, String> {
    let mut sock = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    let _ = sock.set_read_timeout(Some(Duration::from_secs(10)));
    sock.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .map_err(|e| format!("request: {e}"))?;
    read_response(&mut sock)
}

/// One thread's results over the timed window.
#[derive(Default)]
struct Tally {
    handshakes: u64,
    not_resumed: u64,
    errors: u64,
    first_error: Option<String>,
    handshake_us: Vec<u32>,
    total_us: Vec<u32>,
}

/// A thread's config: `resumed` gets its own session store (a clone of
/// one config would share the store's `Arc` between threads).
fn thread_config(base: &ClientConfig, resumed: bool) -> Arc<ClientConfig> {
    let mut c = base.clone();
    c.resumption = if resumed {
        // Two tickets arrive per handshake (rustls' default); a few spare.
        Resumption::in_memory_sessions(16)
    } else {
        Resumption::disabled()
    };
    Arc::new(c)
}

/// Runs one mode and prints its figures; the handshakes it completed.
fn run_mode(opts: &Opts, base: &ClientConfig, metrics: &Metrics, resumed: bool) -> u64 {
    let name = &metrics.name;
    let threads = opts.threads.max(1);
    // Everyone primed (resumed) and the snapshots taken, then go.
    let ready = Arc::new(Barrier::new(threads + 1));
    let go = Arc::new(Barrier::new(threads + 1));
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (ready, go, stop) = (ready.clone(), go.clone(), stop.clone());
            let config = thread_config(base, resumed);
            let (addr, name) = (opts.addr, name.clone());
            std::thread::spawn(move || {
                let mut t = Tally::default();
                if resumed {
                    if let Err(e) = https_get(addr, &config, &name, "/healthz") {
                        t.first_error = Some(format!("priming: {e}"));
                    }
                }
                ready.wait();
                go.wait();
                while !stop.load(Ordering::Relaxed) {
                    match https_get(addr, &config, &name, "/healthz") {
                        Ok(c) => {
                            t.handshakes += 1;
                            if resumed && c.kind != Some(HandshakeKind::Resumed) {
                                t.not_resumed += 1;
                            }
                            t.handshake_us.push(c.handshake.as_micros() as u32);
                            t.total_us.push(c.total.as_micros() as u32);
                        }
                        Err(e) => {
                            t.errors += 1;
                            t.first_error.get_or_insert(e);
                            // A refused or reset connection fails fast: do
                            // not spin on it.
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                }
                t
            })
        })
        .collect();
    ready.wait();
    let before = metrics.scrape();
    let server0 = opts.server_pid.and_then(proc_cpu_s);
    let client0 = own_cpu_s();
    let start = Instant::now();
    go.wait();
    std::thread::sleep(opts.duration);
    stop.store(true, Ordering::Relaxed);
    let mut all = Tally::default();
    for h in handles {
        let t = h.join().unwrap_or_default();
        all.handshakes += t.handshakes;
        all.not_resumed += t.not_resumed;
        all.errors += t.errors;
        if all.first_error.is_none() {
            all.first_error = t.first_error;
        }
        all.handshake_us.extend(t.handshake_us);
        all.total_us.extend(t.total_us);
    }
    // The window ends when the last thread finished its last cycle.
    let wall = start.elapsed().as_secs_f64();
    let client_cpu = own_cpu_s() - client0;
    let server_cpu = opts
        .server_pid
        .and_then(proc_cpu_s)
        .zip(server0)
        .map(|(b, a)| b - a);
    let after = metrics.scrape();
    let window = Window {
        wall,
        client_cpu,
        server_cpu,
        counters: before.zip(after),
        scraped_over_tls: metrics.plain.is_none(),
    };
    report(opts, resumed, &mut all, &window);
    all.handshakes
}

/// What was measured around the timed window.
struct Window {
    /// Seconds from the start to the last thread's last cycle.
    wall: f64,
    /// This process's CPU seconds.
    client_cpu: f64,
    /// The broker's CPU seconds (with --server-pid).
    server_cpu: Option<f64>,
    /// `ringfan_tls_handshakes_total` before and after.
    counters: Option<(Counts, Counts)>,
    scraped_over_tls: bool,
}

fn report(opts: &Opts, resumed: bool, t: &mut Tally, w: &Window) {
    let Window {
        wall,
        client_cpu,
        server_cpu,
        counters,
        scraped_over_tls,
    } = *w;
    let n = t.handshakes;
    let mode = if resumed { "resumed" } else { "full" };
    println!(
        "\n== {mode}: {} client thread(s), {:.2} s ==",
        opts.threads.max(1),
        wall
    );
    println!(
        "handshakes            {n} ({:.0}/s), errors {}{}",
        n as f64 / wall,
        t.errors,
        if resumed {
            format!(", not resumed {}", t.not_resumed)
        } else {
            String::new()
        }
    );
    if let Some(e) = &t.first_error {
        println!("first error           {e}");
    }
    match server_cpu {
        Some(cpu) if n > 0 => {
            let us = cpu * 1e6 / n as f64;
            println!(
                "server CPU            {cpu:.2} s ({:.0} % of one core), {us:.0} µs per handshake = {:.0} handshakes/s per server core",
                cpu / wall * 100.0,
                1e6 / us
            );
        }
        Some(cpu) => println!("server CPU            {cpu:.2} s"),
        None => println!("server CPU            (no --server-pid)"),
    }
    // The client can use at most one core per thread, and only the CPUs
    // it may run on (--cpus).
    let ceiling = opts.threads.max(1).min(allowed_cpus());
    println!(
        "client CPU            {client_cpu:.2} s = {:.0} % of one core (the client is the limit near {} %)",
        client_cpu / wall * 100.0,
        ceiling * 100
    );
    for (what, v) in [
        ("TLS handshake", &mut t.handshake_us),
        ("whole cycle", &mut t.total_us),
    ] {
        v.sort_unstable();
        let p = |q: f64| v.get(((v.len() as f64 * q) as usize).min(v.len().saturating_sub(1)));
        if let (Some(p50), Some(p99)) = (p(0.50), p(0.99)) {
            println!("{what:<21} p50 {p50} µs, p99 {p99} µs");
        }
    }
    if let Some((a, b)) = counters {
        let mut d: Vec<i128> = (0..4).map(|i| b[i] as i128 - a[i] as i128).collect();
        if scraped_over_tls {
            // The closing scrape's own handshake (full: its config keeps
            // no sessions) is in `b`; the opening one's was in `a` already.
            d[0] -= 1;
        }
        let shown: Vec<String> = RESULTS
            .iter()
            .zip(&d)
            .map(|(r, v)| format!("{r} {v}"))
            .collect();
        let sum = d[0] + d[1];
        // Priming (resumed) happens before the first snapshot, so the two
        // sums should match exactly when nothing failed.
        println!(
            "broker's counters     {} (full + resumed {sum}, client counted {n})",
            shown.join(", ")
        );
    }
}

fn main() {
    let opts = Opts::parse();
    if let Some(spec) = &opts.cpus {
        if let Err(e) = ringfan::runtime::restrict_cpus(spec) {
            eprintln!("tls_handshakes: {e}");
            std::process::exit(2);
        }
    }
    let trust = match &opts.ca {
        Some(p) => ringfan::tls::Trust::Ca(p),
        None => ringfan::tls::Trust::Insecure,
    };
    let base = match ringfan::tls::client_config(trust) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tls_handshakes: --ca: {e}");
            std::process::exit(2);
        }
    };
    let name = ServerName::try_from(opts.server_name.clone()).unwrap_or_else(|e| {
        eprintln!("tls_handshakes: --server-name: {e}");
        std::process::exit(2);
    });
    let metrics = Metrics {
        plain: opts.metrics_addr,
        addr: opts.addr,
        config: thread_config(&base, false),
        name,
    };
    let modes: &[bool] = match opts.mode {
        Mode::Full => &[false],
        Mode::Resumed => &[true],
        Mode::Both => &[false, true],
    };
    println!(
        "tls_handshakes: {} as {:?}, {} thread(s), {:?} per mode",
        opts.addr,
        opts.server_name,
        opts.threads.max(1),
        opts.duration
    );
    let mut none = false;
    for &resumed in modes {
        none |= run_mode(&opts, &base, &metrics, resumed) == 0;
    }
    if none {
        // Nothing was measured: a script must not take the table as a figure.
        std::process::exit(1);
    }
}
