//! Per-shard counters. Each shard writes only its own (relaxed stores, no
//! contention); `/metrics` sums all shards on demand.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Declare a per-shard counter struct whose `render` writes Prometheus text
/// summed over shards.
macro_rules! counters {
    ($ty:ident { $($name:ident: $kind:literal, $help:literal;)* }) => {
        /// One shard's counters, on their own cache lines.
        #[derive(Debug, Default)]
        #[repr(align(128))]
        pub struct $ty {
            $(pub $name: std::sync::atomic::AtomicU64,)*
        }

        impl $ty {
            /// Prometheus text for the sum over `shards`.
            pub fn render(shards: &[$ty], out: &mut String) {
                use std::fmt::Write as _;
                $(
                    let total: u64 = shards
                        .iter()
                        .map(|s| s.$name.load(std::sync::atomic::Ordering::Relaxed))
                        .sum();
                    let _ = writeln!(out, "# HELP ringfan_{} {}", stringify!($name), $help);
                    let _ = writeln!(out, "# TYPE ringfan_{} {}", stringify!($name), $kind);
                    let _ = writeln!(out, "ringfan_{} {}", stringify!($name), total);
                )*
            }
        }
    };
}

pub(crate) use counters;

counters! { ShardStats {
    connections_open: "gauge", "Connections currently open (any phase).";
    connections_accepted_total: "counter", "Connections accepted.";
    websocket_upgrades_total: "counter", "Handshakes that upgraded to WebSocket.";
    handshakes_rejected_total: "counter", "Requests answered with an HTTP error.";
    messages_received_total: "counter", "Complete WebSocket messages received.";
    bytes_received_total: "counter", "Bytes received from clients.";
    frames_sent_total: "counter", "WebSocket frames (and HTTP responses) sent.";
    bytes_sent_total: "counter", "Bytes sent to clients.";
    sends_total: "counter", "Send operations submitted (each may carry many frames).";
    protocol_errors_total: "counter", "Connections failed for a protocol violation.";
    timeouts_total: "counter", "Connections closed by a handshake, pong or close deadline.";
    recv_enobufs_total: "counter", "Receives stopped because the buffer ring was empty.";
    accept_table_full_total: "counter", "Accepts paused because the direct descriptor table was full.";
    upgrades_refused_full_total: "counter", "WebSocket upgrades answered 503: the shard's table is down to its HTTP reserve.";
    mail_received_total: "counter", "Cross-shard messages received.";
    doorbells_rung_total: "counter", "Wake-ups sent to sleeping shards.";
    doorbells_received_total: "counter", "Wake-ups received from other shards.";
}}

impl ShardStats {
    #[inline]
    pub fn add(counter: &AtomicU64, n: u64) {
        // Single writer per shard: a plain load+store is enough and cheaper
        // than an atomic read-modify-write.
        counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
    }

    #[inline]
    pub fn sub(counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Relaxed).wrapping_sub(n), Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_sums() {
        let s = [ShardStats::default(), ShardStats::default()];
        ShardStats::add(&s[0].connections_open, 3);
        ShardStats::add(&s[1].connections_open, 4);
        ShardStats::sub(&s[1].connections_open, 1);
        let mut out = String::new();
        ShardStats::render(&s, &mut out);
        assert!(out.contains("\nringfan_connections_open 6\n"), "{out}");
        assert!(out.contains("# TYPE ringfan_bytes_sent_total counter\n"));
    }
}
