//! The clock publish-to-send latency is measured on: monotonic
//! nanoseconds since one process-wide epoch, so a timestamp taken on one
//! shard's thread compares with another's (`Instant` is
//! `CLOCK_MONOTONIC`, one clock for every thread). A u64 of nanoseconds
//! lasts 584 years.

use std::sync::OnceLock;
use std::time::Instant;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// The process-wide epoch (the first call's time).
pub fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

/// `now` as nanoseconds since [`epoch`] (0 for an instant before it).
pub fn nanos(now: Instant) -> u64 {
    now.saturating_duration_since(epoch()).as_nanos() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_by_threads_and_monotonic() {
        let a = nanos(Instant::now());
        let b = std::thread::spawn(|| nanos(Instant::now()))
            .join()
            .unwrap_or(0);
        let c = nanos(Instant::now());
        assert!(a <= b && b <= c, "{a} {b} {c}");
    }
}
