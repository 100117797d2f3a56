//! Reading the messages of one topic a node missed (docs/cluster.md §4,
//! "Holes"): a copy whose topic's previous stream sequence is not what the
//! shard delivered last shows them, and the shard asks for the stored
//! messages between the two before it delivers the copy
//! (`broker/cluster_fill.rs`).
//!
//! Read with JetStream's direct get (`next_by_subj` from a sequence),
//! which any replica answers: the case this is for is a stream leader
//! dying between storing and republishing, so the leader may be gone or
//! new. A replica applies the stream in order, so one that has the copy
//! that showed the hole has everything before it; one that does not yet
//! (a lagging follower) answers "not found" or a message older than the
//! copy, and the read asks again until it reaches the copy.

use std::time::Duration;

use async_nats::jetstream::stream::DirectGetErrorKind;
use async_nats::jetstream::Context;
use async_nats::{connection::State, Client};
use tokio::time::{sleep_until, timeout_at, Instant};

use super::task::Shared;
use super::wire::{self, RF_SEQ};
use super::{BridgeStats, Stored};

/// A fill gives up after this (or the publish timeout, if shorter): the
/// shard holds the topic's live copies behind it meanwhile, and a read
/// from a live replica takes ~0.2 ms (so 2 s is a NATS cluster that cannot
/// answer, and the subscribers are better served by the gap).
const FILL_FOR: Duration = Duration::from_secs(2);

/// Fills read at once per node; the others wait their turn (within their
/// 2 s). Each is a few direct gets of ~0.1-0.5 ms.
pub(super) const FILLS_AT_ONCE: usize = 32;

/// Messages one fill reads at most: the stream keeps `--cluster-history`
/// (16 by default) per topic, so more than this is a hole the stream no
/// longer holds whole anyway.
const MAX_FILL: usize = 1024;

/// The stored messages of `topic` with stream sequences in
/// `(after, until)`, oldest first; `None` when they could not be read in
/// time (or the copy at `until` was never reached: a stream made anew).
pub(super) async fn fill(
    sh: &Shared,
    client: &Client,
    js: &Context,
    topic: &str,
    after: u64,
    until: u64,
) -> Option<Vec<Stored>> {
    let cfg = &sh.cfg;
    let deadline = Instant::now() + cfg.publish_timeout.min(FILL_FOR);
    let Ok(Ok(_slot)) = timeout_at(deadline, sh.fill_slots.acquire()).await else {
        return None;
    };
    let subject = wire::publish_subject(&cfg.prefix, topic);
    let mut not_found = RETRY_NOT_FOUND;
    let mut found = Vec::new();
    let mut next = after.checked_add(1)?;
    let mut stream = None;
    loop {
        if next >= until || found.len() >= MAX_FILL {
            return Some(found);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        let tick_end = (now + cfg.retry_every).min(deadline);
        if client.connection_state() != State::Connected {
            sleep_until(tick_end).await;
            continue;
        }
        let s = match &stream {
            Some(s) => s,
            None => match timeout_at(tick_end, js.get_stream_no_info(&cfg.stream)).await {
                Ok(Ok(s)) => stream.insert(s),
                _ => {
                    sleep_until(tick_end).await;
                    continue;
                }
            },
        };
        let get = s.direct_get_next_for_subject(subject.as_str(), Some(next));
        match timeout_at(tick_end, get).await {
            Ok(Ok(m)) if m.sequence >= until => return Some(found),
            Ok(Ok(m)) if m.sequence < next => {
                // Not what was asked for: ask again rather than loop.
                sleep_until(tick_end).await;
            }
            Ok(Ok(m)) => {
                next = m.sequence + 1;
                let rf_seq = wire::header_u64(Some(&m.headers), RF_SEQ);
                let lens = wire::lens_of(Some(&m.headers));
                let (Some(rf_seq), Some(lens)) = (rf_seq, lens) else {
                    BridgeStats::inc(&sh.stats.copies_bad);
                    continue;
                };
                found.push(Stored {
                    topic: topic.into(),
                    stream_seq: m.sequence,
                    last_stream_seq: 0,
                    rf_seq,
                    payload: m.payload,
                    lens,
                });
            }
            // This replica has nothing of the topic from `next` on: it has
            // not applied the copy at `until` yet. Ask again (another
            // replica may answer).
            Ok(Err(e)) if e.kind() == DirectGetErrorKind::NotFound => {
                sleep_until((Instant::now() + not_found).min(tick_end)).await;
                not_found = (not_found * 2).min(cfg.retry_every);
            }
            // Timed out, no responders, an error answer: next tick.
            Ok(Err(_)) => sleep_until(tick_end).await,
            Err(_) => {}
        }
    }
}

/// A replica behind the copy is behind by a replication round trip: ask
/// again soon, not after a whole `retry_every` (then doubling up to it:
/// a copy the stream no longer has is not asked for 400 times).
const RETRY_NOT_FOUND: Duration = Duration::from_millis(5);
