//! Zipf popularity over ranks `0..n`: rank `i` has weight `1 / (i+1)^s`.
//!
//! Why: real pub/sub traffic is skewed — a few topics (AAPL, the lobby
//! channel) carry most subscribers and most messages, and that skew is what
//! stresses a fan-out broker (one publish to a hot topic becomes thousands of
//! sends). `s = 0` gives the uniform case for comparison; `s ≈ 1` is the
//! classic web/market skew.
//!
//! Sampling uses a precomputed CDF and a binary search: `O(n)` memory once
//! (8 MB at a million ranks), `O(log n)` per sample, and exact for any `s`,
//! which rejection samplers are not near `s = 1`. [`quotas`] turns the same
//! weights into whole numbers (subscribers per topic) that add up exactly,
//! so a run is deterministic and its totals are what was asked for.

/// Largest number of ranks accepted (the CDF costs 8 bytes a rank).
pub const MAX_RANKS: usize = 1 << 26;

/// A Zipf distribution over ranks `0..n`.
#[derive(Debug, Clone)]
pub struct Zipf {
    /// `cdf[i]` = P(rank <= i); the last entry is exactly 1.
    cdf: Vec<f64>,
    s: f64,
    /// Sum of the unnormalised weights.
    norm: f64,
}

impl Zipf {
    /// `n` ranks (1..=[`MAX_RANKS`]) with exponent `s` (finite, >= 0;
    /// 0 is uniform).
    pub fn new(n: usize, s: f64) -> Result<Self, String> {
        if n == 0 {
            return Err("zipf: need at least one rank".into());
        }
        if n > MAX_RANKS {
            return Err(format!("zipf: {n} ranks is over the limit of {MAX_RANKS}"));
        }
        if !s.is_finite() || s < 0.0 {
            return Err(format!("zipf: exponent must be finite and >= 0, not {s}"));
        }
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for i in 0..n {
            sum += raw_weight(i, s);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        if let Some(last) = cdf.last_mut() {
            *last = 1.0; // so a sample below 1 always lands on a rank
        }
        Ok(Zipf { cdf, s, norm: sum })
    }

    /// Number of ranks.
    pub fn n(&self) -> usize {
        self.cdf.len()
    }

    /// The exponent.
    pub fn s(&self) -> f64 {
        self.s
    }

    /// A rank in `0..n`, rank `i` with probability [`Zipf::weight`]`(i)`.
    #[inline]
    pub fn sample(&self, rng: &mut fastrand::Rng) -> usize {
        let u = rng.f64(); // [0, 1)
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
    }

    /// Normalised probability of rank `i` (0 outside `0..n`); non-increasing
    /// in `i`, summing to 1.
    pub fn weight(&self, i: usize) -> f64 {
        if i < self.cdf.len() {
            raw_weight(i, self.s) / self.norm
        } else {
            0.0
        }
    }
}

fn raw_weight(i: usize, s: f64) -> f64 {
    // (i+1)^-s; exact 1.0 for s = 0, so the uniform case is exactly uniform.
    (i as f64 + 1.0).powf(-s)
}

/// Splits `n_items` over the ranks in proportion to their weights by the
/// largest-remainder method: every rank gets the floor of its share, and the
/// items left over go one each to the largest fractional parts (ties to the
/// lower rank). The result sums exactly to `n_items`, is non-increasing in
/// rank, and depends on nothing but the arguments.
pub fn quotas(n_items: u64, zipf: &Zipf) -> Vec<u64> {
    let n = zipf.n();
    let total = n_items as f64;
    let mut out = Vec::with_capacity(n);
    let mut frac = Vec::with_capacity(n);
    let mut assigned: u64 = 0;
    for i in 0..n {
        let share = total * zipf.weight(i);
        let whole = share.floor();
        // `as` saturates; float error can only make a share a hair too big,
        // which the correction below takes back.
        let q = (whole as u64).min(n_items);
        out.push(q);
        frac.push(share - whole);
        assigned = assigned.saturating_add(q);
    }
    if assigned < n_items {
        let mut order: Vec<usize> = (0..n).collect();
        // Largest remainder first, then lower rank; stable and total.
        order.sort_by(|&a, &b| frac[b].total_cmp(&frac[a]).then(a.cmp(&b)));
        let mut left = n_items - assigned;
        // Normally left < n; float error on huge totals can leave more, which
        // goes evenly to every rank first (keeping the quotas non-increasing).
        let per = left / n as u64;
        if per > 0 {
            for q in &mut out {
                *q += per;
            }
            left -= per * n as u64;
        }
        for &i in order.iter().take(left as usize) {
            out[i] += 1;
        }
    } else {
        // Too many by float error: take back from the least popular ranks.
        let mut over = assigned - n_items;
        for q in out.iter_mut().rev() {
            if over == 0 {
                break;
            }
            let take = (*q).min(over);
            *q -= take;
            over -= take;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_parameters() {
        assert!(Zipf::new(0, 1.0).is_err());
        assert!(Zipf::new(MAX_RANKS + 1, 1.0).is_err());
        assert!(Zipf::new(10, -0.5).is_err());
        assert!(Zipf::new(10, f64::NAN).is_err());
        assert!(Zipf::new(10, f64::INFINITY).is_err());
        assert!(Zipf::new(1, 0.0).is_ok());
    }

    #[test]
    fn weights_sum_to_one_and_fall() {
        for s in [0.0, 0.5, 0.99, 1.0, 1.2, 3.0] {
            for n in [1, 2, 10, 1000, 100_000] {
                let z = Zipf::new(n, s).unwrap();
                let sum: f64 = (0..n).map(|i| z.weight(i)).sum();
                assert!((sum - 1.0).abs() < 1e-9, "n={n} s={s} sum={sum}");
                assert!((1..n).all(|i| z.weight(i) <= z.weight(i - 1)));
                if s > 0.0 && n > 1 {
                    assert!(z.weight(0) > z.weight(n - 1));
                }
                assert_eq!(z.weight(n), 0.0);
            }
        }
    }

    #[test]
    fn s_zero_is_uniform() {
        let z = Zipf::new(7, 0.0).unwrap();
        assert!((0..7).all(|i| z.weight(i) == 1.0 / 7.0));
        assert_eq!(quotas(70, &z), vec![10; 7]);
        assert_eq!(quotas(10, &z), vec![2, 2, 2, 1, 1, 1, 1]);
    }

    #[test]
    fn known_weights() {
        let z = Zipf::new(3, 1.0).unwrap();
        let h = 1.0 + 0.5 + 1.0 / 3.0;
        assert!((z.weight(0) - 1.0 / h).abs() < 1e-12);
        assert!((z.weight(2) - (1.0 / 3.0) / h).abs() < 1e-12);
        // 11 items: shares 6, 3, 2 exactly.
        assert_eq!(quotas(11, &z), vec![6, 3, 2]);
    }

    #[test]
    fn quotas_sum_exactly_and_fall() {
        for s in [0.0, 0.7, 1.0, 1.5] {
            for n in [1, 3, 17, 1000, 50_000] {
                let z = Zipf::new(n, s).unwrap();
                for items in [0, 1, 2, 99, 1000, 123_457, 10_000_000, u64::MAX / 2] {
                    let q = quotas(items, &z);
                    assert_eq!(q.len(), n);
                    assert_eq!(q.iter().sum::<u64>(), items, "n={n} s={s} items={items}");
                    assert!(q.windows(2).all(|w| w[0] >= w[1]), "n={n} s={s}");
                }
            }
        }
    }

    #[test]
    fn quotas_are_close_to_shares() {
        let z = Zipf::new(100, 1.0).unwrap();
        let q = quotas(10_000, &z);
        for (i, &qi) in q.iter().enumerate() {
            assert!((qi as f64 - 10_000.0 * z.weight(i)).abs() < 1.0);
        }
    }

    #[test]
    fn sampling_matches_weights() {
        let z = Zipf::new(20, 1.1).unwrap();
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        let n = 200_000;
        let mut counts = [0u32; 20];
        for _ in 0..n {
            counts[z.sample(&mut rng)] += 1;
        }
        for (i, &c) in counts.iter().enumerate() {
            let p = z.weight(i);
            let expect = p * n as f64;
            // 5 standard deviations of a binomial count.
            let sd = (n as f64 * p * (1.0 - p)).sqrt();
            assert!(
                (c as f64 - expect).abs() < 5.0 * sd + 1.0,
                "rank {i}: {c} vs {expect:.0}"
            );
        }
    }

    #[test]
    fn sampling_stays_in_range() {
        let mut rng = fastrand::Rng::with_seed(1);
        for n in [1, 2, 1_000_000] {
            let z = Zipf::new(n, 0.9).unwrap();
            assert!((0..10_000).all(|_| z.sample(&mut rng) < n));
        }
    }
}
