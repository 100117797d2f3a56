//! One client's state in the broker: its subscriptions, the snapshots on
//! their way to it, its replies waiting for their turn, and what its
//! slow-consumer policy keeps back.
//!
//! Two rules live here, both about a subscription whose owners have not
//! answered yet (a pending one):
//! - Replies to requests with an `id` go out in request order: an `ack`
//!   waiting on owners holds back every reply behind it.
//! - A topic's messages reach the client exactly once and in seq order
//!   across a snapshot: while a pattern's snapshot is on its way from an
//!   owner, that owner's live messages for topics only it matches are
//!   older than the snapshot and skipped; topics a live subscription
//!   already streams are streamed on and left out of the snapshot.

use super::host::ShardMask;
use super::rate::Bucket;
use super::topic::matches;
use super::wire::TopicAt;
use bytes::Bytes;
use rustc_hash::{FxHashMap, FxHashSet};
use std::collections::VecDeque;

/// A subscription whose snapshot has not come back from every owner yet.
#[derive(Debug)]
pub(super) struct Pending {
    /// The request that asked; an unsubscribe cancels it, and a later
    /// request for the same pattern is a different one.
    pub req: u32,
    pub pattern: Box<str>,
    /// Owners still to answer.
    pub awaiting: ShardMask,
    /// Patterns unsubscribed while this snapshot was on its way, with the
    /// owners for which they were streaming live. The client still wants
    /// their topics (this pattern matches them), has had them up to now,
    /// and must neither lose them until the snapshot comes nor get them
    /// again in it.
    pub carried: Vec<(Box<str>, ShardMask)>,
}

/// A reply to a request with an `id`, waiting for the replies before it.
#[derive(Debug)]
struct Reply {
    req: u32,
    /// Owners still to answer before this reply may go (0: ready, waiting
    /// only for an earlier reply).
    awaiting: ShardMask,
    frame: Bytes,
}

#[derive(Debug, Default)]
pub(super) struct Subscriber {
    pub gen: u32,
    pub subs: FxHashSet<Box<str>>,
    /// Last delivery stamp, so overlapping patterns deliver once.
    pub stamp: u64,
    pub pending: Vec<Pending>,
    /// Replies held until the owners answered, in request order.
    replies: VecDeque<Reply>,
    next_req: u32,
    /// Conflation: the latest message per topic not yet queued (the queue
    /// was full), in arrival order.
    pub conflated_latest: Conflated,
    pub dropped: u64,
    pub conflated: u64,
    /// Snapshot requests still waiting on owners: (request, owners left).
    pub snapshots: Vec<(u32, ShardMask)>,
    pub new_topics: TopicBudget,
    /// Request rates (`BrokerConfig::pub_rate`, `sub_rate`).
    pub pub_bucket: Bucket,
    pub sub_bucket: Bucket,
}

/// Window over which `--max-new-topics-per-conn` new topics are allowed.
pub const NEW_TOPIC_WINDOW_MS: u64 = 10_000;

/// The topics a connection's publishes created, as a token bucket kept as
/// a debt: each creation (reported by the owner, so exact whatever shard
/// owns the topic) adds one; time pays back `cap` per
/// [`NEW_TOPIC_WINDOW_MS`]. At `cap` the connection's publishes are refused
/// until some is paid back. Creations still in the mail when the debt
/// reaches `cap` are charged too (at most a mailbox of them), so nothing
/// slips through.
#[derive(Debug, Default)]
pub struct TopicBudget {
    debt: u64,
    at_ms: u64,
}

impl TopicBudget {
    fn settle(&mut self, now_ms: u64, cap: u64) {
        if self.debt == 0 {
            self.at_ms = now_ms;
            return;
        }
        let paid = now_ms.saturating_sub(self.at_ms) * cap / NEW_TOPIC_WINDOW_MS;
        // Paid in whole topics; the clock moves on only when some is, so
        // a small cap still accrues (cap 10: one per second).
        if paid > 0 {
            self.debt = self.debt.saturating_sub(paid);
            self.at_ms = now_ms;
        }
    }

    /// Is the budget spent?
    pub fn spent(&mut self, now_ms: u64, cap: u64) -> bool {
        self.settle(now_ms, cap);
        self.debt >= cap
    }

    /// A publish created a topic.
    pub fn charge(&mut self, now_ms: u64, cap: u64) {
        self.settle(now_ms, cap);
        self.debt += 1;
    }
}

/// What holding one more topic costs besides its frame: its queue entry
/// (`Bytes` 32 and `TopicAt` 8), its index entry (`Box<str>` 16, position 8,
/// hash-table slack ~1/8) and the topic's own copy (counted apart). Held
/// bytes are frames plus this, so the cap bounds the real memory.
const HELD_OVERHEAD: usize = 80;

/// The latest message per topic held back under policy conflate, topics in
/// the order they were first held: O(1) per message whatever the number of
/// topics (a list searched per message was O(topics), and a subscriber to
/// `>` on 200,000 topics made every delivery to it walk them).
#[derive(Debug, Default)]
pub(super) struct Conflated {
    /// In order; the entry at index `i` has position `base + i`.
    queue: VecDeque<(Bytes, TopicAt)>,
    /// Topic → its entry's position.
    index: FxHashMap<Box<str>, u64>,
    base: u64,
    bytes: usize,
}

impl Conflated {
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Memory held: frames, topic copies and [`HELD_OVERHEAD`] each.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Hold `frame` as its topic's latest, in the place of an older one if
    /// any (true then: that one is conflated away).
    pub fn hold(&mut self, frame: Bytes, at: TopicAt) -> bool {
        let topic = at.get(&frame);
        if let Some(&pos) = self.index.get(topic) {
            if let Some(slot) = self.queue.get_mut((pos - self.base) as usize) {
                self.bytes = self.bytes - slot.0.len() + frame.len();
                *slot = (frame, at);
                return true;
            }
        }
        self.bytes += frame.len() + topic.len() + HELD_OVERHEAD;
        let pos = self.base + self.queue.len() as u64;
        self.index.insert(topic.into(), pos);
        self.queue.push_back((frame, at));
        false
    }

    /// The oldest held frame's length.
    pub fn front_len(&self) -> Option<usize> {
        self.queue.front().map(|(f, _)| f.len())
    }

    /// Release the oldest held frame.
    pub fn pop_front(&mut self) -> Option<Bytes> {
        let (frame, at) = self.queue.pop_front()?;
        let topic = at.get(&frame);
        self.index.remove(topic);
        self.bytes -= frame.len() + topic.len() + HELD_OVERHEAD;
        self.base += 1;
        Some(frame)
    }

    /// Forget everything held (the connection is being closed).
    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

fn bit(owner: usize) -> ShardMask {
    1 << owner
}

impl Subscriber {
    pub fn new(gen: u32) -> Self {
        Self {
            gen,
            ..Self::default()
        }
    }

    /// A number for a request that waits on owners.
    pub fn next_req(&mut self) -> u32 {
        let req = self.next_req;
        self.next_req = self.next_req.wrapping_add(1);
        req
    }

    /// Is `pattern` still waiting on `owner`?
    fn pending_on(&self, pattern: &str, owner: usize) -> bool {
        self.pending
            .iter()
            .any(|p| p.awaiting & bit(owner) != 0 && &*p.pattern == pattern)
    }

    /// Is `topic` from `owner` streamed live to this client: matched by a
    /// subscription not waiting on `owner` (and not in `except`), or
    /// carried for a pending one?
    pub fn live_match(&self, topic: &str, owner: usize, except: &[Box<str>]) -> bool {
        let live = self
            .subs
            .iter()
            .any(|p| matches(p, topic) && !self.pending_on(p, owner) && !except.contains(p));
        live || self.pending.iter().any(|q| {
            q.awaiting & bit(owner) != 0
                && matches(&q.pattern, topic)
                && q.carried
                    .iter()
                    .any(|(p, on)| on & bit(owner) != 0 && matches(p, topic))
        })
    }

    /// Should `topic`'s snapshot entry from `owner`, answering `req` for
    /// `patterns`, go to the client?
    pub fn snapshot_wanted(
        &self,
        req: u32,
        owner: usize,
        patterns: &[Box<str>],
        topic: &str,
    ) -> bool {
        let wanted = self
            .pending
            .iter()
            .any(|p| p.req == req && p.awaiting & bit(owner) != 0 && matches(&p.pattern, topic));
        wanted && !self.live_match(topic, owner, patterns)
    }

    /// Drop `pattern` from the subscriptions; None if it was not one. A
    /// snapshot still on its way for it is no longer wanted, and other
    /// pending snapshots carry it where it was streaming (see
    /// [`Pending::carried`]).
    pub fn unsubscribe(&mut self, pattern: &str) -> Option<Box<str>> {
        let p = self.subs.take(pattern)?;
        let mut waited: ShardMask = 0;
        // What the dropped snapshots carried was streaming too (through
        // them): the other pending snapshots carry it on, or a topic
        // streamed by `>`, carried by a pending `a.c`, would come again in
        // a pending `a.>`'s snapshot once `a.c` is dropped as well (found
        // by the broker fuzzer).
        let mut inherited = Vec::new();
        let (gone, kept): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|x| x.pattern == p);
        self.pending = kept;
        for x in gone {
            waited |= x.awaiting;
            inherited.extend(x.carried);
        }
        for q in &mut self.pending {
            q.carried.push((p.clone(), !waited));
            q.carried.extend(inherited.iter().cloned());
        }
        Some(p)
    }

    /// Send `frame` (a reply to a request with an id) now, or queue it
    /// behind replies still waiting: returns it if it may go now.
    pub fn reply(&mut self, frame: Bytes) -> Option<Bytes> {
        if self.replies.is_empty() {
            return Some(frame);
        }
        self.replies.push_back(Reply {
            req: 0,
            awaiting: 0,
            frame,
        });
        None
    }

    /// Hold `frame` until every owner in `awaiting` answered `req`.
    pub fn reply_after(&mut self, req: u32, awaiting: ShardMask, frame: Bytes) {
        self.replies.push_back(Reply {
            req,
            awaiting,
            frame,
        });
    }

    /// `owner` answered `req`: it no longer holds that request's snapshots
    /// or reply. Returns the replies now free to go, in request order, and
    /// whether this completed a snapshot request.
    pub fn answered(&mut self, req: u32, owner: usize) -> (Vec<Bytes>, bool) {
        let mut done = false;
        self.snapshots.retain_mut(|(r, awaiting)| {
            if *r == req {
                *awaiting &= !bit(owner);
                done = *awaiting == 0;
            }
            *awaiting != 0
        });
        for p in self.pending.iter_mut() {
            if p.req == req {
                p.awaiting &= !bit(owner);
            }
        }
        self.pending.retain(|p| p.awaiting != 0);
        for r in self.replies.iter_mut() {
            if r.req == req {
                r.awaiting &= !bit(owner);
            }
        }
        let mut ready = Vec::new();
        while self.replies.front().is_some_and(|r| r.awaiting == 0) {
            if let Some(r) = self.replies.pop_front() {
                ready.push(r.frame);
            }
        }
        (ready, done)
    }
}
