//! Cluster mode's wiring (issue #18): the broker's cluster requests
//! (`broker::cluster`) go to the NATS bridge (`crate::cluster`), and what
//! the bridge hears comes back to each shard as mail through the
//! runtime's external inbox. The two sides keep their own types (the
//! broker knows no NATS, the bridge no broker); this is where one becomes
//! the other.

use crate::broker::cluster::{Cluster, ClusterIn, ClusterOut, Copy, PublishResult};
use crate::broker::Mail;
use crate::cluster::{self as bridge, BridgeSender, FromBridge, ToBridge};
use crate::runtime::ExternalSender;
use std::sync::Arc;

/// Shard `shard`'s cluster state, sending through `sender`. `node` tells
/// this process's message ids from every other's.
pub fn broker_link(sender: BridgeSender, shard: usize, node: u64) -> Cluster {
    let sink = Box::new(move |m: ClusterOut| sender.send(to_bridge(shard, m)).is_ok());
    Cluster::new(sink, node)
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
        } => ToBridge::Publish {
            shard,
            token,
            topic,
            expected_last,
            rf_seq,
            msg_id,
            payload,
        },
        ClusterOut::Interest { pattern, add } => ToBridge::Interest { pattern, add },
        ClusterOut::Last { token, topic } => ToBridge::Last {
            shard,
            token,
            topic,
        },
    }
}

fn copy(c: &bridge::Copy) -> Copy {
    Copy {
        topic: c.topic.clone(),
        stream_seq: c.stream_seq,
        last_stream_seq: c.last_stream_seq,
        rf_seq: c.rf_seq,
        payload: c.payload.clone(),
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
    }
}
