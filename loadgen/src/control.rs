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
}

/// What a shard reports: an interval's latencies for the live line and the
/// timeline, and its totals at the end.
pub enum Report {
    Interval { hist: Box<Histogram<u64>> },
    Final(Box<ShardResult>),
}

#[derive(Default)]
pub struct ShardResult {
    pub counts: crate::report::Counts,
    pub latency: Option<Histogram<u64>>,
    pub send_lag: Option<Histogram<u64>>,
    pub delivered_measured: u64,
    pub published_measured: u64,
    /// Why connections failed, with how many failed so.
    pub failures: BTreeMap<String, u64>,
}

pub struct Control {
    epoch: Instant,
    phase: AtomicU8,
    /// Nanoseconds since `epoch` at which publishing starts.
    pub start_ns: AtomicU64,
    pub live: Box<[Live]>,
    /// Subscribers acknowledged per topic (what a publish is expected to
    /// reach).
    pub topic_subs: Box<[AtomicU32]>,
    pub reports: Mutex<mpsc::Sender<(usize, Report)>>,
}

impl Control {
    pub fn new(shards: usize, topics: usize, reports: mpsc::Sender<(usize, Report)>) -> Self {
        Self {
            epoch: Instant::now(),
            phase: AtomicU8::new(Phase::Connecting as u8),
            start_ns: AtomicU64::new(u64::MAX),
            live: (0..shards).map(|_| Live::default()).collect(),
            topic_subs: (0..topics).map(|_| AtomicU32::new(0)).collect(),
            reports: Mutex::new(reports),
        }
    }

    /// Nanoseconds since the run's epoch: the clock every timestamp in a
    /// payload uses (one process, one monotonic clock).
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
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

    pub fn report(&self, shard: usize, r: Report) {
        if let Ok(tx) = self.reports.lock() {
            let _ = tx.send((shard, r));
        }
    }
}
