//! What the coordinating thread and the client shards share: the run's
//! phase, its clock, live counters (each shard writes only its own, once a
//! tick, so accounting a delivery touches no shared cache line), and the
//! channel the shards report through.

use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Phase {
    /// Opening connections and subscribing.
    Connecting = 0,
    /// Everything is connected; waiting (conns holds here).
    Holding = 1,
    /// Publishing on schedule (warm-up, then measured).
    Running = 2,
    /// Publishers stopped; deliveries in flight still count.
    Draining = 3,
    /// Shards send their final results.
    Collect = 4,
}

/// One shard's live counters, published once a tick.
#[derive(Default)]
#[repr(align(128))]
pub struct Live {
    pub opened: AtomicU64,
    pub failed: AtomicU64,
    pub subscribed: AtomicU64,
    pub ready: AtomicU64,
    pub published: AtomicU64,
    pub expected: AtomicU64,
    pub delivered: AtomicU64,
    pub acked: AtomicU64,
    pub errors: AtomicU64,
    pub closed: AtomicU64,
    /// `--publish-via http`: requests sent and not yet answered (the drain
    /// waits for them: their messages are owed only once answered).
    pub http_pending: AtomicU64,
}

/// What a shard reports: an interval's latencies for the live line and the
/// timeline, and its totals at the end.
pub enum Report {
    Interval { hist: Box<Histogram<u64>> },
    Final(Box<ShardResult>),
}

pub struct ShardResult {
    pub counts: crate::report::Counts,
    pub latency: Histogram<u64>,
    pub send_lag: Histogram<u64>,
    pub delivered_measured: u64,
    pub published_measured: u64,
    /// Bytes of `data` in the deliveries counted (`counts.delivered`).
    pub data_bytes: u64,
    /// Why connections failed, with how many failed so.
    pub failures: BTreeMap<String, u64>,
    /// Storm: what happened to the dropped connections, and the held
    /// subscribers' latency during the storm and outside it.
    pub storm: StormResult,
}

/// One shard's share of a storm.
pub struct StormResult {
    /// Subscribers closed by the storm (and so reconnected).
    pub dropped: u64,
    /// Reconnected connections whose resubscription was answered (the
    /// ack, which follows the snapshot).
    pub resubscribed: u64,
    /// Reconnections that failed (connect or handshake), were closed
    /// before their answer, or were answered with `err`.
    pub failed: u64,
    /// Deliveries to the dropped subscribers, before the drop and after
    /// reconnecting (snapshots included): counted, not owed, since a
    /// publish racing a drop may or may not reach them.
    pub unheld_deliveries: u64,
    /// Snapshots received on resubscribing.
    pub snapshots: u64,
    /// Resubscriptions the broker refused with `rate_limited` (retry
    /// later) and that were sent again.
    pub retried: u64,
    /// Held subscribers' delivery latency, by when it arrived: from the
    /// drop to the last resubscription answered, and outside that.
    pub during: Histogram<u64>,
    pub outside: Histogram<u64>,
}

impl StormResult {
    /// Nothing dropped yet, empty histograms.
    pub fn new() -> Self {
        Self {
            dropped: 0,
            resubscribed: 0,
            failed: 0,
            unheld_deliveries: 0,
            snapshots: 0,
            retried: 0,
            during: crate::driver::histogram(),
            outside: crate::driver::histogram(),
        }
    }
}

impl Default for StormResult {
    fn default() -> Self {
        Self::new()
    }
}

pub struct Control {
    clock: Clock,
    phase: AtomicU8,
    /// Nanoseconds since `epoch` at which publishing starts.
    pub start_ns: AtomicU64,
    pub live: Box<[Live]>,
    /// Subscribers acknowledged per topic (what a publish is expected to
    /// reach).
    pub topic_subs: Box<[AtomicU32]>,
    pub reports: Mutex<mpsc::Sender<(usize, Report)>>,
    /// Storm: dropped connections not yet resolved (resubscribed, or
    /// failed), from the plan's count down; the shard that takes it to
    /// zero sets `storm_end_ns` (u64::MAX until then).
    pub storm_pending: AtomicU64,
    pub storm_end_ns: AtomicU64,
}

impl Control {
    pub fn new(shards: usize, topics: usize, reports: mpsc::Sender<(usize, Report)>) -> Self {
        Self {
            clock: Clock::new(),
            phase: AtomicU8::new(Phase::Connecting as u8),
            start_ns: AtomicU64::new(u64::MAX),
            live: (0..shards).map(|_| Live::default()).collect(),
            topic_subs: (0..topics).map(|_| AtomicU32::new(0)).collect(),
            reports: Mutex::new(reports),
            storm_pending: AtomicU64::new(0),
            storm_end_ns: AtomicU64::new(u64::MAX),
        }
    }

    /// Nanoseconds since the run's epoch: the clock every timestamp in a
    /// payload uses (one process, one monotonic clock).
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.clock.now_ns()
    }

    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Connecting,
            1 => Phase::Holding,
            2 => Phase::Running,
            3 => Phase::Draining,
            _ => Phase::Collect,
        }
    }

    pub fn set_phase(&self, p: Phase) {
        self.phase.store(p as u8, Ordering::Release);
    }

    pub fn sum(&self, f: impl Fn(&Live) -> &AtomicU64) -> u64 {
        self.live.iter().map(|l| f(l).load(Ordering::Relaxed)).sum()
    }

    /// Storm: `n` dropped connections resolved (answered, or given up on).
    /// The last one marks the end of the storm.
    pub fn storm_resolved(&self, n: u64) {
        if n == 0 {
            return;
        }
        let before = self.storm_pending.fetch_sub(n, Ordering::AcqRel);
        if before == n {
            self.storm_end_ns.store(self.now_ns(), Ordering::Release);
        }
    }

    pub fn report(&self, shard: usize, r: Report) {
        if let Ok(tx) = self.reports.lock() {
            let _ = tx.send((shard, r));
        }
    }
}

/// The run's clock: nanoseconds since it started. Every send stamp and
/// every receipt reads it, millions of times a second, so where the CPU
/// has an invariant TSC it reads that (a few ns) instead of
/// `clock_gettime` (~25 ns, a tenth of the receive path), scaled by a rate
/// measured against the monotonic clock at start-up. Latency is a
/// difference of two readings microseconds to milliseconds apart, so a
/// rate error of even 0.1 % moves it by 0.1 %.
pub struct Clock {
    epoch: Instant,
    /// (TSC at the epoch, nanoseconds per tick × 2^32) when the TSC is usable.
    tsc: Option<(u64, u64)>,
}

impl Clock {
    pub fn new() -> Self {
        let epoch = Instant::now();
        Self {
            epoch,
            tsc: calibrate(epoch),
        }
    }

    #[inline]
    pub fn now_ns(&self) -> u64 {
        match self.tsc {
            Some((base, scale)) => {
                let ticks = rdtsc().wrapping_sub(base);
                ((u128::from(ticks) * u128::from(scale)) >> 32) as u64
            }
            None => self.epoch.elapsed().as_nanos() as u64,
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no preconditions on x86_64; `calibrate` only
    // enables its use where the kernel reports an invariant TSC.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn rdtsc() -> u64 {
    0
}

/// Measure the TSC's rate against the monotonic clock over ~20 ms; None
/// where the TSC is not invariant (it would stop or change speed).
fn calibrate(epoch: Instant) -> Option<(u64, u64)> {
    if !cfg!(target_arch = "x86_64") {
        return None;
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let flags = cpuinfo.lines().find(|l| l.starts_with("flags"))?;
    if !(flags.contains(" constant_tsc") && flags.contains(" nonstop_tsc")) {
        return None;
    }
    let t0 = rdtsc();
    let e0 = epoch.elapsed();
    std::thread::sleep(std::time::Duration::from_millis(20));
    let t1 = rdtsc();
    let e1 = epoch.elapsed();
    let ticks = t1.checked_sub(t0)?;
    let ns = (e1 - e0).as_nanos() as u64;
    if ticks == 0 || ns == 0 {
        return None;
    }
    let scale = ((u128::from(ns) << 32) / u128::from(ticks)) as u64;
    // Base so that now_ns() continues from e1 on the epoch's timeline.
    let base =
        t1.wrapping_sub(((u128::from(e1.as_nanos() as u64) << 32) / u128::from(scale)) as u64);
    Some((base, scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_agrees_with_the_monotonic_clock() {
        let c = Clock::new();
        let a = c.now_ns();
        let wall = Instant::now();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let b = c.now_ns();
        let real = wall.elapsed().as_nanos() as f64;
        let measured = (b - a) as f64;
        // Within 2 % (and the sleep's own jitter) of the real elapsed time.
        assert!(
            (measured - real).abs() < real * 0.02 + 200_000.0,
            "clock says {measured} ns, monotonic {real} ns"
        );
        assert!(b > a);
    }
}
