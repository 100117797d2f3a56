//! Numbers in the units people read them in, shared by the table and the
//! live progress line.

/// `" (0.0012%)"`: `part` as a share of `whole`, to two significant digits
/// below 1%; empty when `whole` is 0.
pub(super) fn fmt_share(part: u64, whole: u64) -> String {
    if whole == 0 {
        return String::new();
    }
    let pct = part as f64 * 100.0 / whole as f64;
    let decimals = if pct >= 1.0 || pct == 0.0 {
        2
    } else {
        // two significant digits: 0.0012 has its first at 10^-3.
        ((1.0 - pct.log10().floor()) as usize).min(9)
    };
    format!(" ({pct:.decimals$}%)")
}

/// `n` with thousands separators: `1,234,567`.
pub fn fmt_count(n: u64) -> String {
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(n);
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// `v` to three significant digits (`1.23`, `12.3`, `123`); `v` is assumed
/// to lie in `0..1000` (larger values print in full).
fn sig3(v: f64) -> String {
    if v >= 99.95 || v == 0.0 {
        format!("{v:.0}")
    } else if v >= 9.995 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Scales `v` by `steps` (unit, divisor) until it reads in `0..1000` at
/// three significant digits, and formats it.
fn scaled(v: f64, steps: &[(&str, f64)]) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let sign = if v < 0.0 { "-" } else { "" };
    let a = v.abs();
    let mut chosen = steps[0];
    for &step in steps {
        chosen = step;
        // Stop at the first unit in which the value rounds below 1000.
        if a / step.1 < 999.5 {
            break;
        }
    }
    format!("{sign}{}{}", sig3(a / chosen.1), chosen.0)
}

/// A duration given in µs, in the unit that suits it: `512 ns`, `850 µs`,
/// `1.23 ms`, `12.0 s`.
pub fn fmt_us(us: f64) -> String {
    if us == 0.0 {
        return "0 µs".to_string();
    }
    if us.abs() < 0.9995 {
        return scaled(us * 1000.0, &[(" ns", 1.0)]);
    }
    scaled(us, &[(" µs", 1.0), (" ms", 1e3), (" s", 1e6)])
}

/// A rate (or any large quantity) with an SI suffix: `950`, `12.3k`, `3.91M`.
pub fn fmt_rate(per_s: f64) -> String {
    scaled(
        per_s,
        &[("", 1.0), ("k", 1e3), ("M", 1e6), ("G", 1e9), ("T", 1e12)],
    )
}

/// A value from [`RunReport::extra`]: integers (and anything large) with
/// separators, small fractions to three decimals.
pub(super) fn fmt_extra(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    if v.abs() >= 100.0 || v.fract() == 0.0 {
        let s = fmt_count(v.abs().round() as u64);
        return if v < 0.0 { format!("-{s}") } else { s };
    }
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting() {
        assert_eq!(fmt_count(0), "0");
        assert_eq!(fmt_count(999), "999");
        assert_eq!(fmt_count(1000), "1,000");
        assert_eq!(fmt_count(1_234_567), "1,234,567");
        assert_eq!(fmt_count(u64::MAX), "18,446,744,073,709,551,615");
        assert_eq!(fmt_us(0.0), "0 µs");
        assert_eq!(fmt_us(0.512), "512 ns");
        assert_eq!(fmt_us(850.0), "850 µs");
        assert_eq!(fmt_us(3.4), "3.40 µs");
        assert_eq!(fmt_us(1234.0), "1.23 ms");
        assert_eq!(fmt_us(999.7), "1.00 ms");
        assert_eq!(fmt_us(12_000_000.0), "12.0 s");
        assert_eq!(fmt_rate(3_910_000.0), "3.91M");
        assert_eq!(fmt_rate(950.0), "950");
        assert_eq!(fmt_rate(12_345.0), "12.3k");
        assert_eq!(fmt_rate(0.0), "0");
        assert_eq!(fmt_share(12, 1_000_000), " (0.0012%)");
        assert_eq!(fmt_share(1, 4), " (25.00%)");
        assert_eq!(fmt_extra(12345.6), "12,346");
        assert_eq!(fmt_extra(1.5), "1.5");
    }
}
