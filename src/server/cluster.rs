//! Cluster mode's wiring (issue #18): the broker's cluster requests
//! (`broker::cluster`) go to the NATS bridge (`crate::cluster`), and what
//! the bridge hears comes back to each shard as mail through the
//! runtime's external inbox. The two sides keep their own types (the
//! broker knows no NATS, the bridge no broker); this is where one becomes
//! the other.

use crate::broker::cluster::{Cluster, ClusterIn, ClusterOut, PublishResult, Stored};
use crate::broker::Mail;
use crate::cluster::{self as bridge, BridgeSender, BridgeStats, FromBridge, ToBridge};
use crate::runtime::ExternalSender;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// What every shard's cluster state is made from.
#[derive(Clone)]
pub struct Link {
    pub sender: BridgeSender,
    /// Tells this process's message ids from every other's.
    pub node: u64,
    pub publish_timeout: std::time::Duration,
    /// The NATS server's `max_payload`.
    pub max_payload: usize,
}

/// Shard `shard`'s cluster state, sending through the link's bridge.
pub fn broker_link(link: &Link, shard: usize) -> Cluster {
    let sender = link.sender.clone();
    let sink = Box::new(move |m: ClusterOut| sender.send(to_bridge(shard, m)).is_ok());
    // The bridge answers within its publish timeout or hands the shard
    // `Unavailable`; past it and 2 s of slack, the shard stops waiting.
    Cluster::new(
        sink,
        link.node,
        link.publish_timeout + std::time::Duration::from_secs(2),
    )
    .with_max_payload(link.max_payload)
}

/// Bytes of copies a shard's external inbox holds at most (64 MiB: ~450,000
/// quotes, or 256 bundles of the largest size).
pub const COPY_BYTES: usize = 64 << 20;

/// What a message in a shard's external inbox weighs: a copy its payload
/// (and a little for its envelope), a fill's answer its copies,
/// everything else nothing (answers are few and small, bounded by count).
pub fn copy_weight(m: &Mail) -> usize {
    match m {
        Mail::Cluster(ClusterIn::Copy(c)) => c.payload.len() + 64,
        // A fill's answer carries copies too (up to 1,024); an answer is
        // never shed, the bridge tries it again while the inbox is full.
        Mail::Cluster(ClusterIn::Filled {
            found: Some(found), ..
        }) => found.iter().map(|c| c.payload.len() + 64).sum(),
        _ => 0,
    }
}

/// Where the bridge hands what it hears: each shard's external inbox.
/// A full inbox hands the message back (the bridge counts a shed copy,
/// and retries answers).
pub fn bridge_sink(senders: Vec<ExternalSender<Mail>>) -> bridge::Sink {
    let senders: Arc<[ExternalSender<Mail>]> = senders.into();
    Arc::new(move |shard, m| {
        let Some(tx) = senders.get(shard) else {
            return Err(m);
        };
        // Translate back only when refused (rare): keep the original.
        let mail = Mail::Cluster(from_bridge(&m));
        tx.send(mail).map_err(|_| m)
    })
}

fn to_bridge(shard: usize, m: ClusterOut) -> ToBridge {
    let shard = shard as u16;
    match m {
        ClusterOut::Publish {
            token,
            topic,
            expected_last,
            rf_seq,
            msg_id,
            payload,
            lens,
        } => ToBridge::Publish {
            shard,
            token,
            topic,
            expected_last,
            rf_seq,
            msg_id,
            payload,
            lens,
        },
        ClusterOut::Interest { pattern, add } => ToBridge::Interest { pattern, add },
        ClusterOut::LastAll { token, pattern } => ToBridge::LastAll {
            shard,
            token,
            pattern,
        },
        ClusterOut::Fill {
            token,
            topic,
            after,
            until,
        } => ToBridge::Fill {
            shard,
            token,
            topic,
            after,
            until,
        },
        ClusterOut::Last {
            token,
            topic,
            fence,
        } => ToBridge::Last {
            shard,
            token,
            topic,
            fence,
        },
    }
}

// A copy's previous stream sequence passes through as it is: "not known"
// must mean the same on both sides.
const _: () = assert!(bridge::UNKNOWN_PREVIOUS == crate::broker::cluster::UNKNOWN_PREVIOUS);

fn copy(c: &bridge::Stored) -> Stored {
    Stored {
        topic: c.topic.clone(),
        stream_seq: c.stream_seq,
        last_stream_seq: c.last_stream_seq,
        rf_seq: c.rf_seq,
        payload: c.payload.clone(),
        lens: c.lens.clone(),
    }
}

fn from_bridge(m: &FromBridge) -> ClusterIn {
    match m {
        FromBridge::Published { token, result } => ClusterIn::Published {
            token: *token,
            result: match result {
                bridge::PublishResult::Stored { stream_seq, .. } => PublishResult::Stored {
                    stream_seq: *stream_seq,
                },
                bridge::PublishResult::Conflict { .. } => PublishResult::Conflict,
                // Refused for another reason (the bridge logs it): to the
                // publisher it was not confirmed either way.
                bridge::PublishResult::Unavailable | bridge::PublishResult::Error(_) => {
                    PublishResult::Unavailable
                }
            },
        },
        FromBridge::Copy(c) => ClusterIn::Copy(copy(c)),
        FromBridge::Last { token, found } => ClusterIn::Last {
            token: *token,
            found: found.as_ref().map(copy),
        },
        FromBridge::LastUnavailable { token, .. } => ClusterIn::LastFailed { token: *token },
        FromBridge::Connected(up) => ClusterIn::Connected(*up),
        FromBridge::StreamReset => ClusterIn::StreamReset,
        FromBridge::LastAll { token } => ClusterIn::LastAll { token: *token },
        FromBridge::Lapsed => ClusterIn::Lapsed,
        FromBridge::Filled { token, found } => ClusterIn::Filled {
            token: *token,
            found: found.as_ref().map(|v| v.iter().map(copy).collect()),
        },
    }
}

/// The NATS link's counters in `/metrics` (one per process: the bridge is
/// one thread, so no `shard` label).
#[derive(Debug)]
pub struct BridgeCounts(pub Arc<BridgeStats>);

impl Collector for BridgeCounts {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let gauges: [(&str, &str, u64); 2] = [
            (
                "cluster_connected",
                "1 while the NATS link is up.",
                u64::from(s.connected.load(Relaxed)),
            ),
            (
                "cluster_subscriptions",
                "NATS subscriptions held: one per distinct pattern this node's subscribers hold.",
                s.subscriptions.load(Relaxed),
            ),
        ];
        for (name, help, v) in gauges {
            encoder
                .encode_descriptor(name, help, None, MetricType::Gauge)?
                .encode_gauge(&(v as i64))?;
        }
        let rtt = s.rtt_ns_last.load(Relaxed) as f64 / 1e9;
        encoder
            .encode_descriptor(
                "cluster_rtt_seconds",
                "The last NATS round trip measured (a message to the bridge's own inbox, every second).",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&rtt)?;
        let counters: [(&str, &str, &std::sync::atomic::AtomicU64); 13] = [
            ("cluster_reconnects", "NATS reconnections after the first connection.", &s.reconnects),
            ("cluster_nats_publishes", "Publishes sent to the stream by the bridge (first attempts).", &s.messages_out),
            ("cluster_nats_copies", "Stored messages received from NATS (handed to shards, or shed).", &s.messages_in),
            ("cluster_publish_retries", "Publishes resent with the same message id after 250 ms without an answer.", &s.publish_retries),
            ("cluster_copies_shed", "Copies dropped because their shard's inbox was full (its subscribers see a seq gap).", &s.copies_shed),
            ("cluster_nats_bad_messages", "NATS messages without the headers or subject of a stored copy (dropped).", &s.copies_bad),
            ("cluster_answers_dropped", "Answers a shard did not take in time (the shard answers its publisher unavailable at its own deadline).", &s.answers_dropped),
            ("cluster_slow_consumers", "NATS client slow-consumer events (messages dropped before the bridge saw them).", &s.slow_consumers),
            ("cluster_catchups", "Catch-ups after a NATS reconnect: the stream read from the first message this node may have missed, for every pattern held.", &s.catchups),
            ("cluster_caught_up", "Stored messages handed to shards by catch-up (missed while the link was down; the newest of each topic that changed).", &s.caught_up),
            ("cluster_catchup_errors", "Catch-ups (or their patterns) that failed; those topics stay as they were until their next message.", &s.catchup_errors),
            ("cluster_leader_changes", "Leader elections of the stream seen (JetStream advisories): with the stream as the only sequencer, its leader is the one owner that changes; publishes stall during one (5-8 s measured).", &s.leader_changes),
            ("cluster_stream_resets", "Reconnects that found the stream made anew (every topic's seq starts again).", &s.stream_resets),
        ];
        for (name, help, v) in counters {
            encoder
                .encode_descriptor(name, help, None, MetricType::Counter)?
                .encode_counter::<NoLabelSet, _, u64>(&v.load(Relaxed), None)?;
        }
        Ok(())
    }
}

/// `GET /admin/cluster`: the link, the stream and the nodes heard
/// (docs/operations.md "Several nodes").
pub fn admin_view(s: &BridgeStats) -> serde_json::Value {
    use serde_json::json;
    let view = s.view.lock().map(|v| v.clone()).unwrap_or_default();
    let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let stream = view.stream.as_ref().map(|st| {
        let replicas: Vec<_> = st
            .replicas
            .iter()
            .map(|(name, current, offline, lag, active)| {
                json!({"server": name, "current": current, "offline": offline,
                       "lag": lag, "last_seen_ms": ms(*active)})
            })
            .collect();
        json!({
            "name": st.name,
            "leader": st.leader,
            "replicas": replicas,
            "messages": st.messages,
            "bytes": st.bytes,
            "last_seq": st.last_seq,
            "history_per_topic": st.history,
            "read_ms_ago": st.read_at.map(|t| ms(t.elapsed())),
        })
    });
    let nodes: Vec<_> = view
        .live_nodes()
        .into_iter()
        .map(|(node, addr, ago)| json!({"node": node, "advertise": addr, "heard_ms_ago": ms(ago)}))
        .collect();
    json!({
        "connected": s.connected.load(Relaxed),
        "server": {"name": view.server, "version": view.server_version,
                   "cluster": view.nats_cluster},
        "rtt_ms": s.rtt_ns_last.load(Relaxed) as f64 / 1e6,
        "stream": stream,
        "stream_error": view.stream_error,
        "leader_changes": s.leader_changes.load(Relaxed),
        "last_leader_elected": view.last_leader_elected,
        "nodes": nodes,
        "subscriptions": s.subscriptions.load(Relaxed),
        "reconnects": s.reconnects.load(Relaxed),
        "nats_publishes": s.messages_out.load(Relaxed),
        "nats_copies": s.messages_in.load(Relaxed),
        "unavailable": s.unavailable.load(Relaxed),
        "conflicts": s.conflicts.load(Relaxed),
        "catchups": s.catchups.load(Relaxed),
        "caught_up": s.caught_up.load(Relaxed),
        "copies_shed": s.copies_shed.load(Relaxed),
    })
}
