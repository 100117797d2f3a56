//! The report as an aligned plain-text block, for the person at the terminal.
//!
//! Writing into a `String` cannot fail, so the results of `write!` are
//! ignored throughout.

use super::fmt::fmt_extra;
use super::{fmt_count, fmt_rate, fmt_us, LatencySummary, RunReport};
use crate::plan::Scenario;
use std::fmt::Write as _;

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
    let mut out = String::new();
    header(&mut out, r);
    if let Some(why) = &r.aborted {
        row(&mut out, "aborted", &[("", why.clone())]);
    }
    count_rows(&mut out, r);
    latency_grid(&mut out, r);
    extra_rows(&mut out, r);
    if r.problems.is_empty() {
        let _ = writeln!(out, "  {:<LABEL$}none", "problems");
    } else {
        bullets(&mut out, "problems", &r.problems);
    }
    bullets(&mut out, "notes", &r.notes);
    out
}

/// `fanout  ws://…  10.0 s measured (+2.0 s warm-up)`; a run without a
/// measured window (conns) says nothing about one.
fn header(out: &mut String, r: &RunReport) {
    let _ = write!(out, "{}  {}", r.scenario, r.target);
    if r.duration_s > 0.0 {
        let _ = write!(out, "  {:.1} s measured", r.duration_s);
    }
    if r.warmup_s > 0.0 {
        let _ = write!(out, " (+{:.1} s warm-up)", r.warmup_s);
    }
    out.push('\n');
}

/// A labelled row of `name value` cells (just `value` where the name is
/// empty).
fn row(out: &mut String, label: &str, cells: &[(&str, String)]) {
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
}

/// The cells of a row whose flag says they apply.
fn applicable(cells: Vec<(&'static str, String, bool)>) -> Vec<(&'static str, String)> {
    cells
        .into_iter()
        .filter(|cell| cell.2)
        .map(|(name, value, _)| (name, value))
        .collect()
}

/// `- item` lines, the label on the first.
fn bullets(out: &mut String, label: &str, items: &[String]) {
    let mut label = label;
    for item in items {
        let _ = writeln!(out, "  {label:<LABEL$}- {item}");
        label = "";
    }
}

/// Parameters, connections, publishes, deliveries, anomalies and closes,
/// each with the cells that apply to the scenario: echo subscribes to
/// nothing and has no seqs (so no duplicates or gaps to find), and a run
/// without a measured window (conns) has no rates.
fn count_rows(out: &mut String, r: &RunReport) {
    let c = &r.counts;
    let echo = r.scenario == Scenario::Echo.name();
    let timed = r.duration_s > 0.0;
    // Rates over the measured window (the counts include the warm-up):
    // the run's own figure when it gave one, else count / duration.
    let per_s = |n: u64, key: &str| match r.extra.get(key) {
        Some(v) => format!("{}/s measured", fmt_rate(*v)),
        None if r.duration_s > 0.0 && r.warmup_s == 0.0 => {
            format!("{}/s", fmt_rate(n as f64 / r.duration_s))
        }
        None => "-/s".to_string(),
    };
    if !r.params.is_null() && r.params.as_object().is_none_or(|o| !o.is_empty()) {
        row(out, "params", &[("", r.params.to_string())]);
    }
    let opened = format!(
        "{} of {}",
        fmt_count(c.connections_opened),
        fmt_count(c.connections_target)
    );
    let connections = applicable(vec![
        ("opened", opened, true),
        ("failed", fmt_count(c.connect_failures), true),
        ("subscribed", fmt_count(c.subscribed), !echo),
    ]);
    row(out, "connections", &connections);
    let published = applicable(vec![
        ("", fmt_count(c.published), true),
        ("acked", fmt_count(c.acked), true),
        ("", per_s(c.published, "publishes_per_s"), timed),
    ]);
    row(out, "published", &published);
    let deliveries = applicable(vec![
        ("expected", fmt_count(c.expected_deliveries), true),
        ("delivered", fmt_count(c.delivered), true),
        ("", per_s(c.delivered, "deliveries_per_s"), timed),
    ]);
    row(out, "deliveries", &deliveries);
    let anomalies = applicable(vec![
        ("lost", fmt_count(c.lost), true),
        ("dup", fmt_count(c.duplicated), !echo),
        ("out-of-order", fmt_count(c.out_of_order), true),
        ("gaps", fmt_count(c.gaps), !echo),
        ("errors", fmt_count(c.errors), true),
    ]);
    row(out, "anomalies", &anomalies);
    let closes: Vec<(&str, String)> = c
        .closes
        .iter()
        .map(|(code, &n)| ("", format!("{code}: {}", fmt_count(n))))
        .collect();
    if closes.is_empty() {
        row(out, "closes", &[("", "none".to_string())]);
    } else {
        row(out, "closes", &closes);
    }
}

/// Latency: a small grid, one row per distribution, right-aligned cells;
/// no send-lag row where nothing was sent on a schedule.
fn latency_grid(out: &mut String, r: &RunReport) {
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
    let mut grid = vec![("latency", cells(&r.latency))];
    if r.send_lag.count > 0 {
        grid.push(("send lag", cells(&r.send_lag)));
    }
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
}

/// The scenario's own figures, one a line, names and values aligned.
fn extra_rows(out: &mut String, r: &RunReport) {
    let kw = r.extra.keys().map(|k| k.len()).max().unwrap_or(0);
    let values: Vec<String> = r.extra.values().map(|&v| fmt_extra(v)).collect();
    let vw = values.iter().map(|v| v.len()).max().unwrap_or(0);
    let mut label = "extra";
    for ((k, _), v) in r.extra.iter().zip(&values) {
        let _ = writeln!(out, "  {label:<LABEL$}{k:<kw$}  {v:>vw$}");
        label = "";
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample_report;

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
        assert!(!t.contains("aborted"), "{t}");
        let aborted = RunReport {
            aborted: Some("no connection could be established".into()),
            ..RunReport::default()
        };
        let t = human_table(&aborted);
        assert!(
            t.contains("aborted      no connection could be established"),
            "{t}"
        );
    }

    #[test]
    fn rows_that_do_not_apply_are_left_out() {
        // conns: no measured window, one broadcast sent when it could.
        let mut r = sample_report();
        r.scenario = "conns".into();
        r.duration_s = 0.0;
        r.warmup_s = 0.0;
        r.extra.clear();
        r.send_lag = LatencySummary::default();
        let t = human_table(&r);
        for absent in ["measured", "/s", "send lag"] {
            assert!(!t.contains(absent), "{absent:?} in\n{t}");
        }
        assert!(t.starts_with("conns  ws://127.0.0.1:9000/\n"), "{t}");
        assert!(
            t.contains("subscribed 1,000") && t.contains("gaps 0"),
            "{t}"
        );

        // echo: no subscriptions, no seqs.
        let mut r = sample_report();
        r.scenario = "echo".into();
        let t = human_table(&r);
        for absent in ["subscribed", "dup", "gaps"] {
            assert!(!t.contains(absent), "{absent:?} in\n{t}");
        }
        for present in ["lost 12", "out-of-order 0", "errors 0", "send lag"] {
            assert!(t.contains(present), "no {present:?} in\n{t}");
        }
    }
}
