//! Logs (issue #15): `tracing` events on stderr, as text for people or as
//! JSON lines for a log shipper, filtered by level and target. The events
//! themselves are the library's (`ringfan::logs`: connections, drains)
//! and `main`'s (start, listeners, reloads, stop); see docs/operations.md,
//! "Logs".
//!
//! Only `--log-level` sets the filter: `RUST_LOG` is not read, so the
//! filter in force is the one the flags (or the config file and
//! `RINGFAN_*` variables that stand for them) say.

use std::sync::atomic::{AtomicBool, Ordering};
use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `2026-01-02T03:04:05.678901Z  WARN ringfan::auth: authentication
    /// failed event="auth_failed" conn=0:5:9 peer=10.0.0.7:50312 …`
    Text,
    /// One JSON object a line, its fields at the top level.
    Json,
}

/// Logging flags.
#[derive(clap::Args, Debug)]
pub struct LogArgs {
    /// How log lines (on stderr) are written: text, or json (one object a
    /// line). The "listening on" and "reloaded" lines on stdout stay as
    /// they are either way.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Which events are logged: a level (error, warn, info, debug, trace,
    /// off), or a comma-separated list of them with targets, e.g.
    /// `info,ringfan::handshake=warn` (tracing's EnvFilter syntax; targets
    /// in docs/operations.md). RUST_LOG is not read.
    #[arg(long, value_name = "FILTER", default_value = "info", value_parser = filter)]
    pub log_level: String,
}

/// `--log-level` checked: EnvFilter's syntax, and no bare word that is
/// neither a level nor one of ours (`wran` would be read as a target and
/// silently log nothing).
fn filter(s: &str) -> Result<String, String> {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    for d in s.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let bare = !d.contains(['=', '[']);
        if bare && !LEVELS.contains(&d.to_ascii_lowercase().as_str()) && !d.starts_with("ringfan") {
            return Err(format!(
                "'{d}' is neither a level ({}) nor TARGET=LEVEL",
                LEVELS.join(", ")
            ));
        }
    }
    EnvFilter::try_new(s)
        .map(|_| s.to_string())
        .map_err(|e| e.to_string())
}

/// The format in force, for the lines `main` writes itself.
static JSON: AtomicBool = AtomicBool::new(false);

pub fn json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// Install the subscriber: lines to stderr, one write each (shards'
/// lines never interleave within a line).
pub fn init(args: &LogArgs) {
    // Checked by the flag's parser; "off" if it fails anyway.
    let filter = EnvFilter::try_new(&args.log_level).unwrap_or_else(|_| EnvFilter::new("off"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let done = match args.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => {
            JSON.store(true, Ordering::Relaxed);
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .try_init()
        }
    };
    if let Err(e) = done {
        eprintln!("ringfan: cannot set up logging: {e}");
    }
}

/// A failure `main` reports before exiting with `status`: in text, the
/// one `ringfan: …` line it always was (scripts and tests read it); in
/// JSON, an `error` event, so stderr stays JSON lines.
pub fn fatal(status: i32, msg: std::fmt::Arguments<'_>) -> ! {
    if json() {
        tracing::error!(target: "ringfan", event = "start_failed", error = %msg, "cannot start");
    } else {
        eprintln!("ringfan: {msg}");
    }
    std::process::exit(status)
}

/// A SIGHUP reload of `what` (`keys`, `tls`) failed, the old ones kept.
/// Text keeps its classic line (`classic`); JSON gets the event.
pub fn reload_failed(what: &'static str, error: &str, classic: std::fmt::Arguments<'_>) {
    if json() {
        tracing::error!(
            target: "ringfan",
            event = "reload_failed",
            what,
            error,
            "reload failed, keeping the ones in use"
        );
    } else {
        eprintln!("ringfan: {classic}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_checked() {
        for ok in [
            "info",
            "WARN",
            "off",
            "info,ringfan::handshake=warn",
            "ringfan=debug",
        ] {
            assert_eq!(filter(ok).as_deref(), Ok(ok));
        }
        let e = filter("wran").unwrap_err();
        assert!(e.contains("'wran' is neither a level"), "{e}");
        assert!(filter("info,ringfan::auth=loud").is_err());
    }
}
