//! The `feed` scenario: a simulated market-data feed, ringfan's reference
//! workload.
//!
//! Why simulate rather than use random bytes: a price feed has a shape that
//! matters to a fan-out broker. Updates are small (about 100 bytes), a few
//! symbols take most of the traffic and most of the subscribers (Zipf by
//! rank), the rate jumps several-fold at the market open, and every topic
//! keeps a meaningful last value (what `snapshot` and the `conflate`
//! slow-consumer policy are for). This module makes those payloads and
//! rates; the generator decides who sends them and when.
//!
//! Everything is deterministic given the RNG seed. Prices are kept in integer
//! cents, so they print with exactly two decimals and no float noise. Every
//! payload starts with `{"t":<ns>`, the latency stamp that
//! [`crate::msg::stamp`] reads back on the receive side.

use std::collections::HashSet;

use crate::msg::write_str;
use crate::zipf::Zipf;

/// Real-looking tickers for the most popular ranks (valid topic tokens: no
/// dots, so no `BRK.B`).
const KNOWN: &[&str] = &[
    "AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "AVGO", "JPM", "LLY", "V", "UNH",
    "XOM", "MA", "JNJ", "PG", "HD", "COST", "ORCL", "MRK", "ABBV", "CVX", "KO", "PEP", "ADBE",
    "CRM", "WMT", "BAC", "NFLX", "AMD", "TMO", "MCD", "CSCO", "ACN", "ABT", "LIN", "INTC", "DIS",
    "WFC", "QCOM", "TXN", "IBM", "INTU", "AMGN", "CAT", "GE", "NKE", "PFE", "UBER", "SPY", "QQQ",
    "GOOG",
];

const VENUES: &[&str] = &["NASDAQ", "NYSE", "ARCA", "BATS", "IEX"];

/// Share of updates that are trades (the rest are quotes).
pub const TRADE_SHARE: f64 = 0.10;

/// `n` distinct ticker symbols, most popular first: the built-in list, then
/// generated 3–5 letter uppercase names (deterministic; longer ones only if
/// the 3–5 letter space, 12 million names, ran short).
pub fn symbols(n: usize) -> Vec<String> {
    let mut out: Vec<String> = KNOWN.iter().take(n).map(|s| (*s).to_owned()).collect();
    let mut seen: HashSet<String> = out.iter().cloned().collect();
    let mut rng = fastrand::Rng::with_seed(0x7469_636b_6572); // "ticker"
    let mut min_len = 3;
    let mut misses = 0u32;
    while out.len() < n {
        let len = rng.usize(min_len..=min_len + 2);
        let name: String = (0..len).map(|_| rng.uppercase()).collect();
        if seen.contains(&name) {
            misses += 1;
            if misses > 64 {
                min_len += 1;
                misses = 0;
            }
            continue;
        }
        misses = 0;
        seen.insert(name.clone());
        out.push(name);
    }
    out
}

/// The simulated venues, in the order [`topics`] uses them.
pub fn venues() -> &'static [&'static str] {
    VENUES
}

/// `md.<venue>.<symbol>`.
pub fn topic(venue: &str, symbol: &str) -> String {
    format!("md.{venue}.{symbol}")
}

/// The topics of `n` symbols each quoted on the first `venues` venues
/// (clamped to 1..=5): `n * venues` topics, symbol-major, so topic `i` is
/// symbol `i / venues` (its popularity rank) on venue `i % venues`. With
/// one venue, topic `i` is symbol `i`.
pub fn topics(n: usize, venues: usize) -> Vec<String> {
    let v = &VENUES[..venues.clamp(1, VENUES.len())];
    symbols(n)
        .iter()
        .flat_map(|s| v.iter().map(move |venue| topic(venue, s)))
        .collect()
}

/// Which kind of update [`Book::update`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    Quote,
    Trade,
}

/// One symbol's top of book: a random walk of the bid in one-cent ticks with
/// a spread of 1–3 ticks.
#[derive(Debug, Clone)]
pub struct Book {
    sym: String,
    /// Best bid in cents, always >= 1.
    bid: u64,
    /// Ask minus bid in cents, 1..=3.
    spread: u64,
}

impl Book {
    /// A book for `sym` starting at a random price between 10.00 and 500.00.
    pub fn new(sym: impl Into<String>, rng: &mut fastrand::Rng) -> Self {
        Self::with_price(sym, rng.u64(1_000..=50_000), rng.u64(1..=3))
    }

    /// A book at a given bid (cents, at least 1) and spread (ticks, 1..=3).
    pub fn with_price(sym: impl Into<String>, bid_cents: u64, spread_ticks: u64) -> Self {
        Book {
            sym: sym.into(),
            bid: bid_cents.max(1),
            spread: spread_ticks.clamp(1, 3),
        }
    }

    pub fn sym(&self) -> &str {
        &self.sym
    }

    /// Best bid in cents.
    pub fn bid_cents(&self) -> u64 {
        self.bid
    }

    /// Best ask in cents.
    pub fn ask_cents(&self) -> u64 {
        self.bid + self.spread
    }

    /// One step of the walk: the bid moves -2..=+2 ticks (never below one
    /// cent) and the spread is redrawn now and then.
    fn step(&mut self, rng: &mut fastrand::Rng) {
        let delta = rng.i64(-2..=2);
        self.bid = self.bid.saturating_add_signed(delta).max(1);
        if rng.u8(..4) == 0 {
            self.spread = rng.u64(1..=3);
        }
    }

    /// Moves the book and appends
    /// `{"t":…,"type":"quote","sym":"AAPL","bid":189.21,"ask":189.23,"bsz":300,"asz":500}`.
    pub fn quote(&mut self, rng: &mut fastrand::Rng, t_ns: u64, buf: &mut Vec<u8>) {
        self.step(rng);
        let (bsz, asz) = (100 * rng.u64(1..=10), 100 * rng.u64(1..=10));
        self.head(buf, t_ns, "quote");
        buf.extend_from_slice(br#","bid":"#);
        write_cents(buf, self.bid);
        buf.extend_from_slice(br#","ask":"#);
        write_cents(buf, self.ask_cents());
        buf.extend_from_slice(br#","bsz":"#);
        write_u64(buf, bsz);
        buf.extend_from_slice(br#","asz":"#);
        write_u64(buf, asz);
        buf.push(b'}');
    }

    /// Appends a trade at the touch,
    /// `{"t":…,"type":"trade","sym":"AAPL","px":189.23,"sz":100,"side":"B"}`:
    /// a buy lifts the ask, a sell hits the bid.
    pub fn trade(&mut self, rng: &mut fastrand::Rng, t_ns: u64, buf: &mut Vec<u8>) {
        let buy = rng.bool();
        let px = if buy { self.ask_cents() } else { self.bid };
        let sz = 100 * rng.u64(1..=5);
        self.head(buf, t_ns, "trade");
        buf.extend_from_slice(br#","px":"#);
        write_cents(buf, px);
        buf.extend_from_slice(br#","sz":"#);
        write_u64(buf, sz);
        buf.extend_from_slice(if buy {
            br#","side":"B"}"#
        } else {
            br#","side":"S"}"#
        });
    }

    /// A quote, or with probability [`TRADE_SHARE`] a trade.
    pub fn update(&mut self, rng: &mut fastrand::Rng, t_ns: u64, buf: &mut Vec<u8>) -> Update {
        if rng.f64() < TRADE_SHARE {
            self.trade(rng, t_ns, buf);
            Update::Trade
        } else {
            self.quote(rng, t_ns, buf);
            Update::Quote
        }
    }

    /// `{"t":<t_ns>,"type":"<kind>","sym":"<sym>"` — the stamp first.
    fn head(&self, buf: &mut Vec<u8>, t_ns: u64, kind: &str) {
        buf.extend_from_slice(br#"{"t":"#);
        write_u64(buf, t_ns);
        buf.extend_from_slice(br#","type":""#);
        buf.extend_from_slice(kind.as_bytes());
        buf.extend_from_slice(br#"","sym":"#);
        write_str(buf, &self.sym);
    }
}

fn write_u64(buf: &mut Vec<u8>, n: u64) {
    buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `cents` as a decimal with exactly two places: 18921 → `189.21`, 5 → `0.05`.
fn write_cents(buf: &mut Vec<u8>, cents: u64) {
    write_u64(buf, cents / 100);
    let c = (cents % 100) as u8;
    buf.extend_from_slice(&[b'.', b'0' + c / 10, b'0' + c % 10]);
}

/// Update rates: Zipf over symbol rank for a total base rate, times a burst
/// multiplier during one window ("market open").
#[derive(Debug, Clone)]
pub struct Schedule {
    zipf: Zipf,
    total: f64,
    burst: f64,
    burst_at: f64,
    burst_len: f64,
}

impl Schedule {
    /// `n_symbols` with Zipf exponent `s`, `total_rate` updates/s over all
    /// of them; no burst until [`Schedule::with_burst`].
    pub fn new(n_symbols: usize, s: f64, total_rate: f64) -> Result<Self, String> {
        if !total_rate.is_finite() || total_rate < 0.0 {
            return Err(format!(
                "feed: rate must be finite and >= 0, not {total_rate}"
            ));
        }
        Ok(Schedule {
            zipf: Zipf::new(n_symbols, s)?,
            total: total_rate,
            burst: 1.0,
            burst_at: 0.0,
            burst_len: 0.0,
        })
    }

    /// Multiplies the rate by `multiplier` during `[at_s, at_s + len_s)`
    /// seconds into the run.
    pub fn with_burst(mut self, multiplier: f64, at_s: f64, len_s: f64) -> Result<Self, String> {
        for (what, v) in [
            ("multiplier", multiplier),
            ("start", at_s),
            ("length", len_s),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(format!(
                    "feed: burst {what} must be finite and >= 0, not {v}"
                ));
            }
        }
        self.burst = multiplier;
        self.burst_at = at_s;
        self.burst_len = len_s;
        Ok(self)
    }

    /// Number of symbols.
    pub fn n(&self) -> usize {
        self.zipf.n()
    }

    /// The base total rate R, updates/s.
    pub fn total_rate(&self) -> f64 {
        self.total
    }

    /// Base rate of symbol `rank`, updates/s (0 outside the symbols).
    pub fn rate(&self, rank: usize) -> f64 {
        self.total * self.zipf.weight(rank)
    }

    /// Base rates of all symbols, most popular first; they sum to R.
    pub fn rates(&self) -> Vec<f64> {
        (0..self.n()).map(|i| self.rate(i)).collect()
    }

    /// The rate multiplier at `t_s` seconds into the run: the burst
    /// multiplier inside the burst window, 1 outside it.
    pub fn rate_at(&self, t_s: f64) -> f64 {
        if t_s >= self.burst_at && t_s < self.burst_at + self.burst_len {
            self.burst
        } else {
            1.0
        }
    }

    /// Total updates/s over all symbols at `t_s`.
    pub fn total_rate_at(&self, t_s: f64) -> f64 {
        self.total * self.rate_at(t_s)
    }

    /// Expected number of updates in `[t0_s, t1_s)` over all symbols (the
    /// integral of the rate), for pacing: send `floor(expected(0, now))`
    /// updates by `now`.
    pub fn expected(&self, t0_s: f64, t1_s: f64) -> f64 {
        if t1_s <= t0_s {
            return 0.0;
        }
        let overlap = (t1_s.min(self.burst_at + self.burst_len) - t0_s.max(self.burst_at)).max(0.0);
        self.total * ((t1_s - t0_s) + overlap * (self.burst - 1.0))
    }

    /// The symbol rank of the next update: rank `i` with probability
    /// proportional to its rate.
    #[inline]
    pub fn pick(&self, rng: &mut fastrand::Rng) -> usize {
        self.zipf.sample(rng)
    }

    pub fn zipf(&self) -> &Zipf {
        &self.zipf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn symbol_names() {
        let s = symbols(5000);
        assert_eq!(s.len(), 5000);
        assert_eq!(&s[..3], ["AAPL", "MSFT", "NVDA"]);
        assert_eq!(s.iter().collect::<HashSet<_>>().len(), 5000);
        for name in &s[KNOWN.len()..] {
            assert!((3..=5).contains(&name.len()), "{name}");
            assert!(name.bytes().all(|c| c.is_ascii_uppercase()), "{name}");
        }
        assert_eq!(symbols(5000), s, "deterministic");
        assert_eq!(symbols(2), ["AAPL", "MSFT"]);
        assert!(symbols(0).is_empty());
        assert_eq!(KNOWN.iter().collect::<HashSet<_>>().len(), KNOWN.len());
    }

    #[test]
    fn topic_names() {
        let t = topics(3, 2);
        assert_eq!(
            t,
            [
                "md.NASDAQ.AAPL",
                "md.NYSE.AAPL",
                "md.NASDAQ.MSFT",
                "md.NYSE.MSFT",
                "md.NASDAQ.NVDA",
                "md.NYSE.NVDA"
            ]
        );
        assert_eq!(topics(4, 0), topics(4, 1));
        assert_eq!(topics(4, 99).len(), 4 * venues().len());
        // Valid protocol topics: tokens of [A-Za-z0-9_\-:@], 1..64 bytes.
        for t in topics(500, 5) {
            assert!(t.len() <= 255);
            assert!(t.split('.').all(|tok| (1..=64).contains(&tok.len())
                && tok
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"_-:@".contains(&c))));
        }
    }

    #[test]
    fn cents_format() {
        for (c, s) in [
            (0, "0.00"),
            (5, "0.05"),
            (10, "0.10"),
            (18921, "189.21"),
            (100, "1.00"),
        ] {
            let mut buf = Vec::new();
            write_cents(&mut buf, c);
            assert_eq!(buf, s.as_bytes());
        }
    }

    #[test]
    fn exact_quote_and_trade() {
        let mut rng = fastrand::Rng::with_seed(3);
        let mut b = Book::with_price("AAPL", 18921, 2);
        let mut buf = Vec::new();
        b.trade(&mut rng, 42, &mut buf);
        let s = String::from_utf8(buf).unwrap();
        let v: Value = serde_json::from_str(&s).unwrap();
        let (px, side) = if v["side"] == "B" {
            ("189.23", "B")
        } else {
            ("189.21", "S")
        };
        let sz = &v["sz"];
        assert_eq!(
            s,
            format!(
                r#"{{"t":42,"type":"trade","sym":"AAPL","px":{px},"sz":{sz},"side":"{side}"}}"#
            )
        );
        let mut buf = Vec::new();
        b.quote(&mut rng, 43, &mut buf);
        let v: Value = serde_json::from_slice(&buf).unwrap();
        let cents = |c: u64| format!("{}.{:02}", c / 100, c % 100);
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            format!(
                r#"{{"t":43,"type":"quote","sym":"AAPL","bid":{},"ask":{},"bsz":{},"asz":{}}}"#,
                cents(b.bid_cents()),
                cents(b.ask_cents()),
                v["bsz"],
                v["asz"]
            )
        );
        assert!((18919..=18923).contains(&b.bid_cents()));
    }

    #[test]
    fn payloads_parse_and_stamp() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut books: Vec<Book> = symbols(20)
            .into_iter()
            .map(|s| Book::new(s, &mut rng))
            .collect();
        let mut trades = 0;
        let n = 20_000;
        for i in 0..n {
            let t = 1_700_000_000_000_000_000 + i;
            let b = &mut books[(i % 20) as usize];
            let mut buf = Vec::new();
            let kind = b.update(&mut rng, t, &mut buf);
            assert!(buf.starts_with(br#"{"t":"#));
            assert_eq!(crate::msg::stamp(&buf), Some(t));
            let v: Value = serde_json::from_slice(&buf).unwrap();
            assert_eq!(v["sym"], b.sym());
            // Exactly two decimals, no float noise.
            let text = std::str::from_utf8(&buf).unwrap();
            for key in ["\"bid\":", "\"ask\":", "\"px\":"] {
                if let Some(at) = text.find(key) {
                    let num: String = text[at + key.len()..]
                        .chars()
                        .take_while(|c| *c != ',' && *c != '}')
                        .collect();
                    let (_, frac) = num.split_once('.').unwrap();
                    assert_eq!(frac.len(), 2, "{text}");
                }
            }
            match kind {
                Update::Trade => {
                    trades += 1;
                    assert_eq!(v["type"], "trade");
                    let px = (v["px"].as_f64().unwrap() * 100.0).round() as u64;
                    assert!(px == b.bid_cents() || px == b.ask_cents());
                    assert!(v["side"] == "B" || v["side"] == "S");
                }
                Update::Quote => {
                    assert_eq!(v["type"], "quote");
                    let spread = v["ask"].as_f64().unwrap() - v["bid"].as_f64().unwrap();
                    assert!((0.005..0.035).contains(&spread), "{text}");
                    assert!(v["bsz"].as_u64().unwrap().is_multiple_of(100));
                }
            }
            assert!(b.bid_cents() >= 1);
            // The broker frames it; our fast path reads it back.
            let mut frame = br#"{"op":"msg","topic":"md.NASDAQ.X","seq":1,"data":"#.to_vec();
            frame.extend_from_slice(&buf);
            frame.push(b'}');
            assert!(
                matches!(crate::msg::parse(&frame), Ok(crate::msg::Server::Msg { data, .. }) if data == &buf[..])
            );
        }
        let share = trades as f64 / n as f64;
        assert!((0.08..0.12).contains(&share), "{share}");
    }

    #[test]
    fn book_never_goes_below_a_cent() {
        let mut rng = fastrand::Rng::with_seed(11);
        let mut b = Book::with_price("PENNY", 1, 1);
        let mut buf = Vec::new();
        for _ in 0..10_000 {
            buf.clear();
            b.quote(&mut rng, 0, &mut buf);
            assert!(b.bid_cents() >= 1 && b.ask_cents() > b.bid_cents());
        }
    }

    #[test]
    fn rates_sum_to_total() {
        for s in [0.0, 1.0, 1.3] {
            let sch = Schedule::new(1000, s, 50_000.0).unwrap();
            let sum: f64 = sch.rates().iter().sum();
            assert!((sum - 50_000.0).abs() < 1e-6, "{sum}");
            assert!(sch.rate(0) >= sch.rate(999));
            assert_eq!(sch.rate(1000), 0.0);
        }
        let uniform = Schedule::new(4, 0.0, 100.0).unwrap();
        assert_eq!(uniform.rates(), [25.0; 4]);
    }

    #[test]
    fn burst_window() {
        let sch = Schedule::new(10, 1.0, 1000.0)
            .unwrap()
            .with_burst(5.0, 10.0, 2.0)
            .unwrap();
        assert_eq!(sch.rate_at(0.0), 1.0);
        assert_eq!(sch.rate_at(9.999), 1.0);
        assert_eq!(sch.rate_at(10.0), 5.0);
        assert_eq!(sch.rate_at(11.9), 5.0);
        assert_eq!(sch.rate_at(12.0), 1.0);
        assert_eq!(sch.total_rate_at(11.0), 5000.0);
        assert_eq!(sch.expected(0.0, 10.0), 10_000.0);
        assert_eq!(sch.expected(0.0, 20.0), 20_000.0 + 2.0 * 4000.0);
        assert_eq!(sch.expected(11.0, 13.0), 5000.0 + 1000.0);
        assert_eq!(sch.expected(5.0, 5.0), 0.0);
        let plain = Schedule::new(10, 1.0, 1000.0).unwrap();
        assert!((0..100).all(|t| plain.rate_at(f64::from(t)) == 1.0));
        assert!(plain.clone().with_burst(-1.0, 0.0, 1.0).is_err());
        assert!(plain.clone().with_burst(2.0, f64::NAN, 1.0).is_err());
        assert!(Schedule::new(0, 1.0, 1.0).is_err());
        assert!(Schedule::new(3, 1.0, -1.0).is_err());
    }

    #[test]
    fn pick_follows_rates() {
        let sch = Schedule::new(5, 1.0, 100.0).unwrap();
        let mut rng = fastrand::Rng::with_seed(9);
        let mut counts = [0u32; 5];
        for _ in 0..100_000 {
            counts[sch.pick(&mut rng)] += 1;
        }
        for (i, &c) in counts.iter().enumerate() {
            let want = sch.rate(i) / 100.0 * 100_000.0;
            assert!(
                (f64::from(c) - want).abs() < 0.05 * want,
                "{i}: {c} vs {want}"
            );
        }
    }
}
