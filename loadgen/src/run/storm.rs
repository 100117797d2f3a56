//! A storm run's own figures (`ringfan-loadgen storm`): what became of the
//! dropped connections, how long they took to come back, and the held
//! subscribers' latency during the storm and outside it.

use crate::control::StormResult;
use crate::plan::Plan;
use crate::report::{fmt_count, RunReport};
use std::time::Duration;

/// Storm: what became of the dropped connections, how long they took to
/// come back, and the held subscribers' latency in the storm and outside.
pub(super) fn storm_figures(
    plan: &Plan,
    s: &StormResult,
    window: Option<(u64, u64)>,
    report: &mut RunReport,
) {
    let planned = plan.storm.map_or(0, |st| st.drop.min(plan.subscribers));
    let e = &mut report.extra;
    e.insert("storm_dropped".into(), s.dropped as f64);
    e.insert("storm_resubscribed".into(), s.resubscribed as f64);
    e.insert("storm_reconnect_failures".into(), s.failed as f64);
    e.insert("storm_snapshots".into(), s.snapshots as f64);
    e.insert("storm_resubscribe_retries".into(), s.retried as f64);
    e.insert("storm_unheld_deliveries".into(), s.unheld_deliveries as f64);
    // 1: the held subscribers and the publishers ran on a client shard of
    // their own (`Plan::held_apart`); 0: mixed with the reconnections, so
    // their latency includes the generator's own storm work.
    e.insert(
        "storm_held_apart".into(),
        f64::from(u8::from(plan.held_apart())),
    );
    for (name, h) in [("during", &s.during), ("outside", &s.outside)] {
        e.insert(format!("held_{name}_storm_count"), h.len() as f64);
        if !h.is_empty() {
            let us = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
            e.insert(format!("held_{name}_storm_p50_us"), us(0.5));
            e.insert(format!("held_{name}_storm_p99_us"), us(0.99));
            e.insert(format!("held_{name}_storm_max_us"), h.max() as f64 / 1e3);
        }
    }
    match window {
        Some((from, to)) if to != u64::MAX => {
            e.insert(
                "storm_reconnect_s".into(),
                to.saturating_sub(from) as f64 / 1e9,
            );
        }
        _ => {}
    }
    if s.dropped < planned {
        report.problems.push(format!(
            "the storm dropped {} of {} planned connections (the rest were not open at the drop)",
            fmt_count(s.dropped),
            fmt_count(planned)
        ));
    }
    if s.resubscribed < s.dropped {
        report.problems.push(format!(
            "{} of {} dropped connections did not come back ({} failed, {} unresolved by the end of the run)",
            fmt_count(s.dropped - s.resubscribed),
            fmt_count(s.dropped),
            fmt_count(s.failed),
            fmt_count(s.dropped.saturating_sub(s.resubscribed + s.failed)),
        ));
    }
    if s.retried > 0 {
        // Not a failure (each was retried, as the broker asked), but the
        // broker shedding the storm is part of what it measured.
        report.notes.push(format!(
            "the broker answered {} resubscriptions `rate_limited` (retry later); each was retried after 10-100 ms, and the reconnect time includes it",
            fmt_count(s.retried)
        ));
    }
    if s.dropped > 0 && s.during.is_empty() {
        report.notes.push(
            "no held subscriber's delivery arrived during the storm: raise --rate or --topics' subscribers".into(),
        );
    }
    if let (Some((from, to)), Some(st)) = (window, plan.storm) {
        let room = plan.duration.saturating_sub(st.at);
        if to != u64::MAX && Duration::from_nanos(to.saturating_sub(from)) > room {
            report.notes.push(
                "the storm outlasted the measured window: deliveries outside it are only those before the drop (lengthen --duration)".into(),
            );
        }
    }
}
