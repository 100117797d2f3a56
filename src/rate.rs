//! Token buckets, shared by the layers that limit a rate: the broker's
//! per-connection request rates (protocol.md, "Request rates": one bucket
//! for `pub`, another for `sub` and `unsub`) and the runtime's new
//! connections per client address (`runtime::peer`). No clock here: the
//! caller passes the time in milliseconds.

/// A rate limit: `per_s` tokens a second, at most `burst` saved up.
/// `per_s == 0` is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_s: u32,
    pub burst: u32,
}

impl Rate {
    pub fn is_off(&self) -> bool {
        self.per_s == 0
    }
}

/// Tokens are kept in thousandths, so that a rate of `per_s` a second is
/// `per_s` thousandths a millisecond: exact integer refills at any rate.
const MILLI: i64 = 1000;

/// One connection's bucket for one kind of request.
#[derive(Debug, Default)]
pub struct Bucket {
    /// Thousandths of a token; below zero after a request that cost more
    /// than was saved (its sender then waits the longer).
    milli: i64,
    /// When it was last refilled; None until first used (then full).
    last_ms: Option<u64>,
}

/// A full bucket under `rate`, in thousandths.
fn cap(rate: Rate) -> i64 {
    i64::from(rate.burst.max(1)) * MILLI
}

impl Bucket {
    /// Would the bucket be full at `now_ms` (as a new one is)? A full
    /// bucket can be forgotten without giving anyone a new burst.
    pub fn full(&self, rate: Rate, now_ms: u64) -> bool {
        rate.is_off() || self.at(rate, now_ms) >= cap(rate)
    }

    /// The thousandths saved at `now_ms`, refilled since the last use and
    /// capped at the burst (a bucket never used is full).
    fn at(&self, rate: Rate, now_ms: u64) -> i64 {
        let since = match self.last_ms {
            Some(last) => now_ms.saturating_sub(last),
            None => u64::MAX,
        };
        let refill = i64::try_from(since)
            .unwrap_or(i64::MAX)
            .saturating_mul(i64::from(rate.per_s));
        self.milli.saturating_add(refill).min(cap(rate))
    }

    /// Admit a request costing `cost` tokens at `now_ms` under `rate`: it
    /// goes when at least one token is saved, and takes `cost` of them,
    /// which may leave the bucket below zero. So a request is never refused
    /// for its size alone (a `sub` of 10,000 patterns goes through), yet
    /// the average stays within `per_s`.
    pub fn take(&mut self, rate: Rate, now_ms: u64, cost: usize) -> bool {
        if rate.is_off() {
            return true;
        }
        self.milli = self.at(rate, now_ms);
        self.last_ms = Some(now_ms);
        if self.milli < MILLI {
            return false;
        }
        let cost = i64::try_from(cost).unwrap_or(i64::MAX / MILLI);
        self.milli = self.milli.saturating_sub(cost.saturating_mul(MILLI));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let rate = Rate {
            per_s: 10,
            burst: 5,
        };
        let mut b = Bucket::default();
        let admitted = (0..20).filter(|_| b.take(rate, 1000, 1)).count();
        assert_eq!(admitted, 5, "the burst, at once");
        // 10 a second: one every 100 ms, none before.
        assert!(!b.take(rate, 1099, 1));
        assert!(b.take(rate, 1100, 1));
        assert!(!b.take(rate, 1100, 1));
        // A long pause saves up no more than the burst.
        let admitted = (0..20).filter(|_| b.take(rate, 100_000, 1)).count();
        assert_eq!(admitted, 5);
    }

    #[test]
    fn a_large_request_goes_and_is_paid_for_afterwards() {
        let rate = Rate {
            per_s: 1000,
            burst: 100,
        };
        let mut b = Bucket::default();
        assert!(b.take(rate, 0, 10_000), "never refused for its size");
        // 10,000 - 100 tokens in debt: 9.9 s at 1,000 a second.
        assert!(!b.take(rate, 9_900, 1));
        assert!(b.take(rate, 9_901, 1));
    }

    #[test]
    fn off_admits_everything_and_huge_figures_do_not_overflow() {
        let mut b = Bucket::default();
        let off = Rate { per_s: 0, burst: 0 };
        assert!((0..1000).all(|_| b.take(off, 0, usize::MAX)));
        let max = Rate {
            per_s: u32::MAX,
            burst: u32::MAX,
        };
        let mut b = Bucket::default();
        assert!(b.take(max, u64::MAX, usize::MAX));
        assert!(!b.take(max, u64::MAX, 1), "deep in debt");
        assert!(!b.take(max, 0, 1), "a clock going back refills nothing");
    }
}
