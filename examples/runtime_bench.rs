//! Measurement client for `docs/bench-runtime.md`.
//!
//! ```text
//! cargo build --release --bin ringfan --example runtime_bench
//! B=target/release/examples/runtime_bench
//! $B memory --ringfan target/release/ringfan
//! $B echo --ringfan target/release/ringfan --depth 1          # closed loop
//! $B echo --ringfan target/release/ringfan --depth 10         # pipelined
//! $B echo --ringfan target/release/ringfan --depth 10 --raw   # cheaper client
//! ```
//!
//! `memory`: resident memory per idle WebSocket connection. Per run, starts
//! `taskset -c <server-cpu> ringfan --listen 127.0.0.1:0 --shards 1`, warms
//! it up (100 connections opened and closed), reads VmRSS, opens `--conns`
//! connections from child processes (this binary's `hold` subcommand, one
//! per source address, pinned to `--client-cpu`), and once every handshake
//! is done reads VmRSS again (and 13 s later, after the handshake deadline
//! re-armed every connection's timer). Reports (after - before) / conns,
//! with /proc/net/sockstat and the Slab line of /proc/meminfo for the
//! kernel's side, which VmRSS does not include.
//!
//! `echo`: round trips per second and RTT percentiles. Per run, starts
//! `taskset -c <server-cpu> ringfan --shards 1`, pins this process to
//! `--client-cpu`, and runs `--conns` connections, each keeping `--depth`
//! text messages of `--size` bytes in flight (depth 1 = closed-loop
//! request/response). Counts the echoes that arrive in the `--secs` window
//! after `--warmup`, checks every echo's content and order, and reports the
//! client's and the server's CPU time over the window (/proc/<pid>/stat),
//! and the CPU everything else on the machine used meanwhile: the VM is
//! shared, so a run during which other processes used more than
//! `--max-others` percent of a core is discarded and repeated.
//!
//! `hold`: (child process) opens `--count` connections from `--source`,
//! prints `READY <n> <secs>`, then waits for a line on stdin: `ECHO` sends
//! one message on every connection and checks it (`ECHOED <n> <secs>`),
//! then waits for one more line (or EOF) and closes them all (`CLOSED`);
//! anything but `ECHO` (or EOF) closes them at once and exits.

use clap::{Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Resident memory per idle connection.
    Memory {
        #[arg(long, default_value = "target/release/ringfan")]
        ringfan: String,
        #[arg(long, default_value_t = 20_000)]
        conns: usize,
        /// Source addresses; the connections are split evenly over them,
        /// one holder process each.
        #[arg(long, value_delimiter = ',', default_value = "127.0.0.2,127.0.0.3")]
        sources: Vec<IpAddr>,
        #[arg(long, default_value_t = 0)]
        server_cpu: usize,
        #[arg(long, default_value_t = 1)]
        client_cpu: usize,
        /// Extra arguments for ringfan (e.g. "--no-pin").
        #[arg(long, allow_hyphen_values = true)]
        server_arg: Vec<String>,
        /// Environment for ringfan, KEY=VALUE (e.g. MIMALLOC_ALLOW_THP=0).
        #[arg(long)]
        server_env: Vec<String>,
        /// Fresh server per run; the summary gives the median.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Echo round trips per second and RTT percentiles.
    Echo {
        #[arg(long, default_value = "target/release/ringfan")]
        ringfan: String,
        #[arg(long, default_value_t = 100)]
        conns: usize,
        /// Message size in bytes (text).
        #[arg(long, default_value_t = 100)]
        size: usize,
        /// Messages in flight per connection (1 = closed loop).
        #[arg(long, default_value_t = 1)]
        depth: usize,
        /// Use the raw client (frames encoded by hand, one write for all
        /// the messages due on a connection) instead of tokio-tungstenite:
        /// cheaper per message, to push the server harder.
        #[arg(long)]
        raw: bool,
        #[arg(long, default_value_t = 2.0)]
        warmup: f64,
        #[arg(long, default_value_t = 10.0)]
        secs: f64,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[arg(long, default_value_t = 0)]
        server_cpu: usize,
        #[arg(long, default_value_t = 1)]
        client_cpu: usize,
        #[arg(long, allow_hyphen_values = true)]
        server_arg: Vec<String>,
        #[arg(long)]
        server_env: Vec<String>,
        /// Before each run, wait until other processes use less than this
        /// much CPU (percent of one core; the VM is shared).
        #[arg(long, default_value_t = 10.0)]
        quiet_below: f64,
        /// Longest wait for that, in seconds; then measure anyway.
        #[arg(long, default_value_t = 300.0)]
        max_wait: f64,
        /// Discard (and repeat) a run during whose window other processes
        /// used more than this much CPU (percent of one core).
        #[arg(long, default_value_t = 10.0)]
        max_others: f64,
        /// Give up after this many attempts per kept run.
        #[arg(long, default_value_t = 5)]
        attempts: usize,
    },
    /// Child process: hold connections open.
    Hold {
        #[arg(long)]
        server: SocketAddr,
        #[arg(long)]
        source: IpAddr,
        #[arg(long)]
        count: usize,
        #[arg(long, default_value_t = 256)]
        in_flight: usize,
    },
}

fn main() {
    match Cli::parse().cmd {
        Cmd::Memory {
            ringfan,
            conns,
            sources,
            server_cpu,
            client_cpu,
            server_arg,
            server_env,
            runs,
        } => {
            let srv = ServerSpec {
                bin: ringfan,
                cpu: server_cpu,
                args: server_arg,
                env: server_env,
            };
            memory(&srv, conns, &sources, client_cpu, runs)
        }
        Cmd::Echo {
            ringfan,
            conns,
            size,
            depth,
            raw,
            warmup,
            secs,
            runs,
            server_cpu,
            client_cpu,
            server_arg,
            server_env,
            quiet_below,
            max_wait,
            max_others,
            attempts,
        } => {
            let srv = ServerSpec {
                bin: ringfan,
                cpu: server_cpu,
                args: server_arg,
                env: server_env,
            };
            let opts = EchoOpts {
                conns,
                size,
                depth: depth.max(1),
                raw,
                warmup: Duration::from_secs_f64(warmup),
                window: Duration::from_secs_f64(secs),
            };
            let wait = Duration::from_secs_f64(max_wait);
            echo(
                &srv,
                &opts,
                runs,
                client_cpu,
                quiet_below / 100.0,
                wait,
                max_others / 100.0,
                attempts,
            )
        }
        Cmd::Hold {
            server,
            source,
            count,
            in_flight,
        } => hold(server, source, count, in_flight),
    }
}

// ---------------------------------------------------------------- helpers

/// How to start ringfan.
struct ServerSpec {
    bin: String,
    cpu: usize,
    args: Vec<String>,
    env: Vec<String>,
}

/// A ringfan process, killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(spec: &ServerSpec) -> Server {
        let mut cmd = Command::new("taskset");
        cmd.args(["-c", &spec.cpu.to_string(), &spec.bin])
            .args(["--listen", "127.0.0.1:0", "--shards", "1"])
            .args(&spec.args);
        for kv in &spec.env {
            let (k, v) = kv.split_once('=').expect("--server-env KEY=VALUE");
            cmd.env(k, v);
        }
        let bin = &spec.bin;
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn taskset {bin}: {e}"));
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
        Server { child, addr }
    }

    /// taskset execs ringfan, so this is ringfan's pid.
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `kB` field of /proc/<pid>/status (or smaps_rollup), in bytes.
fn proc_kb(path: &str, key: &str) -> u64 {
    let s = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    s.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("{key} missing in {path}"))
        * 1024
}

/// utime + stime of a process (all its threads), in seconds.
fn cpu_secs(pid: &str) -> f64 {
    let (user, sys) = cpu_split(pid);
    user + sys
}

/// (utime, stime) of a process (all its threads), in seconds.
fn cpu_split(pid: &str) -> (f64, f64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the parenthesised command name; utime and stime are
    // fields 14 and 15 of the whole line.
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let tick = |i: usize| f[i].parse::<u64>().unwrap() as f64 / hz;
    (tick(11), tick(12))
}

/// One metric from /metrics, or None if the server did not answer within
/// `timeout`.
fn metric(addr: SocketAddr, name: &str, timeout: Duration) -> Option<u64> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    write!(s, "GET /metrics HTTP/1.1\r\nHost: bench\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// /proc/net/sockstat: (sockets used, TCP inuse, TCP mem pages).
fn sockstat() -> (u64, u64, u64) {
    let s = std::fs::read_to_string("/proc/net/sockstat").unwrap();
    let get = |line: &str, key: &str| -> u64 {
        let mut w = line.split_whitespace();
        w.find(|x| *x == key);
        w.next().and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    let used = s
        .lines()
        .find(|l| l.starts_with("sockets:"))
        .map_or(0, |l| get(l, "used"));
    let tcp = s.lines().find(|l| l.starts_with("TCP:")).unwrap_or("");
    (used, get(tcp, "inuse"), get(tcp, "mem"))
}

/// Server-side ESTABLISHED IPv4 sockets on `port` (from /proc/net/tcp).
fn established_on(port: u16) -> usize {
    let s = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let want = format!(":{port:04X}");
    s.lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(&want) && f[3] == "01"
        })
        .count()
}

fn pin_self(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t, filled with CPU_SET, passed by pointer.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            panic!("sched_setaffinity: {}", std::io::Error::last_os_error());
        }
    }
}

async fn connect(server: SocketAddr, source: Option<IpAddr>) -> Result<Ws, String> {
    use std::os::fd::AsRawFd;
    let sock = tokio::net::TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    if let Some(source) = source {
        // Pick the port at connect time (unique per 4-tuple), not at bind.
        let one: libc::c_int = 1;
        // SAFETY: setsockopt on our socket with a pointer to a local int.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        sock.bind(SocketAddr::new(source, 0))
            .map_err(|e| format!("bind {source}: {e}"))?;
    }
    let tcp = sock
        .connect(server)
        .await
        .map_err(|e| format!("connect {server}: {e}"))?;
    tcp.set_nodelay(true).ok();
    // tungstenite's default 128 KiB read buffer is zero-filled on every
    // read: per connection that is 128 KiB of client memory and a memset per
    // message. These messages are tiny.
    let config =
        tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4096);
    let (ws, resp) = tokio_tungstenite::client_async_with_config(
        format!("ws://{server}/echo"),
        tcp,
        Some(config),
    )
    .await
    .map_err(|e| format!("handshake: {e}"))?;
    if resp.status().as_u16() != 101 {
        return Err(format!("handshake answered {}", resp.status()));
    }
    Ok(ws)
}

/// Open `count` connections, `in_flight` handshakes at a time.
async fn open_all(
    server: SocketAddr,
    source: Option<IpAddr>,
    count: usize,
    in_flight: usize,
) -> Result<Vec<Ws>, String> {
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..in_flight.clamp(1, count.max(1)))
        .map(|_| {
            let next = next.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    mine.push(connect(server, source).await?);
                }
                Ok::<_, String>(mine)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(count);
    for w in workers {
        all.extend(w.await.map_err(|e| format!("worker: {e}"))??);
    }
    Ok(all)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

// ------------------------------------------------------------------- hold

fn hold(server: SocketAddr, source: IpAddr, count: usize, in_flight: usize) {
    let rt = runtime();
    let t0 = Instant::now();
    let conns = rt
        .block_on(async {
            tokio::time::timeout(
                Duration::from_secs(120),
                open_all(server, Some(source), count, in_flight),
            )
            .await
        })
        .expect("handshakes timed out")
        .unwrap_or_else(|e| panic!("{source}: {e}"));
    println!("READY {} {:.3}", conns.len(), t0.elapsed().as_secs_f64());
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    if line.trim() != "ECHO" {
        return;
    }
    let t1 = Instant::now();
    let conns = rt
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(60), echo_once(conns, in_flight)).await
        })
        .expect("echoes timed out")
        .unwrap_or_else(|e| panic!("{source}: {e}"));
    println!("ECHOED {} {:.3}", conns.len(), t1.elapsed().as_secs_f64());
    // Keep them open until told (or stdin closes), then close them all.
    line.clear();
    let _ = std::io::stdin().read_line(&mut line);
    let t2 = Instant::now();
    let n = conns.len();
    drop(conns);
    println!("CLOSED {n} {:.3}", t2.elapsed().as_secs_f64());
}

/// One message on every connection, each echo checked; the connections
/// are handed back, still open.
async fn echo_once(conns: Vec<Ws>, workers: usize) -> Result<Vec<Ws>, String> {
    let workers = workers.max(1);
    let mut chunks: Vec<Vec<(usize, Ws)>> = (0..workers).map(|_| Vec::new()).collect();
    for (i, ws) in conns.into_iter().enumerate() {
        chunks[i % workers].push((i, ws));
    }
    let tasks: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            tokio::spawn(async move {
                let mut done = Vec::with_capacity(chunk.len());
                for (i, mut ws) in chunk {
                    let text = format!("hello #{i}");
                    ws.send(Message::text(text.clone()))
                        .await
                        .map_err(|e| format!("send: {e}"))?;
                    loop {
                        match ws.next().await {
                            Some(Ok(Message::Text(t))) if t.as_str() == text => break,
                            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                            other => return Err(format!("#{i}: got {other:?}")),
                        }
                    }
                    done.push(ws);
                }
                Ok::<_, String>(done)
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.map_err(|e| format!("{e}"))??);
    }
    Ok(all)
}

// ----------------------------------------------------------------- memory

struct Holders(Vec<(Child, Option<ChildStdin>)>);

impl Drop for Holders {
    fn drop(&mut self) {
        for (c, stdin) in &mut self.0 {
            stdin.take();
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One memory run's figures, in bytes.
struct MemRun {
    rss_start: u64,
    rss_warm: u64,
    rss_held: u64,
    per_conn: f64,
    per_conn_anon: f64,
    per_conn_settled: f64,
    enobufs: u64,
    slab_per_conn: f64,
}

fn memory(spec: &ServerSpec, conns: usize, sources: &[IpAddr], client_cpu: usize, runs: usize) {
    println!(
        "memory: {conns} idle connections from {sources:?} (holders on cpu {client_cpu}); \
         ringfan --shards 1 on cpu {}, args {:?}, env {:?}",
        spec.cpu, spec.args, spec.env
    );
    let mut all = Vec::new();
    for run in 1..=runs {
        println!("--- run {run}");
        all.push(memory_run(spec, conns, sources, client_cpu));
    }
    println!(
        "{:>4} {:>10} {:>10} {:>10} {:>13} {:>13} {:>13} {:>8} {:>11}",
        "run",
        "RSS start",
        "RSS warm",
        "RSS held",
        "B/conn (RSS)",
        "B/conn (anon)",
        "B/conn +13 s",
        "ENOBUFS",
        "slab B/conn"
    );
    for (i, r) in all.iter().enumerate() {
        println!(
            "{:>4} {:>10} {:>10} {:>10} {:>13.1} {:>13.1} {:>13.1} {:>8} {:>11.0}",
            i + 1,
            r.rss_start,
            r.rss_warm,
            r.rss_held,
            r.per_conn,
            r.per_conn_anon,
            r.per_conn_settled,
            r.enobufs,
            r.slab_per_conn
        );
    }
    let med = |f: fn(&MemRun) -> f64| median(&mut all.iter().map(f).collect::<Vec<_>>());
    println!(
        "median of {runs}: {:.1} B per idle connection (VmRSS) right after the handshakes, \
         {:.1} B 13 s later; baseline: {:.0} B after start, {:.0} B after warm-up",
        med(|r| r.per_conn),
        med(|r| r.per_conn_settled),
        med(|r| r.rss_start as f64),
        med(|r| r.rss_warm as f64),
    );
}

fn memory_run(spec: &ServerSpec, conns: usize, sources: &[IpAddr], client_cpu: usize) -> MemRun {
    let server = Server::start(spec);
    let pid = server.pid();
    let status = format!("/proc/{pid}/status");
    let rollup = format!("/proc/{pid}/smaps_rollup");
    let m = |name: &str| metric(server.addr, name, Duration::from_secs(2));
    std::thread::sleep(Duration::from_millis(500));
    let rss_start = proc_kb(&status, "VmRSS");
    println!("ringfan pid {pid} at {}", server.addr);
    println!("VmRSS after start:           {rss_start:>10} B");

    // Warm-up: 100 connections opened (handshake done) and closed.
    let rt = runtime();
    rt.block_on(async {
        let mut ws = open_all(server.addr, None, 100, 100)
            .await
            .expect("warm-up");
        for w in &mut ws {
            let _ = w.close(None).await;
        }
    });
    let t = Instant::now();
    while m("ringfan_connections_open") != Some(1) {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "warm-up connections did not close"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let enobufs_warm = m("ringfan_recv_enobufs_total").unwrap_or(0);
    let before = proc_kb(&status, "VmRSS");
    let before_anon = proc_kb(&rollup, "Anonymous");
    let (sock_before, tcp_before, mem_before) = sockstat();
    let slab_before = proc_kb("/proc/meminfo", "Slab");
    println!("VmRSS after warm-up:         {before:>10} B (Anonymous {before_anon} B)");

    // The holders.
    let exe = std::env::current_exe().unwrap();
    let (tx, rx) = mpsc::channel::<(usize, Option<String>)>();
    let mut holders = Holders(Vec::new());
    let per = conns.div_ceil(sources.len());
    let t0 = Instant::now();
    for (i, src) in sources.iter().enumerate() {
        let count = per.min(conns - per * i);
        let mut child = Command::new("taskset")
            .args(["-c", &client_cpu.to_string()])
            .arg(&exe)
            .args(["hold", "--server", &server.addr.to_string()])
            .args(["--source", &src.to_string(), "--count", &count.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn holder");
        let out = child.stdout.take().unwrap();
        let stdin = child.stdin.take();
        holders.0.push((child, stdin));
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send((i, Some(line)));
            }
            let _ = tx.send((i, None));
        });
    }
    let mut ready = 0;
    let mut pending = sources.len();
    while pending > 0 {
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok((_, Some(l))) if l.starts_with("READY ") => {
                ready += l
                    .split_whitespace()
                    .nth(1)
                    .unwrap()
                    .parse::<usize>()
                    .unwrap();
                pending -= 1;
            }
            Ok((_, Some(_))) => {}
            Ok((i, None)) => panic!("holder {i} exited early"),
            Err(_) => panic!("holders not ready in 120 s"),
        }
    }
    let open_secs = t0.elapsed().as_secs_f64();
    assert_eq!(ready, conns);
    // Let the last 101 responses' sends complete.
    std::thread::sleep(Duration::from_secs(1));
    let established = established_on(server.addr.port());
    let after = proc_kb(&status, "VmRSS");
    let after_anon = proc_kb(&rollup, "Anonymous");
    let after_huge = proc_kb(&rollup, "AnonHugePages");
    let (sock_after, tcp_after, mem_after) = sockstat();
    let slab_after = proc_kb("/proc/meminfo", "Slab");
    // The handshake deadline (10 s by default) fires for every connection
    // and re-arms its timer for the idle ping: the steady state of an idle
    // connection. (Before the idle ping at 30 s: the holders do not poll,
    // so they would not answer it.)
    let t_settled = t0 + Duration::from_secs_f64(open_secs) + Duration::from_secs(13);
    std::thread::sleep(t_settled.saturating_duration_since(Instant::now()));
    let settled = proc_kb(&status, "VmRSS");
    // With one shard the descriptor table has RLIMIT_NOFILE slots; when the
    // held connections fill it, /metrics waits in the listen backlog.
    let open = m("ringfan_connections_open");

    println!(
        "{conns} connections (handshake done, idle) opened in {open_secs:.2} s ({:.0}/s)",
        conns as f64 / open_secs
    );
    println!(
        "server-side ESTABLISHED on :{}: {established}",
        server.addr.port()
    );
    match open {
        Some(n) => println!("/metrics while held: connections_open {n} (incl. itself)"),
        None => println!("/metrics while held: no answer in 2 s (descriptor table full?)"),
    }
    println!(
        "VmRSS with the connections:  {after:>10} B (Anonymous {after_anon} B, AnonHugePages {after_huge} B)"
    );
    println!("VmRSS 13 s later:            {settled:>10} B (timers re-armed)");
    let per_conn = (after as f64 - before as f64) / conns as f64;
    let per_conn_settled = (settled as f64 - before as f64) / conns as f64;
    let per_conn_anon = (after_anon as f64 - before_anon as f64) / conns as f64;
    let slab_per_conn = (slab_after as f64 - slab_before as f64) / conns as f64;
    println!(
        "user-space per connection:   {per_conn:>10.1} B (VmRSS), {per_conn_anon:.1} B (Anonymous); \
         {per_conn_settled:.1} B 13 s later"
    );
    println!(
        "kernel, whole machine (client and server ends): sockets used {sock_before} -> {sock_after}, \
         TCP inuse {tcp_before} -> {tcp_after}, TCP mem {mem_before} -> {mem_after} pages, \
         Slab {} -> {} kB ({slab_per_conn:.0} B per connection, both ends)",
        slab_before / 1024,
        slab_after / 1024,
    );

    // Close them and check the server's counters.
    for (_, stdin) in &mut holders.0 {
        if let Some(s) = stdin.as_mut() {
            let _ = writeln!(s, "CLOSE");
        }
    }
    drop(holders);
    let t = Instant::now();
    let mut open = None;
    while t.elapsed() < Duration::from_secs(30) {
        open = m("ringfan_connections_open");
        if open == Some(1) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let upgrades = m("ringfan_websocket_upgrades_total");
    let full = m("ringfan_accept_table_full_total");
    let enobufs = m("ringfan_recv_enobufs_total").unwrap_or(0);
    std::thread::sleep(Duration::from_millis(500));
    println!(
        "after closing: connections_open {open:?}, websocket_upgrades_total {upgrades:?} \
         (incl. 100 warm-up), accept_table_full_total {full:?}, \
         recv_enobufs_total {enobufs} (warm-up: {enobufs_warm}), VmRSS {} B",
        proc_kb(&status, "VmRSS")
    );
    MemRun {
        rss_start,
        rss_warm: before,
        rss_held: after,
        per_conn,
        per_conn_anon,
        per_conn_settled,
        enobufs: enobufs - enobufs_warm,
        slab_per_conn,
    }
}

// ------------------------------------------------------------------- echo

struct EchoOpts {
    conns: usize,
    size: usize,
    depth: usize,
    /// Raw client: hand-encoded frames, batched writes (no tungstenite).
    raw: bool,
    warmup: Duration,
    window: Duration,
}

struct EchoRun {
    round_trips: u64,
    secs: f64,
    rtts_ns: Vec<u64>,
    client_cpu: f64,
    server_cpu: f64,
    /// The server's system (kernel) time, part of server_cpu.
    server_sys: f64,
    /// CPU used on the machine by everything but this client and the
    /// server over the window, in cores (the VM is shared).
    other_cpu: f64,
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Busy CPU seconds of the whole machine (user + nice + system from the
/// aggregate line of /proc/stat; softirq, irq and steal not included).
fn machine_busy_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/stat").unwrap();
    let line = s.lines().next().unwrap();
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (f[0] + f[1] + f[2]) as f64 / hz
}

/// Wait until everything else on the machine uses less than `below` cores
/// (sampled over 1 s), for at most `max_wait`. Returns the last sample.
fn wait_quiet(below: f64, max_wait: Duration, server_pid: u32) -> f64 {
    let t = Instant::now();
    loop {
        let spid = server_pid.to_string();
        let (m0, c0, s0) = (machine_busy_secs(), cpu_secs("self"), cpu_secs(&spid));
        std::thread::sleep(Duration::from_secs(1));
        let (m1, c1, s1) = (machine_busy_secs(), cpu_secs("self"), cpu_secs(&spid));
        let other = ((m1 - m0) - (c1 - c0) - (s1 - s0)).max(0.0);
        if other < below {
            return other;
        }
        if t.elapsed() > max_wait {
            println!("     (machine still busy: {other:.2} cores used by other processes; measuring anyway)");
            return other;
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn echo(
    spec: &ServerSpec,
    o: &EchoOpts,
    runs: usize,
    client_cpu: usize,
    quiet: f64,
    max_wait: Duration,
    max_others: f64,
    max_attempts: usize,
) {
    let server_cpu = spec.cpu;
    pin_self(client_cpu);
    println!(
        "echo: {} connections x {} B text, {} in flight per connection, \
         {:?} warm-up + {:?} window; server taskset -c {server_cpu} --shards 1 {:?} {:?}, \
         {} client on cpu {client_cpu}",
        o.conns,
        o.size,
        o.depth,
        o.warmup,
        o.window,
        spec.args,
        spec.env,
        if o.raw { "raw" } else { "tokio-tungstenite" }
    );
    println!(
        "{:>4} {:>13} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7} {:>8} {:>9} {:>7}",
        "run",
        "round trips/s",
        "p50 µs",
        "p90 µs",
        "p99 µs",
        "max µs",
        "client",
        "server",
        "of which sys",
        "srv µs/rt",
        "others"
    );
    let mut results = Vec::new();
    let mut attempt = 0;
    while results.len() < runs && attempt < runs * max_attempts {
        attempt += 1;
        let server = Server::start(spec);
        std::thread::sleep(Duration::from_millis(200));
        wait_quiet(quiet, max_wait, server.pid());
        let mut r = runtime().block_on(echo_run(server.addr, server.pid(), o));
        r.rtts_ns.sort_unstable();
        let rps = r.round_trips as f64 / r.secs;
        let us = |ns: u64| ns as f64 / 1000.0;
        let srv_per_rt = r.server_cpu / r.round_trips as f64 * 1e6;
        let row = [
            rps,
            us(percentile(&r.rtts_ns, 0.50)),
            us(percentile(&r.rtts_ns, 0.90)),
            us(percentile(&r.rtts_ns, 0.99)),
            us(*r.rtts_ns.last().unwrap_or(&0)),
            r.client_cpu / r.secs * 100.0,
            r.server_cpu / r.secs * 100.0,
            srv_per_rt,
            r.other_cpu / r.secs * 100.0,
            r.server_sys / r.secs * 100.0,
        ];
        let discard = r.other_cpu / r.secs > max_others;
        println!(
            "{attempt:>4} {:>13.0} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>6.0}% {:>6.0}% {:>11.0}% {:>9.2} {:>6.0}%{}",
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            row[5],
            row[6],
            row[9],
            row[7],
            row[8],
            if discard { "  discarded: other processes were busy" } else { "" }
        );
        let errors = metric(
            server.addr,
            "ringfan_protocol_errors_total",
            Duration::from_secs(2),
        );
        assert_eq!(errors, Some(0), "server counted protocol errors");
        if !discard {
            results.push(row);
        }
    }
    if results.is_empty() {
        println!("no run was free of other load; nothing to report");
        return;
    }
    let runs = results.len();
    println!("{runs} runs kept, {} discarded", attempt - runs);
    let med = |i: usize| median(&mut results.iter().map(|r| r[i]).collect::<Vec<_>>());
    println!(
        "median of {runs}: {:.0} round trips/s, p50 {:.1} µs, p99 {:.1} µs, \
         client CPU {:.0}%, server CPU {:.0}% (sys {:.0}%), server {:.2} µs CPU per round trip, \
         other processes {:.0}% (CPU: % of one core; \"others\" = everything else on the machine)",
        med(0),
        med(1),
        med(3),
        med(5),
        med(6),
        med(9),
        med(7),
        med(8)
    );
}

async fn echo_run(addr: SocketAddr, server_pid: u32, o: &EchoOpts) -> EchoRun {
    let start_conns = |n| async move {
        if o.raw {
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(Conn::Raw(raw_connect(addr).await));
            }
            v
        } else {
            let ws = open_all(addr, None, n, 64).await.expect("connect");
            ws.into_iter().map(|w| Conn::Ws(Box::new(w))).collect()
        }
    };
    let conns = start_conns(o.conns).await;
    let start = Instant::now();
    let w0 = start + o.warmup;
    let w1 = w0 + o.window;
    // Samples the CPU counters at the window's edges.
    let spid = server_pid.to_string();
    let sampler = tokio::spawn(async move {
        tokio::time::sleep_until(w0.into()).await;
        let (c0, s0, m0, t0) = (
            cpu_secs("self"),
            cpu_split(&spid),
            machine_busy_secs(),
            Instant::now(),
        );
        tokio::time::sleep_until(w1.into()).await;
        let (c1, s1, m1, t1) = (
            cpu_secs("self"),
            cpu_split(&spid),
            machine_busy_secs(),
            Instant::now(),
        );
        let c = c1 - c0;
        let (su, ss) = (s1.0 - s0.0, s1.1 - s0.1);
        (
            c,
            su + ss,
            ss,
            ((m1 - m0) - c - su - ss).max(0.0),
            (t1 - t0).as_secs_f64(),
        )
    });
    let size = o.size;
    let depth = o.depth;
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, c)| match c {
            Conn::Ws(ws) => tokio::spawn(echo_conn(*ws, i, size, depth, w0, w1)),
            Conn::Raw(tcp) => tokio::spawn(echo_conn_raw(tcp, i, size, depth, w0, w1)),
        })
        .collect();
    let mut rtts = Vec::new();
    for t in tasks {
        rtts.extend(t.await.expect("connection task"));
    }
    let (client_cpu, server_cpu, server_sys, other_cpu, secs) = sampler.await.unwrap();
    EchoRun {
        round_trips: rtts.len() as u64,
        secs,
        rtts_ns: rtts,
        client_cpu,
        server_cpu,
        server_sys,
        other_cpu,
    }
}

enum Conn {
    Ws(Box<Ws>),
    Raw(tokio::net::TcpStream),
}

/// A WebSocket handshake by hand; the stream is then ours to frame.
async fn raw_connect(addr: SocketAddr) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.set_nodelay(true).ok();
    tcp.write_all(
        b"GET /echo HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\n\
          Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Sec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .expect("write handshake");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(
            tcp.read(&mut b).await.expect("read handshake"),
            1,
            "closed in handshake"
        );
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101 "),
        "handshake refused: {}",
        String::from_utf8_lossy(&head)
    );
    // RFC 6455 §1.3's sample key has this accept value.
    assert!(
        String::from_utf8_lossy(&head).contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "bad Sec-WebSocket-Accept"
    );
    tcp
}

/// Append one masked client text frame.
fn encode_masked(out: &mut Vec<u8>, payload: &[u8]) {
    out.push(0x81);
    let n = payload.len();
    if n < 126 {
        out.push(0x80 | n as u8);
    } else {
        assert!(n <= 0xffff);
        out.push(0x80 | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    }
    let key = fastrand::u32(..).to_ne_bytes();
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
}

/// An unmasked server frame at the front of `buf`: (opcode byte, payload
/// range, frame length), or None if incomplete.
fn parse_server_frame(buf: &[u8]) -> Option<(u8, std::ops::Range<usize>, usize)> {
    if buf.len() < 2 {
        return None;
    }
    assert_eq!(buf[1] & 0x80, 0, "server frames are not masked");
    let (len, hdr) = match buf[1] & 0x7f {
        126 => {
            if buf.len() < 4 {
                return None;
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4)
        }
        127 => panic!("unexpected 64-bit length"),
        n => (n as usize, 2),
    };
    if buf.len() < hdr + len {
        return None;
    }
    Some((buf[0], hdr..hdr + len, hdr + len))
}

/// The raw client's connection loop: like `echo_conn`, but every echo that
/// arrives in one read is answered with one write carrying the new
/// messages.
async fn echo_conn_raw(
    mut tcp: tokio::net::TcpStream,
    conn: usize,
    size: usize,
    depth: usize,
    w0: Instant,
    w1: Instant,
) -> Vec<u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut rtts = Vec::with_capacity(1 << 16);
    let mut in_flight: VecDeque<(u64, Instant)> = VecDeque::with_capacity(depth);
    let mut seq = 0u64;
    let mut out = Vec::with_capacity(depth * (size + 8));
    let now = Instant::now();
    for _ in 0..depth {
        encode_masked(&mut out, payload(conn, seq, size).as_bytes());
        in_flight.push_back((seq, now));
        seq += 1;
    }
    tcp.write_all(&out).await.expect("write");
    out.clear();
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    while !in_flight.is_empty() {
        let n = tcp.read_buf(&mut buf).await.expect("read");
        assert!(n > 0, "connection {conn}: server closed");
        let now = Instant::now();
        let mut off = 0;
        let mut due = 0;
        while let Some((op, range, len)) = parse_server_frame(&buf[off..]) {
            let body = &buf[off + range.start..off + range.end];
            off += len;
            if op == 0x89 || op == 0x8a {
                continue; // ping/pong: none expected while busy
            }
            assert_eq!(op, 0x81, "connection {conn}: unexpected frame {op:#x}");
            let (want, sent) = in_flight.pop_front().expect("an echo nobody asked for");
            assert!(
                body == payload(conn, want, size).as_bytes(),
                "connection {conn}: wrong echo for message {want}"
            );
            if now >= w0 && now < w1 {
                rtts.push((now - sent).as_nanos() as u64);
            }
            if now < w1 {
                due += 1;
            }
        }
        buf.drain(..off);
        if due > 0 {
            let sent = Instant::now();
            for _ in 0..due {
                encode_masked(&mut out, payload(conn, seq, size).as_bytes());
                in_flight.push_back((seq, sent));
                seq += 1;
            }
            tcp.write_all(&out).await.expect("write");
            out.clear();
        }
    }
    rtts
}

/// The payload for message `seq` of connection `conn`: exactly `size`
/// bytes of text, unique per message, so that a lost, duplicated or
/// reordered echo is caught.
fn payload(conn: usize, seq: u64, size: usize) -> String {
    let mut s = format!("{conn:06}:{seq:016x}:");
    while s.len() < size {
        s.push('x');
    }
    s.truncate(size);
    s
}

/// One connection: keep `depth` messages in flight until `w1`; return the
/// RTTs of the echoes that arrived in [w0, w1).
async fn echo_conn(
    mut ws: Ws,
    conn: usize,
    size: usize,
    depth: usize,
    w0: Instant,
    w1: Instant,
) -> Vec<u64> {
    let mut rtts = Vec::with_capacity(1 << 16);
    let mut in_flight: VecDeque<(u64, Instant)> = VecDeque::with_capacity(depth);
    let mut seq = 0u64;
    for _ in 0..depth {
        ws.feed(Message::text(payload(conn, seq, size)))
            .await
            .expect("send");
        in_flight.push_back((seq, Instant::now()));
        seq += 1;
    }
    ws.flush().await.expect("flush");
    while let Some((want, sent)) = in_flight.pop_front() {
        let text = loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => break t,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("connection {conn}: got {other:?}"),
            }
        };
        let now = Instant::now();
        assert!(
            text.len() == size && text.as_str() == payload(conn, want, size),
            "connection {conn}: wrong echo for message {want}"
        );
        if now >= w0 && now < w1 {
            rtts.push((now - sent).as_nanos() as u64);
        }
        if now < w1 {
            ws.send(Message::text(payload(conn, seq, size)))
                .await
                .expect("send");
            in_flight.push_back((seq, Instant::now()));
            seq += 1;
        }
    }
    let _ = ws.close(None).await;
    rtts
}
