//! The log's own rate limit: at most [`RATE`] lines a second of each kind
//! of connection event per shard, then one line saying how many were left
//! out.
//!
//! An attack is a storm of exactly these events (bad handshakes, bad
//! tokens, reconnecting slow consumers), and a log line costs ~1-2 us to
//! format and write plus the disk or shipper behind it: 100,000 refused
//! handshakes a second would be 100,000 lines a second. Limited, one kind
//! on one shard writes at most 10 lines at once and 5 a second after that
//! (16 shards: 80 a second), and everything left out is still counted.
//!
//! Per shard because each shard is a thread of its own: the state is a
//! thread-local, touched only by that shard, with no lock and no shared
//! cache line. Hand-written on the crate's own token bucket
//! ([`crate::rate`]) rather than with a crate: what is needed is the count
//! of what was left out, for the summary line, which rate-limit crates
//! (governor…) do not keep, and the bucket is already here and tested.

use crate::rate::{Bucket, Rate};
use std::cell::RefCell;
use std::sync::OnceLock;
use std::time::Instant;

/// Lines of one kind a shard may write: 10 at once, 5 a second after.
pub const RATE: Rate = Rate {
    per_s: 5,
    burst: 10,
};

/// How long after the first line left out its summary is written, if no
/// line of the kind is written before: the summary is never older than
/// this (plus a tick, 100 ms) when a storm stops.
pub const SUMMARY_AFTER_MS: u64 = 1000;

/// The kinds of event limited separately, so that a storm of one does not
/// hide another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A handshake answered with an error status.
    HandshakeRefused,
    /// A token refused (handshake or `auth` op), or a user over its cap.
    AuthFailed,
    /// A subscriber closed (or conflation overflowed) for being slow.
    SlowConsumer,
    /// Another connection closed by the server for a policy reason.
    PolicyClose,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::HandshakeRefused,
        Kind::AuthFailed,
        Kind::SlowConsumer,
        Kind::PolicyClose,
    ];

    /// The `event` field of the kind's lines (stable: dashboards match it).
    pub fn event(self) -> &'static str {
        match self {
            Kind::HandshakeRefused => "handshake_refused",
            Kind::AuthFailed => "auth_failed",
            Kind::SlowConsumer => "slow_consumer",
            Kind::PolicyClose => "policy_close",
        }
    }
}

/// One kind's budget and what it left out.
#[derive(Debug, Default)]
struct Slot {
    bucket: Bucket,
    suppressed: u64,
    /// When the first line now counted in `suppressed` was left out.
    since_ms: u64,
}

/// Every kind's budget on one shard. Time comes in as milliseconds, so
/// tests drive it.
#[derive(Debug, Default)]
pub struct Limiter {
    slots: [Slot; Kind::ALL.len()],
}

/// What to do with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Write it, after a summary of the `suppressed` (if any) left out
    /// before it.
    Write { suppressed: u64 },
    /// Leave it out (counted).
    Skip,
}

impl Limiter {
    /// One event of `kind` at `now_ms`.
    pub fn check(&mut self, kind: Kind, now_ms: u64) -> Verdict {
        let slot = &mut self.slots[kind as usize];
        if slot.bucket.take(RATE, now_ms, 1) {
            let suppressed = std::mem::take(&mut slot.suppressed);
            Verdict::Write { suppressed }
        } else {
            if slot.suppressed == 0 {
                slot.since_ms = now_ms;
            }
            slot.suppressed += 1;
            Verdict::Skip
        }
    }

    /// Summaries due at `now_ms` (kind, lines left out): kinds whose
    /// first left-out line is [`SUMMARY_AFTER_MS`] old. Each is then
    /// reset, so a long storm gets one summary a second per kind.
    pub fn due(&mut self, now_ms: u64, mut each: impl FnMut(Kind, u64)) {
        for (kind, slot) in Kind::ALL.into_iter().zip(&mut self.slots) {
            if slot.suppressed > 0 && now_ms.saturating_sub(slot.since_ms) >= SUMMARY_AFTER_MS {
                each(kind, std::mem::take(&mut slot.suppressed));
            }
        }
    }

    /// Is anything waiting for a summary? (The tick's fast path.)
    pub fn pending(&self) -> bool {
        self.slots.iter().any(|s| s.suppressed > 0)
    }
}

thread_local! {
    /// This shard's (thread's) limiter.
    static LIMITER: RefCell<Limiter> = RefCell::default();
}

/// Milliseconds since the first log event of the process (a monotonic
/// clock read per event that passed the level filter: ~20 ns, vDSO).
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// [`Limiter::check`] on this thread's limiter, now.
pub fn check(kind: Kind) -> Verdict {
    let now = now_ms();
    LIMITER.with(|l| l.borrow_mut().check(kind, now))
}

/// [`Limiter::due`] on this thread's limiter, now; cheap when nothing
/// was left out (one thread-local read, no clock).
pub fn due(each: impl FnMut(Kind, u64)) {
    LIMITER.with(|l| {
        let mut l = l.borrow_mut();
        if l.pending() {
            l.due(now_ms(), each);
        }
    })
}

/// Every summary still pending, due or not (the shard is stopping).
pub fn flush(each: impl FnMut(Kind, u64)) {
    LIMITER.with(|l| l.borrow_mut().due(u64::MAX, each))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writes(v: Verdict) -> bool {
        matches!(v, Verdict::Write { .. })
    }

    #[test]
    fn a_burst_then_the_rate_then_the_count_of_what_was_left_out() {
        let mut l = Limiter::default();
        let burst = RATE.burst as usize;
        let written = (0..100)
            .filter(|_| writes(l.check(Kind::HandshakeRefused, 1000)))
            .count();
        assert_eq!(written, burst, "the burst, at once");
        // One more every 1000 / per_s ms, carrying what was left out.
        let step = 1000 / u64::from(RATE.per_s);
        assert_eq!(
            l.check(Kind::HandshakeRefused, 1000 + step - 1),
            Verdict::Skip
        );
        assert_eq!(
            l.check(Kind::HandshakeRefused, 1000 + step),
            Verdict::Write {
                suppressed: (100 - burst + 1) as u64
            }
        );
        assert_eq!(l.check(Kind::HandshakeRefused, 1000 + step), Verdict::Skip);
    }

    #[test]
    fn kinds_are_limited_apart() {
        let mut l = Limiter::default();
        for _ in 0..1000 {
            l.check(Kind::HandshakeRefused, 0);
        }
        assert!(writes(l.check(Kind::AuthFailed, 0)));
        assert!(writes(l.check(Kind::SlowConsumer, 0)));
        assert!(writes(l.check(Kind::PolicyClose, 0)));
    }

    #[test]
    fn a_storm_that_stops_gets_its_summary_from_the_tick() {
        let mut l = Limiter::default();
        for _ in 0..50 {
            l.check(Kind::AuthFailed, 5000);
        }
        let mut got = Vec::new();
        l.due(5000 + SUMMARY_AFTER_MS - 1, |k, n| got.push((k, n)));
        assert!(got.is_empty(), "not before it is due");
        l.due(5000 + SUMMARY_AFTER_MS, |k, n| got.push((k, n)));
        assert_eq!(got, vec![(Kind::AuthFailed, 50 - u64::from(RATE.burst))]);
        assert!(!l.pending());
        l.due(100_000, |k, n| got.push((k, n)));
        assert_eq!(got.len(), 1, "said once");
    }

    /// Every event is either written or counted in a summary, and the
    /// lines written stay within the budget, whatever the storm's shape.
    #[test]
    fn a_storm_is_bounded_and_every_event_is_accounted_for() {
        let mut l = Limiter::default();
        let (mut written, mut summaries, mut counted) = (0u64, 0u64, 0u64);
        // 1,000 events a second for 3 s, a tick every 100 ms.
        for ms in 0..3000u64 {
            if let Verdict::Write { suppressed } = l.check(Kind::HandshakeRefused, ms) {
                written += 1;
                counted += suppressed;
                summaries += u64::from(suppressed > 0);
            }
            if ms % 100 == 0 {
                l.due(ms, |_, n| {
                    counted += n;
                    summaries += 1;
                });
            }
        }
        l.due(3000 + SUMMARY_AFTER_MS, |_, n| {
            counted += n;
            summaries += 1;
        });
        assert_eq!(written + counted, 3000, "every event written or counted");
        let budget = u64::from(RATE.burst) + 3 * u64::from(RATE.per_s);
        assert!(written <= budget, "{written} > {budget}");
        assert!(written >= budget - 1, "the budget is used: {written}");
        // One summary per written line after a gap at most, plus the tick's
        // (one a second).
        assert!(summaries <= written + 4, "{summaries} summaries");
    }
}
