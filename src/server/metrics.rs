//! `/metrics`: every shard's runtime and broker counters and histograms
//! (one series per shard, label `shard`), the auth gate's process-wide
//! counters, the process metrics from `/proc`, and the build, as
//! Prometheus text (version 0.0.4) from `prometheus-client`'s encoder.
//!
//! Answered on the shard that got the request, from values each shard
//! writes with plain stores: nothing here touches another shard's loop.

use super::auth::Gate;
use crate::broker::BrokerStats;
use crate::metrics::process::Process;
use crate::runtime::ShardStats;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::sync::Arc;

pub use crate::metrics::CONTENT_TYPE;

/// The version and commit this binary was built from. The commit comes
/// from `RINGFAN_GIT_COMMIT` at build time (set by `build.rs`); `unknown`
/// when it was not set (a build outside a git checkout).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const COMMIT: &str = match option_env!("RINGFAN_GIT_COMMIT") {
    Some(c) => c,
    None => "unknown",
};

/// The body of `/metrics`.
pub fn scrape(
    runtime: &[ShardStats],
    broker: &[BrokerStats],
    gate: Option<&Gate>,
    cluster: Option<&Arc<crate::cluster::BridgeStats>>,
) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Process::read()));
    let ringfan = registry.sub_registry_with_prefix("ringfan");
    ringfan.register_collector(Box::new(Build));
    ringfan.register_collector(Box::new(ShardStats::snapshot(runtime)));
    ringfan.register_collector(Box::new(BrokerStats::snapshot(broker)));
    if let Some(g) = gate {
        let (results, user_limited) = g.counts();
        ringfan.register_collector(Box::new(AuthCounts {
            results,
            user_limited,
        }));
    }
    if let Some(c) = cluster {
        ringfan.register_collector(Box::new(super::cluster::BridgeCounts(c.clone())));
    }
    // 16 shards: 83 KB (docs/operations.md "Metrics").
    let mut body = String::with_capacity(16_384 * runtime.len().max(1));
    crate::metrics::encode(&registry, &mut body);
    body
}

/// `ringfan_build_info{version, commit} 1`.
#[derive(Debug)]
struct Build;

impl Collector for Build {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        encoder
            .encode_descriptor(
                "build",
                "The ringfan build: version and git commit, as labels; always 1.",
                None,
                MetricType::Info,
            )?
            .encode_info(&[("version", VERSION), ("commit", COMMIT)])
    }
}

/// The auth gate's counters at one scrape.
#[derive(Debug)]
struct AuthCounts {
    results: Vec<(&'static str, u64)>,
    user_limited: u64,
}

impl Collector for AuthCounts {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "auth",
            "Token checks (handshake and auth op), by result: ok or why refused.",
            None,
            MetricType::Counter,
        )?;
        for (result, n) in &self.results {
            family
                .encode_family(&[("result", *result)])?
                .encode_counter::<NoLabelSet, _, u64>(n, None)?;
        }
        encoder
            .encode_descriptor(
                "auth_user_limited",
                "Valid tokens refused: their user held --max-connections-per-user connections.",
                None,
                MetricType::Counter,
            )?
            .encode_counter::<NoLabelSet, _, u64>(&self.user_limited, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::inc;

    /// One series of `body`: its value.
    fn value(body: &str, series: &str) -> Option<f64> {
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn every_part_with_a_shard_label_where_per_shard() {
        let runtime: Vec<ShardStats> = (0..2).map(|_| ShardStats::default()).collect();
        let broker: Vec<BrokerStats> = (0..2).map(|_| BrokerStats::default()).collect();
        inc(&runtime[1].sends_total, 7);
        inc(&broker[0].deliveries_total, 3);
        runtime[0].publish_to_send_seconds.observe_ns(1_000);
        runtime[1].connection_queued_bytes.observe(2_000);
        let body = scrape(&runtime, &broker, None, None);
        assert_eq!(value(&body, "ringfan_sends_total{shard=\"1\"}"), Some(7.0));
        assert_eq!(
            value(&body, "ringfan_deliveries_total{shard=\"0\"}"),
            Some(3.0)
        );
        assert_eq!(
            value(&body, "ringfan_publish_to_send_seconds_count{shard=\"0\"}"),
            Some(1.0)
        );
        assert_eq!(
            value(
                &body,
                "ringfan_connection_queued_bytes_bucket{shard=\"1\",le=\"4096\"}"
            ),
            Some(1.0)
        );
        let build = format!("ringfan_build_info{{version=\"{VERSION}\",commit=\"{COMMIT}\"}}");
        assert_eq!(value(&body, &build), Some(1.0), "{body}");
        assert!(value(&body, "process_resident_memory_bytes").is_some_and(|v| v > 0.0));
        assert!(value(&body, "process_open_fds").is_some_and(|v| v > 0.0));
        assert!(body.contains("# TYPE process_cpu_seconds_total counter\n"));
        // No auth gate, no auth families.
        assert!(!body.contains("ringfan_auth_total"));
    }
}
