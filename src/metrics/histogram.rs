//! Histograms a shard records on its hot path with plain stores, like its
//! counters: each shard writes only its own, so an observation is two
//! loads and two stores (one bucket, the sum) and no read-modify-write;
//! `/metrics` reads them per shard at scrape time. The count is not kept:
//! it is the sum of the buckets, read in the same pass, so a scrape never
//! sees a count that disagrees with its buckets.
//!
//! Finding the bucket costs one leading-zero count, one table load and
//! one comparison, whatever the number of buckets (see [`Scale`]).

use super::inc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The bucket bounds of one kind of histogram, in its native unit
/// (nanoseconds, bytes).
///
/// The bounds ascend and no two share a power-of-two range
/// `[2^k, 2^(k+1))` (checked when the scale is built, at compile time),
/// so a value `v` in `[2^k, 2^(k+1))` is past every bound below `2^k`
/// (`below[k]` of them) and past at most one more: its bucket is
/// `below[k]`, plus one if `v` is over the bound there.
#[derive(Debug)]
pub struct Scale<const N: usize> {
    /// Inclusive upper bounds (Prometheus `le`); the last is `u64::MAX`,
    /// the `+Inf` bucket.
    bounds: [u64; N],
    /// `below[k]`: how many bounds are under `2^k`.
    below: [u8; 64],
    /// A native value divided by this is in the exposition's unit (1e9:
    /// nanoseconds to seconds). A divisor, not a factor: 50,000 / 1e9 is
    /// the double nearest 5e-5 (printed `5e-05`), 50,000 × 1e-9 is not.
    per_unit: f64,
    /// The sum is kept in units of `2^sum_shift` native units, so that it
    /// cannot wrap in the life of a process (see [`LATENCY`]).
    sum_shift: u32,
}

/// `floor(log2(v))` for `v > 0`.
const fn log2(v: u64) -> u32 {
    63 - v.leading_zeros()
}

impl<const N: usize> Scale<N> {
    /// Panics (at compile time, for a `static`) unless the bounds are
    /// positive, ascending, each in its own power-of-two range, and end
    /// with `u64::MAX`.
    pub const fn new(bounds: [u64; N], per_unit: f64, sum_shift: u32) -> Self {
        assert!(N >= 2 && N <= u8::MAX as usize, "2..=255 buckets");
        assert!(
            bounds[N - 1] == u64::MAX,
            "the last bound is +Inf (u64::MAX)"
        );
        assert!(bounds[0] > 0, "bounds are positive");
        let mut i = 0;
        while i + 1 < N {
            assert!(
                log2(bounds[i]) < log2(bounds[i + 1]),
                "each bound in its own power-of-two range"
            );
            i += 1;
        }
        let mut below = [0u8; 64];
        let mut k = 0;
        while k < 64 {
            let mut c = 0;
            while c < N && bounds[c] < 1u64 << k {
                c += 1;
            }
            below[k] = c as u8;
            k += 1;
        }
        Self {
            bounds,
            below,
            per_unit,
            sum_shift,
        }
    }

    /// The bucket `v` falls in: the first whose bound is at least `v`.
    #[inline]
    pub fn bucket(&self, v: u64) -> usize {
        // v | 1: 0 and 1 share the range k = 0 (every bound is over both).
        let k = log2(v | 1) as usize;
        let c = self.below[k] as usize;
        // c < N: the last bound, u64::MAX, is under no 2^k.
        c + usize::from(v > self.bounds[c.min(N - 1)])
    }

    /// The finite bounds in the exposition's unit.
    pub fn bounds(&self) -> impl Iterator<Item = f64> + '_ {
        self.bounds[..N - 1]
            .iter()
            .map(|&b| b as f64 / self.per_unit)
    }
}

/// Publish-to-send latency, in nanoseconds, shown in seconds.
///
/// Bounds: 50 µs to 5 s in steps of 2 to 2.5 (Prometheus' default
/// buckets, 5 ms to 10 s, extended down). Below 50 µs is a publish read
/// and sent within one loop turn on an idle shard; above 5 s the
/// subscriber is far past any slow-consumer limit. Steps of 2-2.5 keep
/// `histogram_quantile` within that factor at worst, in 16 buckets.
///
/// The sum is kept in units of 1,024 ns (rounded to nearest): in
/// nanoseconds, 4 M deliveries a second at 10 ms each would wrap a u64 in
/// five days; in these units, in over 15 years.
pub static LATENCY: Scale<17> = Scale::new(
    [
        50_000,
        100_000,
        250_000,
        500_000,
        1_000_000,
        2_500_000,
        5_000_000,
        10_000_000,
        25_000_000,
        50_000_000,
        100_000_000,
        250_000_000,
        500_000_000,
        1_000_000_000,
        2_500_000_000,
        5_000_000_000,
        u64::MAX,
    ],
    1e9,
    10,
);

/// Bytes queued on a connection: 1 KiB to 64 MiB in powers of 4. 1 KiB
/// is a few small messages; the defaults that act on a backlog are 1 MiB
/// (`--max-queued-bytes`, the slow-consumer policy) and 4 MiB
/// (`--max-backlog-bytes`), both bounds here; 64 MiB covers a raised one.
pub static BYTES: Scale<10> = Scale::new(
    [
        1 << 10,
        1 << 12,
        1 << 14,
        1 << 16,
        1 << 18,
        1 << 20,
        1 << 22,
        1 << 24,
        1 << 26,
        u64::MAX,
    ],
    1.0,
    0,
);

/// One shard's histogram of `N` buckets (the last is `+Inf`). Written by
/// its shard only.
#[derive(Debug)]
pub struct Histogram<const N: usize> {
    counts: [AtomicU64; N],
    /// In units of `2^sum_shift` (see [`Scale`]).
    sum: AtomicU64,
}

impl<const N: usize> Default for Histogram<N> {
    fn default() -> Self {
        Self {
            counts: [const { AtomicU64::new(0) }; N],
            sum: AtomicU64::new(0),
        }
    }
}

/// A histogram as read at scrape time, in the exposition's unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Finite upper bounds, each with its own (not cumulative) count.
    pub buckets: Vec<(f64, u64)>,
    pub sum: f64,
    /// Every observation, those past the last finite bound too.
    pub count: u64,
}

impl<const N: usize> Histogram<N> {
    /// Record `v`. Only the owning shard may call this (plain stores).
    #[inline]
    pub fn observe(&self, scale: &Scale<N>, v: u64) {
        inc(&self.counts[scale.bucket(v)], 1);
        let half = (1u64 << scale.sum_shift) >> 1;
        inc(&self.sum, v.saturating_add(half) >> scale.sum_shift);
    }

    pub fn sample(&self, scale: &Scale<N>) -> Sample {
        let counts: Vec<u64> = self.counts.iter().map(|c| c.load(Relaxed)).collect();
        let count = counts.iter().fold(0u64, |a, &c| a.wrapping_add(c));
        let sum_units = self.sum.load(Relaxed) as f64;
        Sample {
            buckets: scale.bounds().zip(counts).collect(),
            sum: sum_units * (1u64 << scale.sum_shift) as f64 / scale.per_unit,
            count,
        }
    }
}

/// What the `counters!` macro needs of a histogram field.
pub trait Sampled {
    fn sample(&self) -> Sample;
}

/// Publish-to-send latency of one shard (see [`LATENCY`]).
#[derive(Debug, Default)]
pub struct LatencyHistogram(Histogram<17>);

impl LatencyHistogram {
    #[inline]
    pub fn observe_ns(&self, ns: u64) {
        self.0.observe(&LATENCY, ns);
    }
}

impl Sampled for LatencyHistogram {
    fn sample(&self) -> Sample {
        self.0.sample(&LATENCY)
    }
}

/// A byte-size histogram of one shard (see [`BYTES`]).
#[derive(Debug, Default)]
pub struct BytesHistogram(Histogram<10>);

impl BytesHistogram {
    #[inline]
    pub fn observe(&self, bytes: u64) {
        self.0.observe(&BYTES, bytes);
    }
}

impl Sampled for BytesHistogram {
    fn sample(&self) -> Sample {
        self.0.sample(&BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition the shortcut must agree with: the first bound that
    /// is at least `v`.
    fn reference<const N: usize>(s: &Scale<N>, v: u64) -> usize {
        s.bounds.iter().position(|&b| v <= b).unwrap_or(N - 1)
    }

    fn agrees<const N: usize>(s: &Scale<N>) {
        let mut values = vec![0, 1, 2, 3, u64::MAX, u64::MAX - 1];
        for &b in &s.bounds[..N - 1] {
            values.extend([b - 1, b, b + 1]);
        }
        for k in 0..64 {
            let p = 1u64 << k;
            values.extend([p - 1, p, p + 1, p | (p >> 1)]);
        }
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..100_000 {
            // xorshift, shifted right by a varying amount: every magnitude.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(x >> (x % 64));
        }
        for v in values {
            assert_eq!(s.bucket(v), reference(s, v), "value {v}");
        }
    }

    #[test]
    fn bucket_agrees_with_a_linear_search() {
        agrees(&LATENCY);
        agrees(&BYTES);
    }

    #[test]
    fn bounds_are_inclusive_and_the_last_is_inf() {
        assert_eq!(LATENCY.bucket(0), 0);
        assert_eq!(LATENCY.bucket(50_000), 0);
        assert_eq!(LATENCY.bucket(50_001), 1);
        assert_eq!(LATENCY.bucket(5_000_000_000), 15);
        assert_eq!(LATENCY.bucket(5_000_000_001), 16);
        assert_eq!(BYTES.bucket(1024), 0);
        assert_eq!(BYTES.bucket(1025), 1);
        assert_eq!(BYTES.bucket(64 << 20), 8);
        assert_eq!(BYTES.bucket((64 << 20) + 1), 9);
    }

    #[test]
    fn sample_has_counts_sum_and_bounds_in_the_exposition_unit() {
        let h = LatencyHistogram::default();
        h.observe_ns(10_000); // 10 µs: first bucket
        h.observe_ns(3_000_000); // 3 ms: le 5 ms
        h.observe_ns(3_000_000);
        h.observe_ns(9_000_000_000); // 9 s: +Inf only
        let s = h.sample();
        assert_eq!(s.count, 4);
        assert_eq!(s.buckets.len(), 16);
        assert_eq!(s.buckets[0], (5e-5, 1));
        assert_eq!(s.buckets[6], (5e-3, 2));
        assert_eq!(s.buckets[15], (5.0, 0));
        assert_eq!(s.buckets.iter().map(|b| b.1).sum::<u64>(), 3);
        // 9.00601 s, kept in 1,024 ns units: within 1 µs per observation.
        assert!((s.sum - 9.006_01).abs() < 4e-6, "{}", s.sum);

        let b = BytesHistogram::default();
        b.observe(0);
        b.observe(5000);
        let s = b.sample();
        assert_eq!(s.count, 2);
        assert_eq!(s.sum, 5000.0);
        assert_eq!(s.buckets[0], (1024.0, 1));
        assert_eq!(s.buckets[2], (16384.0, 1));
        assert_eq!(s.buckets[8], (67_108_864.0, 0));
    }
}
