//! Per-shard counters and histograms, shared by every layer that counts
//! something (the runtime's connections and sends, the broker's publishes
//! and deliveries). Each shard writes only its own (plain relaxed loads and
//! stores, no read-modify-write, no contention); `/metrics` reads every
//! shard's at scrape time into a [`Snapshot`] and writes it with
//! `prometheus-client`'s Prometheus text encoder, one series per shard
//! (label `shard`).
//!
//! Why `prometheus-client` for the exposition and our own atomics for the
//! recording: its encoder gets the format's details right (escaping,
//! `_total`, histogram `_bucket`/`_sum`/`_count` with `+Inf`, Go's float
//! formatting of `le`), while its own metric types (`Family` behind a
//! lock, `Counter` with `fetch_add`) would put a read-modify-write on a
//! shared cache line into the fan-out path. Its `Collector` trait encodes
//! our values at scrape time instead.

pub mod clock;
pub mod histogram;
pub mod process;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

pub use histogram::{BytesHistogram, LatencyHistogram, Sample, Sampled};

/// How a counter entry is exposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up; one series per shard.
    Counter,
    /// Goes up and down on its own shard; one series per shard.
    Gauge,
    /// A count of entries in a table all shards share (one shard adds an
    /// entry, another may remove it): only the sum over shards means
    /// something, so it is one series without a `shard` label. A shard's
    /// own value may be below zero (two's complement, in the u64).
    SummedGauge,
}

/// One counter of a `counters!` struct: its family, its label within the
/// family (if the family has several entries), and how it is exposed.
#[derive(Debug)]
pub struct Entry {
    pub family: &'static str,
    pub label: Option<(&'static str, &'static str)>,
    pub kind: Kind,
    /// The family's help (the first entry's, for a family of several).
    pub help: &'static str,
}

/// Declare a per-shard counter struct (and, after `histograms`, its
/// per-shard histograms), with `snapshot` reading every shard's values
/// for `/metrics`. An entry may name its family and a label
/// (`name ["family", "key" = "value"]: ...`): entries of one family,
/// written one after another, share its HELP and TYPE lines (the first
/// entry's). Counter families end in `_total`, as they are exposed.
macro_rules! counters {
    ($ty:ident {
        $($name:ident $([$family:literal, $key:literal = $value:literal])?: $kind:ident, $help:literal;)*
    } $(histograms {
        $($hist:ident: $hty:ty, $hhelp:literal;)*
    })?) => {
        /// One shard's counters, on their own cache lines.
        #[derive(Debug, Default)]
        #[repr(align(128))]
        pub struct $ty {
            $(pub $name: std::sync::atomic::AtomicU64,)*
            $($(pub $hist: $hty,)*)?
        }

        impl $ty {
            /// Every counter, in declaration order.
            pub const ENTRIES: &'static [$crate::metrics::Entry] = &[$(
                $crate::metrics::Entry {
                    family: $crate::metrics::family!($name $(, $family)?),
                    label: $crate::metrics::label!($($key, $value)?),
                    kind: $crate::metrics::kind!($kind),
                    help: $help,
                },
            )*];

            /// Every shard's values now, for one scrape.
            pub fn snapshot(shards: &[$ty]) -> $crate::metrics::Snapshot {
                let values = shards
                    .iter()
                    .map(|s| vec![$(s.$name.load(std::sync::atomic::Ordering::Relaxed)),*])
                    .collect();
                let histograms = vec![$($(
                    $crate::metrics::HistogramFamily {
                        name: stringify!($hist),
                        help: $hhelp,
                        shards: shards
                            .iter()
                            .map(|s| $crate::metrics::Sampled::sample(&s.$hist))
                            .collect(),
                    },
                )*)?];
                $crate::metrics::Snapshot {
                    entries: Self::ENTRIES,
                    values,
                    histograms,
                }
            }

            /// Prometheus text (version 0.0.4) of `shards`, names
            /// prefixed `ringfan_`.
            pub fn render(shards: &[$ty], out: &mut String) {
                let mut r = prometheus_client::registry::Registry::default();
                r.sub_registry_with_prefix("ringfan")
                    .register_collector(Box::new(Self::snapshot(shards)));
                $crate::metrics::encode(&r, out);
            }
        }
    };
}

/// An entry's family (see [`counters`]).
macro_rules! family {
    ($name:ident) => {
        stringify!($name)
    };
    ($name:ident, $family:literal) => {
        $family
    };
}

/// An entry's label (see [`counters`]).
macro_rules! label {
    () => {
        None
    };
    ($key:literal, $value:literal) => {
        Some(($key, $value))
    };
}

/// An entry's [`Kind`] (see [`counters`]).
macro_rules! kind {
    (counter) => {
        $crate::metrics::Kind::Counter
    };
    (gauge) => {
        $crate::metrics::Kind::Gauge
    };
    (summed_gauge) => {
        $crate::metrics::Kind::SummedGauge
    };
}

pub(crate) use counters;
pub(crate) use family;
pub(crate) use kind;
pub(crate) use label;

/// One histogram family as read at a scrape: a sample per shard.
#[derive(Debug)]
pub struct HistogramFamily {
    pub name: &'static str,
    pub help: &'static str,
    pub shards: Vec<Sample>,
}

/// Every shard's counters and histograms of one `counters!` struct, read
/// at one scrape: what its `Collector` writes.
#[derive(Debug)]
pub struct Snapshot {
    pub entries: &'static [Entry],
    /// Per shard, a value per entry.
    pub values: Vec<Vec<u64>>,
    pub histograms: Vec<HistogramFamily>,
}

impl Snapshot {
    /// The sum over shards of the entry `family` (with `label`, if given):
    /// what a reader of totals wants.
    pub fn total(&self, family: &str, label: Option<(&str, &str)>) -> Option<u64> {
        let i = self
            .entries
            .iter()
            .position(|e| e.family == family && (label.is_none() || e.label == label))?;
        Some(self.values.iter().fold(0u64, |a, v| a.wrapping_add(v[i])))
    }
}

/// A series' label within its family, if any, as a label set.
fn extra<'a>(
    label: &'a Option<(&'static str, &'static str)>,
) -> &'a [(&'static str, &'static str)] {
    match label {
        Some(l) => std::slice::from_ref(l),
        None => &[],
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut i = 0;
        while i < self.entries.len() {
            let first = &self.entries[i];
            let end = self.entries[i..]
                .iter()
                .position(|e| e.family != first.family)
                .map_or(self.entries.len(), |n| i + n);
            let (name, metric_type) = match first.kind {
                // The encoder appends `_total` to a counter's name.
                Kind::Counter => (
                    first.family.strip_suffix("_total").unwrap_or(first.family),
                    MetricType::Counter,
                ),
                Kind::Gauge | Kind::SummedGauge => (first.family, MetricType::Gauge),
            };
            let mut family = encoder.encode_descriptor(name, first.help, None, metric_type)?;
            for (j, e) in self.entries.iter().enumerate().take(end).skip(i) {
                if e.kind == Kind::SummedGauge {
                    let sum = self.values.iter().fold(0u64, |a, v| a.wrapping_add(v[j]));
                    let l: (&[(&str, usize)], _) = (&[], extra(&e.label));
                    family.encode_family(&l)?.encode_gauge(&(sum as i64))?;
                    continue;
                }
                for (shard, v) in self.values.iter().enumerate() {
                    let shard = [("shard", shard)];
                    let l = (&shard[..], extra(&e.label));
                    let mut series = family.encode_family(&l)?;
                    match e.kind {
                        Kind::Counter => {
                            series.encode_counter::<NoLabelSet, _, u64>(&v[j], None)?
                        }
                        _ => series.encode_gauge(&(v[j] as i64))?,
                    }
                }
            }
            i = end;
        }
        for h in &self.histograms {
            let mut family =
                encoder.encode_descriptor(h.name, h.help, None, MetricType::Histogram)?;
            for (shard, s) in h.shards.iter().enumerate() {
                let l = [("shard", shard)];
                family
                    .encode_family(&l)?
                    .encode_histogram::<NoLabelSet>(s.sum, s.count, &s.buckets, None)?;
            }
        }
        Ok(())
    }
}

/// The content type of what [`encode`] writes.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Append `registry` as Prometheus text (version 0.0.4) to `out`.
pub fn encode(registry: &Registry, out: &mut String) {
    // Writing into a String cannot fail; a collector's error would only
    // cut the body short, and ours return none.
    let _ = prometheus_client::encoding::prometheus_text::encode(out, registry);
}

/// Add `n` to a counter only this shard writes: a plain load and store is
/// enough, and cheaper than an atomic read-modify-write.
#[inline]
pub fn inc(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

/// Subtract `n` from a gauge only this shard writes.
#[inline]
pub fn dec(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_sub(n), Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    counters! { Demo {
        open: gauge, "Things open.";
        sent_total: counter, "Things sent.";
        done_ok ["done_total", "result" = "ok"]: counter, "Things done, by result.";
        done_failed ["done_total", "result" = "failed"]: counter, "(unused)";
        shared: summed_gauge, "Entries of a table all shards share.";
    } histograms {
        wait_seconds: LatencyHistogram, "How long things waited.";
    }}

    #[test]
    fn renders_a_series_per_shard() {
        let s = [Demo::default(), Demo::default()];
        inc(&s[0].open, 3);
        inc(&s[1].open, 4);
        dec(&s[1].open, 1);
        inc(&s[1].sent_total, 2);
        inc(&s[1].done_failed, 5);
        // One shard adds an entry, the other removes it.
        inc(&s[0].shared, 2);
        dec(&s[1].shared, 1);
        s[1].wait_seconds.observe_ns(60_000);
        let mut out = String::new();
        Demo::render(&s, &mut out);
        for want in [
            "# HELP ringfan_open Things open.\n\
             # TYPE ringfan_open gauge\n\
             ringfan_open{shard=\"0\"} 3\n\
             ringfan_open{shard=\"1\"} 3\n",
            "# TYPE ringfan_sent_total counter\n\
             ringfan_sent_total{shard=\"0\"} 0\n\
             ringfan_sent_total{shard=\"1\"} 2\n",
            // One family, its HELP and TYPE once, then a line per label
            // and shard.
            "# HELP ringfan_done_total Things done, by result.\n\
             # TYPE ringfan_done_total counter\n\
             ringfan_done_total{shard=\"0\",result=\"ok\"} 0\n\
             ringfan_done_total{shard=\"1\",result=\"ok\"} 0\n\
             ringfan_done_total{shard=\"0\",result=\"failed\"} 0\n\
             ringfan_done_total{shard=\"1\",result=\"failed\"} 5\n",
            // Per shard it would read 2 and 2^64-1: only the sum is shown.
            "# TYPE ringfan_shared gauge\nringfan_shared 1\n",
            "# TYPE ringfan_wait_seconds histogram\n\
             ringfan_wait_seconds_bucket{shard=\"0\",le=\"5e-05\"} 0\n",
            "ringfan_wait_seconds_bucket{shard=\"1\",le=\"5e-05\"} 0\n\
             ringfan_wait_seconds_bucket{shard=\"1\",le=\"0.0001\"} 1\n",
            "ringfan_wait_seconds_bucket{shard=\"1\",le=\"+Inf\"} 1\n\
             ringfan_wait_seconds_sum{shard=\"1\"} 0.000060416\n\
             ringfan_wait_seconds_count{shard=\"1\"} 1\n",
        ] {
            assert!(out.contains(want), "{want}\nnot in\n{out}");
        }
        let snap = Demo::snapshot(&s);
        assert_eq!(snap.total("open", None), Some(6));
        assert_eq!(
            snap.total("done_total", Some(("result", "failed"))),
            Some(5)
        );
        assert_eq!(snap.total("nothing", None), None);
    }

    #[test]
    fn counter_families_end_in_total_and_gauges_do_not() {
        for e in crate::runtime::ShardStats::ENTRIES
            .iter()
            .chain(crate::broker::BrokerStats::ENTRIES)
        {
            let total = e.family.ends_with("_total");
            assert_eq!(total, e.kind == Kind::Counter, "{}", e.family);
        }
    }
}
