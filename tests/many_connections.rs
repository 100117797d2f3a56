//! One `ringfan` process holds 30,000 WebSocket connections while its
//! `ulimit -n` is 20,000: accepted sockets are io_uring direct descriptors,
//! not file descriptors, so the fd limit only caps each shard's descriptor
//! table (2 shards × 20,000 slots).
//!
//! No single client process can hold 30,000 sockets under the same 20,000 fd
//! limit, so the client side is three child processes: this test binary
//! re-executed to run the `#[ignore]`d `holder_process` test, each opening
//! 10,000 connections from its own source address (127.0.0.2, .3, .4: the
//! loopback ephemeral range gives ~28k ports per source address).
//!
//! Protocol with a holder (its stdout/stdin):
//!   holder → `READY <n> <secs>` once its n handshakes are done;
//!   parent → `ECHO` (any other line, or EOF, makes it exit);
//!   holder → `ECHOED <n>` once every connection got its own message back.

mod common;

use common::Broker;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

const HOLDER_TEST: &str = "holder_process";
const SOURCES: [&str; 3] = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
const PER_HOLDER: usize = 10_000;
const TOTAL: usize = PER_HOLDER * SOURCES.len();
const FD_LIMIT: u64 = 20_000;
/// Handshakes in flight per holder.
const IN_FLIGHT: usize = 256;
const READY_DEADLINE: Duration = Duration::from_secs(120);
const ECHO_DEADLINE: Duration = Duration::from_secs(60);

const ENV_SERVER: &str = "RINGFAN_HOLD_SERVER";
const ENV_SOURCE: &str = "RINGFAN_HOLD_SOURCE";
const ENV_COUNT: &str = "RINGFAN_HOLD_COUNT";

/// The holder children; killed (and reaped) however the test ends.
struct Holders {
    children: Vec<Child>,
    stdins: Vec<Option<ChildStdin>>,
}

impl Drop for Holders {
    fn drop(&mut self) {
        self.stdins.clear();
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The value after `key` among a line's words (libtest may print
/// `test holder_process ... ` on the same line, before ours).
fn field(line: &str, key: &str) -> Option<u64> {
    let mut words = line.split_whitespace();
    words.find(|w| *w == key)?;
    words.next()?.parse().ok()
}

/// Soft and hard "Max open files" from /proc/<pid>/limits.
fn open_files_limit(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("read limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files line");
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(v.len(), 2, "unexpected limits line: {line}");
    (v[0], v[1])
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn holds_30000_websockets_under_a_20000_fd_limit() {
    let t_start = Instant::now();
    // The idle ping would otherwise fire after 30 s of silence and close
    // connections whose holder is not polling (waiting for `ECHO`); on a
    // slow machine the test may take that long.
    let mut broker = Broker::start_with(
        &[
            "--shards",
            "2",
            "--echo",
            "--idle-ping",
            "600",
            "--log-level",
            "warn",
        ],
        |cmd| {
            cmd.stderr(Stdio::piped());
            // SAFETY: setrlimit is async-signal-safe; nothing else runs in the
            // forked child before exec.
            unsafe {
                cmd.pre_exec(|| {
                    let lim = libc::rlimit {
                        rlim_cur: FD_LIMIT as libc::rlim_t,
                        rlim_max: FD_LIMIT as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        },
    );
    let pid = broker.child.id();

    // Everything the server writes to stderr, echoed and kept for the end.
    let server_stderr = Arc::new(Mutex::new(Vec::<String>::new()));
    {
        let err = broker.child.stderr.take().expect("server stderr");
        let keep = server_stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("[ringfan stderr] {line}");
                keep.lock().unwrap().push(line);
            }
        });
    }

    let (soft, hard) = open_files_limit(pid);
    eprintln!("ringfan pid {pid}: Max open files soft {soft} hard {hard}");
    assert!(
        soft <= FD_LIMIT && hard <= FD_LIMIT,
        "server's fd limit is {soft}/{hard}, want at most {FD_LIMIT}"
    );

    // Spawn the holders: this very test binary, running `holder_process`.
    let exe = std::env::current_exe().expect("current_exe");
    let (tx, rx) = mpsc::channel::<(usize, Option<String>)>();
    let mut holders = Holders {
        children: Vec::new(),
        stdins: Vec::new(),
    };
    let t_spawn = Instant::now();
    for (i, src) in SOURCES.iter().enumerate() {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                HOLDER_TEST,
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(ENV_SERVER, broker.addr.to_string())
            .env(ENV_SOURCE, src)
            .env(ENV_COUNT, PER_HOLDER.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn holder");
        let out = child.stdout.take().expect("holder stdout");
        holders.stdins.push(child.stdin.take());
        holders.children.push(child);
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send((i, Some(line))).is_err() {
                    return;
                }
            }
            let _ = tx.send((i, None));
        });
    }
    drop(tx);

    // Wait for every READY, or fail if a holder dies or the deadline passes.
    let wait_for = |key: &str, deadline: Instant, got: &mut [Option<u64>]| {
        while got.iter().any(Option::is_none) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((i, Some(line))) => {
                    if let Some(n) = field(&line, key) {
                        got[i] = Some(n);
                    }
                }
                // A holder that finished exits: only an early EOF is wrong.
                Ok((i, None)) if got[i].is_some() => {}
                Ok((i, None)) => panic!(
                    "holder {i} ({}) exited before {key} (its stderr is above)",
                    SOURCES[i]
                ),
                Err(_) => panic!("deadline passed waiting for {key}: got {got:?}"),
            }
        }
    };
    let mut ready = [None; SOURCES.len()];
    wait_for("READY", Instant::now() + READY_DEADLINE, &mut ready);
    let connect_secs = t_spawn.elapsed().as_secs_f64();
    let held: u64 = ready.iter().map(|n| n.unwrap()).sum();
    eprintln!(
        "{held} WebSocket handshakes done in {connect_secs:.2} s from {} processes \
         (incl. their start-up): {:.0} connections/s",
        SOURCES.len(),
        held as f64 / connect_secs
    );
    assert_eq!(held, TOTAL as u64, "holders opened {ready:?}");

    // The server's own view. Each /metrics request is itself one open
    // connection while it is served.
    let open = broker.metric("ringfan_connections_open");
    let upgrades = broker.metric("ringfan_websocket_upgrades_total");
    let fds = open_fds(pid);
    let (soft, hard) = open_files_limit(pid);
    eprintln!(
        "server: connections_open {open} (incl. this /metrics request), \
         websocket_upgrades_total {upgrades}, {fds} fds in /proc/{pid}/fd, \
         Max open files {soft}/{hard}"
    );
    assert!(
        open > TOTAL as u64,
        "connections_open {open}, want {TOTAL} + the /metrics request"
    );
    assert!(
        upgrades >= TOTAL as u64,
        "websocket_upgrades_total {upgrades}"
    );
    assert!(soft <= FD_LIMIT && hard <= FD_LIMIT);
    assert!(
        fds < 1000,
        "the server has {fds} file descriptors: connections should not use any"
    );
    assert!(broker.child.try_wait().unwrap().is_none(), "server exited");

    // Release the holders: one message on every connection, every echo
    // checked by its holder.
    let t_echo = Instant::now();
    for (i, stdin) in holders.stdins.iter_mut().enumerate() {
        let s = stdin.as_mut().expect("holder stdin");
        writeln!(s, "ECHO").unwrap_or_else(|e| panic!("holder {i} stdin: {e}"));
        s.flush().unwrap();
    }
    let mut echoed = [None; SOURCES.len()];
    wait_for("ECHOED", Instant::now() + ECHO_DEADLINE, &mut echoed);
    let echoed: u64 = echoed.iter().map(|n| n.unwrap()).sum();
    eprintln!(
        "{echoed} echoes checked in {:.2} s",
        t_echo.elapsed().as_secs_f64()
    );
    assert_eq!(echoed, TOTAL as u64);

    // Holders exit on their own (closing their connections); reap them.
    let deadline = Instant::now() + Duration::from_secs(30);
    for (i, c) in holders.children.iter_mut().enumerate() {
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                assert!(status.success(), "holder {i} exited with {status}");
                break;
            }
            assert!(Instant::now() < deadline, "holder {i} did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    let received = broker.metric("ringfan_messages_received_total");
    assert!(
        received >= TOTAL as u64,
        "messages_received_total {received}"
    );

    // Every connection is released once its client went away.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut open = u64::MAX;
    while Instant::now() < deadline {
        open = broker.metric("ringfan_connections_open");
        if open <= 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        open <= 1,
        "{open} connections still open 30 s after the clients left"
    );

    assert!(broker.child.try_wait().unwrap().is_none(), "server exited");
    let errors = server_stderr.lock().unwrap().clone();
    assert!(errors.is_empty(), "server wrote to stderr: {errors:#?}");
    eprintln!("total {:.2} s", t_start.elapsed().as_secs_f64());
}

/// A client process of `holds_30000_websockets_under_a_20000_fd_limit`
/// (which starts it); does nothing when run on its own.
#[test]
#[ignore = "child process of holds_30000_websockets_under_a_20000_fd_limit"]
fn holder_process() {
    let Ok(server) = std::env::var(ENV_SERVER) else {
        eprintln!("{ENV_SERVER} not set: not started as a holder, nothing to do");
        return;
    };
    let server: SocketAddr = server.parse().expect("server address");
    let source: IpAddr = std::env::var(ENV_SOURCE)
        .expect("source address")
        .parse()
        .expect("source address");
    let count: usize = std::env::var(ENV_COUNT)
        .expect("count")
        .parse()
        .expect("count");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let t0 = Instant::now();
    let conns = rt
        .block_on(async {
            tokio::time::timeout(READY_DEADLINE, open_all(server, source, count)).await
        })
        .unwrap_or_else(|_| panic!("{source}: handshakes not done in {READY_DEADLINE:?}"))
        .unwrap_or_else(|e| panic!("{source}: {e}"));
    println!("READY {} {:.3}", conns.len(), t0.elapsed().as_secs_f64());

    // The connections stay open, unpolled, until the parent says so.
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    if line.trim() != "ECHO" {
        eprintln!("{source}: parent went away; closing");
        return;
    }
    let n = rt
        .block_on(async { tokio::time::timeout(ECHO_DEADLINE, echo_all(conns, source)).await })
        .unwrap_or_else(|_| panic!("{source}: echoes not done in {ECHO_DEADLINE:?}"))
        .unwrap_or_else(|e| panic!("{source}: {e}"));
    println!("ECHOED {n}");
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn connect(server: SocketAddr, source: IpAddr) -> Result<Ws, String> {
    use std::os::fd::AsRawFd;
    let sock = tokio::net::TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    // Choose the port at connect time, unique per 4-tuple, so ports in
    // TIME_WAIT from an earlier run (to another server port) are usable.
    let one: libc::c_int = 1;
    // SAFETY: setsockopt on a socket we own, with a pointer to a local int.
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
    let tcp = sock
        .connect(server)
        .await
        .map_err(|e| format!("connect {source} -> {server}: {e}"))?;
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

/// Open `count` connections, `IN_FLIGHT` at a time.
async fn open_all(server: SocketAddr, source: IpAddr, count: usize) -> Result<Vec<Ws>, String> {
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..IN_FLIGHT.min(count))
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

/// One text message on every connection; each must come back unchanged.
async fn echo_all(conns: Vec<Ws>, source: IpAddr) -> Result<usize, String> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let mut chunks: Vec<Vec<(usize, Ws)>> = (0..IN_FLIGHT).map(|_| Vec::new()).collect();
    for (i, ws) in conns.into_iter().enumerate() {
        chunks[i % IN_FLIGHT].push((i, ws));
    }
    let workers: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            tokio::spawn(async move {
                let mut n = 0;
                for (i, mut ws) in chunk {
                    let text = format!("hello from {source} #{i}");
                    ws.send(Message::text(text.clone()))
                        .await
                        .map_err(|e| format!("send #{i}: {e}"))?;
                    loop {
                        match ws.next().await {
                            Some(Ok(Message::Text(t))) if t.as_str() == text => break,
                            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                            other => return Err(format!("#{i}: expected {text:?}, got {other:?}")),
                        }
                    }
                    n += 1;
                }
                Ok::<_, String>(n)
            })
        })
        .collect();
    let mut total = 0;
    for w in workers {
        total += w.await.map_err(|e| format!("worker: {e}"))??;
    }
    Ok(total)
}
