//! Catch-up after the bridge reconnects (docs/cluster.md §4).
//!
//! While a node is cut off from NATS (its server died, the network
//! blipped) the stream goes on storing other nodes' publishes, and their
//! republished copies never reach this node. async-nats subscribes again
//! by itself, so the next copy of a busy topic shows the jump (an
//! explicit gap), but a topic published during the outage and quiet since
//! would stay stale with nothing to show for it.
//!
//! So after every reconnect, for each pattern held, an ephemeral pull
//! consumer reads the stream from the first sequence this node may have
//! missed (`Shared::heard` + 1), filtered by the pattern. The stream keeps
//! one message per topic, so what comes back is exactly the topics that
//! changed meanwhile, each at its newest value: the cost is proportional
//! to them, not to the topics held. Each goes to its owner shard as an
//! ordinary copy: one also delivered live meanwhile (or through a second
//! matching pattern) is dropped there by its stream sequence, and
//! subscribers see one explicit gap, then the newest value.
//!
//! A stream made anew (another creation time) is a reset instead: every
//! shard is told (`FromBridge::StreamReset`) and catch-up starts from the
//! new stream's beginning.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::{self, Context};
use futures_util::StreamExt;

use super::task::{answer, ensure_stream, Shared};
use super::wire::{self, RF_SEQ};
use super::{BridgeStats, Copy, FromBridge};

/// Messages asked for per fetch: 1,024 copies of ~150 B is ~150 KB a
/// round trip, and a shard's inbox (65,536) takes several fetches.
const FETCH: usize = 1024;

/// Make sure of the stream again, then catch up `patterns` (those held
/// when the link came back; ones added since subscribe after the
/// reconnect and miss nothing).
pub(super) async fn after_reconnect(
    sh: Arc<Shared>,
    js: Context,
    patterns: Vec<Box<str>>,
    created: Arc<Mutex<String>>,
) {
    let found = match ensure_stream(&js, &sh.cfg).await {
        Ok(f) => f,
        Err(e) => {
            BridgeStats::inc(&sh.stats.catchup_errors);
            tracing::warn!("cluster: after reconnect: {e}");
            return;
        }
    };
    let renewed = match created.lock() {
        Ok(mut c) if *c != found.created => {
            *c = found.created;
            true
        }
        _ => false,
    };
    let from = if renewed {
        BridgeStats::inc(&sh.stats.stream_resets);
        tracing::warn!("cluster: the stream was made anew; every topic's seq starts again");
        sh.heard.store(0, Ordering::Relaxed);
        for shard in 0..sh.shards {
            answer(&sh, shard, FromBridge::StreamReset).await;
        }
        1
    } else {
        sh.heard.load(Ordering::Relaxed) + 1
    };
    BridgeStats::inc(&sh.stats.catchups);
    for pattern in patterns {
        if let Err(e) = catch_up(&sh, &js, &pattern, from).await {
            BridgeStats::inc(&sh.stats.catchup_errors);
            tracing::warn!("cluster: catch-up of {pattern:?} from {from}: {e}");
        }
    }
}

/// The stream's messages of `pattern` from sequence `from` on, each to its
/// topic's owner shard as a copy.
async fn catch_up(
    sh: &Shared,
    js: &Context,
    pattern: &str,
    from: u64,
) -> Result<(), async_nats::Error> {
    let stream = js.get_stream_no_info(&sh.cfg.stream).await?;
    let config = pull::Config {
        deliver_policy: DeliverPolicy::ByStartSequence {
            start_sequence: from,
        },
        ack_policy: AckPolicy::None,
        filter_subject: wire::publish_subject(&sh.cfg.prefix, pattern),
        // Ephemeral, in memory, on the leader only: gone by itself 30 s
        // after its last fetch if the delete below never arrives.
        inactive_threshold: Duration::from_secs(30),
        memory_storage: true,
        num_replicas: 1,
        ..Default::default()
    };
    let mut consumer = stream.create_consumer(config).await?;
    let name = consumer.info().await?.name.clone();
    let result = drain(sh, &consumer).await;
    let _ = stream.delete_consumer(&name).await;
    result
}

/// Fetch until the consumer has nothing pending.
async fn drain(
    sh: &Shared,
    consumer: &jetstream::consumer::Consumer<pull::Config>,
) -> Result<(), async_nats::Error> {
    loop {
        let mut batch = consumer.fetch().max_messages(FETCH).messages().await?;
        let (mut got, mut pending) = (0usize, 0u64);
        while let Some(m) = batch.next().await {
            let m = m?;
            got += 1;
            let (stream_seq, left) = {
                let info = m.info()?;
                (info.stream_sequence, info.pending)
            };
            pending = left;
            hand_over(sh, m.message, stream_seq);
        }
        if got == 0 || pending == 0 {
            return Ok(());
        }
    }
}

/// A stored message read back (subject `{prefix}.t.{topic}`, its own
/// headers) to its topic's owner shard as a copy. Data, as live copies
/// are: shed when the shard's inbox is full (its next copy shows the gap).
fn hand_over(sh: &Shared, m: async_nats::Message, stream_seq: u64) {
    let stats = &sh.stats;
    let topic = wire::topic_of_publish(&sh.cfg.prefix, m.subject.as_str());
    let rf_seq = wire::header_u64(m.headers.as_ref(), RF_SEQ);
    let (Some(topic), Some(rf_seq)) = (topic, rf_seq) else {
        BridgeStats::inc(&stats.copies_bad);
        return;
    };
    sh.heard.fetch_max(stream_seq, Ordering::Relaxed);
    BridgeStats::inc(&stats.caught_up);
    let shard = (sh.owner)(topic) % sh.shards;
    let copy = Copy {
        topic: topic.into(),
        stream_seq,
        last_stream_seq: 0,
        rf_seq,
        payload: m.payload,
    };
    if (sh.sink)(shard, FromBridge::Copy(copy)).is_err() {
        BridgeStats::inc(&stats.copies_shed);
    }
}
