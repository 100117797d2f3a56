//! Fan-out measurement client for `docs/bench-broker.md`.
//!
//! ```text
//! cargo build --release --bin ringfan --examples
//! # 1 topic x 1,000 subscribers, publish as fast as the ack window allows:
//! target/release/examples/fanout_bench --subs 1000 --rate 0
//! # the same at a fixed offered rate (publishes/s, all publishers together):
//! target/release/examples/fanout_bench --subs 1000 --rate 1000
//! # 1,000 topics x 10,000 subscribers x 10 publishers at 100,000 publishes/s:
//! target/release/examples/fanout_bench --topics 1000 --subs 10000 --pubs 10 --rate 100000
//! ```
//!
//! Each run starts a fresh `taskset -c <server-cpu> ringfan --listen
//! 127.0.0.1:0 --shards 1 [--server-arg ...]` (or uses `--server ADDR`
//! with `--server-pid`), pins this process to `--client-cpu` and runs
//! everything on one current-thread tokio runtime: raw `TcpStream`s, the
//! crate's own sans-IO client handshake and frame decoder
//! (`Connection::client()`), no tungstenite, no per-message JSON parse.
//!
//! Subscribers (`--subs`, subscriber i on topic `bench.t<i % topics>`)
//! connect and subscribe (with an ack) before any publish. Publishers
//! (`--pubs`) then publish `data = {"t":<intended send time, ns>,"w":<time
//! the write was issued, ns>,"p":"xx.."}`, padded to exactly `--size` bytes,
//! publisher p's k-th message to topic `(k * pubs + p) % topics`.
//!
//! * `--rate R` (> 0): open loop, R publishes/s in total; message k of a
//!   publisher is due at `start + k / (R / pubs)`, and its latency is taken
//!   from that intended time, so a late client or a stalled socket shows
//!   up as latency (no coordinated omission). The tokio timer has 1 ms
//!   granularity: `w` records when the write was really issued, and the
//!   "from write" columns exclude the client's scheduling lag.
//! * `--rate 0`: as fast as possible with at most `--in-flight` publishes
//!   per publisher unacknowledged (`--window ack`, each pub carries an
//!   `id`), or not yet received by every subscriber of the topic
//!   (`--window delivered`, end-to-end; single topic only).
//!
//! Each received `msg` is checked with a cheap scan (prefix, `"seq":`,
//! `"t":`, `"w":`): seq gaps and duplicates per subscriber, latency into a
//! log-linear histogram (32 sub-buckets per power of two, values reported
//! as bucket upper bounds: at most 3.2 % high). After `--warmup` seconds a
//! `--secs` window counts deliveries, publishes, latencies, and CPU time
//! (utime+stime from /proc/<server pid>/stat and /proc/self/stat) and the
//! server's own counters from /metrics. After the window publishing stops
//! and the client waits for the stream to go quiet, then checks that every
//! still-open subscriber saw its topic's last seq.
//!
//! On a shared machine, `--max-other F` / `--max-steal F` discard (and
//! repeat, up to `--max-attempts`) runs in which other processes used more
//! than F of either core, or the hypervisor stole more than F, during the
//! window; `--wait-quiet S` waits up to S seconds for both cores to be idle
//! before each attempt. Results and method: `docs/bench-broker.md`.

use clap::{Parser, ValueEnum};
use ringfan::ws::client::ClientHandshake;
use ringfan::ws::frame::client_frame;
use ringfan::ws::{Connection, Event, OpCode, Read};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::poll_fn;
use std::io::{BufRead, BufReader, Read as _};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::sync::OnceLock;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser, Debug, Clone)]
#[command(about = "ringfan fan-out benchmark client")]
struct Cli {
    /// ringfan binary to start per run.
    #[arg(long, default_value = "target/release/ringfan")]
    ringfan: String,
    /// Use a running server instead of starting one.
    #[arg(long)]
    server: Option<SocketAddr>,
    /// The running server's pid (for its CPU time), with --server.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Extra argument for ringfan (repeatable), e.g.
    /// --server-arg=--max-queued-bytes=16777216
    #[arg(long = "server-arg", allow_hyphen_values = true)]
    server_args: Vec<String>,
    #[arg(long, default_value_t = 0)]
    server_cpu: usize,
    #[arg(long, default_value_t = 1)]
    client_cpu: usize,
    #[arg(long, default_value_t = 1)]
    topics: usize,
    #[arg(long, default_value_t = 1000)]
    subs: usize,
    #[arg(long, default_value_t = 1)]
    pubs: usize,
    /// Offered publishes per second, all publishers together; 0 = as fast
    /// as the in-flight window allows.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// With --rate 0: publishes in flight per publisher.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// With --rate 0: what ends "in flight".
    #[arg(long, value_enum, default_value_t = Window::Ack)]
    window: Window,
    /// Bytes of `data` per publish.
    #[arg(long, default_value_t = 100)]
    size: usize,
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    #[arg(long, default_value_t = 10.0)]
    secs: f64,
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Connections opened concurrently while setting up.
    #[arg(long, default_value_t = 500)]
    connect_batch: usize,
    /// Discard and repeat a run when processes other than this client and
    /// the server kept either core busy for more than this fraction of the
    /// window (the machine is shared); 1 keeps every run.
    #[arg(long, default_value_t = 1.0)]
    max_other: f64,
    /// Before each attempt, wait (at most this many seconds) until both
    /// cores were less than 10% busy for two seconds in a row.
    #[arg(long, default_value_t = 0.0)]
    wait_quiet: f64,
    /// Discard and repeat a run when the hypervisor stole more than this
    /// fraction of the window (steal time of both cores added up).
    #[arg(long, default_value_t = 1.0)]
    max_steal: f64,
    /// Most runs attempted in all, discarded ones included.
    #[arg(long, default_value_t = 12)]
    max_attempts: usize,
    /// The shared receive buffer, bytes.
    #[arg(long, default_value_t = 256 * 1024)]
    read_buf: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Window {
    Ack,
    Delivered,
}

fn main() {
    let cli = Cli::parse();
    assert!(cli.topics >= 1 && cli.subs >= cli.topics && cli.pubs >= 1);
    if cli.rate == 0.0 && cli.window == Window::Delivered {
        assert_eq!(cli.topics, 1, "--window delivered needs --topics 1");
    }
    pin_self(cli.client_cpu);
    epoch();
    println!(
        "fanout_bench: {} topic(s) x {} subscribers, {} publisher(s), rate {}, size {} B, \
         warm-up {} s + window {} s, server taskset -c {} --shards 1 {:?}, client cpu {}",
        cli.topics,
        cli.subs,
        cli.pubs,
        if cli.rate > 0.0 {
            format!("{} publishes/s offered", cli.rate)
        } else {
            format!("max ({:?} window {})", cli.window, cli.in_flight)
        },
        cli.size,
        cli.warmup,
        cli.secs,
        cli.server_cpu,
        cli.server_args,
        cli.client_cpu
    );
    let mut results = Vec::new();
    let mut attempts = 0;
    while results.len() < cli.runs && attempts < cli.max_attempts {
        attempts += 1;
        if cli.wait_quiet > 0.0 {
            wait_quiet(&cli, Duration::from_secs_f64(cli.wait_quiet));
        }
        let server = match cli.server {
            Some(a) => ServerHandle::External(a, cli.server_pid),
            None => ServerHandle::start(&cli),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let r = rt.block_on(run_once(&cli, server.addr(), server.pid()));
        drop(rt);
        drop(server);
        let other = r.other_srv.max(r.other_cli) / r.secs;
        let steal = r.steal / r.secs;
        if steal > cli.max_steal {
            println!(
                "attempt {attempts}: discarded: steal {:.0}% (limit {:.0}%): {}",
                steal * 100.0,
                cli.max_steal * 100.0,
                r.line()
            );
        } else if other > cli.max_other {
            println!(
                "attempt {attempts}: discarded: other processes kept a core {:.0}% busy \
                 (limit {:.0}%): {}",
                other * 100.0,
                cli.max_other * 100.0,
                r.line()
            );
        } else {
            println!(
                "run {} (attempt {attempts}): {}",
                results.len() + 1,
                r.line()
            );
            results.push(r);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    if results.len() < cli.runs {
        println!(
            "only {} of {} runs were clean in {attempts} attempts",
            results.len(),
            cli.runs
        );
    }
    summary(&cli, &results);
}

// ------------------------------------------------------------- server

enum ServerHandle {
    Spawned(Child, SocketAddr),
    External(SocketAddr, Option<u32>),
}

impl ServerHandle {
    fn start(cli: &Cli) -> Self {
        let mut cmd = Command::new("taskset");
        cmd.args(["-c", &cli.server_cpu.to_string(), &cli.ringfan])
            .args(["--listen", "127.0.0.1:0", "--shards", "1"])
            .args(&cli.server_args);
        // The server dies with this process, however it ends.
        // SAFETY: prctl is async-signal-safe; nothing else runs in the child.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn taskset {}: {e}", cli.ringfan));
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("listening on") {
            line.clear();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "ringfan exited before listening"
            );
        }
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = out.read_to_end(&mut sink);
        });
        let addr = line
            .split_whitespace()
            .find_map(|w| w.parse().ok())
            .expect("address in the listening line");
        ServerHandle::Spawned(child, addr)
    }

    fn addr(&self) -> SocketAddr {
        match self {
            Self::Spawned(_, a) | Self::External(a, _) => *a,
        }
    }

    /// taskset execs ringfan, so the child's pid is ringfan's.
    fn pid(&self) -> Option<u32> {
        match self {
            Self::Spawned(c, _) => Some(c.id()),
            Self::External(_, p) => *p,
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Self::Spawned(c, _) = self {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Wait until the server's and the client's cores were both under 10%
/// busy for two consecutive one-second samples, or `limit` passed.
fn wait_quiet(cli: &Cli, limit: Duration) {
    let t0 = Instant::now();
    let mut calm = 0;
    let mut prev = cpu_busy();
    while t0.elapsed() < limit {
        std::thread::sleep(Duration::from_secs(1));
        let now = cpu_busy();
        let busy = |i: usize| match (prev.get(i), now.get(i)) {
            (Some(a), Some(b)) => b.0 - a.0,
            _ => 0.0,
        };
        let worst = busy(cli.server_cpu).max(busy(cli.client_cpu));
        prev = now;
        calm = if worst < 0.10 { calm + 1 } else { 0 };
        if calm >= 2 {
            return;
        }
    }
    println!(
        "(machine not quiet after {:.0} s; going ahead)",
        limit.as_secs_f64()
    );
}

fn pin_self(cpu: usize) {
    let ok = core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
    assert!(ok, "could not pin to cpu {cpu}");
}

/// utime + stime of a process (all threads), seconds.
fn cpu_secs(pid: &str) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / hz
}

/// Per CPU from /proc/stat: (busy, steal) seconds, busy = user + nice +
/// system + irq + softirq.
fn cpu_busy() -> Vec<(f64, f64)> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let s = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    let mut out = Vec::new();
    for l in s.lines() {
        let mut w = l.split_whitespace();
        let Some(name) = w.next() else { continue };
        if !name.starts_with("cpu") || name == "cpu" {
            continue;
        }
        let f: Vec<u64> = w.filter_map(|x| x.parse().ok()).collect();
        if f.len() < 8 {
            continue;
        }
        let busy = f[0] + f[1] + f[2] + f[5] + f[6];
        out.push((busy as f64 / hz, f[7] as f64 / hz));
    }
    out
}

/// The broker's counters from /metrics (name without the `ringfan_` prefix).
async fn metrics(addr: SocketAddr) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return out;
    };
    if s.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n")
        .await
        .is_err()
    {
        return out;
    }
    let mut body = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut body)).await;
    for l in String::from_utf8_lossy(&body).lines() {
        if let Some(rest) = l.strip_prefix("ringfan_") {
            if let Some((k, v)) = rest.split_once(' ') {
                if let Ok(v) = v.trim().parse() {
                    out.insert(k.to_string(), v);
                }
            }
        }
    }
    out
}

// ------------------------------------------------------------- time

fn epoch() -> Instant {
    static E: OnceLock<Instant> = OnceLock::new();
    *E.get_or_init(Instant::now)
}

#[inline]
fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

fn at_ns(ns: u64) -> tokio::time::Instant {
    tokio::time::Instant::from_std(epoch() + Duration::from_nanos(ns))
}

// ------------------------------------------------------------- histogram

/// Log-linear: exact below 64, then 32 buckets per power of two.
struct Hist {
    b: Vec<u64>,
    n: u64,
    max: u64,
}

const HIST_BUCKETS: usize = 60 * 32;

impl Hist {
    fn new() -> Self {
        Self {
            b: vec![0; HIST_BUCKETS],
            n: 0,
            max: 0,
        }
    }

    #[inline]
    fn idx(v: u64) -> usize {
        if v < 64 {
            v as usize
        } else {
            let e = 63 - v.leading_zeros();
            ((e - 4) * 32 + ((v >> (e - 5)) as u32 - 32)) as usize
        }
    }

    /// Largest value that falls in bucket `i`.
    fn upper(i: usize) -> u64 {
        if i < 64 {
            i as u64
        } else {
            let e = (i / 32 + 4) as u32;
            let m = (i % 32 + 32) as u64;
            ((m + 1) << (e - 5)) - 1
        }
    }

    #[inline]
    fn record(&mut self, v: u64) {
        self.b[Self::idx(v)] += 1;
        self.n += 1;
        self.max = self.max.max(v);
    }

    fn pct(&self, p: f64) -> u64 {
        if self.n == 0 {
            return 0;
        }
        let want = ((p * self.n as f64).ceil() as u64).clamp(1, self.n);
        let mut acc = 0;
        for (i, &c) in self.b.iter().enumerate() {
            acc += c;
            if acc >= want {
                return Self::upper(i).min(self.max);
            }
        }
        self.max
    }
}

// ------------------------------------------------------------- shared state

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

struct Shared {
    phase: Cell<u8>,
    ready: Cell<usize>,
    failed: Cell<usize>,
    first_failure: RefCell<Option<String>>,
    /// Deliveries inside the window, and ever.
    delivered: Cell<u64>,
    delivered_total: Cell<u64>,
    /// Missing seqs (sum of gap sizes), gap events, duplicates/reorders.
    missing: Cell<u64>,
    gaps: Cell<u64>,
    dups: Cell<u64>,
    unparsed: Cell<u64>,
    /// Subscribers closed by the server, by close code (0: none given);
    /// EOF without close; protocol failures.
    closed: RefCell<BTreeMap<u16, usize>>,
    close_reasons: RefCell<BTreeMap<String, usize>>,
    eof: Cell<usize>,
    failures: Cell<usize>,
    /// Latency from the intended send time, and from the write.
    hist_t: RefCell<Hist>,
    hist_w: RefCell<Hist>,
    /// Publishes issued inside the window, and per topic ever.
    published: Cell<u64>,
    sent_per_topic: RefCell<Vec<u64>>,
    acks: Cell<u64>,
    errs: Cell<u64>,
    first_err: RefCell<Option<String>>,
    /// Per subscriber: last seq seen, and whether it is still open.
    last_seq: RefCell<Vec<u64>>,
    open: RefCell<Vec<bool>>,
    /// Shared receive buffer (one task reads at a time).
    scratch: RefCell<Vec<u8>>,
    /// --window delivered: per-seq delivery counts (ring), the watermark
    /// below which every subscriber has every seq, the waiting publisher.
    ring: RefCell<Vec<u32>>,
    done_upto: Cell<u64>,
    waiters: RefCell<Vec<Waker>>,
    open_count: Cell<usize>,
}

impl Shared {
    fn fail(&self, what: String) {
        self.failed.set(self.failed.get() + 1);
        self.first_failure.borrow_mut().get_or_insert(what);
    }

    fn wake_publishers(&self) {
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    fn bump(c: &Cell<u64>, n: u64) {
        c.set(c.get() + n);
    }
}

// ------------------------------------------------------------- connections

async fn connect(addr: SocketAddr, nodelay: bool) -> Result<(TcpStream, Vec<u8>), String> {
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    s.set_nodelay(nodelay).map_err(|e| e.to_string())?;
    let (hs, req) = ClientHandshake::new(&addr.to_string(), "/ws", &[]);
    s.write_all(&req).await.map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::with_capacity(1024);
    loop {
        let mut chunk = [0u8; 1024];
        let n = s.read(&mut chunk).await.map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("EOF during handshake".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        match hs.verify(&buf) {
            Ok(Some(acc)) => {
                buf.drain(..acc.consumed);
                return Ok((s, buf));
            }
            Ok(None) => {}
            Err(e) => return Err(format!("handshake: {e}")),
        }
    }
}

fn mask() -> [u8; 4] {
    fastrand::u32(..).to_ne_bytes()
}

fn topic_name(i: usize) -> String {
    format!("bench.t{i}")
}

/// Eight ASCII digits (first byte most significant, little-endian load).
#[inline]
fn parse8(x: u64) -> u64 {
    let mut v = x.wrapping_sub(0x3030_3030_3030_3030);
    v = (v.wrapping_mul(10) + (v >> 8)) & 0x00FF_00FF_00FF_00FF;
    v = (v.wrapping_mul(100) + (v >> 16)) & 0x0000_FFFF_0000_FFFF;
    (v.wrapping_mul(10000) + (v >> 32)) & 0xFFFF_FFFF
}

const POW10: [u64; 9] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
];

/// The digits at `p[i..]`, and the index after them (SWAR, 8 at a time).
#[inline]
fn digits(p: &[u8], mut i: usize) -> Option<(u64, usize)> {
    let start = i;
    let mut v: u64 = 0;
    while let Some(b) = p.get(i..i + 8) {
        let x = u64::from_le_bytes(b.try_into().unwrap());
        // A zero byte in both: high nibble 3 and low nibble <= 9.
        let hi = (x & 0xF0F0_F0F0_F0F0_F0F0) ^ 0x3030_3030_3030_3030;
        let lo =
            (x.wrapping_add(0x0606_0606_0606_0606) & 0xF0F0_F0F0_F0F0_F0F0) ^ 0x3030_3030_3030_3030;
        let bad = hi | lo;
        if bad == 0 {
            v = v.wrapping_mul(100_000_000).wrapping_add(parse8(x));
            i += 8;
            continue;
        }
        let n = (bad.trailing_zeros() / 8) as usize;
        if n > 0 {
            let shifted = (x << (8 * (8 - n))) | (0x3030_3030_3030_3030u64 >> (8 * n));
            v = v.wrapping_mul(POW10[n]).wrapping_add(parse8(shifted));
            i += n;
        }
        return (i > start).then_some((v, i));
    }
    while let Some(&c) = p.get(i) {
        if !c.is_ascii_digit() {
            break;
        }
        v = v.wrapping_mul(10).wrapping_add((c - b'0') as u64);
        i += 1;
    }
    (i > start).then_some((v, i))
}

#[inline]
fn find(p: &[u8], pat: &[u8], from: usize) -> Option<usize> {
    p.get(from..)?
        .windows(pat.len())
        .position(|w| w == pat)
        .map(|i| i + from)
}

/// `{"op":"msg","topic":T,"seq":N,"data":{"t":T,"w":W,...}}` → (seq, t, w).
#[inline]
fn scan_msg(p: &[u8]) -> Option<(u64, u64, u64)> {
    const HEAD: &[u8] = b"{\"op\":\"msg\",\"topic\":\"";
    if !p.starts_with(HEAD) {
        return None;
    }
    // Topics here have no escapes: the first quote ends it.
    let i = HEAD.len() + p[HEAD.len()..].iter().position(|&c| c == b'"')?;
    if !p[i..].starts_with(b"\",\"seq\":") {
        return None;
    }
    let (seq, j) = digits(p, i + 8)?;
    const DATA: &[u8] = b",\"data\":{\"t\":";
    let k = if p[j..].starts_with(DATA) {
        j + DATA.len()
    } else {
        find(p, b"\"t\":", j)? + 4
    };
    let (t, k) = digits(p, k)?;
    if !p[k..].starts_with(b",\"w\":") {
        return None;
    }
    let (w, _) = digits(p, k + 5)?;
    Some((seq, t, w))
}

/// One subscriber's decoding state, kept between reads.
struct SubState {
    idx: usize,
    conn: Connection,
    /// Bytes of an unfinished frame, carried to the next read.
    leftover: Vec<u8>,
    /// Size of the frame at the front of `leftover`, once known.
    need: usize,
    last: u64,
    subscribed: bool,
    pongs: Vec<bytes::Bytes>,
}

enum Step {
    /// Read and decoded; go on.
    More,
    WouldBlock,
    /// Stop reading: EOF, a close from the server, or a failure.
    Done,
}

/// One non-blocking read into the shared buffer and everything in it,
/// decoded and accounted. Synchronous, so no `RefCell` borrow lives across
/// an await.
fn read_once(sh: &Shared, st: &mut SubState, s: &TcpStream) -> Step {
    let idx = st.idx;
    let mut scratch = sh.scratch.borrow_mut();
    let lo = st.leftover.len();
    let want = lo.max(st.need) + 64 * 1024;
    if scratch.len() < want {
        scratch.resize(want, 0);
    }
    scratch[..lo].copy_from_slice(&st.leftover);
    let n = match s.try_read(&mut scratch[lo..]) {
        Ok(0) => {
            sh.eof.set(sh.eof.get() + 1);
            return Step::Done;
        }
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Step::WouldBlock,
        Err(e) => {
            sh.failures.set(sh.failures.get() + 1);
            eprintln!("subscriber {idx}: read: {e}");
            return Step::Done;
        }
    };
    let end = lo + n;
    let now = now_ns();
    let measuring = sh.phase.get() == MEASURE;
    let (mut got, mut missing, mut gaps, mut dups, mut bad) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut ht = sh.hist_t.borrow_mut();
    let mut hw = sh.hist_w.borrow_mut();
    let mut ring = sh.ring.borrow_mut();
    let ring_mask = ring.len().wrapping_sub(1);
    let mut last = st.last;
    let mut pos = 0;
    let mut closed = None;
    let mut failed = false;
    while pos < end {
        match st.conn.read(&mut scratch[pos..end]) {
            Ok(Read::Frame { consumed, event }) => {
                pos += consumed;
                match event {
                    Some(Event::Message(m)) => match scan_msg(m.payload) {
                        Some((seq, t, w)) => {
                            got += 1;
                            if seq == last + 1 {
                            } else if seq > last {
                                missing += seq - last - 1;
                                gaps += 1;
                            } else {
                                dups += 1;
                            }
                            last = last.max(seq);
                            if measuring {
                                ht.record(now.saturating_sub(t));
                                hw.record(now.saturating_sub(w));
                            }
                            if !ring.is_empty() {
                                ring[seq as usize & ring_mask] += 1;
                            }
                        }
                        None if m.payload.starts_with(b"{\"op\":\"ack\"") => st.subscribed = true,
                        None => {
                            bad += 1;
                            if bad == 1 && sh.unparsed.get() == 0 {
                                eprintln!(
                                    "subscriber {idx}: unexpected: {}",
                                    String::from_utf8_lossy(m.payload)
                                );
                            }
                        }
                    },
                    Some(Event::Ping { pong: Some(p), .. }) => st.pongs.push(p),
                    Some(Event::Close { body, reply }) => {
                        closed = Some((body.code.unwrap_or(0), body.reason.to_string()));
                        if let Some(r) = reply {
                            st.pongs.push(r);
                        }
                    }
                    _ => {}
                }
            }
            Ok(Read::Incomplete { frame_len }) => {
                st.need = frame_len.unwrap_or(0);
                break;
            }
            Err(f) => {
                eprintln!("subscriber {idx}: protocol failure: {:?}", f.error);
                failed = true;
                break;
            }
        }
    }
    st.leftover.clear();
    st.leftover.extend_from_slice(&scratch[pos..end]);
    st.last = last;
    Shared::bump(&sh.delivered_total, got);
    if measuring {
        Shared::bump(&sh.delivered, got);
    }
    Shared::bump(&sh.missing, missing);
    Shared::bump(&sh.gaps, gaps);
    Shared::bump(&sh.dups, dups);
    Shared::bump(&sh.unparsed, bad);
    sh.last_seq.borrow_mut()[idx] = last;
    if !ring.is_empty() {
        // Advance the all-delivered watermark (single topic).
        let mut done = sh.done_upto.get();
        let need = sh.open_count.get() as u32;
        let before = done;
        while need > 0 && ring[(done + 1) as usize & ring_mask] >= need {
            done += 1;
            ring[done as usize & ring_mask] = 0;
        }
        if done != before {
            sh.done_upto.set(done);
            sh.wake_publishers();
        }
    }
    if std::mem::take(&mut st.subscribed) {
        sh.ready.set(sh.ready.get() + 1);
    }
    if failed {
        sh.failures.set(sh.failures.get() + 1);
        return Step::Done;
    }
    if let Some((code, reason)) = closed {
        *sh.closed.borrow_mut().entry(code).or_default() += 1;
        *sh.close_reasons.borrow_mut().entry(reason).or_default() += 1;
        return Step::Done;
    }
    Step::More
}

async fn subscriber(sh: Rc<Shared>, addr: SocketAddr, idx: usize, topic: usize) {
    let (mut s, leftover) = match connect(addr, false).await {
        Ok(x) => x,
        Err(e) => return sh.fail(format!("subscriber {idx}: {e}")),
    };
    let sub = format!(
        "{{\"op\":\"sub\",\"topic\":\"{}\",\"id\":1}}",
        topic_name(topic)
    );
    if let Err(e) = s
        .write_all(&client_frame(OpCode::Text, sub.as_bytes(), mask()))
        .await
    {
        return sh.fail(format!("subscriber {idx}: write sub: {e}"));
    }
    let mut st = SubState {
        idx,
        conn: Connection::client(),
        leftover,
        need: 0,
        last: 0,
        subscribed: false,
        pongs: Vec::new(),
    };
    loop {
        if let Err(e) = s.readable().await {
            sh.failures.set(sh.failures.get() + 1);
            eprintln!("subscriber {idx}: {e}");
            break;
        }
        let step = read_once(&sh, &mut st, &s);
        for p in std::mem::take(&mut st.pongs) {
            let _ = s.write_all(&p).await;
        }
        match step {
            Step::More | Step::WouldBlock => {}
            Step::Done => break,
        }
    }
    sh.open.borrow_mut()[idx] = false;
    sh.open_count.set(sh.open_count.get() - 1);
    // A departed subscriber no longer holds the watermark back.
    sh.wake_publishers();
}

/// Build one pub frame into `out`.
fn pub_frame(out: &mut Vec<u8>, topic: &str, t: u64, w: u64, size: usize, id: Option<u64>) {
    let mut a = itoa::Buffer::new();
    let mut b = itoa::Buffer::new();
    let ts = a.format(t);
    let ws = b.format(w);
    // {"t":T,"w":W,"p":"…"}
    let base = 5 + ts.len() + 5 + ws.len() + 6 + 2;
    let pad = size.saturating_sub(base);
    let mut j = Vec::with_capacity(64 + topic.len() + size);
    j.extend_from_slice(b"{\"op\":\"pub\",\"topic\":\"");
    j.extend_from_slice(topic.as_bytes());
    j.extend_from_slice(b"\",");
    if let Some(id) = id {
        j.extend_from_slice(b"\"id\":");
        j.extend_from_slice(itoa::Buffer::new().format(id).as_bytes());
        j.push(b',');
    }
    j.extend_from_slice(b"\"data\":{\"t\":");
    j.extend_from_slice(ts.as_bytes());
    j.extend_from_slice(b",\"w\":");
    j.extend_from_slice(ws.as_bytes());
    j.extend_from_slice(b",\"p\":\"");
    j.resize(j.len() + pad, b'x');
    j.extend_from_slice(b"\"}}");
    out.extend_from_slice(&client_frame(OpCode::Text, &j, mask()));
}

/// Read and account whatever the server sent a publisher (acks, errs);
/// returns the number of acks. Non-blocking unless `wait`.
async fn pub_read(
    sh: &Shared,
    s: &mut TcpStream,
    conn: &mut Connection,
    buf: &mut Vec<u8>,
    wait: bool,
) -> Result<u64, String> {
    let mut acks = 0;
    loop {
        let len = buf.len();
        buf.resize(len + 64 * 1024, 0);
        let r = if wait {
            s.read(&mut buf[len..]).await
        } else {
            s.try_read(&mut buf[len..])
        };
        let n = match r {
            Ok(0) => {
                buf.truncate(len);
                return Err("publisher: EOF".into());
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                buf.truncate(len);
                return Ok(acks);
            }
            Err(e) => return Err(format!("publisher: read: {e}")),
        };
        buf.truncate(len + n);
        let mut pos = 0;
        loop {
            match conn.read(&mut buf[pos..]) {
                Ok(Read::Frame { consumed, event }) => {
                    pos += consumed;
                    if let Some(Event::Message(m)) = event {
                        if m.payload.starts_with(b"{\"op\":\"ack\"") {
                            acks += 1;
                        } else {
                            Shared::bump(&sh.errs, 1);
                            sh.first_err.borrow_mut().get_or_insert_with(|| {
                                String::from_utf8_lossy(m.payload).into_owned()
                            });
                        }
                    } else if let Some(Event::Close { body, .. }) = event {
                        return Err(format!("publisher closed by server: {body:?}"));
                    }
                }
                Ok(Read::Incomplete { .. }) => break,
                Err(f) => return Err(format!("publisher: protocol failure {:?}", f.error)),
            }
        }
        buf.drain(..pos);
        Shared::bump(&sh.acks, acks);
        if wait {
            return Ok(acks);
        }
    }
}

async fn publisher(sh: Rc<Shared>, cli: Cli, addr: SocketAddr, p: usize) {
    if let Err(e) = publish_loop(&sh, &cli, addr, p).await {
        if sh.phase.get() != STOP {
            eprintln!("publisher {p}: {e}");
            sh.fail(format!("publisher {p}: {e}"));
        }
    }
}

async fn publish_loop(sh: &Shared, cli: &Cli, addr: SocketAddr, p: usize) -> Result<(), String> {
    let (mut s, mut rbuf) = connect(addr, true).await?;
    let mut conn = Connection::client();
    let topics: Vec<String> = (0..cli.topics).map(topic_name).collect();
    let topic_of = |k: u64| (k as usize * cli.pubs + p) % cli.topics;
    let mut wbuf = Vec::with_capacity(256 * 1024);
    let mut k: u64 = 0;
    let size = cli.size;
    let account = |k0: u64, k1: u64| {
        if sh.phase.get() == MEASURE {
            Shared::bump(&sh.published, k1 - k0);
        }
        let mut spt = sh.sent_per_topic.borrow_mut();
        for j in k0..k1 {
            spt[topic_of(j)] += 1;
        }
    };
    if cli.rate > 0.0 {
        let period = 1e9 * cli.pubs as f64 / cli.rate;
        let start = now_ns();
        while sh.phase.get() != STOP {
            let now = now_ns();
            let due = ((now - start) as f64 / period) as u64 + 1;
            let upto = due.min(k + 1024);
            let k0 = k;
            wbuf.clear();
            while k < upto {
                let t = start + (k as f64 * period) as u64;
                pub_frame(&mut wbuf, &topics[topic_of(k)], t, now, size, None);
                k += 1;
            }
            if k > k0 {
                account(k0, k);
                s.write_all(&wbuf)
                    .await
                    .map_err(|e| format!("write: {e}"))?;
            }
            pub_read(sh, &mut s, &mut conn, &mut rbuf, false).await?;
            if k < due {
                tokio::task::yield_now().await;
                continue;
            }
            let next = start + (k as f64 * period) as u64;
            tokio::time::sleep_until(at_ns(next)).await;
        }
    } else {
        let w = cli.in_flight as u64;
        let mut acked: u64 = 0;
        while sh.phase.get() != STOP {
            let limit = match cli.window {
                Window::Ack => acked + w,
                Window::Delivered => {
                    // seq n is our n-th publish (single topic, single
                    // publisher per topic is not required: the ring counts
                    // by seq, and seqs of all publishers interleave).
                    let lim = poll_fn(|cx| {
                        let sent_total = sh.sent_per_topic.borrow()[0];
                        if sent_total < sh.done_upto.get() + w || sh.phase.get() == STOP {
                            Poll::Ready(sh.done_upto.get() + w)
                        } else {
                            sh.waiters.borrow_mut().push(cx.waker().clone());
                            Poll::Pending
                        }
                    })
                    .await;
                    let sent_total = sh.sent_per_topic.borrow()[0];
                    k + lim.saturating_sub(sent_total)
                }
            };
            if k < limit {
                let now = now_ns();
                let k0 = k;
                wbuf.clear();
                while k < limit {
                    let id = (cli.window == Window::Ack).then_some(k + 1);
                    pub_frame(&mut wbuf, &topics[topic_of(k)], now, now, size, id);
                    k += 1;
                }
                account(k0, k);
                s.write_all(&wbuf)
                    .await
                    .map_err(|e| format!("write: {e}"))?;
            }
            match cli.window {
                Window::Ack => acked += pub_read(sh, &mut s, &mut conn, &mut rbuf, true).await?,
                Window::Delivered => {
                    pub_read(sh, &mut s, &mut conn, &mut rbuf, false).await?;
                }
            }
        }
    }
    Ok(())
}

// ------------------------------------------------------------- one run

#[derive(Debug, Clone, Default)]
struct RunResult {
    secs: f64,
    published: u64,
    delivered: u64,
    p50_t: u64,
    p99_t: u64,
    p999_t: u64,
    max_t: u64,
    p50_w: u64,
    p99_w: u64,
    server_cpu: f64,
    client_cpu: f64,
    /// Busy seconds of the server's and the client's core (any process,
    /// softirq included), and steal on both.
    srv_core: f64,
    cli_core: f64,
    steal: f64,
    /// Busy seconds of each core not spent by the server / this client.
    other_srv: f64,
    other_cli: f64,
    srv_deliveries: u64,
    srv_publishes: u64,
    /// Server: frames and sendmsg calls in the window.
    srv_frames: u64,
    srv_sends: u64,
    slow_disconnects: u64,
    dropped: u64,
    missing: u64,
    gaps: u64,
    dups: u64,
    unparsed: u64,
    closed: BTreeMap<u16, usize>,
    close_reasons: BTreeMap<String, usize>,
    eof: usize,
    failures: usize,
    errs: u64,
    first_err: Option<String>,
    behind: usize,
    behind_msgs: u64,
    open_at_end: usize,
    setup_secs: f64,
    quiet_secs: f64,
}

impl RunResult {
    fn pubs_per_s(&self) -> f64 {
        self.published as f64 / self.secs
    }
    fn deliv_per_s(&self) -> f64 {
        self.delivered as f64 / self.secs
    }
    fn server_us_per_delivery(&self) -> f64 {
        if self.delivered == 0 {
            return f64::NAN;
        }
        self.server_cpu * 1e6 / self.delivered as f64
    }
    fn client_us_per_delivery(&self) -> f64 {
        if self.delivered == 0 {
            return f64::NAN;
        }
        self.client_cpu * 1e6 / self.delivered as f64
    }

    fn line(&self) -> String {
        format!(
            "publishes {:.0}/s, deliveries {:.0}/s (server: publishes {:.0}/s, queued {:.0}/s, {:.1} frames per sendmsg); latency from intended \
             send p50 {} p99 {} p99.9 {} max {}; from write p50 {} p99 {}; server CPU {:.1}% \
             ({:.3} us/delivery), client CPU {:.1}% ({:.3} us/delivery); core busy: server's {:.1}% \
             (others {:.1}%), client's {:.1}% (others {:.1}%), steal {:.1}%; seq gaps {} (missing {}), \
             dups {}, unparsed {}; closed by server {:?} {:?}, eof {}, failures {}, slow disconnects \
             {}, dropped {}; errs {}{}; at end {} open, {} behind by {} msgs (quiet after {:.1} s); \
             setup {:.1} s",
            self.pubs_per_s(),
            self.deliv_per_s(),
            self.srv_publishes as f64 / self.secs,
            self.srv_deliveries as f64 / self.secs,
            self.srv_frames as f64 / self.srv_sends.max(1) as f64,
            fmt_ns(self.p50_t),
            fmt_ns(self.p99_t),
            fmt_ns(self.p999_t),
            fmt_ns(self.max_t),
            fmt_ns(self.p50_w),
            fmt_ns(self.p99_w),
            self.server_cpu / self.secs * 100.0,
            self.server_us_per_delivery(),
            self.client_cpu / self.secs * 100.0,
            self.client_us_per_delivery(),
            self.srv_core / self.secs * 100.0,
            self.other_srv / self.secs * 100.0,
            self.cli_core / self.secs * 100.0,
            self.other_cli / self.secs * 100.0,
            self.steal / self.secs * 100.0,
            self.gaps,
            self.missing,
            self.dups,
            self.unparsed,
            self.closed,
            self.close_reasons,
            self.eof,
            self.failures,
            self.slow_disconnects,
            self.dropped,
            self.errs,
            self.first_err
                .as_ref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default(),
            self.open_at_end,
            self.behind,
            self.behind_msgs,
            self.quiet_secs,
            self.setup_secs,
        )
    }
}

fn fmt_ns(ns: u64) -> String {
    if ns >= 1_000_000_000 {
        format!("{:.2} s", ns as f64 / 1e9)
    } else if ns >= 1_000_000 {
        format!("{:.2} ms", ns as f64 / 1e6)
    } else {
        format!("{:.0} us", ns as f64 / 1e3)
    }
}

async fn run_once(cli: &Cli, addr: SocketAddr, server_pid: Option<u32>) -> RunResult {
    let t_setup = Instant::now();
    let ring = if cli.rate == 0.0 && cli.window == Window::Delivered {
        vec![0u32; (cli.in_flight * 4).next_power_of_two().max(1024)]
    } else {
        Vec::new()
    };
    let sh = Rc::new(Shared {
        phase: Cell::new(WARMUP),
        ready: Cell::new(0),
        failed: Cell::new(0),
        first_failure: RefCell::new(None),
        delivered: Cell::new(0),
        delivered_total: Cell::new(0),
        missing: Cell::new(0),
        gaps: Cell::new(0),
        dups: Cell::new(0),
        unparsed: Cell::new(0),
        closed: RefCell::new(BTreeMap::new()),
        close_reasons: RefCell::new(BTreeMap::new()),
        eof: Cell::new(0),
        failures: Cell::new(0),
        hist_t: RefCell::new(Hist::new()),
        hist_w: RefCell::new(Hist::new()),
        published: Cell::new(0),
        sent_per_topic: RefCell::new(vec![0; cli.topics]),
        acks: Cell::new(0),
        errs: Cell::new(0),
        first_err: RefCell::new(None),
        last_seq: RefCell::new(vec![0; cli.subs]),
        open: RefCell::new(vec![true; cli.subs]),
        scratch: RefCell::new(vec![0; cli.read_buf]),
        ring: RefCell::new(ring),
        done_upto: Cell::new(0),
        waiters: RefCell::new(Vec::new()),
        open_count: Cell::new(cli.subs),
    });
    let local = tokio::task::LocalSet::new();
    let cli2 = cli.clone();
    let shm = sh.clone();
    local
        .run_until(async move {
            let sh = shm;
            let cli = cli2;
            // Subscribers, in batches.
            let mut started = 0;
            while started < cli.subs {
                let upto = (started + cli.connect_batch).min(cli.subs);
                for i in started..upto {
                    tokio::task::spawn_local(subscriber(sh.clone(), addr, i, i % cli.topics));
                }
                started = upto;
                let deadline = Instant::now() + Duration::from_secs(60);
                while sh.ready.get() + sh.failed.get() < started {
                    assert!(Instant::now() < deadline, "subscribers did not get ready");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            if sh.failed.get() > 0 {
                panic!(
                    "{} connections failed; first: {:?}",
                    sh.failed.get(),
                    sh.first_failure.borrow()
                );
            }
            let setup_secs = t_setup.elapsed().as_secs_f64();
            for p in 0..cli.pubs {
                tokio::task::spawn_local(publisher(sh.clone(), cli.clone(), addr, p));
            }
            tokio::time::sleep(Duration::from_secs_f64(cli.warmup)).await;
            let m0 = metrics(addr).await;
            let spid = server_pid.map(|p| p.to_string());
            let s0 = spid.as_deref().map(cpu_secs).unwrap_or(0.0);
            let c0 = cpu_secs("self");
            let b0 = cpu_busy();
            let w0 = Instant::now();
            sh.phase.set(MEASURE);
            tokio::time::sleep(Duration::from_secs_f64(cli.secs)).await;
            sh.phase.set(STOP);
            let secs = w0.elapsed().as_secs_f64();
            let s1 = spid.as_deref().map(cpu_secs).unwrap_or(0.0);
            let c1 = cpu_secs("self");
            let b1 = cpu_busy();
            let m1 = metrics(addr).await;
            // Let the stream go quiet: no delivery for 500 ms (at most 20 s).
            let q0 = Instant::now();
            let mut last = sh.delivered_total.get();
            let mut still = Instant::now();
            while still.elapsed() < Duration::from_millis(500)
                && q0.elapsed() < Duration::from_secs(20)
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let now = sh.delivered_total.get();
                if now != last {
                    last = now;
                    still = Instant::now();
                }
            }
            let quiet_secs = q0.elapsed().as_secs_f64();
            let d = |k: &str| m1.get(k).copied().unwrap_or(0) - m0.get(k).copied().unwrap_or(0);
            let ht = sh.hist_t.borrow();
            let hw = sh.hist_w.borrow();
            let spt = sh.sent_per_topic.borrow();
            let last_seq = sh.last_seq.borrow();
            let open = sh.open.borrow();
            let (mut behind, mut behind_msgs, mut open_at_end) = (0, 0, 0);
            for i in 0..cli.subs {
                if !open[i] {
                    continue;
                }
                open_at_end += 1;
                let want = spt[i % cli.topics];
                if last_seq[i] < want {
                    behind += 1;
                    behind_msgs += want - last_seq[i];
                }
            }
            let core = |i: usize| -> (f64, f64) {
                match (b0.get(i), b1.get(i)) {
                    (Some(a), Some(b)) => (b.0 - a.0, b.1 - a.1),
                    _ => (f64::NAN, f64::NAN),
                }
            };
            let (srv_core, srv_steal) = core(cli.server_cpu);
            let (cli_core, cli_steal) = core(cli.client_cpu);
            let result = RunResult {
                secs,
                srv_core,
                cli_core,
                steal: srv_steal + cli_steal,
                other_srv: if cli.server_cpu == cli.client_cpu {
                    srv_core - (s1 - s0) - (c1 - c0)
                } else {
                    srv_core - (s1 - s0)
                },
                other_cli: if cli.server_cpu == cli.client_cpu {
                    0.0
                } else {
                    cli_core - (c1 - c0)
                },
                published: sh.published.get(),
                delivered: sh.delivered.get(),
                p50_t: ht.pct(0.50),
                p99_t: ht.pct(0.99),
                p999_t: ht.pct(0.999),
                max_t: ht.max,
                p50_w: hw.pct(0.50),
                p99_w: hw.pct(0.99),
                server_cpu: s1 - s0,
                client_cpu: c1 - c0,
                srv_deliveries: d("deliveries_total"),
                srv_publishes: d("publishes_total"),
                srv_frames: d("frames_sent_total"),
                srv_sends: d("sends_total"),
                slow_disconnects: m1.get("slow_disconnects_total").copied().unwrap_or(0),
                dropped: m1.get("dropped_total").copied().unwrap_or(0),
                missing: sh.missing.get(),
                gaps: sh.gaps.get(),
                dups: sh.dups.get(),
                unparsed: sh.unparsed.get(),
                closed: sh.closed.borrow().clone(),
                close_reasons: sh.close_reasons.borrow().clone(),
                eof: sh.eof.get(),
                failures: sh.failures.get(),
                errs: sh.errs.get(),
                first_err: sh.first_err.borrow().clone(),
                behind,
                behind_msgs,
                open_at_end,
                setup_secs,
                quiet_secs,
            };
            result
        })
        .await
}

// ------------------------------------------------------------- summary

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn summary(cli: &Cli, rs: &[RunResult]) {
    let m = |f: &dyn Fn(&RunResult) -> f64| median(rs.iter().map(f).collect());
    let ms = |ns: f64| ns / 1e6;
    println!(
        "median of {} runs: publishes {:.0}/s, deliveries {:.0}/s (server queued {:.0}/s), \
         latency from intended send p50 {:.3} ms p99 {:.3} ms p99.9 {:.3} ms, from write p50 \
         {:.3} ms p99 {:.3} ms, server CPU {:.1}% = {:.3} us/delivery, client CPU {:.1}% = {:.3} \
         us/delivery",
        rs.len(),
        m(&|r| r.pubs_per_s()),
        m(&|r| r.deliv_per_s()),
        m(&|r| r.srv_deliveries as f64 / r.secs),
        ms(m(&|r| r.p50_t as f64)),
        ms(m(&|r| r.p99_t as f64)),
        ms(m(&|r| r.p999_t as f64)),
        ms(m(&|r| r.p50_w as f64)),
        ms(m(&|r| r.p99_w as f64)),
        m(&|r| r.server_cpu / r.secs * 100.0),
        m(&|r| r.server_us_per_delivery()),
        m(&|r| r.client_cpu / r.secs * 100.0),
        m(&|r| r.client_us_per_delivery()),
    );
    println!(
        "median core busy: server's {:.1}% (others {:.1}%), client's {:.1}% (others {:.1}%); \
         latency max (median of runs) {:.3} ms; server frames per sendmsg {:.1}",
        m(&|r| r.srv_core / r.secs * 100.0),
        m(&|r| r.other_srv / r.secs * 100.0),
        m(&|r| r.cli_core / r.secs * 100.0),
        m(&|r| r.other_cli / r.secs * 100.0),
        ms(m(&|r| r.max_t as f64)),
        m(&|r| r.srv_frames as f64 / r.srv_sends.max(1) as f64),
    );
    let total = |f: &dyn Fn(&RunResult) -> u64| rs.iter().map(f).sum::<u64>();
    println!(
        "all runs: seq gaps {} (missing {}), dups {}, subscribers closed by server {} {:?}, \
         slow disconnects {}, dropped {}, behind at end {}, errs {}, failures {}",
        total(&|r| r.gaps),
        total(&|r| r.missing),
        total(&|r| r.dups),
        rs.iter()
            .map(|r| r.closed.values().sum::<usize>())
            .sum::<usize>(),
        rs.iter()
            .fold(BTreeMap::<String, usize>::new(), |mut a, r| {
                for (k, v) in &r.close_reasons {
                    *a.entry(k.clone()).or_default() += v;
                }
                a
            }),
        total(&|r| r.slow_disconnects),
        total(&|r| r.dropped),
        rs.iter().map(|r| r.behind).sum::<usize>(),
        total(&|r| r.errs),
        rs.iter().map(|r| r.failures).sum::<usize>(),
    );
    let _ = cli;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_match_naive() {
        for v in [
            0u64,
            1,
            9,
            10,
            99,
            12345678,
            123456789,
            9876543210123,
            u64::MAX / 10,
        ] {
            for tail in ["", ",", "x\"}}}}}}}}}}"] {
                let s = format!("ab{v}{tail}");
                assert_eq!(
                    digits(s.as_bytes(), 2),
                    Some((v, 2 + v.to_string().len())),
                    "{s}"
                );
            }
        }
        assert_eq!(digits(b"ab,123456789", 2), None);
    }

    #[test]
    fn scans_a_msg() {
        let m = br#"{"op":"msg","topic":"bench.t7","seq":42,"data":{"t":12345678901,"w":12345679999,"p":"xx"}}"#;
        assert_eq!(scan_msg(m), Some((42, 12345678901, 12345679999)));
        let mut out = Vec::new();
        pub_frame(&mut out, "bench.t0", 5, 6, 100, None);
        let mut c = Connection::server();
        match c.read(&mut out).unwrap() {
            Read::Frame {
                event: Some(Event::Message(m)),
                ..
            } => {
                let v: serde_json::Value = serde_json::from_slice(m.payload).unwrap();
                assert_eq!(v["data"].to_string().len(), 100);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hist_buckets() {
        let mut h = Hist::new();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let p50 = h.pct(0.5);
        assert!((500_000..=516_000).contains(&p50), "{p50}");
        for v in [0u64, 1, 63, 64, 65, 1 << 40, u64::MAX] {
            let i = Hist::idx(v);
            assert!(i < HIST_BUCKETS);
            assert!(Hist::upper(i) >= v);
            if i > 0 {
                assert!(Hist::upper(i - 1) < v);
            }
        }
    }
}
