//! The bridge's NATS subscriptions: one per pattern held (`hold`), the
//! copies they bring (`on_copy`, `hand`), and the fence that lets a
//! snapshot's read go only once the subscriptions asked for before it are
//! in force (docs/cluster.md §5).

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, Message};
use futures_util::StreamExt;
use tokio::sync::{oneshot, watch};
use tokio::time::sleep;

use super::task::{answer_now, Shared};
use super::wire;
use super::{BridgeStats, FromBridge, Stored};

/// Subscriptions asked for (by number, in order) and not yet handed to
/// the client. A fenced read waits until none asked before it is left:
/// the client then writes our SUB before the read's request on the one
/// connection, and the server (and, in a NATS cluster, its one route to
/// the stream leader's server) takes them in that order, so everything
/// the stream stores after answering the read is republished to us
/// (docs/cluster.md §5).
pub(super) struct Fence {
    next: u64,
    pending: Arc<watch::Sender<BTreeSet<u64>>>,
}

impl Fence {
    pub(super) fn new() -> Self {
        Self {
            next: 0,
            pending: Arc::new(watch::Sender::new(BTreeSet::new())),
        }
    }

    /// A subscription is about to be asked for: its number.
    pub(super) fn enter(&mut self) -> (u64, Arc<watch::Sender<BTreeSet<u64>>>) {
        let id = self.next;
        self.next += 1;
        self.pending.send_modify(|p| {
            p.insert(id);
        });
        (id, self.pending.clone())
    }

    /// Resolves once every subscription asked for so far is handed over.
    pub(super) fn passed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let before = self.next;
        let mut rx = self.pending.subscribe();
        async move {
            let _ = rx
                .wait_for(|p| p.first().is_none_or(|&id| id >= before))
                .await;
        }
    }
}

/// Owns one NATS subscription (`{prefix}.d.{pattern}`) and hands each
/// copy to the topic's owner shard, until `stop` resolves (its sender
/// dropped). Dropping the subscriber unsubscribes.
pub(super) async fn hold(
    sh: Arc<Shared>,
    client: Client,
    pattern: Box<str>,
    mut stop: oneshot::Receiver<()>,
    (id, fence): (u64, Arc<watch::Sender<BTreeSet<u64>>>),
) {
    let subject = wire::copy_subject(&sh.cfg.prefix, &pattern);
    // Fenced reads wait for this subscription until it is handed to the
    // client; on every way out (stopped before that, too) the guard lets
    // them go: a number left behind would hold every later fenced read
    // to its timeout.
    let mut entry = FenceEntry(Some((id, fence)));
    let mut wait = Duration::from_millis(50);
    // A subscription refused, or ended under us, is asked for again (with
    // backoff to 5 s) for as long as the pattern is held: a pattern
    // counted as held with no subscription behind it would deliver
    // nothing, silently.
    loop {
        let subscribed = tokio::select! {
            _ = &mut stop => return,
            r = client.subscribe(subject.clone()) => r,
        };
        let mut sub = match subscribed {
            Ok(s) => {
                // Handed to the client: fenced reads may go.
                entry.leave();
                s
            }
            Err(e) => {
                // Not in force: what a node reads now may go stale unseen,
                // so the shards stop trusting their values (their next
                // snapshots read the stream), and fenced reads wait on.
                lapsed(&sh);
                BridgeStats::inc(&sh.stats.interest_errors);
                tracing::warn!("cluster: cannot subscribe {pattern:?} (again in {wait:?}): {e}");
                tokio::select! {
                    _ = &mut stop => return,
                    _ = sleep(wait) => {}
                }
                wait = (wait * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        wait = Duration::from_millis(50);
        loop {
            tokio::select! {
                _ = &mut stop => return, // dropping `sub` unsubscribes
                m = sub.next() => match m {
                    Some(m) => on_copy(&sh, m),
                    None => break,
                },
            }
        }
        lapsed(&sh);
        BridgeStats::inc(&sh.stats.interest_errors);
        tracing::warn!("cluster: the subscription of {pattern:?} ended; subscribing again");
    }
}

/// A subscription's number in the fence, taken out once (`leave`) or
/// when dropped.
struct FenceEntry(Option<(u64, Arc<watch::Sender<BTreeSet<u64>>>)>);

impl FenceEntry {
    fn leave(&mut self) {
        if let Some((id, fence)) = self.0.take() {
            fence.send_modify(|p| {
                p.remove(&id);
            });
        }
    }
}

impl Drop for FenceEntry {
    fn drop(&mut self) {
        self.leave();
    }
}

/// A held pattern's subscription was refused or ended: copies may have
/// been missed, so every shard's local values stop counting as current.
fn lapsed(sh: &Arc<Shared>) {
    for shard in 0..sh.shards {
        answer_now(sh, shard, FromBridge::Lapsed);
    }
}

pub(super) fn on_copy(sh: &Shared, m: Message) {
    let stats = &sh.stats;
    let Some(topic) = wire::topic_of_copy(&sh.cfg.prefix, m.subject.as_str()) else {
        BridgeStats::inc(&stats.copies_bad);
        return;
    };
    let numbers = wire::copy_numbers(m.headers.as_ref());
    let lens = wire::lens_of(m.headers.as_ref());
    let (Some((stream_seq, last_stream_seq, rf_seq)), Some(lens)) = (numbers, lens) else {
        BridgeStats::inc(&stats.copies_bad);
        return;
    };
    BridgeStats::inc(&stats.messages_in);
    let shard = (sh.owner)(topic) % sh.shards;
    let copy = Stored {
        topic: topic.into(),
        stream_seq,
        last_stream_seq,
        rf_seq,
        payload: m.payload,
        lens,
    };
    if let Some((shard, copy)) = super::catchup::held((shard, copy), sh) {
        hand(sh, shard, copy);
    }
}

/// A copy to its owner shard. Data: shed when the inbox is full (the
/// shard's seq chain shows the gap).
pub(super) fn hand(sh: &Shared, shard: usize, copy: Stored) {
    sh.heard.fetch_max(copy.stream_seq, Ordering::Relaxed);
    if (sh.sink)(shard, FromBridge::Copy(copy)).is_err() {
        BridgeStats::inc(&sh.stats.copies_shed);
    }
}
