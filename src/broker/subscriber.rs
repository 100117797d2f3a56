//! One client's state in the broker: its subscriptions, the snapshots on
//! their way to it, its replies waiting for their turn, and what its
//! slow-consumer policy keeps back.
//!
//! Two rules live here, both about a subscription whose owners have not
//! answered yet (a pending one):
//! - Replies to requests with an `id` go out in request order: an `ack`
//!   waiting on owners holds back every reply behind it.
//! - A topic's messages reach the client exactly once and in seq order
//!   across a snapshot: until an owner has started a pattern's snapshot,
//!   that owner's live messages for topics only it matches are older than
//!   the snapshot and skipped; from the start on (the owner sends the
//!   snapshot in steps, `owner::Scan`) they go through, and the owner
//!   leaves out of later steps the topics published since. Topics a live
//!   subscription already streams are streamed on and left out of the
//!   snapshot.
//!
//! Both checks run per message and per snapshot entry, so they look up
//! exact patterns by name and walk only the wildcard ones: a snapshot of
//! 1,000 exact topics against 1,000 pending patterns was O(subs × pending)
//! per entry, ~1e9 steps.

use super::host::ShardMask;
use super::patterns::Shared;
use super::topic::{is_pattern, matches};
use super::wire::TopicAt;
use crate::rate::{Bucket, Rate};
use crate::sendbuf::SendBuf;
use bytes::Bytes;
use rustc_hash::FxHashMap;
use std::collections::VecDeque;

/// A subscription whose snapshot has not come back from every owner yet.
#[derive(Debug)]
pub(super) struct Pending {
    /// The request that asked; an unsubscribe cancels it, and a later
    /// request for the same pattern is a different one.
    pub req: u32,
    /// Owners still to answer (to send their last snapshot step).
    pub awaiting: ShardMask,
    /// Owners among them that sent a first step: from then on their live
    /// messages for this pattern go through (see `owner::Scan`).
    pub started: ShardMask,
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

impl Pending {
    /// Are `owner`'s live messages for this pattern still older than its
    /// snapshot (the owner has not started it)?
    fn holds_back(&self, owner: usize) -> bool {
        self.awaiting & !self.started & bit(owner) != 0
    }
}

/// One client's state, kept small: every idle subscribed connection holds
/// one (issue #11's budget is 300 bytes for all of a connection). What a
/// connection only needs while it is doing something (snapshots and
/// replies on their way, conflation, rate buckets) lives in [`More`],
/// allocated when first needed and dropped by [`Subscriber::tidy`] once it
/// is at rest again: 48 bytes and the pattern's string, where everything
/// inline took 344 bytes and a hash set 112 more.
#[derive(Debug, Default)]
pub(super) struct Subscriber {
    pub gen: u32,
    /// Kept here, not in `More`: a request number must not be reused while
    /// an owner may still answer an older one.
    next_req: u32,
    /// Last delivery stamp, so overlapping patterns deliver once.
    pub stamp: u64,
    /// Every pattern held.
    subs: Subs,
    more: Option<Box<More>>,
}

/// What a subscriber holds only while it is doing something.
#[derive(Debug, Default)]
pub(super) struct More {
    /// By pattern (a pattern has at most one: `unsubscribe` drops it, and
    /// only a pattern not held is subscribed), and the wildcards again.
    pending: FxHashMap<Box<str>, Pending>,
    wild_pending: Vec<Box<str>>,
    /// Replies held until the owners answered, in request order.
    replies: VecDeque<Reply>,
    /// Conflation: the latest message per topic not yet queued (the queue
    /// was full), in arrival order.
    pub conflated_latest: Conflated,
    /// Slow-consumer counts (since `More` was last allocated).
    pub dropped: u64,
    pub conflated: u64,
    /// Snapshot requests still waiting on owners: (request, owners left).
    pub snapshots: Vec<(u32, ShardMask)>,
    pub new_topics: TopicBudget,
    /// Request rates (`BrokerConfig::pub_rate`, `sub_rate`).
    pub pub_bucket: Bucket,
    pub sub_bucket: Bucket,
}

/// The patterns a subscriber holds, each with its position in the trie's
/// list for that pattern (so an unsubscribe needs no search and the trie
/// no index, see `Trie::push`). Most clients hold one, kept inline in 16
/// bytes; more go to a map (exact ones are looked up per message) with the
/// wildcards listed again (those are walked per message).
#[derive(Debug, Default)]
enum Subs {
    #[default]
    None,
    One {
        pattern: Shared,
        pos: u32,
        wild: bool,
    },
    Many(Box<SubSet>),
}

#[derive(Debug, Default)]
struct SubSet {
    all: FxHashMap<Shared, u32>,
    wild: Vec<Shared>,
}

impl Subs {
    fn contains(&self, pattern: &str) -> bool {
        match self {
            Subs::None => false,
            Subs::One { pattern: p, .. } => p.as_str() == pattern,
            Subs::Many(s) => s.all.contains_key(pattern),
        }
    }

    fn len(&self) -> usize {
        match self {
            Subs::None => 0,
            Subs::One { .. } => 1,
            Subs::Many(s) => s.all.len(),
        }
    }

    /// The wildcard patterns held.
    fn wild(&self) -> &[Shared] {
        match self {
            Subs::One {
                pattern,
                wild: true,
                ..
            } => std::slice::from_ref(pattern),
            Subs::Many(s) => &s.wild,
            _ => &[],
        }
    }

    fn insert(&mut self, pattern: Shared, pos: u32) {
        let wild = is_pattern(&pattern);
        match std::mem::take(self) {
            Subs::None => *self = Subs::One { pattern, pos, wild },
            Subs::One {
                pattern: first,
                pos: first_pos,
                wild: first_wild,
            } => {
                let mut s = SubSet::default();
                s.insert(first, first_pos, first_wild);
                s.insert(pattern, pos, wild);
                *self = Subs::Many(Box::new(s));
            }
            Subs::Many(mut s) => {
                s.insert(pattern, pos, wild);
                *self = Subs::Many(s);
            }
        }
    }

    /// `pattern`'s entry now has position `pos` in the trie.
    fn moved(&mut self, pattern: &Shared, to: u32) {
        match self {
            Subs::One {
                pattern: p, pos, ..
            } if p.same(pattern) => *pos = to,
            Subs::Many(s) => {
                if let Some(pos) = s.all.get_mut(pattern.as_str()) {
                    *pos = to;
                }
            }
            _ => {}
        }
    }

    fn iter(&self) -> impl Iterator<Item = &str> {
        let one = match self {
            Subs::One { pattern, .. } => Some(pattern.as_str()),
            _ => None,
        };
        let many = match self {
            Subs::Many(s) => Some(s.all.keys().map(|p| p.as_str())),
            _ => None,
        };
        one.into_iter().chain(many.into_iter().flatten())
    }

    fn take(&mut self, pattern: &str) -> Option<(Shared, u32)> {
        match self {
            Subs::None => None,
            Subs::One { pattern: p, .. } => {
                if p.as_str() != pattern {
                    return None;
                }
                match std::mem::take(self) {
                    Subs::One { pattern, pos, .. } => Some((pattern, pos)),
                    _ => None,
                }
            }
            Subs::Many(s) => {
                let (p, pos) = s.all.remove_entry(pattern)?;
                if is_pattern(&p) {
                    s.wild.retain(|w| !w.same(&p));
                }
                if s.all.is_empty() {
                    *self = Subs::None;
                }
                Some((p, pos))
            }
        }
    }

    fn take_all(&mut self) -> Vec<(Shared, u32)> {
        match std::mem::take(self) {
            Subs::None => Vec::new(),
            Subs::One { pattern, pos, .. } => vec![(pattern, pos)],
            Subs::Many(s) => s.all.into_iter().collect(),
        }
    }
}

impl SubSet {
    fn insert(&mut self, pattern: Shared, pos: u32, wild: bool) {
        if wild {
            self.wild.push(pattern.clone());
        }
        self.all.insert(pattern, pos);
    }
}

impl More {
    /// Nothing on its way, nothing held, every budget full at `now_ms`:
    /// forgetting it loses nothing (a full bucket is what a new one is).
    fn at_rest(&mut self, now_ms: u64, limits: &Limits) -> bool {
        self.pending.is_empty()
            && self.replies.is_empty()
            && self.snapshots.is_empty()
            && self.conflated_latest.is_empty()
            && !self.new_topics.owes(now_ms, limits.new_topics)
            && self.pub_bucket.full(limits.pub_rate, now_ms)
            && self.sub_bucket.full(limits.sub_rate, now_ms)
    }
}

/// The budgets a [`More`] keeps, to tell when it is at rest.
pub(super) struct Limits {
    pub pub_rate: Rate,
    pub sub_rate: Rate,
    pub new_topics: u64,
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

    /// Is some of it still to be paid back at `now_ms`?
    fn owes(&mut self, now_ms: u64, cap: u64) -> bool {
        self.settle(now_ms, cap);
        self.debt > 0
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
/// (`SendBuf` 32 and `TopicAt` 8), its index entry (`Box<str>` 16, position 8,
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
    queue: VecDeque<(SendBuf, TopicAt)>,
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
    /// any (true then: that one is conflated away). A fan-out share is held
    /// as it is, so its compressed variant goes with it.
    pub fn hold(&mut self, frame: SendBuf, at: TopicAt) -> bool {
        let topic = at.get(frame.bytes());
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
    pub fn pop_front(&mut self) -> Option<SendBuf> {
        let (frame, at) = self.queue.pop_front()?;
        let topic = at.get(frame.bytes());
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

    /// The part kept only while needed, made now if it is not there.
    pub fn more(&mut self) -> &mut More {
        self.more.get_or_insert_with(Box::default)
    }

    /// Drop [`More`] if it is at rest (see [`More::at_rest`]).
    pub fn tidy(&mut self, now_ms: u64, limits: &Limits) -> bool {
        if self
            .more
            .as_mut()
            .is_some_and(|m| m.at_rest(now_ms, limits))
        {
            self.more = None;
            return true;
        }
        false
    }

    /// Holds a [`More`].
    #[cfg(test)]
    pub fn has_more(&self) -> bool {
        self.more.is_some()
    }

    /// Messages held back under conflation?
    pub fn conflating(&self) -> bool {
        self.more
            .as_ref()
            .is_some_and(|m| !m.conflated_latest.is_empty())
    }

    /// (dropped, conflated, held under conflation) since `More` was made.
    pub fn counters(&self) -> (u64, u64, usize) {
        self.more.as_ref().map_or((0, 0, 0), |m| {
            (m.dropped, m.conflated, m.conflated_latest.len())
        })
    }

    /// Snapshot requests still on their way.
    pub fn snapshots_in_flight(&self) -> usize {
        self.more.as_ref().map_or(0, |m| m.snapshots.len())
    }

    /// Has the connection's new-topic budget run out?
    pub fn new_topics_spent(&mut self, now_ms: u64, cap: u64) -> bool {
        self.more
            .as_mut()
            .is_some_and(|m| m.new_topics.spent(now_ms, cap))
    }

    /// A number for a request that waits on owners.
    pub fn next_req(&mut self) -> u32 {
        let req = self.next_req;
        self.next_req = self.next_req.wrapping_add(1);
        req
    }

    /// Is `pattern` held?
    pub fn has_sub(&self, pattern: &str) -> bool {
        self.subs.contains(pattern)
    }

    /// Every pattern held.
    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.subs.iter()
    }

    pub fn sub_count(&self) -> usize {
        self.subs.len()
    }

    /// Hold `pattern` (not held yet), at position `pos` of its trie list.
    pub fn add_sub(&mut self, pattern: Shared, pos: u32) {
        self.subs.insert(pattern, pos);
    }

    /// A removal from the trie moved this subscriber's entry for `pattern`
    /// to position `to`.
    pub fn sub_moved(&mut self, pattern: &Shared, to: u32) {
        self.subs.moved(pattern, to);
    }

    /// Every pattern held, with its trie position, dropped (the
    /// connection closed).
    pub fn take_subs(&mut self) -> Vec<(Shared, u32)> {
        self.subs.take_all()
    }

    pub fn has_pending(&self) -> bool {
        self.more.as_ref().is_some_and(|m| !m.pending.is_empty())
    }

    /// `pattern` (just added) waits on the owners in `awaiting` for `req`.
    pub fn add_pending(&mut self, req: u32, pattern: Box<str>, awaiting: ShardMask) {
        let m = self.more();
        if is_pattern(&pattern) {
            m.wild_pending.push(pattern.clone());
        }
        let p = Pending {
            req,
            awaiting,
            started: 0,
            carried: Vec::new(),
        };
        m.pending.insert(pattern, p);
    }

    /// The pending subscriptions that may match `topic`: its exact one,
    /// and the wildcards that do.
    fn pending_matching<'a>(&'a self, topic: &'a str) -> impl Iterator<Item = &'a Pending> {
        self.more.iter().flat_map(move |m| {
            let exact = m.pending.get(topic);
            let wild = m
                .wild_pending
                .iter()
                .filter(move |p| matches(p, topic))
                .filter_map(|p| m.pending.get(p));
            exact.into_iter().chain(wild)
        })
    }

    /// Is `topic` from `owner` streamed live to this client: matched by a
    /// subscription whose snapshot from `owner` is not still to start (and
    /// that is not one of request `except`'s), or carried for a pending
    /// one? O(1) per exact pattern, O(wildcards) in all.
    pub fn live_match(&self, topic: &str, owner: usize, except: Option<u32>) -> bool {
        let pending = self.more.as_ref().map(|m| &m.pending);
        let live = |p: &str| match pending.and_then(|m| m.get(p)) {
            Some(q) => !q.holds_back(owner) && Some(q.req) != except,
            None => true,
        };
        if self.subs.contains(topic) && live(topic) {
            return true;
        }
        if self
            .subs
            .wild()
            .iter()
            .any(|p| matches(p, topic) && live(p))
        {
            return true;
        }
        self.pending_matching(topic).any(|q| {
            q.awaiting & bit(owner) != 0
                && q.carried
                    .iter()
                    .any(|(p, on)| on & bit(owner) != 0 && matches(p, topic))
        })
    }

    /// Should `topic`'s snapshot entry from `owner`, answering `req`, go
    /// to the client?
    pub fn snapshot_wanted(&self, req: u32, owner: usize, topic: &str) -> bool {
        let wanted = self
            .pending_matching(topic)
            .any(|p| p.req == req && p.awaiting & bit(owner) != 0);
        wanted && !self.live_match(topic, owner, Some(req))
    }

    /// Does request `req` still want `owner`'s snapshot steps (some of its
    /// patterns are still subscribed and waiting on it)?
    pub fn wants(&self, req: u32, owner: usize) -> bool {
        self.more.as_ref().is_some_and(|m| {
            m.pending
                .values()
                .any(|p| p.req == req && p.awaiting & bit(owner) != 0)
        })
    }

    /// `owner` sent its first snapshot step for `req`.
    pub fn started(&mut self, req: u32, owner: usize) {
        let Some(m) = self.more.as_mut() else { return };
        for p in m.pending.values_mut() {
            if p.req == req {
                p.started |= bit(owner) & p.awaiting;
            }
        }
    }

    /// Drop `pattern` from the subscriptions; None if it was not one. A
    /// snapshot still on its way for it is no longer wanted, and other
    /// pending snapshots carry it where it was streaming (see
    /// [`Pending::carried`]).
    pub fn unsubscribe(&mut self, pattern: &str) -> Option<(Shared, u32)> {
        let held = self.subs.take(pattern)?;
        let Some(m) = self.more.as_mut() else {
            return Some(held);
        };
        let p: Box<str> = pattern.into();
        // Where it was not streaming yet: owners that had not started its
        // snapshot. What the dropped snapshot carried was streaming too
        // (through it): the other pending snapshots carry it on, or a
        // topic streamed by `>`, carried by a pending `a.c`, would come
        // again in a pending `a.>`'s snapshot once `a.c` is dropped as
        // well (found by the broker fuzzer).
        let mut waited: ShardMask = 0;
        let mut inherited = Vec::new();
        if let Some(x) = m.pending.remove(&p) {
            if is_pattern(&p) {
                m.wild_pending.retain(|w| *w != p);
            }
            waited = x.awaiting & !x.started;
            inherited = x.carried;
        }
        for q in m.pending.values_mut() {
            q.carried.push((p.clone(), !waited));
            q.carried.extend(inherited.iter().cloned());
        }
        Some(held)
    }

    /// Send `frame` (a reply to a request with an id) now, or queue it
    /// behind replies still waiting: returns it if it may go now.
    pub fn reply(&mut self, frame: Bytes) -> Option<Bytes> {
        let Some(m) = self.more.as_mut().filter(|m| !m.replies.is_empty()) else {
            return Some(frame);
        };
        m.replies.push_back(Reply {
            req: 0,
            awaiting: 0,
            frame,
        });
        None
    }

    /// Hold `frame` until every owner in `awaiting` answered `req`.
    pub fn reply_after(&mut self, req: u32, awaiting: ShardMask, frame: Bytes) {
        self.more().replies.push_back(Reply {
            req,
            awaiting,
            frame,
        });
    }

    /// `owner` answered `req`: it no longer holds that request's snapshots
    /// or reply. Returns the replies now free to go, in request order, and
    /// whether this completed a snapshot request.
    pub fn answered(&mut self, req: u32, owner: usize) -> (Vec<Bytes>, bool) {
        let Some(m) = self.more.as_mut() else {
            return (Vec::new(), false);
        };
        let mut done = false;
        m.snapshots.retain_mut(|(r, awaiting)| {
            if *r == req {
                *awaiting &= !bit(owner);
                done = *awaiting == 0;
            }
            *awaiting != 0
        });
        for p in m.pending.values_mut() {
            if p.req == req {
                p.awaiting &= !bit(owner);
                p.started &= !bit(owner);
            }
        }
        if m.pending.values().any(|p| p.awaiting == 0) {
            m.pending.retain(|_, p| p.awaiting != 0);
            let pending = &m.pending;
            m.wild_pending.retain(|w| pending.contains_key(w));
        }
        for r in m.replies.iter_mut() {
            if r.req == req {
                r.awaiting &= !bit(owner);
            }
        }
        let mut ready = Vec::new();
        while m.replies.front().is_some_and(|r| r.awaiting == 0) {
            if let Some(r) = m.replies.pop_front() {
                ready.push(r.frame);
            }
        }
        (ready, done)
    }
}
