//! Per-shard counters, shared by every layer that counts something (the
//! runtime's connections and sends, the broker's publishes and
//! deliveries). Each shard writes only its own (relaxed stores, no
//! contention); `/metrics` sums all shards on demand.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Declare a per-shard counter struct whose `render` writes Prometheus text
/// summed over shards. An entry may name its family and label
/// (`name ["family", "label=\"value\""]: ...`): entries of one family,
/// written one after another, share its HELP and TYPE lines (the first
/// entry's).
macro_rules! counters {
    ($ty:ident { $($name:ident $([$family:literal, $label:literal])?: $kind:literal, $help:literal;)* }) => {
        /// One shard's counters, on their own cache lines.
        #[derive(Debug, Default)]
        #[repr(align(128))]
        pub struct $ty {
            $(pub $name: std::sync::atomic::AtomicU64,)*
        }

        impl $ty {
            /// Prometheus text for the sum over `shards`. Wrapping: a
            /// gauge one shard raises and another lowers (an entry of a
            /// table all shards share) is below zero on the second, in
            /// two's complement, and only the sum is right.
            pub fn render(shards: &[$ty], out: &mut String) {
                use std::fmt::Write as _;
                let mut last = "";
                $(
                    let total: u64 = shards
                        .iter()
                        .map(|s| s.$name.load(std::sync::atomic::Ordering::Relaxed))
                        .fold(0u64, u64::wrapping_add);
                    let (family, label) = $crate::metrics::family!($name $(, $family, $label)?);
                    if family != last {
                        let _ = writeln!(out, "# HELP ringfan_{} {}", family, $help);
                        let _ = writeln!(out, "# TYPE ringfan_{} {}", family, $kind);
                        last = family;
                    }
                    match label {
                        "" => { let _ = writeln!(out, "ringfan_{} {}", family, total); }
                        l => { let _ = writeln!(out, "ringfan_{}{{{}}} {}", family, l, total); }
                    }
                )*
                let _ = last;
            }
        }
    };
}

/// An entry's family and label (see [`counters`]).
macro_rules! family {
    ($name:ident) => {
        (stringify!($name), "")
    };
    ($name:ident, $family:literal, $label:literal) => {
        ($family, $label)
    };
}

pub(crate) use counters;
pub(crate) use family;

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
        open: "gauge", "Things open.";
        sent_total: "counter", "Things sent.";
        done_ok ["done_total", "result=\"ok\""]: "counter", "Things done, by result.";
        done_failed ["done_total", "result=\"failed\""]: "counter", "(unused)";
    }}

    #[test]
    fn renders_sums() {
        let s = [Demo::default(), Demo::default()];
        inc(&s[0].open, 3);
        inc(&s[1].open, 4);
        dec(&s[1].open, 1);
        inc(&s[1].sent_total, 2);
        let mut out = String::new();
        Demo::render(&s, &mut out);
        assert!(out.contains("\nringfan_open 6\n"), "{out}");
        assert!(out.contains("# TYPE ringfan_sent_total counter\nringfan_sent_total 2\n"));
        inc(&s[1].done_failed, 5);
        let mut out = String::new();
        Demo::render(&s, &mut out);
        // One family, its HELP and TYPE once, then a line per label.
        assert!(
            out.ends_with(
                "# HELP ringfan_done_total Things done, by result.\n\
                 # TYPE ringfan_done_total counter\n\
                 ringfan_done_total{result=\"ok\"} 0\n\
                 ringfan_done_total{result=\"failed\"} 5\n"
            ),
            "{out}"
        );
    }
}
