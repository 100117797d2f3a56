//! The generator's own figures for the report: connecting, throughput
//! over the measured window, its CPU time and the bytes it received.

use super::{Connected, Merged, Samples};
use crate::plan::{Plan, Scenario};
use std::collections::BTreeMap;

/// The generator's own figures: connecting, throughput over the measured
/// window, and its CPU time.
pub(super) fn client_figures(
    plan: &Plan,
    connected: &Connected,
    s: &Samples,
    m: &Merged,
) -> BTreeMap<String, f64> {
    let measured_s = plan.duration.as_secs_f64().max(1e-9);
    let mut extra = BTreeMap::new();
    extra.insert("connect_time_s".into(), connected.secs);
    extra.insert(
        "connect_rate_per_s".into(),
        connected.opened as f64 / connected.secs.max(1e-9),
    );
    if plan.scenario != Scenario::Conns {
        extra.insert(
            "deliveries_per_s".into(),
            m.delivered_measured as f64 / measured_s,
        );
        extra.insert(
            "publishes_per_s".into(),
            m.published_measured as f64 / measured_s,
        );
    }
    if m.counts.delivered > 0 {
        // Wire bytes per delivery: what --deflate saves. After connecting,
        // so handshakes are out; publishers' acks are in (a few tens of
        // bytes a publish, spread over its deliveries).
        extra.insert(
            "client_rx_bytes_per_delivery".into(),
            s.rx_bytes.1.saturating_sub(s.rx_bytes.0) as f64 / m.counts.delivered as f64,
        );
    }
    if m.counts.delivered > 0 && m.data_bytes > 0 {
        // Mean `data` per delivery, what the wire bytes above carry
        // (--data quote: about 100; pad: --payload).
        extra.insert(
            "data_bytes_per_delivery".into(),
            m.data_bytes as f64 / m.counts.delivered as f64,
        );
    }
    if let crate::plan::Via::Http { batch } = plan.via {
        extra.insert("http_publishers".into(), plan.http_publishers() as f64);
        extra.insert("http_batch".into(), f64::from(batch));
    }
    if let (Some(a), Some(b)) = (s.cpu_start, s.cpu_end) {
        extra.insert("client_cpu_total_s".into(), b - a);
    }
    let timed = !plan.duration.is_zero();
    if let ((Some(a), Some(b)), true) = (s.cpu_measure, timed) {
        // Over the measured window only: how close the generator itself
        // came to its ceiling (1.0 = one core busy).
        let cpu = b - a;
        extra.insert("client_cpu_share".into(), cpu / measured_s);
        if m.delivered_measured > 0 {
            extra.insert(
                "client_cpu_us_per_delivery".into(),
                cpu * 1e6 / m.delivered_measured as f64,
            );
        }
    }
    extra
}
