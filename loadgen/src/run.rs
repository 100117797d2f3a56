//! The coordinator: starts the client shards on ringfan's runtime, moves
//! the run through its phases (connect, hold, publish, drain, collect),
//! samples the timeline, and assembles the report.

use crate::control::{Control, Live, Phase, Report, ShardResult, StormResult};

mod figures;
mod storm;
use crate::driver::{histogram, Driver};
use crate::plan::{Plan, Scenario};
use crate::progress::Progress;
use crate::report::{fmt_count, Counts, LatencySummary, RunReport, Sample};
use figures::client_figures;
use hdrhistogram::Histogram;
use ringfan::runtime::{Config, Server};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use storm::storm_figures;

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
/// From the decision to start publishing to the first publish, so that
/// every shard has seen the start time before anything is due.
const LEAD_NS: u64 = 20_000_000;
/// Failed connection attempts, with none open, after which a run stops
/// rather than waits for the rest: when the first attempts all fail,
/// nothing usable answers at the target (a refused port fails them all at
/// once). One open connection is enough to carry on, so a huge run in
/// which a few attempts fail among thousands that open is still run, and
/// its failures reported.
const GIVE_UP_AFTER: u64 = 100;

pub fn run(plan: Plan, opts: Options) -> Result<RunReport, String> {
    let plan = Arc::new(plan);
    let (tx, rx) = mpsc::channel();
    // The HTTP publishers report through slots after the shards'.
    let slots = plan.shards + plan.http_publishers() as usize;
    let ctl = Arc::new(Control::new(slots, plan.topics.len(), tx));
    if let Some(s) = plan.storm {
        ctl.storm_pending
            .store(s.drop.min(plan.subscribers), Ordering::Release);
    }
    let progress = Progress::new(opts.progress);
    progress.set_label(plan.scenario.name());
    let mut samples = Samples {
        server_start: opts.server_pid.and_then(proc_sample),
        cpu_start: self_cpu(),
        ..Samples::default()
    };
    let co = Coordinator {
        plan,
        ctl,
        rx,
        progress,
        server_pid: opts.server_pid,
        begin: Instant::now(),
    };
    let runtime = co.start_shards()?;
    let http = co.start_http_publishers()?;
    let mut intervals = Intervals::default();
    let connected = co.connect(&mut intervals);
    samples.server_connected = co.server();
    let rx_bytes = |r: &Server| -> u64 {
        r.stats()
            .iter()
            .map(|s| {
                s.bytes_received_total
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .sum()
    };
    samples.rx_bytes.0 = rx_bytes(&runtime);
    let timeline = if connected.none() {
        // Nothing to measure: say why at once rather than run out the
        // duration with no connection.
        Vec::new()
    } else {
        co.hold();
        let mut timeline = co.publish(intervals, &mut samples);
        co.drain(&mut timeline);
        timeline.samples
    };
    let finals = co.collect();
    samples.rx_bytes.1 = rx_bytes(&runtime);
    samples.server_end = co.server();
    samples.cpu_end = self_cpu();
    co.progress.finish();
    runtime.shutdown();
    runtime.join();
    for t in http {
        let _ = t.join();
    }
    let storm = co.storm_window();
    Ok(assemble(
        &co.plan, opts, &finals, timeline, &connected, &samples, storm,
    ))
}

/// What every step of a run shares.
struct Coordinator {
    plan: Arc<Plan>,
    ctl: Arc<Control>,
    rx: mpsc::Receiver<(usize, Report)>,
    progress: Progress,
    server_pid: Option<u32>,
    /// When the shards were started.
    begin: Instant,
}

/// How the connect phase went.
struct Connected {
    /// From starting the shards to the end of the phase.
    secs: f64,
    /// Connections open (handshake done) by then.
    opened: u64,
    /// Connections neither open nor failed when the phase ended.
    unresolved: u64,
    /// Connections the plan has.
    total: u64,
}

impl Connected {
    /// No connection could be established, so there is nothing to run.
    fn none(&self) -> bool {
        self.total > 0 && self.opened == 0
    }
}

/// Whether the connect phase can stop waiting because no connection can be
/// established: none has opened, and the first attempts (all of them, in a
/// run of fewer than [`GIVE_UP_AFTER`]) failed.
fn hopeless(opened: u64, failed: u64, total: u64) -> bool {
    opened == 0 && failed > 0 && failed >= total.min(GIVE_UP_AFTER)
}

/// The broker's and this process's resources at the points the report
/// compares.
#[derive(Default)]
struct Samples {
    /// The broker before connecting, once connected, and at the end.
    server_start: Option<ProcSample>,
    server_connected: Option<ProcSample>,
    server_end: Option<ProcSample>,
    /// The broker at the start and the end of the measured window.
    server_measure: (Option<ProcSample>, Option<ProcSample>),
    /// This process's CPU time at the start and the end of the run, and of
    /// the measured window.
    cpu_start: Option<f64>,
    cpu_end: Option<f64>,
    cpu_measure: (Option<f64>, Option<f64>),
    /// Bytes this process received (all shards, after TLS: ciphertext),
    /// once connected and at the end.
    rx_bytes: (u64, u64),
}

impl Coordinator {
    fn start_shards(&self) -> Result<Server, String> {
        let config = Config {
            listen: None,
            shards: self.plan.shards,
            pin: true,
            tick: self.plan.tick,
            handshake_timeout: self.plan.connect_timeout,
            // The broker pings idle connections; the generator need not.
            idle_ping: Duration::from_secs(3600),
            pong_timeout: Duration::from_secs(60),
            close_timeout: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(3),
            recv_buffers: 512,
            recv_buffers_max: 8192,
            ..Config::default()
        };
        let (plan, ctl) = (self.plan.clone(), self.ctl.clone());
        Server::start(config, move |i| Driver::new(plan.clone(), ctl.clone(), i))
            .map_err(|e| e.to_string())
    }

    /// `--publish-via http`: one thread per publisher, each with its own
    /// slot after the shards'.
    fn start_http_publishers(&self) -> Result<Vec<std::thread::JoinHandle<()>>, String> {
        (0..self.plan.http_publishers())
            .map(|j| {
                let slot = self.plan.shards + j as usize;
                crate::http_pub::spawn(self.plan.clone(), self.ctl.clone(), slot, j as u32)
                    .map_err(|e| format!("cannot start HTTP publisher thread: {e}"))
            })
            .collect()
    }

    /// Reporting slots: the shards, then the HTTP publishers.
    fn slots(&self) -> usize {
        self.plan.shards + self.plan.http_publishers() as usize
    }

    /// Storm: when the drop was due and when the last dropped connection
    /// was resolved (u64::MAX: never), on the run's clock; None without a
    /// storm or when publishing never started.
    fn storm_window(&self) -> Option<(u64, u64)> {
        let start = self.ctl.start_ns.load(Ordering::Acquire);
        if start == u64::MAX {
            return None;
        }
        let at = self.plan.storm_at_ns(start)?;
        Some((at, self.ctl.storm_end_ns.load(Ordering::Acquire)))
    }

    fn server(&self) -> Option<ProcSample> {
        self.server_pid.and_then(proc_sample)
    }

    fn elapsed_s(&self) -> f64 {
        self.begin.elapsed().as_secs_f64()
    }

    /// Connect and subscribe: until every connection has opened (and every
    /// subscriber has its ack) or failed, or the phase times out, or it is
    /// clear that no connection can be established.
    fn connect(&self, intervals: &mut Intervals) -> Connected {
        let ctl = &self.ctl;
        let total = self.plan.connections();
        // The phase ends when nothing has opened or failed for longer than
        // a connection may take (each one in flight has failed by then),
        // not at a fixed time: 250,000 connections at a crawl take minutes
        // and still finish, and a phase cut short would leave them "in
        // flight", unexplained.
        let quiet_for = self.plan.connect_timeout + Duration::from_secs(5);
        let mut last_progress = (0, Instant::now());
        loop {
            std::thread::sleep(POLL);
            intervals.drain(&self.rx);
            // Failures first: a shard publishes its opened count with them,
            // so a connection that opened alongside is not missed.
            let failed = ctl.sum(|l| &l.failed);
            let opened = ctl.sum(|l| &l.opened);
            let subscribed = ctl.sum(|l| &l.subscribed);
            let ready = ctl.sum(|l| &l.ready);
            let closed = ctl.sum(|l| &l.closed);
            let open = opened.saturating_sub(closed);
            self.progress
                .update("connecting", self.elapsed_s(), open, 0.0, 0.0);
            let subs_open = opened.saturating_sub(ready);
            if opened + failed >= total && subscribed + closed >= subs_open {
                break;
            }
            if hopeless(opened, failed, total) {
                break;
            }
            if opened + failed != last_progress.0 {
                last_progress = (opened + failed, Instant::now());
            }
            if last_progress.1.elapsed() > quiet_for {
                // With nothing open the run stops, and says so itself.
                if opened > 0 {
                    self.progress.println(&format!(
                        "no connection opened or failed for {:.0} s; running with what connected",
                        quiet_for.as_secs_f64()
                    ));
                }
                break;
            }
        }
        let opened = ctl.sum(|l| &l.opened);
        Connected {
            secs: self.elapsed_s(),
            opened,
            unresolved: total.saturating_sub(opened + ctl.sum(|l| &l.failed)),
            total,
        }
    }

    /// Conns: keep every connection open, idle, for the plan's hold.
    fn hold(&self) {
        if self.plan.hold.is_zero() {
            return;
        }
        self.ctl.set_phase(Phase::Holding);
        let until = Instant::now() + self.plan.hold;
        while Instant::now() < until {
            std::thread::sleep(POLL);
            let open = self.ctl.sum(|l| &l.opened) - self.ctl.sum(|l| &l.closed);
            self.progress
                .update("holding", self.elapsed_s(), open, 0.0, 0.0);
        }
    }

    /// Publish on schedule through the warm-up and the measured window,
    /// sampling resources at the window's bounds.
    fn publish(&self, intervals: Intervals, samples: &mut Samples) -> Timeline {
        let start_ns = self.ctl.now_ns() + LEAD_NS;
        self.ctl.start_ns.store(start_ns, Ordering::Release);
        self.ctl.set_phase(Phase::Running);
        let server_run_start = self.server();
        let run_len = self.plan.warmup + self.plan.duration;
        let run_start = Instant::now() + Duration::from_nanos(LEAD_NS);
        let mut timeline = Timeline::new(run_start, intervals);
        let measured_from = run_start + self.plan.warmup;
        let (mut server_measure0, mut cpu_measure0) = (None, None);
        while Instant::now() < run_start + run_len {
            std::thread::sleep(POLL);
            if cpu_measure0.is_none() && Instant::now() >= measured_from {
                server_measure0 = self.server();
                cpu_measure0 = self_cpu();
            }
            timeline.poll(&self.ctl, &self.rx, &self.progress, "running");
        }
        samples.server_measure = (server_measure0.or(server_run_start), self.server());
        samples.cpu_measure = (cpu_measure0, self_cpu());
        timeline
    }

    /// Let deliveries in flight arrive, for at most the grace period.
    fn drain(&self, timeline: &mut Timeline) {
        let ctl = &self.ctl;
        ctl.set_phase(Phase::Draining);
        let until = Instant::now() + self.plan.grace;
        loop {
            std::thread::sleep(POLL);
            timeline.poll(ctl, &self.rx, &self.progress, "draining");
            let expected = ctl.sum(|l| &l.expected);
            let delivered = ctl.sum(|l| &l.delivered);
            let pending_acks = ctl.sum(|l| &l.published) > ctl.sum(|l| &l.acked);
            // A storm's reconnections still in flight are waited for too.
            let storming = self.plan.storm.is_some()
                && ctl.storm_pending.load(Ordering::Acquire) > 0
                && ctl.storm_end_ns.load(Ordering::Acquire) == u64::MAX;
            // HTTP publishes are owed once answered: wait for the answers.
            let waiting = ctl.sum(|l| &l.http_pending) > 0
                || (self.plan.scenario == Scenario::Echo && pending_acks)
                || storming;
            let done = delivered >= expected && !waiting;
            if done || Instant::now() >= until {
                break;
            }
        }
        // One more tick so the last counters are in.
        std::thread::sleep(self.plan.tick * 2 + POLL);
    }

    /// Every shard's final results (those that answer within ten seconds).
    fn collect(&self) -> Vec<ShardResult> {
        self.ctl.set_phase(Phase::Collect);
        let mut finals: Vec<ShardResult> = Vec::new();
        let wait_until = Instant::now() + Duration::from_secs(10);
        while finals.len() < self.slots() && Instant::now() < wait_until {
            if let Ok((_, Report::Final(r))) = self.rx.recv_timeout(POLL) {
                finals.push(*r);
            }
        }
        finals
    }
}

/// The shards' results added up.
struct Merged {
    counts: Counts,
    latency: Histogram<u64>,
    lag: Histogram<u64>,
    /// Why connections failed, with how many failed so.
    failures: BTreeMap<String, u64>,
    delivered_measured: u64,
    published_measured: u64,
    data_bytes: u64,
    storm: StormResult,
}

impl Merged {
    fn of(finals: &[ShardResult], connections: u64) -> Self {
        let mut m = Merged {
            counts: Counts::default(),
            latency: histogram(),
            lag: histogram(),
            failures: BTreeMap::new(),
            delivered_measured: 0,
            published_measured: 0,
            data_bytes: 0,
            storm: StormResult::new(),
        };
        for f in finals {
            m.counts.add(&f.counts);
            let _ = m.latency.add(&f.latency);
            let _ = m.lag.add(&f.send_lag);
            for (k, v) in &f.failures {
                *m.failures.entry(k.clone()).or_default() += v;
            }
            m.delivered_measured += f.delivered_measured;
            m.published_measured += f.published_measured;
            m.data_bytes += f.data_bytes;
            let (s, t) = (&mut m.storm, &f.storm);
            s.dropped += t.dropped;
            s.resubscribed += t.resubscribed;
            s.failed += t.failed;
            s.unheld_deliveries += t.unheld_deliveries;
            s.snapshots += t.snapshots;
            s.retried += t.retried;
            let _ = s.during.add(&t.during);
            let _ = s.outside.add(&t.outside);
        }
        let c = &mut m.counts;
        c.connections_target = connections;
        let unique = c.delivered.saturating_sub(c.duplicated);
        c.lost = c.expected_deliveries.saturating_sub(unique);
        m
    }
}

/// The report of a finished run: the merged counts, the figures derived
/// from them and from the resource samples, and what went wrong.
fn assemble(
    plan: &Plan,
    opts: Options,
    finals: &[ShardResult],
    timeline: Vec<Sample>,
    connected: &Connected,
    samples: &Samples,
    storm: Option<(u64, u64)>,
) -> RunReport {
    let m = Merged::of(finals, plan.connections());
    let mut extra = client_figures(plan, connected, samples, &m);
    let mut notes = Vec::new();
    extra.append(&mut server_figures(
        plan, connected, samples, &m, &mut notes,
    ));
    let mut report = RunReport {
        scenario: plan.scenario.name().into(),
        target: opts.target,
        params: opts.params,
        unix_time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        duration_s: plan.duration.as_secs_f64(),
        warmup_s: plan.warmup.as_secs_f64(),
        counts: m.counts,
        latency: LatencySummary::from_histogram(&m.latency),
        send_lag: if plan.open_loop() {
            LatencySummary::from_histogram(&m.lag)
        } else {
            LatencySummary::default()
        },
        timeline,
        extra,
        problems: Vec::new(),
        notes,
        aborted: None,
    };
    report.check();
    if plan.storm.is_some() && !connected.none() {
        storm_figures(plan, &m.storm, storm, &mut report);
    }
    if connected.none() {
        report.aborted = Some(no_connection(
            &report.counts,
            &m.failures,
            connected,
            &plan.targets(),
        ));
    }
    if let Some(share) = report.extra.get("client_cpu_share").copied() {
        let threads = plan.shards + plan.http_publishers() as usize;
        let per_core = share / threads.min(cores()) as f64;
        if per_core >= 0.85 {
            // Trustworthy first: say when a figure may be ours, not the
            // broker's.
            report.notes.push(format!(
                "the generator's cores were {:.0} % busy while measuring: throughput and latency may be the generator's limit, not the broker's (add --shards/--cpus)",
                per_core * 100.0
            ));
        }
    }
    let slots = plan.shards + plan.http_publishers() as usize;
    if finals.len() < slots {
        report.problems.push(format!(
            "only {} of {} client shards and HTTP publishers reported: figures are incomplete",
            finals.len(),
            slots
        ));
    }
    if connected.unresolved > 0 {
        report.problems.push(format!(
            "{} connection(s) neither opened nor failed by the end of the connect phase ({:.1} s)",
            fmt_count(connected.unresolved),
            connected.secs
        ));
    }
    for (why, n) in m.failures {
        report
            .problems
            .push(format!("{n} connection(s) failed: {why}"));
    }
    report
}

/// Why a run stopped after its connect phase: how many attempts failed,
/// and the commonest reason.
fn no_connection(
    c: &Counts,
    failures: &BTreeMap<String, u64>,
    connected: &Connected,
    target: &str,
) -> String {
    let Some((why, _)) = failures.iter().max_by_key(|(_, n)| **n) else {
        return format!(
            "no connection to {target} could be established: none of {} opened within the connect phase ({:.1} s)",
            fmt_count(connected.total),
            connected.secs
        );
    };
    format!(
        "no connection to {target} could be established ({} of {} attempts failed, none opened): {why}",
        fmt_count(c.connect_failures),
        fmt_count(connected.total),
    )
}

/// The broker's figures (with --server-pid): memory per connection and CPU
/// time over the measured window. A figure that cannot be had honestly is
/// left out, with a note that says why.
fn server_figures(
    plan: &Plan,
    connected: &Connected,
    s: &Samples,
    m: &Merged,
    notes: &mut Vec<String>,
) -> BTreeMap<String, f64> {
    let mut extra = BTreeMap::new();
    // --server-pid names one process; with several brokers it serves only
    // some of the connections and does only its share of the deliveries.
    let several = plan.brokers().len() > 1;
    if several && s.server_start.is_some() {
        notes.push(format!(
            "--server-pid measures one process of {} brokers: server_cpu_us_per_delivery divides its CPU time by every broker's deliveries, and memory per connection is left out",
            plan.brokers().len()
        ));
    }
    if let (Some(before), Some(after)) = (s.server_start, s.server_connected) {
        extra.insert("server_rss_bytes".into(), after.rss as f64);
        match rss_per_conn(before.rss, after.rss, connected.opened) {
            _ if several => {}
            Some(Ok(per_conn)) => {
                extra.insert("server_rss_per_conn_bytes".into(), per_conn);
            }
            Some(Err(why)) => notes.push(format!("server_rss_per_conn_bytes: n/a: {why}")),
            None => {}
        }
    }
    let timed = !plan.duration.is_zero();
    if let ((Some(a), Some(b)), true) = (s.server_measure, timed) {
        let cpu = b.cpu_s - a.cpu_s;
        extra.insert("server_cpu_s".into(), cpu);
        extra.insert(
            "server_cpu_share".into(),
            cpu / plan.duration.as_secs_f64().max(1e-9),
        );
        if m.delivered_measured > 0 {
            extra.insert(
                "server_cpu_us_per_delivery".into(),
                cpu * 1e6 / m.delivered_measured as f64,
            );
        }
    }
    if let Some(end) = s.server_end {
        extra.insert("server_rss_end_bytes".into(), end.rss as f64);
    }
    extra
}

/// The broker's memory per connection: how much its RSS grew while the
/// connections opened, over their number. None without connections; the
/// reason instead of a figure when the RSS fell (the broker returned more
/// memory to the system than the connections took, so their share cannot
/// be told from two samples).
fn rss_per_conn(before: u64, after: u64, opened: u64) -> Option<Result<f64, String>> {
    if opened == 0 {
        return None;
    }
    Some(match after.checked_sub(before) {
        Some(grew) => Ok(grew as f64 / opened as f64),
        None => Err(format!(
            "server RSS fell during the connect phase ({} to {} bytes)",
            fmt_count(before),
            fmt_count(after)
        )),
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_gives_up_only_when_nothing_opens() {
        // Small runs: once every attempt has failed.
        assert!(!hopeless(0, 4, 5));
        assert!(hopeless(0, 5, 5));
        // Large runs: once the first attempts have all failed.
        assert!(!hopeless(0, GIVE_UP_AFTER - 1, 250_000));
        assert!(hopeless(0, GIVE_UP_AFTER, 250_000));
        // One open connection is enough to carry on; no failure, no verdict.
        assert!(!hopeless(1, 10_000, 250_000));
        assert!(!hopeless(0, 0, 250_000));
        let connected = |opened, total| Connected {
            secs: 1.0,
            opened,
            unresolved: 0,
            total,
        };
        assert!(connected(0, 5).none());
        assert!(!connected(1, 5).none());
        assert!(!connected(0, 0).none(), "a plan with no connections");
    }

    #[test]
    fn memory_per_connection_is_never_negative() {
        assert_eq!(rss_per_conn(1_000, 3_000, 1_000), Some(Ok(2.0)));
        assert_eq!(rss_per_conn(1_000, 1_000, 1_000), Some(Ok(0.0)));
        assert_eq!(rss_per_conn(1_000, 3_000, 0), None);
        // Once measured as -47,368 bytes a connection.
        let why = rss_per_conn(60_000_000, 12_632_000, 1_000)
            .unwrap()
            .unwrap_err();
        assert_eq!(
            why,
            "server RSS fell during the connect phase (60,000,000 to 12,632,000 bytes)"
        );
    }
}
