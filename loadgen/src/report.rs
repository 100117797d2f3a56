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

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

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
}

impl Counts {
    /// Add one shard's counts. `lost` and `connections_target` are the
    /// run's, set after merging.
    pub fn add(&mut self, c: &Counts) {
        self.connections_opened += c.connections_opened;
        self.connect_failures += c.connect_failures;
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

/// `" (0.0012%)"`: `part` as a share of `whole`, to two significant digits
/// below 1%; empty when `whole` is 0.
fn fmt_share(part: u64, whole: u64) -> String {
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
fn fmt_extra(v: f64) -> String {
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

/// Width of the row labels in [`human_table`].
const LABEL: usize = 13;

/// The report as an aligned plain-text block, for the end of a run.
///
/// ```text
/// fanout  ws://127.0.0.1:9000/  30.0 s measured (+5.0 s warm-up)
///   connections  opened 250,000 of 250,000  failed 0  subscribed 250,000
///   published    1,000,000  acked 1,000,000  33.3k/s
///   ...
/// ```
pub fn human_table(r: &RunReport) -> String {
    let c = &r.counts;
    let mut out = String::new();
    // Rates over the measured window (the counts include the warm-up):
    // the run's own figure when it gave one, else count / duration.
    let per_s = |n: u64, key: &str| match r.extra.get(key) {
        Some(v) => format!("{}/s measured", fmt_rate(*v)),
        None if r.duration_s > 0.0 && r.warmup_s == 0.0 => {
            format!("{}/s", fmt_rate(n as f64 / r.duration_s))
        }
        None => "-/s".to_string(),
    };
    // `writeln!` into a String cannot fail; the results are ignored below.
    let _ = write!(
        out,
        "{}  {}  {:.1} s measured",
        r.scenario, r.target, r.duration_s
    );
    if r.warmup_s > 0.0 {
        let _ = write!(out, " (+{:.1} s warm-up)", r.warmup_s);
    }
    out.push('\n');
    let mut row = |label: &str, cells: &[(&str, String)]| {
        let _ = write!(out, "  {label:<LABEL$}");
        for (i, (name, value)) in cells.iter().enumerate() {
            let sep = if i == 0 { "" } else { "   " };
            if name.is_empty() {
                let _ = write!(out, "{sep}{value}");
            } else {
                let _ = write!(out, "{sep}{name} {value}");
            }
        }
        out.push('\n');
    };
    if !r.params.is_null() && r.params.as_object().is_none_or(|o| !o.is_empty()) {
        row("params", &[("", r.params.to_string())]);
    }
    row(
        "connections",
        &[
            (
                "opened",
                format!(
                    "{} of {}",
                    fmt_count(c.connections_opened),
                    fmt_count(c.connections_target)
                ),
            ),
            ("failed", fmt_count(c.connect_failures)),
            ("subscribed", fmt_count(c.subscribed)),
        ],
    );
    row(
        "published",
        &[
            ("", fmt_count(c.published)),
            ("acked", fmt_count(c.acked)),
            ("", per_s(c.published, "publishes_per_s")),
        ],
    );
    row(
        "deliveries",
        &[
            ("expected", fmt_count(c.expected_deliveries)),
            ("delivered", fmt_count(c.delivered)),
            ("", per_s(c.delivered, "deliveries_per_s")),
        ],
    );
    row(
        "anomalies",
        &[
            ("lost", fmt_count(c.lost)),
            ("dup", fmt_count(c.duplicated)),
            ("out-of-order", fmt_count(c.out_of_order)),
            ("gaps", fmt_count(c.gaps)),
            ("errors", fmt_count(c.errors)),
        ],
    );
    let closes: Vec<(&str, String)> = c
        .closes
        .iter()
        .map(|(code, &n)| ("", format!("{code}: {}", fmt_count(n))))
        .collect();
    if closes.is_empty() {
        row("closes", &[("", "none".to_string())]);
    } else {
        row("closes", &closes);
    }

    // Latency: a small grid, one row per distribution, right-aligned cells.
    let heads = [
        "p50", "p90", "p99", "p99.9", "p99.99", "max", "mean", "samples",
    ];
    let cells = |l: &LatencySummary| -> Vec<String> {
        if l.count == 0 {
            let mut v = vec!["-".to_string(); heads.len() - 1];
            v.push("0".to_string());
            return v;
        }
        [
            l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.p9999_us, l.max_us, l.mean_us,
        ]
        .iter()
        .map(|&v| fmt_us(v))
        .chain(std::iter::once(fmt_count(l.count)))
        .collect()
    };
    let grid = [
        ("latency", cells(&r.latency)),
        ("send lag", cells(&r.send_lag)),
    ];
    let widths: Vec<usize> = heads
        .iter()
        .enumerate()
        .map(|(i, h)| {
            grid.iter()
                .map(|(_, row)| row[i].chars().count())
                .chain(std::iter::once(h.len()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let _ = write!(out, "  {:<LABEL$}", "");
    for (h, w) in heads.iter().zip(&widths) {
        let _ = write!(out, "  {h:>w$}");
    }
    out.push('\n');
    for (label, cells) in &grid {
        let _ = write!(out, "  {label:<LABEL$}");
        for (cell, w) in cells.iter().zip(&widths) {
            let _ = write!(out, "  {cell:>w$}");
        }
        out.push('\n');
    }

    if !r.extra.is_empty() {
        let kw = r.extra.keys().map(|k| k.len()).max().unwrap_or(0);
        let values: Vec<String> = r.extra.values().map(|&v| fmt_extra(v)).collect();
        let vw = values.iter().map(|v| v.len()).max().unwrap_or(0);
        let mut label = "extra";
        for ((k, _), v) in r.extra.iter().zip(&values) {
            let _ = writeln!(out, "  {label:<LABEL$}{k:<kw$}  {v:>vw$}");
            label = "";
        }
    }
    if r.problems.is_empty() {
        let _ = writeln!(out, "  {:<LABEL$}none", "problems");
    } else {
        let mut label = "problems";
        for p in &r.problems {
            let _ = writeln!(out, "  {label:<LABEL$}- {p}");
            label = "";
        }
    }
    let mut label = "notes";
    for n in &r.notes {
        let _ = writeln!(out, "  {label:<LABEL$}- {n}");
        label = "";
    }
    out
}

/// Writes the report as pretty-printed JSON.
///
/// Non-finite floats are written as `null` by `serde_json` (and then do not
/// read back as numbers), so producers should keep them out of the report.
pub fn write_json(r: &RunReport, path: &Path) -> std::io::Result<()> {
    let file = std::fs::File::create(path)?;
    let mut w = std::io::BufWriter::new(file);
    serde_json::to_writer_pretty(&mut w, r).map_err(std::io::Error::other)?;
    w.write_all(b"\n")?;
    w.flush()
}

mod svg {
    //! The SVG rendering. Both axes that need a log scale are drawn as a
    //! linear axis over `log10` of the value with labels mapped back, which
    //! keeps one chart type for every case and the tick labels in our units.

    use super::{fmt_rate, fmt_us, RunReport, PCT_MAX_NINES};
    use plotters::coord::Shift;
    use plotters::prelude::*;

    type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
    type Res = Result<(), String>;

    fn err(e: impl std::fmt::Display) -> String {
        e.to_string()
    }

    const DELIVERED: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
    const PUBLISHED: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);
    const P99: RGBColor = RGBColor(0xd6, 0x27, 0x28);

    pub(super) fn render(r: &RunReport, path: &std::path::Path) -> Res {
        let root = SVGBackend::new(path, (1000, 800)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (top, bottom) = root.split_vertically(400);
        hdr_panel(r, &top)?;
        timeline_panel(r, &bottom)?;
        root.present().map_err(err)
    }

    /// Writes "no samples" in the middle of `area`.
    fn no_samples(area: &Area) -> Res {
        let (w, h) = area.dim_in_pixel();
        let style = TextStyle::from(("sans-serif", 24).into_font())
            .color(&RGBColor(0x80, 0x80, 0x80))
            .pos(plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Center,
            ));
        area.draw(&Text::new(
            "no samples",
            (w as i32 / 2, h as i32 / 2),
            style,
        ))
        .map_err(err)
    }

    /// "fanout latency by percentile — ws://…", leaving out what is unknown.
    fn title(r: &RunReport, what: &str) -> String {
        let mut t = if r.scenario.is_empty() {
            what.to_string()
        } else {
            format!("{} {what}", r.scenario)
        };
        if !r.target.is_empty() {
            t.push_str(" — ");
            t.push_str(&r.target);
        }
        t
    }

    /// Percentile `p` (0..=100) on the HDR axis: `log10(1/(1-p/100))`.
    fn pct_x(p: f64) -> f64 {
        let q = (p / 100.0).clamp(0.0, 1.0 - 10f64.powf(-PCT_MAX_NINES));
        -(1.0 - q).log10()
    }

    /// The label for HDR-axis position `x`: "99.9%" at whole decades.
    fn x_label(x: f64) -> String {
        if (x - x.round()).abs() > 1e-6 || x < -1e-6 {
            return String::new();
        }
        let n = x.round() as usize;
        match n {
            0 => "0%".to_string(),
            1 => "90%".to_string(),
            2 => "99%".to_string(),
            _ => format!("99.{}%", "9".repeat(n - 2)),
        }
    }

    fn hdr_panel(r: &RunReport, area: &Area) -> Res {
        let title = title(r, "latency by percentile");
        let pts: Vec<(f64, f64)> = r
            .latency
            .percentiles
            .iter()
            .filter(|(p, v)| p.is_finite() && v.is_finite())
            .map(|&(p, v)| (pct_x(p), v.max(0.0)))
            .collect();
        if pts.is_empty() {
            let inner = area.titled(&title, ("sans-serif", 20)).map_err(err)?;
            return no_samples(&inner);
        }
        let hi = pts.iter().map(|p| p.1).fold(0.0, f64::max);
        let lo_pos = pts
            .iter()
            .map(|p| p.1)
            .filter(|&v| v > 0.0)
            .fold(f64::INFINITY, f64::min);
        // Log y when the curve spans more than two decades.
        let log_y = lo_pos.is_finite() && hi / lo_pos > 100.0;
        let (y_of, y_range): (Box<dyn Fn(f64) -> f64>, std::ops::Range<f64>) = if log_y {
            let floor = lo_pos;
            (
                Box::new(move |v: f64| v.max(floor).log10()),
                (floor.log10().floor())..(hi.log10().ceil()),
            )
        } else {
            let top = if hi > 0.0 { hi * 1.05 } else { 1.0 };
            (Box::new(|v: f64| v), 0.0..top)
        };
        let y_desc = if log_y { "latency (log)" } else { "latency" };
        let mut chart = ChartBuilder::on(area)
            .caption(&title, ("sans-serif", 20))
            .margin(12)
            .margin_right(36)
            .x_label_area_size(36)
            .y_label_area_size(80)
            .build_cartesian_2d(0.0..PCT_MAX_NINES, y_range)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_labels(PCT_MAX_NINES as usize + 1)
            .x_label_formatter(&|x| x_label(*x))
            .y_labels(if log_y { 12 } else { 8 })
            .y_label_formatter(&|y| fmt_us(if log_y { 10f64.powf(*y) } else { *y }))
            .x_desc("percentile")
            .y_desc(y_desc)
            .light_line_style(BLACK.mix(0.05))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|&(x, v)| (x, y_of(v))),
                DELIVERED.stroke_width(2),
            ))
            .map_err(err)?;
        Ok(())
    }

    fn timeline_panel(r: &RunReport, area: &Area) -> Res {
        let title = title(r, "throughput over time");
        let tl: Vec<_> = r
            .timeline
            .iter()
            .filter(|s| {
                s.t_s.is_finite() && s.delivered_per_s.is_finite() && s.published_per_s.is_finite()
            })
            .collect();
        if tl.is_empty() {
            let inner = area.titled(&title, ("sans-serif", 20)).map_err(err)?;
            return no_samples(&inner);
        }
        let t0 = tl
            .iter()
            .map(|s| s.t_s)
            .fold(f64::INFINITY, f64::min)
            .min(0.0);
        let mut t1 = tl.iter().map(|s| s.t_s).fold(f64::NEG_INFINITY, f64::max);
        if t1 <= t0 {
            t1 = t0 + 1.0;
        }
        let rate_hi = tl
            .iter()
            .map(|s| s.delivered_per_s.max(s.published_per_s))
            .fold(0.0, f64::max);
        let rate_hi = if rate_hi > 0.0 { rate_hi * 1.1 } else { 1.0 };
        let p99: Vec<(f64, f64)> = tl
            .iter()
            .filter(|s| s.p99_us.is_finite() && s.p99_us > 0.0)
            .map(|s| (s.t_s, s.p99_us))
            .collect();
        let p99_hi = p99.iter().map(|p| p.1).fold(0.0, f64::max);
        let p99_hi = if p99_hi > 0.0 { p99_hi * 1.1 } else { 1.0 };

        let mut chart = ChartBuilder::on(area)
            .caption(&title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(80)
            .right_y_label_area_size(80)
            .build_cartesian_2d(t0..t1, 0.0..rate_hi)
            .map_err(err)?
            .set_secondary_coord(t0..t1, 0.0..p99_hi);
        chart
            .configure_mesh()
            .x_desc("time (s)")
            .y_desc("messages/s")
            .y_label_formatter(&|y| fmt_rate(*y))
            .light_line_style(BLACK.mix(0.05))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(
                tl.iter().map(|s| (s.t_s, s.delivered_per_s)),
                DELIVERED.stroke_width(2),
            ))
            .map_err(err)?
            .label("delivered/s")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], DELIVERED.stroke_width(2)));
        chart
            .draw_series(LineSeries::new(
                tl.iter().map(|s| (s.t_s, s.published_per_s)),
                PUBLISHED.stroke_width(2),
            ))
            .map_err(err)?
            .label("published/s")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], PUBLISHED.stroke_width(2)));
        if !p99.is_empty() {
            chart
                .configure_secondary_axes()
                .y_desc("p99 per interval")
                .y_label_formatter(&|y| fmt_us(*y))
                .draw()
                .map_err(err)?;
            chart
                .draw_secondary_series(LineSeries::new(p99, P99.stroke_width(1)))
                .map_err(err)?
                .label("p99 (right axis)")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], P99.stroke_width(1)));
        }
        if tl.len() < 3 {
            // Too few points for a line to show: mark them.
            let marks = tl.iter().flat_map(|s| {
                [
                    (s.delivered_per_s, DELIVERED),
                    (s.published_per_s, PUBLISHED),
                ]
                .map(|(y, color)| Circle::new((s.t_s, y), 4, color.filled()))
            });
            chart.draw_series(marks).map_err(err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(err)?;
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn hdr_axis_labels() {
            assert_eq!(x_label(0.0), "0%");
            assert_eq!(x_label(1.0), "90%");
            assert_eq!(x_label(2.0), "99%");
            assert_eq!(x_label(3.0), "99.9%");
            assert_eq!(x_label(6.0), "99.9999%");
            assert_eq!(x_label(2.5), "");
            assert!((pct_x(99.0) - 2.0).abs() < 1e-9);
            assert!((pct_x(100.0) - 6.0).abs() < 1e-6);
        }
    }
}

/// Writes the report's plots as one SVG (1000×800): the HDR percentile plot
/// of `latency` on top, throughput and per-interval p99 over time below.
/// Empty data gives panels that say "no samples" rather than an error.
pub fn write_svg(r: &RunReport, path: &Path) -> Result<(), String> {
    svg::render(r, path).map_err(|e| format!("{}: {e}", path.display()))
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

    fn sample_report() -> RunReport {
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

    #[test]
    fn table_has_key_figures() {
        let mut r = sample_report();
        r.check();
        let t = human_table(&r);
        for needle in [
            "fanout",
            "ws://127.0.0.1:9000/",
            "10.0 s measured",
            "1,000,000",
            "999,988",
            "100k/s",
            "lost 12",
            "1008: 10",
            "500 µs",
            "990 µs",
            "1.00 ms",
            "send lag",
            "deliveries_per_s",
            "broker dropped 12",
        ] {
            assert!(t.contains(needle), "missing {needle:?} in\n{t}");
        }
        let t = human_table(&RunReport::default());
        assert!(t.contains("problems     none"), "{t}");
    }

    fn temp_path(name: &str) -> std::path::PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        std::env::temp_dir().join(format!(
            "ringfan-report-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ))
    }

    #[test]
    fn json_round_trips() {
        let mut r = sample_report();
        r.check();
        let path = temp_path("report.json");
        write_json(&r, &path).expect("write json");
        let text = std::fs::read_to_string(&path).expect("read json");
        let _ = std::fs::remove_file(&path);
        let back: RunReport = serde_json::from_str(&text).expect("parse json");
        assert_eq!(back.scenario, r.scenario);
        assert_eq!(back.counts.lost, 12);
        assert_eq!(back.counts.closes, r.counts.closes);
        assert_eq!(back.latency.percentiles, r.latency.percentiles);
        assert_eq!(back.timeline.len(), 10);
        assert_eq!(back.problems, r.problems);
        assert_eq!(back.params, r.params);
        assert!(write_json(&r, Path::new("/nonexistent-dir/x/report.json")).is_err());
    }

    #[test]
    fn svg_for_empty_and_full_reports() {
        for (name, r) in [
            ("empty.svg", RunReport::default()),
            ("full.svg", sample_report()),
        ] {
            let path = temp_path(name);
            write_svg(&r, &path).expect("write svg");
            let text = std::fs::read_to_string(&path).expect("read svg");
            let _ = std::fs::remove_file(&path);
            assert!(text.starts_with("<svg"), "{}", &text[..text.len().min(80)]);
            if name == "empty.svg" {
                assert!(text.contains("no samples"));
            } else {
                assert!(text.contains("99.9%") && text.contains("delivered/s"));
            }
        }
        // A narrow (linear-y) distribution and a single-sample timeline.
        let mut r = sample_report();
        let mut h = Histogram::<u64>::new(3).expect("histogram");
        h.record_n(10_000, 3).expect("record");
        r.latency = LatencySummary::from_histogram(&h);
        r.timeline.truncate(1);
        let path = temp_path("narrow.svg");
        write_svg(&r, &path).expect("write svg");
        let _ = std::fs::remove_file(&path);
        assert!(write_svg(&r, Path::new("/nonexistent-dir/x/plot.svg")).is_err());
    }
}
