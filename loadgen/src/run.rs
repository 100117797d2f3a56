//! The coordinator: starts the client shards on ringfan's runtime, moves
//! the run through its phases (connect, hold, publish, drain, collect),
//! samples the timeline, and assembles the report.

use crate::control::{Control, Live, Phase, Report, ShardResult};
use crate::driver::{histogram, Driver};
use crate::plan::{Plan, Scenario};
use crate::progress::Progress;
use crate::report::{Counts, LatencySummary, RunReport, Sample};
use hdrhistogram::Histogram;
use ringfan::runtime::{Config, Server};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

pub struct Options {
    pub progress: bool,
    /// The broker's process, for its memory and CPU time.
    pub server_pid: Option<u32>,
    /// The command line, for the report.
    pub params: serde_json::Value,
    pub target: String,
}

/// Sampling period of the coordinator (progress line, phase changes).
const POLL: Duration = Duration::from_millis(100);

pub fn run(plan: Plan, opts: Options) -> Result<RunReport, String> {
    let plan = Arc::new(plan);
    let (tx, rx) = mpsc::channel();
    let ctl = Arc::new(Control::new(plan.shards, plan.topics.len(), tx));
    let config = Config {
        listen: None,
        shards: plan.shards,
        pin: true,
        tick: plan.tick,
        handshake_timeout: plan.connect_timeout,
        // The broker pings idle connections; the generator need not.
        idle_ping: Duration::from_secs(3600),
        pong_timeout: Duration::from_secs(60),
        close_timeout: Duration::from_secs(2),
        drain_timeout: Duration::from_secs(3),
        recv_buffers: 512,
        recv_buffers_max: 8192,
        ..Config::default()
    };
    let progress = Progress::new(opts.progress);
    progress.set_label(plan.scenario.name());
    let server0 = opts.server_pid.and_then(proc_sample);
    let cpu0 = self_cpu();
    let begin = Instant::now();
    let runtime = {
        let (plan, ctl) = (plan.clone(), ctl.clone());
        Server::start(config, move |i| Driver::new(plan.clone(), ctl.clone(), i))
            .map_err(|e| e.to_string())?
    };
    let mut intervals = Intervals::default();
    let total = plan.connections();

    // Connect and subscribe.
    let deadline = begin + plan.connect_timeout * 4;
    loop {
        std::thread::sleep(POLL);
        intervals.drain(&rx);
        let opened = ctl.sum(|l| &l.opened);
        let failed = ctl.sum(|l| &l.failed);
        let subscribed = ctl.sum(|l| &l.subscribed);
        let ready = ctl.sum(|l| &l.ready);
        let closed = ctl.sum(|l| &l.closed);
        progress.update(
            "connecting",
            begin.elapsed().as_secs_f64(),
            opened.saturating_sub(closed),
            0.0,
            0.0,
        );
        let subs_open = opened.saturating_sub(ready);
        if opened + failed >= total && subscribed + closed >= subs_open {
            break;
        }
        if Instant::now() > deadline {
            progress.println("connect phase timed out; running with what connected");
            break;
        }
    }
    let connect_s = begin.elapsed().as_secs_f64();
    let opened = ctl.sum(|l| &l.opened);
    let server1 = opts.server_pid.and_then(proc_sample);

    if !plan.hold.is_zero() {
        ctl.set_phase(Phase::Holding);
        let until = Instant::now() + plan.hold;
        while Instant::now() < until {
            std::thread::sleep(POLL);
            let open = ctl.sum(|l| &l.opened) - ctl.sum(|l| &l.closed);
            progress.update("holding", begin.elapsed().as_secs_f64(), open, 0.0, 0.0);
        }
    }

    // Publish on schedule.
    let lead = 20_000_000;
    let start_ns = ctl.now_ns() + lead;
    ctl.start_ns.store(start_ns, Ordering::Release);
    ctl.set_phase(Phase::Running);
    let server_run0 = opts.server_pid.and_then(proc_sample);
    let run_len = plan.warmup + plan.duration;
    let run_start = Instant::now() + Duration::from_nanos(lead);
    let mut timeline = Timeline::new(run_start, intervals);
    let measured_from = run_start + plan.warmup;
    let mut server_measure0 = None;
    let mut cpu_measure0 = None;
    while Instant::now() < run_start + run_len {
        std::thread::sleep(POLL);
        if cpu_measure0.is_none() && Instant::now() >= measured_from {
            server_measure0 = opts.server_pid.and_then(proc_sample);
            cpu_measure0 = self_cpu();
        }
        timeline.poll(&ctl, &rx, &progress, "running");
    }
    let server_measure1 = opts.server_pid.and_then(proc_sample);
    let cpu_measure1 = self_cpu();
    let server_measure0 = server_measure0.or(server_run0);

    // Let deliveries in flight arrive.
    ctl.set_phase(Phase::Draining);
    let until = Instant::now() + plan.grace;
    loop {
        std::thread::sleep(POLL);
        timeline.poll(&ctl, &rx, &progress, "draining");
        let expected = ctl.sum(|l| &l.expected);
        let delivered = ctl.sum(|l| &l.delivered);
        let pending_acks = ctl.sum(|l| &l.published) > ctl.sum(|l| &l.acked);
        let done = delivered >= expected && !(plan.scenario == Scenario::Echo && pending_acks);
        if done || Instant::now() >= until {
            break;
        }
    }
    // One more tick so the last counters are in.
    std::thread::sleep(plan.tick * 2 + POLL);

    ctl.set_phase(Phase::Collect);
    let mut finals: Vec<ShardResult> = Vec::new();
    let wait_until = Instant::now() + Duration::from_secs(10);
    while finals.len() < plan.shards && Instant::now() < wait_until {
        match rx.recv_timeout(POLL) {
            Ok((_, Report::Final(r))) => finals.push(*r),
            Ok((_, Report::Interval { .. })) | Err(_) => {}
        }
    }
    let server2 = opts.server_pid.and_then(proc_sample);
    let cpu1 = self_cpu();
    progress.finish();
    runtime.shutdown();
    runtime.join();

    // Assemble.
    let mut counts = Counts::default();
    let mut latency = histogram();
    let mut lag = histogram();
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    let (mut delivered_measured, mut published_measured) = (0u64, 0u64);
    for f in &finals {
        counts.add(&f.counts);
        let _ = latency.add(&f.latency);
        let _ = lag.add(&f.send_lag);
        for (k, v) in &f.failures {
            *failures.entry(k.clone()).or_default() += v;
        }
        delivered_measured += f.delivered_measured;
        published_measured += f.published_measured;
    }
    counts.connections_target = total;
    let unique = counts.delivered.saturating_sub(counts.duplicated);
    counts.lost = counts.expected_deliveries.saturating_sub(unique);

    let measured_s = plan.duration.as_secs_f64().max(1e-9);
    let mut extra = BTreeMap::new();
    extra.insert("connect_time_s".into(), connect_s);
    extra.insert(
        "connect_rate_per_s".into(),
        opened as f64 / connect_s.max(1e-9),
    );
    if plan.scenario != Scenario::Conns {
        extra.insert(
            "deliveries_per_s".into(),
            delivered_measured as f64 / measured_s,
        );
        extra.insert(
            "publishes_per_s".into(),
            published_measured as f64 / measured_s,
        );
    }
    if let (Some(a), Some(b)) = (cpu0, cpu1) {
        extra.insert("client_cpu_total_s".into(), b - a);
    }
    let timed = !plan.duration.is_zero();
    if let (Some(a), Some(b), true) = (cpu_measure0, cpu_measure1, timed) {
        // Over the measured window only: how close the generator itself
        // came to its ceiling (1.0 = one core busy).
        let cpu = b - a;
        extra.insert("client_cpu_share".into(), cpu / measured_s);
        if delivered_measured > 0 {
            extra.insert(
                "client_cpu_us_per_delivery".into(),
                cpu * 1e6 / delivered_measured as f64,
            );
        }
    }
    if let (Some(before), Some(after)) = (server0, server1) {
        extra.insert("server_rss_bytes".into(), after.rss as f64);
        if opened > 0 {
            extra.insert(
                "server_rss_per_conn_bytes".into(),
                (after.rss as f64 - before.rss as f64) / opened as f64,
            );
        }
    }
    if let (Some(a), Some(b), true) = (server_measure0, server_measure1, timed) {
        let cpu = b.cpu_s - a.cpu_s;
        extra.insert("server_cpu_s".into(), cpu);
        extra.insert(
            "server_cpu_share".into(),
            cpu / plan.duration.as_secs_f64().max(1e-9),
        );
        if delivered_measured > 0 {
            extra.insert(
                "server_cpu_us_per_delivery".into(),
                cpu * 1e6 / delivered_measured as f64,
            );
        }
    }
    if let Some(s) = server2 {
        extra.insert("server_rss_end_bytes".into(), s.rss as f64);
    }
    let mut report = RunReport {
        scenario: plan.scenario.name().into(),
        target: opts.target,
        params: opts.params,
        unix_time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        duration_s: plan.duration.as_secs_f64(),
        warmup_s: plan.warmup.as_secs_f64(),
        counts,
        latency: LatencySummary::from_histogram(&latency),
        send_lag: LatencySummary::from_histogram(&lag),
        timeline: timeline.samples,
        extra,
        problems: Vec::new(),
        notes: Vec::new(),
    };
    report.check();
    if let Some(share) = report.extra.get("client_cpu_share").copied() {
        let per_core = share / plan.shards.min(cores()) as f64;
        if per_core >= 0.85 {
            // Trustworthy first: say when a figure may be ours, not the
            // broker's.
            report.notes.push(format!(
                "the generator's cores were {:.0} % busy while measuring: throughput and latency may be the generator's limit, not the broker's (add --shards/--cpus)",
                per_core * 100.0
            ));
        }
    }
    if finals.len() < plan.shards {
        report.problems.push(format!(
            "only {} of {} client shards reported: figures are incomplete",
            finals.len(),
            plan.shards
        ));
    }
    for (why, n) in failures {
        report
            .problems
            .push(format!("{n} connection(s) failed: {why}"));
    }
    Ok(report)
}

/// Interval histograms received since the last timeline sample.
#[derive(Default)]
struct Intervals {
    merged: Option<Histogram<u64>>,
}

impl Intervals {
    fn drain(&mut self, rx: &mpsc::Receiver<(usize, Report)>) {
        while let Ok((_, r)) = rx.try_recv() {
            if let Report::Interval { hist } = r {
                match &mut self.merged {
                    Some(m) => {
                        let _ = m.add(&*hist);
                    }
                    None => self.merged = Some(*hist),
                }
            }
        }
    }

    fn take_p99_us(&mut self) -> f64 {
        self.merged
            .take()
            .map_or(0.0, |h| h.value_at_quantile(0.99) as f64 / 1e3)
    }
}

/// Throughput and p99 over time: a point a second, and the live line.
struct Timeline {
    start: Instant,
    /// The last point's time and the delivered and published totals then.
    last: (Instant, u64, u64),
    intervals: Intervals,
    samples: Vec<Sample>,
}

impl Timeline {
    fn new(start: Instant, intervals: Intervals) -> Self {
        Self {
            start,
            last: (Instant::now(), 0, 0),
            intervals,
            samples: Vec::new(),
        }
    }

    /// Take in the shards' interval histograms; once a second, add a point.
    fn poll(
        &mut self,
        ctl: &Control,
        rx: &mpsc::Receiver<(usize, Report)>,
        progress: &Progress,
        phase: &str,
    ) {
        self.intervals.drain(rx);
        let now = Instant::now();
        let dt = now.duration_since(self.last.0).as_secs_f64();
        if dt < 1.0 {
            return;
        }
        let get = |f: fn(&Live) -> &AtomicU64| ctl.sum(f);
        let delivered = get(|l| &l.delivered);
        let published = get(|l| &l.published);
        let open = get(|l| &l.opened).saturating_sub(get(|l| &l.closed));
        let d_rate = (delivered - self.last.1) as f64 / dt;
        let p_rate = (published - self.last.2) as f64 / dt;
        let p99 = self.intervals.take_p99_us();
        let t_s = now.saturating_duration_since(self.start).as_secs_f64();
        self.samples.push(Sample {
            t_s,
            connections: open,
            published_per_s: p_rate,
            delivered_per_s: d_rate,
            p99_us: p99,
        });
        progress.update(phase, t_s, open, d_rate, p99);
        self.last = (now, delivered, published);
    }
}

#[derive(Clone, Copy)]
struct ProcSample {
    rss: u64,
    cpu_s: f64,
}

/// Resident memory and CPU time (user + system) of a process.
fn proc_sample(pid: u32) -> Option<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name (which may hold spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(ProcSample {
        rss: rss_kb * 1024,
        cpu_s: (utime + stime) / hz,
    })
}

/// This process's CPU time so far.
fn self_cpu() -> Option<f64> {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return None;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(tv(ru.ru_utime) + tv(ru.ru_stime))
}

/// CPUs this process may run on.
fn cores() -> usize {
    core_affinity::get_core_ids().map_or(1, |c| c.len().max(1))
}
