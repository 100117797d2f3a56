//! The live status line shown while a run is in progress.
//!
//! Long runs (ramping to hundreds of thousands of connections, then
//! measuring for minutes) need a sign of life and an early hint that
//! something is off, without scrolling the terminal. One redrawn spinner
//! line on stderr does that. It is hidden when stderr is not a terminal, or
//! when the caller disables it, so CI logs and piped output stay clean; the
//! lines printed through [`Progress::println`] still reach stderr then.
//!
//! Figures use the same formatting as the final report
//! ([`crate::report::fmt_us`] and friends), so the two read alike.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::report::{fmt_count, fmt_rate, fmt_us};

/// A spinner line on stderr; cheap to clone (clones share the line).
#[derive(Debug, Clone)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A live line on stderr if `enabled` and stderr is a terminal; a hidden
    /// one otherwise (its `update`s cost next to nothing).
    pub fn new(enabled: bool) -> Self {
        if !enabled || !std::io::stderr().is_terminal() {
            return Self {
                bar: ProgressBar::hidden(),
            };
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{spinner} {prefix}{msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(120));
        Self { bar }
    }

    /// Sets a label shown before every status (typically the scenario's
    /// name), as in `fanout  12.0s  conns 250,000 …`.
    pub fn set_label(&self, label: &str) {
        if label.is_empty() {
            self.bar.set_prefix("");
        } else {
            self.bar.set_prefix(format!("{label}  "));
        }
    }

    /// Replaces the status, e.g.
    /// `12.0s  conns 250,000  3.91M msg/s  p99 820 µs  [measuring]`.
    /// A `p99_us` of 0 (no samples yet) shows as `-`.
    pub fn update(
        &self,
        phase: &str,
        elapsed_s: f64,
        connections: u64,
        msgs_per_s: f64,
        p99_us: f64,
    ) {
        if self.bar.is_hidden() {
            return;
        }
        self.bar.set_message(status_line(
            phase,
            elapsed_s,
            connections,
            msgs_per_s,
            p99_us,
        ));
    }

    /// Prints `line` above the live line, or plainly to stderr when the line
    /// is hidden.
    pub fn println(&self, line: &str) {
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    /// Stops the spinner and clears the line, leaving the terminal for the
    /// final report.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// The status text, apart from the label.
fn status_line(
    phase: &str,
    elapsed_s: f64,
    connections: u64,
    msgs_per_s: f64,
    p99_us: f64,
) -> String {
    let p99 = if p99_us > 0.0 {
        fmt_us(p99_us)
    } else {
        "-".to_string()
    };
    format!(
        "{elapsed_s:.1}s  conns {}  {} msg/s  p99 {p99}  [{phase}]",
        fmt_count(connections),
        fmt_rate(msgs_per_s),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reads_like_the_report() {
        assert_eq!(
            status_line("measuring", 12.0, 250_000, 3_910_000.0, 820.0),
            "12.0s  conns 250,000  3.91M msg/s  p99 820 µs  [measuring]"
        );
        assert_eq!(
            status_line("ramp", 0.5, 10, 0.0, 0.0),
            "0.5s  conns 10  0 msg/s  p99 -  [ramp]"
        );
    }

    #[test]
    fn disabled_is_hidden_and_harmless() {
        let p = Progress::new(false);
        assert!(p.bar.is_hidden());
        p.set_label("fanout");
        p.update("measuring", 1.0, 1, 1.0, 1.0);
        p.println("a line for stderr");
        p.finish();
    }
}
