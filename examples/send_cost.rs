//! What does one fan-out send cost the sender, and does the way ringfan
//! submits sends (io_uring `Send` / `SendMsg` on fixed files) make it dearer
//! than a plain `send(2)`?
//!
//! This is the one measurement `ringfan-loadgen` cannot make: it needs no
//! broker at all, only the kernel's floor under every delivery. Results and
//! how they were read: `docs/benchmarks.md`, "What one send costs on this
//! VM"; which examples exist and why: "Examples kept beside the load
//! generator" there.
//!
//! ringfan spends about 0.9 us of server CPU per delivered 100-byte message
//! at 1 M deliveries/s, almost all of it in the kernel under
//! `io_uring_enter` -> `io_sendmsg` -> `tcp_sendmsg`, which on loopback
//! includes the receive path (`tcp_v4_rcv` -> `sock_def_readable` ->
//! wake-ups) run on the sender's core. This benchmark takes the broker out
//! of the picture: it opens `--conns` TCP pairs over 127.0.0.1; the main
//! thread (pinned to `--tx-cpu`) plays the broker and, per round, sends one
//! `MSG`-byte message (or `k` of them in one send) to every connection, "one
//! publish fanned out to N subscribers". The receiving ends are served by
//! one thread pinned to `--rx-cpu`, either
//!
//! * `--rx uring` (default): like a real io_uring client (and like a
//!   ringfan shard): one ring with SINGLE_ISSUER | DEFER_TASKRUN |
//!   COOP_TASKRUN, every socket a fixed file with a multishot recv drawing
//!   from one provided buffer ring (ringfan's own `runtime::bufring`),
//!   buffers recycled as soon as counted; or
//! * `--rx epoll`: level-triggered epoll plus one `recv(2)` per ready socket.
//!
//! The receiver only counts bytes; after each run the sender waits until it
//! has counted every byte sent (a mismatch aborts).
//!
//! Send modes (`--modes`, comma-separated, or `all`):
//!
//! | mode                  | per socket per round                              |
//! |-----------------------|---------------------------------------------------|
//! | `send`                | `send(2)`, MSG_NOSIGNAL                           |
//! | `sendmsg`             | `sendmsg(2)` with `k` iovecs                      |
//! | `uring-sendmsg`       | `IORING_OP_SENDMSG` (`k` iovecs), plain fd        |
//! | `uring-send`          | `IORING_OP_SEND`, plain fd                        |
//! | `uring-sendmsg-fixed` | `IORING_OP_SENDMSG` on a fixed file (ringfan, k>1)|
//! | `uring-send-fixed`    | `IORING_OP_SEND` on a fixed file (ringfan, k = 1) |
//!
//! The io_uring modes queue all N SQEs of a round and submit them with one
//! `io_uring_enter` (the sender's ring has ringfan's flags too). Each mode
//! runs at every `--rates` entry (rounds/s; `max` = back to back) with one
//! message per send, and the `--batch-modes` also with `k` messages per send
//! for every `k` in `--batch` (at `max` only).
//!
//! A run lasts `--rounds` rounds or `--secs` seconds, whichever ends first.
//! Per run, per send: the sender thread's CPU time (`getrusage(
//! RUSAGE_THREAD)`, user + sys) and the sender core's busy time (wall -
//! idle - steal, from /proc/stat, whose idle time is exact under NO_HZ);
//! the receiver thread's CPU time and its core's busy time, as a share of
//! one core, and the receiver core's time per message; both cores' busy
//! time per message; steal. The core figures are the ones to trust: they
//! include softirqs run outside the threads (on an idle core, with
//! `--rps-cpus`), and on this (PVM) guest the thread CPU clocks run slow,
//! by ~10 % for `send` and up to ~25 % in the io_uring modes (`perf sched
//! timehist` shows the sender on the CPU for as long as /proc/stat says the
//! core is busy; the clocks probably leave out time the host spends on the
//! vCPU's exits, which it books as steal for the scheduler only). The
//! busy columns of /proc/stat are not used: they are sampled by the 4 ms
//! tick, which aliases with paced rounds.
//!
//! Runs are short and interleaved over `--reps` repetitions (every other
//! one in reverse order), because this VM drifts between a fast and a slow
//! regime (about 4 vs 6.5 us per send) on a time scale of seconds; the
//! table shows per-column medians. For scale, the header also gives the
//! cost of a null syscall (`getppid`) and of an empty `io_uring_enter` on
//! the sender's core.
//!
//! `--rps-cpus MASK` runs every cell a second time (interleaved, column
//! `rps`) with MASK written to /sys/class/net/lo/queues/rx-0/rps_cpus (root
//! only), which steers loopback receive processing (`netif_rx` ->
//! `tcp_v4_rcv` -> wake-ups) to other cores, e.g. `2` = the receiver's core
//! 1; the difference is what that processing costs the sender. The original
//! value is restored on exit, on error, on panic and on Ctrl-C / SIGTERM
//! (not on SIGKILL: wrap it in a shell `trap` if that matters).
//!
//! ```text
//! cargo build --release --example send_cost
//! B=target/release/examples/send_cost
//! $B                  # 1000 conns; 100, 1000 rounds/s and max; 5 reps (~90 s)
//! $B --rx epoll       # the same, epoll receiver
//! $B --rps-cpus 2     # each cell also with loopback rx processing on core 1 (root)
//! $B --rates 100      # 100 k sends/s offered (1000/s = 1 M/s is more than this VM can send)
//! $B --modes send,uring-sendmsg-fixed --rates max --batch 1,4,16 --reps 5
//! ```

use clap::Parser;
use io_uring::squeue::Entry;
use io_uring::types::{Fd, Fixed, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, IoUring};
use ringfan::runtime::bufring::BufRing;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// Bytes per message (a small WebSocket frame).
const MSG: usize = 100;
/// Largest `k` (messages per send).
const MAX_K: usize = 64;
/// Provided buffers for the io_uring receiver: count (power of two) and size.
const RX_BUFS: u16 = 4096;
const RX_BUF_SIZE: usize = 4096;
const BGID: u16 = 7;
const RPS_PATH: &str = "/sys/class/net/lo/queues/rx-0/rps_cpus";

#[derive(Parser, Debug)]
#[command(about = "Sender CPU per fan-out send: send(2) vs io_uring variants")]
struct Opts {
    /// TCP connection pairs (subscribers).
    #[arg(long, default_value_t = 1000)]
    conns: usize,
    /// Most rounds (publishes) per run; each sends to every connection.
    #[arg(long, default_value_t = 2000)]
    rounds: u64,
    /// Time cap of one run, seconds (whichever of --rounds and this ends
    /// first).
    #[arg(long, default_value_t = 0.6)]
    secs: f64,
    /// Repetitions of every cell (medians are reported).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Comma-separated rounds/s, or `max`.
    #[arg(long, default_value = "100,1000,max")]
    rates: String,
    /// Comma-separated send modes, or `all`.
    #[arg(long, default_value = "all")]
    modes: String,
    /// Messages per send to try (k > 1 only for --batch-modes, at `max`).
    #[arg(long, default_value = "1,4,16")]
    batch: String,
    /// Modes that also run with k > 1.
    #[arg(long, default_value = "sendmsg,uring-sendmsg-fixed")]
    batch_modes: String,
    /// Unmeasured rounds before each run.
    #[arg(long, default_value_t = 20)]
    warmup: u64,
    /// Receiver: `uring` (multishot recv + provided buffers) or `epoll`.
    #[arg(long, default_value = "uring")]
    rx: String,
    /// Core for the sender (this thread).
    #[arg(long, default_value_t = 0)]
    tx_cpu: usize,
    /// Core for the receiver thread.
    #[arg(long, default_value_t = 1)]
    rx_cpu: usize,
    /// Also run every cell with lo's rps_cpus set to this hex mask (root
    /// only), interleaved with the unchanged setting; restored after.
    #[arg(long)]
    rps_cpus: Option<String>,
    /// Also print every run, not only the medians.
    #[arg(long)]
    verbose: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Send,
    SendMsg,
    UringSendMsg,
    UringSend,
    UringSendMsgFixed,
    UringSendFixed,
}

impl Mode {
    const ALL: [Mode; 6] = [
        Mode::Send,
        Mode::SendMsg,
        Mode::UringSendMsg,
        Mode::UringSend,
        Mode::UringSendMsgFixed,
        Mode::UringSendFixed,
    ];

    fn name(self) -> &'static str {
        match self {
            Mode::Send => "send",
            Mode::SendMsg => "sendmsg",
            Mode::UringSendMsg => "uring-sendmsg",
            Mode::UringSend => "uring-send",
            Mode::UringSendMsgFixed => "uring-sendmsg-fixed",
            Mode::UringSendFixed => "uring-send-fixed",
        }
    }

    fn parse_list(s: &str) -> Result<Vec<Mode>, String> {
        if s == "all" {
            return Ok(Mode::ALL.to_vec());
        }
        s.split(',')
            .map(|w| {
                Mode::ALL
                    .into_iter()
                    .find(|m| m.name() == w.trim())
                    .ok_or_else(|| format!("unknown mode {w:?}"))
            })
            .collect()
    }

    fn uring(self) -> bool {
        !matches!(self, Mode::Send | Mode::SendMsg)
    }

    fn fixed(self) -> bool {
        matches!(self, Mode::UringSendMsgFixed | Mode::UringSendFixed)
    }

    fn msg(self) -> bool {
        matches!(
            self,
            Mode::SendMsg | Mode::UringSendMsg | Mode::UringSendMsgFixed
        )
    }
}

#[derive(Clone, Copy, Debug)]
struct Cell {
    mode: Mode,
    k: usize,
    /// Rounds per second; None = as fast as possible.
    rate: Option<f64>,
    /// With `--rps-cpus` in effect.
    rps: bool,
}

fn main() {
    let opts = Opts::parse();
    if let Err(e) = run(&opts) {
        eprintln!("send_cost: {e}");
        std::process::exit(1);
    }
}

fn run(opts: &Opts) -> Result<(), String> {
    let modes = Mode::parse_list(&opts.modes)?;
    let batch_modes = Mode::parse_list(&opts.batch_modes)?;
    let rates = opts
        .rates
        .split(',')
        .map(|w| match w.trim() {
            "max" | "0" => Ok(None),
            x => x
                .parse::<f64>()
                .ok()
                .filter(|r| *r > 0.0)
                .map(Some)
                .ok_or_else(|| format!("bad rate {x:?}")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let ks = opts
        .batch
        .split(',')
        .map(|w| {
            w.trim()
                .parse::<usize>()
                .ok()
                .filter(|k| (1..=MAX_K).contains(k))
                .ok_or_else(|| format!("bad batch {w:?} (1..={MAX_K})"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let rx_mode = match opts.rx.as_str() {
        "uring" => RxMode::Uring,
        "epoll" => RxMode::Epoll,
        x => return Err(format!("unknown receiver {x:?} (uring|epoll)")),
    };
    if opts.conns == 0 || opts.rounds == 0 || opts.reps == 0 {
        return Err("--conns, --rounds and --reps must be > 0".into());
    }

    let mut base = Vec::new();
    for &mode in &modes {
        for &rate in &rates {
            base.push((mode, 1, rate));
        }
    }
    for &k in ks.iter().filter(|&&k| k > 1) {
        for &mode in &batch_modes {
            base.push((mode, k, None));
        }
    }
    let rps_variants: &[bool] = if opts.rps_cpus.is_some() {
        &[false, true]
    } else {
        &[false]
    };
    let cells: Vec<Cell> = base
        .into_iter()
        .flat_map(|(mode, k, rate)| {
            rps_variants
                .iter()
                .map(move |&rps| Cell { mode, k, rate, rps })
        })
        .collect();

    // Ctrl-C / SIGTERM end the run between rounds, so that guards (the
    // rps_cpus one above all) get to restore what they changed.
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, interrupted.clone())
            .map_err(|e| format!("cannot install a signal handler: {e}"))?;
    }
    let mut rps = opts.rps_cpus.as_deref().map(RpsGuard::new).transpose()?;
    raise_nofile(opts.conns as u64 * 2 + 64);
    // SAFETY: prctl(PR_SET_TIMERSLACK) only changes this thread's timer
    // slack (1 us), for punctual paced rounds.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong) };

    let load0 = loadavg();
    let (tx_socks, rx_socks) = pairs(opts.conns).map_err(|e| format!("connections: {e}"))?;
    if !core_affinity::set_for_current(core_affinity::CoreId { id: opts.tx_cpu }) {
        return Err(format!("cannot pin the sender to core {}", opts.tx_cpu));
    }
    let rx = Receiver::start(rx_mode, rx_socks, opts.rx_cpu)?;
    let mut tx = Sender::new(tx_socks).map_err(|e| format!("sender ring: {e}"))?;
    let (null_us, enter_us) = tx.calibrate().map_err(|e| format!("calibration: {e}"))?;

    let started = std::time::Instant::now();
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); cells.len()];
    'reps: for rep in 0..opts.reps {
        // Every other repetition runs the cells backwards, so that a slow
        // drift of the machine does not favour the cells that come first.
        let order: Vec<usize> = if rep % 2 == 0 {
            (0..cells.len()).collect()
        } else {
            (0..cells.len()).rev().collect()
        };
        for ci in order {
            let cell = &cells[ci];
            if interrupted.load(Ordering::Relaxed) {
                break 'reps;
            }
            if let Some(g) = rps.as_mut() {
                g.apply(cell.rps)?;
            }
            let s = run_cell(&mut tx, &rx, cell, opts, &interrupted)?;
            if opts.verbose {
                eprintln!(
                    "rep {}/{} {:<20} k={:<2} {:>6} rps {:<3}: {:>7.0} sends/s  tx thread {:.3} core {:.3} us/send  rx core {:>3.0}%",
                    rep + 1,
                    opts.reps,
                    cell.mode.name(),
                    cell.k,
                    rate_name(cell.rate),
                    rps_name(cell, opts),
                    s.sends_per_s(),
                    s.tx_us_per_send(),
                    s.core_us_per_send(),
                    s.rx_core_pct(),
                );
            }
            samples[ci].push(s);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let load1 = loadavg();
    let rx_stats = rx.stop()?;
    if let Some(g) = rps.as_mut() {
        g.apply(false)?;
    }
    if tx.sent != rx_stats.bytes {
        return Err(format!(
            "sent {} bytes but the receiver counted {}",
            tx.sent, rx_stats.bytes
        ));
    }

    println!(
        "send_cost: kernel {}, {} conns, {} B/msg, runs of <= {} rounds and <= {} s, \
         receiver {}, tx core {} rx core {}, lo rps_cpus {}{}",
        read_trim("/proc/sys/kernel/osrelease"),
        opts.conns,
        MSG,
        opts.rounds,
        opts.secs,
        opts.rx,
        opts.tx_cpu,
        opts.rx_cpu,
        read_trim(RPS_PATH),
        opts.rps_cpus
            .as_deref()
            .map(|m| format!(" (and {m} in the rps={m} rows)"))
            .unwrap_or_default(),
    );
    println!(
        "medians of {} reps; {:.0} s of runs; {} bytes sent = received; rx ENOBUFS {}; \
         loadavg before [{}] after [{}]; null syscall {:.3} us, empty io_uring_enter {:.3} us",
        samples.iter().map(Vec::len).min().unwrap_or(0),
        elapsed,
        tx.sent,
        rx_stats.enobufs,
        load0,
        load1,
        null_us,
        enter_us,
    );
    println!(
        "{:<20} {:>2} {:>6} {:>3} {:>8} {:>9} {:>11} {:>6} {:>7} {:>9} {:>10} {:>6}",
        "mode",
        "k",
        "rate",
        "rps",
        "sends/s",
        "thr_us/snd",
        "core_us/snd",
        "rxthr%",
        "rxcore%",
        "rx_us/msg",
        "tot_us/msg",
        "steal%"
    );
    for (cell, ss) in cells.iter().zip(&samples) {
        if ss.is_empty() {
            continue;
        }
        let m = |f: fn(&Sample) -> f64| median(ss.iter().map(f).collect());
        println!(
            "{:<20} {:>2} {:>6} {:>3} {:>8.0} {:>10.3} {:>11.3} {:>6.1} {:>7.1} {:>9.3} {:>10.3} {:>6.1}",
            cell.mode.name(),
            cell.k,
            rate_name(cell.rate),
            rps_name(cell, opts),
            m(Sample::sends_per_s),
            m(Sample::tx_us_per_send),
            m(Sample::core_us_per_send),
            m(Sample::rx_thread_pct),
            m(Sample::rx_core_pct),
            m(Sample::rx_core_us_per_msg),
            m(Sample::total_us_per_msg),
            m(Sample::steal_pct),
        );
    }
    println!(
        "thr_us/snd: sender thread CPU time (getrusage user+sys) per send; core_us/snd: sender \
         core busy time (wall - idle - steal, /proc/stat) per send; rxthr%: receiver thread CPU \
         time, % of a core; rxcore%: receiver core busy, % of a core; rx_us/msg: receiver core \
         busy time per {MSG}-byte message; tot_us/msg: both cores' busy time per message"
    );
    if interrupted.load(Ordering::Relaxed) {
        return Err("interrupted".into());
    }
    Ok(())
}

fn rate_name(rate: Option<f64>) -> String {
    match rate {
        Some(r) => format!("{r:.0}/s"),
        None => "max".into(),
    }
}

fn rps_name(cell: &Cell, opts: &Opts) -> String {
    match (&opts.rps_cpus, cell.rps) {
        (Some(m), true) => m.clone(),
        _ => "-".into(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

// ---------------------------------------------------------------- a run

#[derive(Clone, Debug, Default)]
struct Sample {
    sends: f64,
    msgs: f64,
    /// Seconds from the first send to the last send's completion.
    send_wall: f64,
    /// Sender thread CPU over the sending period: user + system.
    tx_cpu: f64,
    /// From the first send until the receiver counted every byte.
    wall: f64,
    rx_cpu: f64,
    /// /proc/stat over about `wall` (wall - idle - steal): tx core busy,
    /// both cores busy, both steal.
    core_tx_busy: f64,
    cores_busy: f64,
    steal: f64,
}

impl Sample {
    fn sends_per_s(&self) -> f64 {
        self.sends / self.send_wall
    }
    fn tx_us_per_send(&self) -> f64 {
        self.tx_cpu / self.sends * 1e6
    }
    fn core_us_per_send(&self) -> f64 {
        self.core_tx_busy / self.sends * 1e6
    }
    fn rx_thread_pct(&self) -> f64 {
        100.0 * self.rx_cpu / self.wall
    }
    fn rx_core_pct(&self) -> f64 {
        100.0 * (self.cores_busy - self.core_tx_busy) / self.wall
    }
    fn rx_core_us_per_msg(&self) -> f64 {
        (self.cores_busy - self.core_tx_busy) / self.msgs * 1e6
    }
    fn total_us_per_msg(&self) -> f64 {
        self.cores_busy / self.msgs * 1e6
    }
    fn steal_pct(&self) -> f64 {
        100.0 * self.steal / self.wall
    }
}

fn run_cell(
    tx: &mut Sender,
    rx: &Receiver,
    cell: &Cell,
    opts: &Opts,
    stop: &AtomicBool,
) -> Result<Sample, String> {
    tx.prepare(cell.k);
    let err = |e: io::Error| format!("{} k={}: {e}", cell.mode.name(), cell.k);
    for _ in 0..opts.warmup {
        tx.round(cell.mode, cell.k).map_err(err)?;
    }
    rx.drain(tx.sent, stop)?;

    let cap_ns = (opts.secs * 1e9) as u64;
    let period_ns = cell.rate.map(|r| 1e9 / r);
    let cpus = [opts.tx_cpu, opts.rx_cpu];
    let stat0 = cpu_stat(&cpus)?;
    let s0 = mono_ns();
    let rx0 = rx.cpu_time();
    let ru0 = thread_rusage();
    let t0 = mono_ns();
    let mut rounds = 0u64;
    while rounds < opts.rounds && !stop.load(Ordering::Relaxed) {
        if let Some(p) = period_ns {
            sleep_until(t0 + (rounds as f64 * p) as u64);
        }
        tx.round(cell.mode, cell.k).map_err(err)?;
        rounds += 1;
        // The next round would start after the cap: stop here.
        let next = period_ns.map_or(0, |p| (rounds as f64 * p) as u64);
        if (mono_ns() - t0).max(next) >= cap_ns {
            break;
        }
    }
    let t1 = mono_ns();
    let ru1 = thread_rusage();
    rx.drain(tx.sent, stop)?;
    let t2 = mono_ns();
    let rx1 = rx.cpu_time();
    let stat1 = cpu_stat(&cpus)?;
    let stat_wall = (mono_ns() - s0) as f64 / 1e9;

    let sends = (rounds * tx.fds.len() as u64) as f64;
    let tick = clock_ticks();
    let d = |i: usize, f: fn(&CpuStat) -> u64| (f(&stat1[i]) - f(&stat0[i])) as f64 / tick;
    Ok(Sample {
        sends,
        msgs: sends * cell.k as f64,
        send_wall: (t1 - t0) as f64 / 1e9,
        tx_cpu: ru1 - ru0,
        wall: (t2 - t0) as f64 / 1e9,
        rx_cpu: rx1 - rx0,
        core_tx_busy: stat_wall - d(0, |s| s.idle + s.steal),
        cores_busy: 2.0 * stat_wall - d(0, |s| s.idle + s.steal) - d(1, |s| s.idle + s.steal),
        steal: d(0, |s| s.steal) + d(1, |s| s.steal),
    })
}

// ---------------------------------------------------------------- sender

/// The broker's side: the connecting ends, and a ring with ringfan's flags.
struct Sender {
    socks: Vec<TcpStream>,
    fds: Vec<RawFd>,
    ring: IoUring,
    /// `MAX_K` frames of `MSG` bytes, back to back.
    payload: Box<[u8]>,
    /// Per socket: a msghdr over `k` iovecs (as ringfan keeps one per
    /// in-flight send). Both are only read by the kernel.
    hdrs: Vec<libc::msghdr>,
    iovs: Vec<libc::iovec>,
    /// Bytes sent so far, all runs together.
    sent: u64,
}

impl Sender {
    fn new(socks: Vec<TcpStream>) -> io::Result<Self> {
        let n = socks.len();
        let entries = (n as u32).next_power_of_two().clamp(64, 4096);
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_coop_taskrun()
            .setup_cqsize(entries * 2)
            .build(entries)?;
        let fds: Vec<RawFd> = socks.iter().map(AsRawFd::as_raw_fd).collect();
        ring.submitter().register_files(&fds)?;
        let payload: Box<[u8]> = (0..MAX_K * MSG).map(|i| b'a' + (i % 26) as u8).collect();
        Ok(Self {
            socks,
            fds,
            ring,
            payload,
            hdrs: Vec::new(),
            iovs: Vec::new(),
            sent: 0,
        })
    }

    /// Sender-thread CPU per null syscall and per empty `io_uring_enter`,
    /// microseconds (best of 5 batches).
    fn calibrate(&self) -> io::Result<(f64, f64)> {
        const ITERS: u32 = 50_000;
        let cpu = || clock_secs(libc::CLOCK_THREAD_CPUTIME_ID);
        let (mut null, mut enter) = (f64::MAX, f64::MAX);
        for _ in 0..5 {
            let t = cpu();
            for _ in 0..ITERS {
                // SAFETY: getppid has no arguments and cannot fail.
                unsafe { libc::syscall(libc::SYS_getppid) };
            }
            null = null.min((cpu() - t) / ITERS as f64 * 1e6);
            let t = cpu();
            for _ in 0..ITERS {
                self.ring.submit()?;
            }
            enter = enter.min((cpu() - t) / ITERS as f64 * 1e6);
        }
        Ok((null, enter))
    }

    /// Build the per-socket msghdrs for `k` frames per send.
    fn prepare(&mut self, k: usize) {
        let n = self.fds.len();
        self.iovs = (0..n * k)
            .map(|i| libc::iovec {
                iov_base: self.payload[(i % k) * MSG..].as_ptr() as *mut libc::c_void,
                iov_len: MSG,
            })
            .collect();
        self.hdrs = (0..n)
            .map(|i| {
                // SAFETY: msghdr is plain old data; all-zero is a valid
                // (empty) value, and we fill in the iovec fields below.
                let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
                h.msg_iov = self.iovs[i * k..].as_ptr() as *mut libc::iovec;
                h.msg_iovlen = k as _;
                h
            })
            .collect();
    }

    /// One publish: `k` messages to every socket. `prepare(k)` must have run.
    fn round(&mut self, mode: Mode, k: usize) -> io::Result<()> {
        let len = k * MSG;
        if mode.uring() {
            return self.round_uring(mode, len);
        }
        for (i, &fd) in self.fds.iter().enumerate() {
            let r = if mode == Mode::Send {
                // SAFETY: payload holds MAX_K * MSG >= len bytes and lives
                // for the call.
                unsafe { libc::send(fd, self.payload.as_ptr().cast(), len, libc::MSG_NOSIGNAL) }
            } else {
                // SAFETY: hdrs[i] points at k iovecs over `payload`, all
                // alive for the call (prepare(k) built them).
                unsafe { libc::sendmsg(fd, &self.hdrs[i], libc::MSG_NOSIGNAL) }
            };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            if r as usize != len {
                // Blocking sockets send everything unless interrupted.
                return Err(io::Error::other(format!("short send {r} of {len}")));
            }
            self.sent += r as u64;
        }
        Ok(())
    }

    fn round_uring(&mut self, mode: Mode, len: usize) -> io::Result<()> {
        let n = self.fds.len();
        let mut queued = 0;
        let mut done = 0;
        for i in 0..n {
            let e = self.sqe(mode, i, len);
            // SAFETY: the SQE points at `payload` or at hdrs[i] (and its
            // iovecs); both stay alive and unchanged until we have reaped
            // its completion below, before this function returns.
            while unsafe { self.ring.submission().push(&e) }.is_err() {
                // Only when N exceeds the SQ size: submit what we have.
                self.ring.submit()?;
                done += self.reap(len)?;
            }
            queued += 1;
        }
        // One io_uring_enter for the whole round (when N <= SQ entries):
        // submit everything and wait for every completion. TCP sends that
        // fit the socket buffer complete inline, so this does not sleep.
        while done < queued {
            self.ring.submit_and_wait(queued - done)?;
            done += self.reap(len)?;
        }
        Ok(())
    }

    fn sqe(&self, mode: Mode, i: usize, len: usize) -> Entry {
        let flags = libc::MSG_NOSIGNAL;
        let buf = self.payload.as_ptr();
        let hdr = &self.hdrs[i] as *const libc::msghdr;
        let e = match (mode.msg(), mode.fixed()) {
            (true, true) => opcode::SendMsg::new(Fixed(i as u32), hdr)
                .flags(flags as u32)
                .build(),
            (true, false) => opcode::SendMsg::new(Fd(self.fds[i]), hdr)
                .flags(flags as u32)
                .build(),
            (false, true) => opcode::Send::new(Fixed(i as u32), buf, len as u32)
                .flags(flags)
                .build(),
            (false, false) => opcode::Send::new(Fd(self.fds[i]), buf, len as u32)
                .flags(flags)
                .build(),
        };
        e.user_data(i as u64)
    }

    fn reap(&mut self, len: usize) -> io::Result<usize> {
        let mut n = 0;
        let mut bytes = 0u64;
        for cqe in self.ring.completion() {
            let r = cqe.result();
            if r < 0 {
                return Err(io::Error::from_raw_os_error(-r));
            }
            if r as usize != len {
                return Err(io::Error::other(format!("short send {r} of {len}")));
            }
            bytes += r as u64;
            n += 1;
        }
        self.sent += bytes;
        Ok(n)
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        // Unregister before `socks` closes the fds (the ring would keep the
        // files open otherwise until it is dropped, which is also fine).
        let _ = self.ring.submitter().unregister_files();
        self.socks.clear();
    }
}

/// `n` connected loopback pairs: (sending ends with TCP_NODELAY, receiving).
fn pairs(n: usize) -> io::Result<(Vec<TcpStream>, Vec<OwnedFd>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut tx = Vec::with_capacity(n);
    let mut rx = Vec::with_capacity(n);
    for _ in 0..n {
        let c = TcpStream::connect(addr)?;
        c.set_nodelay(true)?;
        let (s, _) = listener.accept()?;
        tx.push(c);
        rx.push(OwnedFd::from(s));
    }
    Ok((tx, rx))
}

// ---------------------------------------------------------------- receiver

#[derive(Clone, Copy, PartialEq, Eq)]
enum RxMode {
    Uring,
    Epoll,
}

#[derive(Default)]
struct RxShared {
    bytes: AtomicU64,
    enobufs: AtomicU64,
    stop: AtomicBool,
}

struct RxStats {
    bytes: u64,
    enobufs: u64,
}

struct Receiver {
    shared: Arc<RxShared>,
    handle: std::thread::JoinHandle<io::Result<()>>,
    clock: libc::clockid_t,
}

impl Receiver {
    fn start(mode: RxMode, socks: Vec<OwnedFd>, cpu: usize) -> Result<Self, String> {
        let shared = Arc::new(RxShared::default());
        let sh = shared.clone();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let handle = std::thread::Builder::new()
            .name("rx".into())
            .spawn(move || {
                if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
                    let _ = ready_tx.send(Err(format!("cannot pin the receiver to core {cpu}")));
                    return Ok(());
                }
                match mode {
                    RxMode::Uring => rx_uring(socks, &sh, ready_tx),
                    RxMode::Epoll => rx_epoll(socks, &sh, ready_tx),
                }
            })
            .map_err(|e| format!("spawn: {e}"))?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(match handle.join() {
                    Ok(Err(e)) => format!("receiver: {e}"),
                    _ => "receiver died during set-up".into(),
                })
            }
        }
        let mut clock: libc::clockid_t = 0;
        // SAFETY: the thread is alive (it is waiting for data), so its
        // pthread_t is valid; `clock` is a valid out-pointer.
        let r = unsafe { libc::pthread_getcpuclockid(handle.as_pthread_t(), &mut clock) };
        if r != 0 {
            return Err(format!(
                "pthread_getcpuclockid: {}",
                io::Error::from_raw_os_error(r)
            ));
        }
        Ok(Self {
            shared,
            handle,
            clock,
        })
    }

    /// The receiver thread's CPU time so far, seconds.
    fn cpu_time(&self) -> f64 {
        clock_secs(self.clock)
    }

    /// Wait until the receiver has counted `sent` bytes.
    fn drain(&self, sent: u64, stop: &AtomicBool) -> Result<(), String> {
        let t0 = mono_ns();
        loop {
            let got = self.shared.bytes.load(Ordering::Acquire);
            if got == sent {
                return Ok(());
            }
            if got > sent {
                return Err(format!("receiver counted {got} bytes of {sent} sent"));
            }
            if self.handle.is_finished() {
                return Err("the receiver thread stopped".into());
            }
            if mono_ns() - t0 > 10_000_000_000 || stop.load(Ordering::Relaxed) {
                return Err(format!(
                    "receiver counted {got} bytes of {sent} sent after {:.1} s",
                    (mono_ns() - t0) as f64 / 1e9
                ));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    fn stop(self) -> Result<RxStats, String> {
        self.shared.stop.store(true, Ordering::Relaxed);
        match self.handle.join() {
            Ok(Ok(())) => Ok(RxStats {
                bytes: self.shared.bytes.load(Ordering::Acquire),
                enobufs: self.shared.enobufs.load(Ordering::Relaxed),
            }),
            Ok(Err(e)) => Err(format!("receiver: {e}")),
            Err(_) => Err("receiver panicked".into()),
        }
    }
}

/// The io_uring client: one ring, every socket a fixed file with a
/// multishot recv from one provided buffer ring (as a ringfan shard does).
fn rx_uring(
    socks: Vec<OwnedFd>,
    sh: &RxShared,
    ready: mpsc::Sender<Result<(), String>>,
) -> io::Result<()> {
    let n = socks.len();
    // Declared before the ring, so dropped after it: the buffer memory
    // outlives its registration, also on an early return.
    let mut pool: Option<BufRing> = None;
    let entries = (n as u32).next_power_of_two().clamp(64, 4096);
    let mut ring: IoUring = match IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_coop_taskrun()
        .setup_cqsize(entries * 8)
        .build(entries)
    {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send(Err(format!("receiver ring: {e}")));
            return Ok(());
        }
    };
    let fds: Vec<RawFd> = socks.iter().map(AsRawFd::as_raw_fd).collect();
    ring.submitter().register_files(&fds)?;
    // Every buffer offered up front: the pool never has to grow.
    let bufs = pool.insert(BufRing::new(
        &ring.submitter(),
        BGID,
        RX_BUFS,
        RX_BUFS,
        RX_BUF_SIZE,
    )?);
    let (submitter, mut sq, mut cq) = ring.split();
    let recv = |i: u32| {
        opcode::RecvMulti::new(Fixed(i), BGID)
            .build()
            .user_data(i as u64)
    };
    for i in 0..n as u32 {
        // SAFETY: a multishot recv holds no pointer of ours; its buffers
        // come from the registered ring, which outlives the ring.
        while unsafe { sq.push(&recv(i)) }.is_err() {
            sq.sync();
            submitter.submit()?;
            sq.sync();
        }
    }
    sq.sync();
    submitter.submit()?;
    let _ = ready.send(Ok(()));

    // Wake every 10 ms to look at the stop flag.
    let ts = Timespec::new().nsec(10_000_000);
    let args = SubmitArgs::new().timespec(&ts);
    let mut rearm: Vec<u32> = Vec::new();
    let mut open = n;
    while !sh.stop.load(Ordering::Relaxed) && open > 0 {
        match submitter.submit_with_args(1, &args) {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => {}
            Err(e) => return Err(e),
        }
        cq.sync();
        let mut got = 0u64;
        for cqe in &mut cq {
            let i = cqe.user_data() as u32;
            let (res, flags) = (cqe.result(), cqe.flags());
            if let Some(bid) = cqueue::buffer_select(flags) {
                bufs.recycle(bid);
            }
            if res > 0 {
                got += res as u64;
            } else if res == 0 {
                open -= 1; // EOF
                continue;
            } else if res == -libc::ENOBUFS {
                sh.enobufs.fetch_add(1, Ordering::Relaxed);
            } else {
                return Err(io::Error::from_raw_os_error(-res));
            }
            if !cqueue::more(flags) {
                rearm.push(i);
            }
        }
        for i in rearm.drain(..) {
            // SAFETY: as above.
            while unsafe { sq.push(&recv(i)) }.is_err() {
                sq.sync();
                submitter.submit()?;
                sq.sync();
            }
        }
        sq.sync();
        sh.bytes.fetch_add(got, Ordering::Release);
    }
    bufs.unregister(&submitter);
    Ok(())
}

/// The epoll client: level-triggered, one `recv(2)` per ready socket.
fn rx_epoll(
    socks: Vec<OwnedFd>,
    sh: &RxShared,
    ready: mpsc::Sender<Result<(), String>>,
) -> io::Result<()> {
    // SAFETY: plain syscall; the result is checked.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `ep` is a fresh descriptor that we own from here on.
    let ep = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(ep) };
    for (i, s) in socks.iter().enumerate() {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: i as u64,
        };
        // SAFETY: both fds are open; `ev` is a valid event for the call.
        if unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, s.as_raw_fd(), &mut ev) }
            < 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    let _ = ready.send(Ok(()));
    let mut evs = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut buf = vec![0u8; 64 * 1024];
    let mut open = socks.len();
    while !sh.stop.load(Ordering::Relaxed) && open > 0 {
        // SAFETY: `evs` has room for evs.len() events.
        let r = unsafe { libc::epoll_wait(ep.as_raw_fd(), evs.as_mut_ptr(), evs.len() as i32, 10) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        let mut got = 0u64;
        for ev in &evs[..r as usize] {
            let s = &socks[ev.u64 as usize];
            // SAFETY: `buf` is writable for buf.len() bytes.
            let r = unsafe {
                libc::recv(
                    s.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if r > 0 {
                got += r as u64;
            } else if r == 0 {
                open -= 1;
                // SAFETY: both fds are open; DEL ignores the event pointer.
                unsafe {
                    libc::epoll_ctl(
                        ep.as_raw_fd(),
                        libc::EPOLL_CTL_DEL,
                        s.as_raw_fd(),
                        std::ptr::null_mut(),
                    )
                };
            } else {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EAGAIN) {
                    return Err(e);
                }
            }
        }
        sh.bytes.fetch_add(got, Ordering::Release);
    }
    Ok(())
}

// ---------------------------------------------------------------- system

/// Switches lo's rps_cpus between its original value and `mask`; puts
/// the original back on drop (so also on error and panic).
struct RpsGuard {
    old: String,
    mask: String,
    on: bool,
}

impl RpsGuard {
    fn new(mask: &str) -> Result<Self, String> {
        let old = std::fs::read_to_string(RPS_PATH)
            .map_err(|e| format!("{RPS_PATH}: {e}"))?
            .trim()
            .to_string();
        let mut g = Self {
            old,
            mask: mask.to_string(),
            on: false,
        };
        // Fail early (not root, bad mask), before any connection exists.
        g.apply(true)?;
        g.apply(false)?;
        Ok(g)
    }

    fn apply(&mut self, on: bool) -> Result<(), String> {
        if on != self.on {
            let v = if on { &self.mask } else { &self.old };
            std::fs::write(RPS_PATH, v).map_err(|e| format!("write {v} to {RPS_PATH}: {e}"))?;
            self.on = on;
        }
        Ok(())
    }
}

impl Drop for RpsGuard {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(RPS_PATH, &self.old) {
            eprintln!(
                "send_cost: COULD NOT RESTORE {RPS_PATH} to {}: {e}",
                self.old
            );
        }
    }
}

fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn sleep_until(ns: u64) {
    let ts = libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: valid timespec; absolute CLOCK_MONOTONIC sleep, no remainder
    // pointer needed. A signal only makes it return early (harmless).
    unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        )
    };
}

fn clock_secs(clock: libc::clockid_t) -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer; an invalid clock only returns EINVAL.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// This thread's user + system CPU seconds.
fn thread_rusage() -> f64 {
    // SAFETY: rusage is plain old data; getrusage fills it in.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer; RUSAGE_THREAD exists since Linux 2.6.26.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[derive(Clone, Copy, Default)]
struct CpuStat {
    /// Idle + iowait: measured at idle entry and exit (NO_HZ), so exact up
    /// to the 10 ms unit. The busy columns (user, system, softirq...) are
    /// sampled by the 4 ms tick instead, which aliases with paced rounds
    /// (+6 % seen here), so busy time is taken as wall - idle - steal.
    idle: u64,
    steal: u64,
}

/// /proc/stat lines of the given cores.
fn cpu_stat(cpus: &[usize]) -> Result<Vec<CpuStat>, String> {
    let text = std::fs::read_to_string("/proc/stat").map_err(|e| format!("/proc/stat: {e}"))?;
    cpus.iter()
        .map(|c| {
            let tag = format!("cpu{c} ");
            let line = text
                .lines()
                .find(|l| l.starts_with(&tag))
                .ok_or_else(|| format!("no cpu{c} in /proc/stat"))?;
            let v: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            let f = |i: usize| v.get(i).copied().unwrap_or(0);
            Ok(CpuStat {
                idle: f(3) + f(4),
                steal: f(7),
            })
        })
        .collect()
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as f64
}

fn raise_nofile(want: u64) {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0 && rl.rlim_cur < want {
        rl.rlim_cur = want.min(rl.rlim_max);
        // SAFETY: valid in-pointer; lowering or raising up to the hard
        // limit is always allowed.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) };
    }
}

fn loadavg() -> String {
    let s = read_trim("/proc/loadavg");
    s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| format!("({e})"))
}
