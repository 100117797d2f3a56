//! The results of one run, and the three ways they leave the generator.
//!
//! A run is worth only what a reader can get out of it afterwards, so the
//! results are gathered into one plain, serialisable [`RunReport`] and then
//! rendered three ways, each for a different reader:
//!
//! * [`human_table`]: the aligned text block printed at the end of a run, for
//!   the person at the terminal, who wants the headline figures and whether
//!   anything went wrong, at a glance;
//! * [`write_json`]: the full report, for scripts that compare runs or gate CI
//!   on them (it round-trips through `serde_json`);
//! * [`write_svg`]: an HDR percentile plot and a throughput timeline, because
//!   tail latency and stalls are shapes that a handful of numbers hide.
//!
//! [`RunReport::check`] turns the raw counters into sentences, so that a lost
//! message is reported as such instead of waiting for someone to notice that
//! two numbers differ. The small formatting helpers ([`fmt_us`],
//! [`fmt_count`], [`fmt_rate`]) are public so that the live progress line
//! speaks the same units as the final table.
//!
//! The parts: `fmt.rs` (the units), `table.rs`, `json.rs` and `svg.rs`
//! (the three renderings); the report itself and its checks are here.

mod fmt;
mod json;
mod svg;
mod table;

pub use fmt::{fmt_count, fmt_rate, fmt_us};
pub use json::write_json;
pub use svg::write_svg;
pub use table::human_table;

use fmt::fmt_share;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What happened, counted over the measured part of the run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Counts {
    /// Connections the scenario meant to open.
    pub connections_target: u64,
    /// Connections that completed the WebSocket handshake.
    pub connections_opened: u64,
    /// Connection attempts that failed (TCP or handshake).
    pub connect_failures: u64,
    /// Subscriptions the broker confirmed.
    pub subscribed: u64,
    /// Messages sent by publishers.
    pub published: u64,
    /// Publishes the broker acknowledged.
    pub acked: u64,
    /// Deliveries owed: each publish times the subscribers of its topic.
    pub expected_deliveries: u64,
    /// Deliveries received.
    pub delivered: u64,
    /// Deliveries never received.
    pub lost: u64,
    /// Deliveries received more than once.
    pub duplicated: u64,
    /// Deliveries received after a later message of the same stream.
    pub out_of_order: u64,
    /// Jumps in a stream's sequence numbers.
    pub gaps: u64,
    /// `err` replies from the broker.
    pub errors: u64,
    /// Close code (`"1000"`, `"1008"`, `"abnormal"`) to number of connections.
    pub closes: BTreeMap<String, u64>,
    /// Exact source ports found taken and replaced by another (--source-ports).
    #[serde(default)]
    pub port_retries: u64,
    /// `--publish-via http`: HTTP status (`"429"`, `"400"`) to number of
    /// `POST /publish` answers that were not 200 (each also an error).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub http_status: BTreeMap<String, u64>,
    /// `--publish-via http`: messages the broker answered with a `null`
    /// seq (not published under overload, a 429), or not at all (the
    /// connection closed before their answer). Neither published nor owed.
    #[serde(default)]
    pub not_published: u64,
}

impl Counts {
    /// Add one shard's counts. `lost` and `connections_target` are the
    /// run's, set after merging.
    pub fn add(&mut self, c: &Counts) {
        self.connections_opened += c.connections_opened;
        self.connect_failures += c.connect_failures;
        self.port_retries += c.port_retries;
        self.subscribed += c.subscribed;
        self.published += c.published;
        self.acked += c.acked;
        self.expected_deliveries += c.expected_deliveries;
        self.delivered += c.delivered;
        self.duplicated += c.duplicated;
        self.out_of_order += c.out_of_order;
        self.gaps += c.gaps;
        self.errors += c.errors;
        for (k, v) in &c.closes {
            *self.closes.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &c.http_status {
            *self.http_status.entry(k.clone()).or_default() += v;
        }
        self.not_published += c.not_published;
    }
}

/// A latency distribution reduced to the figures people quote, in µs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: u64,
    pub min_us: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub p9999_us: f64,
    pub max_us: f64,
    /// (percentile 0..=100, value in µs) for the HDR percentile plot,
    /// log-spaced towards the tail, ending with (100, max).
    pub percentiles: Vec<(f64, f64)>,
}

/// One point of the timeline, over the interval that ends at `t_s`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the start of the run.
    pub t_s: f64,
    /// Connections open at the end of the interval.
    pub connections: u64,
    pub published_per_s: f64,
    pub delivered_per_s: f64,
    /// p99 latency over the interval in µs; 0 if the interval had no samples.
    pub p99_us: f64,
}

/// Everything one run produced.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunReport {
    pub scenario: String,
    /// The broker's URL.
    pub target: String,
    /// The scenario's parameters, as given.
    pub params: serde_json::Value,
    /// When the run started, in seconds since the Unix epoch.
    pub unix_time: u64,
    /// Length of the measured part of the run.
    pub duration_s: f64,
    /// Length of the warm-up before it, which is not counted.
    pub warmup_s: f64,
    pub counts: Counts,
    /// What the scenario measures (delivery latency, or echo round trip).
    pub latency: LatencySummary,
    /// The generator's own lateness: actual send time minus intended
    /// (open-loop schedule). A large send lag means the generator, not the
    /// broker, was the bottleneck, and `latency` understates the truth.
    /// Empty (count 0) where nothing is sent on a schedule: closed loop,
    /// conns' one broadcast.
    pub send_lag: LatencySummary,
    pub timeline: Vec<Sample>,
    /// Scenario-specific figures, e.g. `connect_rate_per_s`,
    /// `server_rss_per_conn_bytes`, `deliveries_per_s`.
    pub extra: BTreeMap<String, f64>,
    /// Human sentences about what went wrong, e.g. "broker dropped 12 of
    /// 1,000,000 expected deliveries (0.0012%)".
    pub problems: Vec<String>,
    /// About the measurement rather than the broker, e.g. that the
    /// generator's own core was nearly saturated.
    #[serde(default)]
    pub notes: Vec<String>,
    /// Why the run stopped before publishing, e.g. "no connection could be
    /// established (…): connect to 127.0.0.1:9: Connection refused (os
    /// error 111)"; its figures then measure nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted: Option<String>,
}

/// Step, in plot x (decades of `1/(1-q)`), between percentile points.
const PCT_STEP: f64 = 0.05;
/// The deepest tail plotted: 99.9999%, six nines.
const PCT_MAX_NINES: f64 = 6.0;

impl LatencySummary {
    /// Summarises a histogram of **nanoseconds** into µs.
    ///
    /// The percentile points are spaced evenly on the HDR plot's axis
    /// (20 per decade of `1/(1-q)`) up to the depth the sample count
    /// supports (no use plotting 99.999% of 1,000 samples), then (100, max):
    /// at most ~122 points whatever the histogram's size.
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        let at = |q: f64| us(h.value_at_quantile(q));
        let count = h.len();
        let depth = (count as f64).log10().clamp(0.0, PCT_MAX_NINES);
        let steps = (depth / PCT_STEP).floor() as u32;
        let mut percentiles: Vec<(f64, f64)> = (0..=steps)
            .map(|i| {
                let q = 1.0 - 10f64.powf(-f64::from(i) * PCT_STEP);
                // Rounded so that the JSON stays short and reads back exactly.
                ((q * 1e8).round() / 1e6, at(q))
            })
            .collect();
        let max_us = us(h.max());
        percentiles.push((100.0, max_us));
        Self {
            count,
            min_us: us(h.min()),
            mean_us: h.mean() / 1000.0,
            p50_us: at(0.50),
            p90_us: at(0.90),
            p99_us: at(0.99),
            p999_us: at(0.999),
            p9999_us: at(0.9999),
            max_us,
            percentiles,
        }
    }
}

impl RunReport {
    /// Adds to `problems` one sentence for each thing the counters say went
    /// wrong. Sentences already present are not repeated, so calling this
    /// twice, or after a scenario added its own problems, is harmless.
    pub fn check(&mut self) {
        let c = &self.counts;
        let mut found = Vec::new();
        if c.connect_failures > 0 {
            found.push(format!(
                "{} of {} connection attempts failed",
                fmt_count(c.connect_failures),
                fmt_count(c.connections_target.max(c.connect_failures)),
            ));
        }
        if c.lost > 0 {
            found.push(format!(
                "broker dropped {} of {} expected deliveries{}",
                fmt_count(c.lost),
                fmt_count(c.expected_deliveries),
                fmt_share(c.lost, c.expected_deliveries),
            ));
        }
        if c.expected_deliveries > 0 && c.delivered != c.expected_deliveries {
            let (diff, word) = if c.delivered < c.expected_deliveries {
                (c.expected_deliveries - c.delivered, "fewer")
            } else {
                (c.delivered - c.expected_deliveries, "more")
            };
            found.push(format!(
                "delivered {} of {} expected deliveries ({} {word})",
                fmt_count(c.delivered),
                fmt_count(c.expected_deliveries),
                fmt_count(diff),
            ));
        }
        if c.duplicated > 0 {
            found.push(format!(
                "{} deliveries arrived more than once{}",
                fmt_count(c.duplicated),
                fmt_share(c.duplicated, c.delivered),
            ));
        }
        if c.out_of_order > 0 {
            found.push(format!(
                "{} deliveries arrived out of order{}",
                fmt_count(c.out_of_order),
                fmt_share(c.out_of_order, c.delivered),
            ));
        }
        if c.errors > 0 {
            found.push(format!(
                "broker answered {} requests with `err`",
                fmt_count(c.errors)
            ));
        }
        for (code, &n) in &c.closes {
            if n == 0 || code == "1000" || code == "1001" {
                continue;
            }
            let how = match (code.as_str(), close_meaning(code)) {
                ("abnormal", _) => "abnormally (no close frame)".to_string(),
                (_, Some(m)) => format!("with close code {code} ({m})"),
                (_, None) => format!("with close code {code}"),
            };
            let conns = if n == 1 { "connection" } else { "connections" };
            found.push(format!("{} {conns} closed {how}", fmt_count(n)));
        }
        for (status, &n) in &c.http_status {
            found.push(format!(
                "broker answered {} POST /publish request(s) with HTTP {status}",
                fmt_count(n)
            ));
        }
        if c.not_published > 0 {
            found.push(format!(
                "{} message(s) sent over HTTP were not published (null seq or no answer)",
                fmt_count(c.not_published)
            ));
        }
        for p in found {
            if !self.problems.contains(&p) {
                self.problems.push(p);
            }
        }
    }
}

/// What a WebSocket close code means, for the sentence.
fn close_meaning(code: &str) -> Option<&'static str> {
    Some(match code {
        "1006" => "abnormal: no close frame",
        "1002" => "protocol error",
        "1003" => "unsupported data",
        "1007" => "invalid payload",
        "1008" => "policy violation",
        "1009" => "message too big",
        "1011" => "server error",
        "1012" => "service restart",
        "1013" => "try again later",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist_1_to_1000_us() -> Histogram<u64> {
        let mut h = Histogram::<u64>::new(3).expect("histogram");
        for us in 1..=1000u64 {
            h.record(us * 1000).expect("record");
        }
        h
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= b.abs() * 0.01 + 1e-9
    }

    #[test]
    fn summary_of_known_histogram() {
        let s = LatencySummary::from_histogram(&hist_1_to_1000_us());
        assert_eq!(s.count, 1000);
        assert!(close(s.min_us, 1.0), "{}", s.min_us);
        assert!(close(s.mean_us, 500.5), "{}", s.mean_us);
        assert!(close(s.p50_us, 500.0), "{}", s.p50_us);
        assert!(close(s.p90_us, 900.0), "{}", s.p90_us);
        assert!(close(s.p99_us, 990.0), "{}", s.p99_us);
        assert!(close(s.p999_us, 999.0), "{}", s.p999_us);
        assert!(close(s.max_us, 1000.0), "{}", s.max_us);
        assert!(!s.percentiles.is_empty() && s.percentiles.len() <= 200);
        assert_eq!(s.percentiles.first().map(|p| p.0), Some(0.0));
        assert_eq!(s.percentiles.last().map(|p| p.0), Some(100.0));
        // 1,000 samples support three nines and no more.
        let deepest = s.percentiles[s.percentiles.len() - 2].0;
        assert!(close(deepest, 99.9), "{deepest}");
        assert!(s
            .percentiles
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
    }

    #[test]
    fn summary_of_empty_and_huge_histograms() {
        let h = Histogram::<u64>::new(3).expect("histogram");
        let s = LatencySummary::from_histogram(&h);
        assert_eq!(s.count, 0);
        assert_eq!(s.max_us, 0.0);
        assert!(s.percentiles.is_empty());

        let mut h = Histogram::<u64>::new(3).expect("histogram");
        h.record_n(5_000, 1 << 40).expect("record");
        let s = LatencySummary::from_histogram(&h);
        assert!(s.percentiles.len() <= 200, "{}", s.percentiles.len());
        assert!(close(s.p9999_us, 5.0));
    }

    pub(super) fn sample_report() -> RunReport {
        let mut r = RunReport {
            scenario: "fanout".into(),
            target: "ws://127.0.0.1:9000/".into(),
            params: serde_json::json!({"subscribers": 1000, "rate": 1000}),
            unix_time: 1_700_000_000,
            duration_s: 10.0,
            warmup_s: 2.0,
            latency: LatencySummary::from_histogram(&hist_1_to_1000_us()),
            send_lag: LatencySummary::from_histogram(&hist_1_to_1000_us()),
            ..Default::default()
        };
        r.counts = Counts {
            connections_target: 1000,
            connections_opened: 1000,
            subscribed: 1000,
            published: 10_000,
            acked: 10_000,
            expected_deliveries: 1_000_000,
            delivered: 999_988,
            lost: 12,
            ..Default::default()
        };
        r.counts.closes.insert("1000".into(), 990);
        r.counts.closes.insert("1008".into(), 10);
        r.extra.insert("deliveries_per_s".into(), 99_998.8);
        r.timeline = (1..=10)
            .map(|t| Sample {
                t_s: f64::from(t),
                connections: 1000,
                published_per_s: 1000.0,
                delivered_per_s: 99_998.8,
                p99_us: 900.0 + f64::from(t),
            })
            .collect();
        r
    }

    #[test]
    fn check_sentences() {
        let mut r = sample_report();
        r.counts.duplicated = 3;
        r.counts.out_of_order = 4;
        r.counts.errors = 2;
        r.counts.connect_failures = 5;
        r.counts.closes.insert("abnormal".into(), 1);
        r.check();
        let all = r.problems.join("\n");
        assert!(
            all.contains("broker dropped 12 of 1,000,000 expected deliveries (0.0012%)"),
            "{all}"
        );
        assert!(all.contains("delivered 999,988 of 1,000,000 expected deliveries (12 fewer)"));
        assert!(all.contains("3 deliveries arrived more than once"));
        assert!(all.contains("4 deliveries arrived out of order"));
        assert!(all.contains("broker answered 2 requests with `err`"));
        assert!(all.contains("5 of 1,000 connection attempts failed"));
        assert!(all.contains("10 connections closed with close code 1008 (policy violation)"));
        assert!(all.contains("1 connection closed abnormally (no close frame)"));
        assert!(!all.contains("1000 ("), "{all}");
        let n = r.problems.len();
        assert_eq!(n, 8, "{all}");
        r.check();
        assert_eq!(r.problems.len(), n, "check() must not repeat itself");

        let mut clean = RunReport::default();
        clean.counts.expected_deliveries = 10;
        clean.counts.delivered = 10;
        clean.counts.closes.insert("1000".into(), 5);
        clean.counts.closes.insert("1001".into(), 1);
        clean.check();
        assert!(clean.problems.is_empty(), "{:?}", clean.problems);
    }

    pub(super) fn temp_path(name: &str) -> std::path::PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        std::env::temp_dir().join(format!(
            "ringfan-report-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ))
    }
}
