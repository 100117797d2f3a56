//! Catch-up after the bridge reconnects (docs/cluster.md §4).
//!
//! While a node is cut off from NATS (its server died, the network
//! blipped) the stream goes on storing other nodes' publishes, and their
//! republished copies never reach this node. async-nats subscribes again
//! by itself, so the next copy of a busy topic shows the jump (an
//! explicit gap), but a topic published during the outage and quiet since
//! would stay stale with nothing to show for it.
//!
//! So after every reconnect, for each pattern held (or, past 64 of them,
//! once for everything, filtered here), an ephemeral pull consumer reads
//! the stream from the first sequence this node may have missed (where
//! `Shared::heard` stood when the link went down). The stream keeps the
//! newest `--cluster-history` messages of each topic (16 by default), so
//! what comes back is what changed meanwhile: every message of a topic
//! that had at most that many (no gap at all), else its newest ones (one
//! explicit gap). The cost is proportional to the topics changed, not to
//! those held. Each goes to its owner shard as an ordinary copy: one also
//! delivered live (or through a second matching pattern) is dropped
//! there by its stream sequence. Live copies wait behind catch-up for at
//! most [`HOLD_FOR`], so a newer one cannot overtake the older ones
//! being read back and turn them into duplicates.
//!
//! Also here: a snapshot's read of every topic of a wildcard
//! ([`last_all`]), the same kind of consumer from each topic's newest.
//!
//! A stream made anew (another creation time) is a reset instead: every
//! shard is told (`FromBridge::StreamReset`) and catch-up starts from the
//! new stream's beginning.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::Context;

use super::reader::Reader;
use super::subscriptions::hand;
use super::task::{answer, ensure_stream, Shared};
use super::wire;
use super::{BridgeStats, FromBridge, Stored};
use crate::broker::topic::matches;

/// Make sure of the stream again, then catch up `patterns` (those held
/// when the link came back; ones added since subscribe after the
/// reconnect and miss nothing).
pub(super) async fn after_reconnect(
    sh: Arc<Shared>,
    js: Context,
    patterns: Vec<Box<str>>,
    created: Arc<Mutex<String>>,
) {
    // Live copies wait behind catch-up only briefly: during a stream
    // leader's failover (5.0-7.7 s measured) the stream answers nothing,
    // and fresh messages must not wait for old ones that long (a topic
    // caught up after its newer live copy shows one explicit gap).
    let mine = outage(&sh);
    let timer = sh.clone();
    tokio::spawn(async move {
        tokio::time::sleep(HOLD_FOR).await;
        release(&timer, mine);
    });
    let give_up = tokio::time::Instant::now() + sh.cfg.publish_timeout * 3;
    let found = loop {
        match ensure_stream(&js, &sh.cfg).await {
            Ok(f) => break f,
            Err(e) if tokio::time::Instant::now() >= give_up => {
                BridgeStats::inc(&sh.stats.catchup_errors);
                tracing::warn!("cluster: after reconnect, no catch-up: {e}");
                return release(&sh, mine);
            }
            Err(_) => tokio::time::sleep(RETRY).await,
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
        sh.catch_from.load(Ordering::Relaxed)
    };
    BridgeStats::inc(&sh.stats.catchups);
    // Each filter is read again until it went through (a read repeated
    // from the same sequence only repeats copies the shards drop).
    let mut left: Vec<(String, Option<&[Box<str>]>)> = if patterns.len() <= PER_PATTERN {
        patterns
            .iter()
            .map(|p| (wire::publish_subject(&sh.cfg.prefix, p), None))
            .collect()
    } else {
        // One consumer over every topic, each message kept if a held
        // pattern matches it: one consumer instead of thousands.
        vec![(
            wire::publish_subject(&sh.cfg.prefix, ">"),
            Some(&patterns[..]),
        )]
    };
    loop {
        let mut failed = Vec::new();
        for (filter, only) in left {
            if !catch_up(&sh, &js, &filter, from, only).await {
                failed.push((filter, only));
            }
        }
        left = failed;
        if left.is_empty() {
            break;
        }
        if tokio::time::Instant::now() >= give_up {
            BridgeStats::inc(&sh.stats.catchup_errors);
            break;
        }
        tokio::time::sleep(RETRY).await;
    }
    release(&sh, mine);
}

/// Live copies wait behind catch-up at most this long after a reconnect.
const HOLD_FOR: Duration = Duration::from_secs(1);

/// A catch-up step that failed (the stream without a leader, a timeout)
/// is tried again after this, for up to three publish timeouts.
const RETRY: Duration = Duration::from_millis(500);

/// Patterns held past this many are caught up by one consumer over the
/// whole stream, filtered here: creating a consumer took 5-16 ms
/// (docs/cluster.md §5), so 10,000 exact topics held one by one would
/// hold live copies back for minutes.
const PER_PATTERN: usize = 64;

/// Held back at most: past it, live copies go on (a topic caught up
/// after its newer live copy shows one explicit gap).
const HOLD_BACK: usize = 65_536;

/// Live copies waiting behind catch-up, and which outage holds them (a
/// release of an earlier one's catch-up must not let them go).
#[derive(Default)]
pub(crate) struct HeldBack {
    outage: u64,
    copies: Option<Vec<(usize, Stored)>>,
}

/// The link went down: live copies wait from now until this outage's
/// catch-up is done.
pub(super) fn hold_back(sh: &Shared) {
    if let Ok(mut h) = sh.held_back.lock() {
        h.outage += 1;
        h.copies.get_or_insert_with(Vec::new);
    }
}

/// The outage whose copies wait now.
fn outage(sh: &Shared) -> u64 {
    sh.held_back.lock().map_or(0, |h| h.outage)
}

/// A live copy: `None` when it waits behind catch-up, else handed back
/// to go on now.
pub(super) fn held(c: (usize, Stored), sh: &Shared) -> Option<(usize, Stored)> {
    let Ok(mut h) = sh.held_back.lock() else {
        return Some(c);
    };
    match h.copies.as_mut() {
        Some(v) if v.len() < HOLD_BACK => {
            v.push(c);
            None
        }
        _ => Some(c),
    }
}

/// `outage`'s catch-up is over (or failed, or waited long enough): what
/// waited goes on, in order, unless a later outage holds it now.
fn release(sh: &Shared, outage: u64) {
    let waited = sh.held_back.lock().ok().and_then(|mut h| {
        if h.outage == outage {
            h.copies.take()
        } else {
            None
        }
    });
    for (shard, copy) in waited.unwrap_or_default() {
        hand(sh, shard, copy);
    }
}

/// The stream's messages under `filter` from sequence `from` on (only
/// those a pattern of `only` matches, if given), each to its topic's owner
/// shard as a copy. False: it failed (logged).
async fn catch_up(
    sh: &Shared,
    js: &Context,
    filter: &str,
    from: u64,
    only: Option<&[Box<str>]>,
) -> bool {
    match read_from(sh, js, filter, from, only).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!("cluster: catch-up of {filter:?} from {from}: {e}");
            false
        }
    }
}

async fn read_from(
    sh: &Shared,
    js: &Context,
    filter: &str,
    from: u64,
    only: Option<&[Box<str>]>,
) -> Result<(), async_nats::Error> {
    let policy = DeliverPolicy::ByStartSequence {
        start_sequence: from,
    };
    let mut reader = Reader::open(sh, js, filter, policy).await?;
    // Every message of the filter from `from` on comes, in order: a
    // topic's message read before is its previous one; the first has
    // none known (a hole before it is the shard's to fill).
    let mut previous: std::collections::HashMap<Box<str>, u64> = Default::default();
    let result = async {
        while let Some(batch) = reader.next(sh).await? {
            for (shard, mut copy) in batch {
                if only.is_some_and(|ps| !ps.iter().any(|p| matches(p, &copy.topic))) {
                    continue;
                }
                copy.last_stream_seq = previous
                    .insert(copy.topic.clone(), copy.stream_seq)
                    .unwrap_or(super::UNKNOWN_PREVIOUS);
                BridgeStats::inc(&sh.stats.caught_up);
                // Data, as live copies are: shed when the shard's inbox
                // is full (its next copy shows the gap).
                hand(sh, shard, copy);
            }
        }
        Ok(())
    }
    .await;
    reader.close().await;
    result
}

/// A snapshot's read of every topic of `pattern` at its last message
/// (docs/cluster.md §5): those `shard` owns go to it as copies, never
/// shed (a snapshot must not miss one), then `LastAll`; or
/// `LastUnavailable` when the read failed part-way (the shard then serves
/// what it has).
pub(super) async fn last_all(sh: &Shared, js: &Context, shard: usize, token: u64, pattern: &str) {
    let filter = wire::publish_subject(&sh.cfg.prefix, pattern);
    let read = async {
        let mut reader = Reader::open(sh, js, &filter, DeliverPolicy::LastPerSubject).await?;
        let result: Result<(), async_nats::Error> = async {
            while let Some(batch) = reader.next(sh).await? {
                for (owner, copy) in batch {
                    // One the shard never took would leave its snapshot
                    // (and the pattern's mark as current) without it.
                    if owner == shard && !answer(sh, shard, FromBridge::Copy(copy)).await {
                        return Err("a copy was not taken in time".into());
                    }
                }
            }
            Ok(())
        }
        .await;
        reader.close().await;
        result
    };
    let msg = match read.await {
        Ok(()) => FromBridge::LastAll { token },
        Err(e) => FromBridge::LastUnavailable {
            token,
            reason: e.to_string().into(),
        },
    };
    answer(sh, shard, msg).await;
}
