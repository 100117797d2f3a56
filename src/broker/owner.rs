//! What a shard keeps for the topics it owns (by hash): the sequence
//! counter, the last message (the last-value cache) and which shards have
//! subscribers whose patterns match.

use bytes::Bytes;
use rustc_hash::{FxHashMap, FxHashSet};

use super::host::ShardMask;
use super::topic::is_pattern;
use super::topic_index::{Cursor, TopicIndex};
use super::trie::Trie;
use super::wire::{self, TopicAt};
use crate::sendbuf::Framed;

#[derive(Debug, Default)]
struct TopicState {
    seq: u64,
    last: Option<Last>,
    /// The owner's publish clock at this topic's last publish: a scan
    /// started before it leaves the topic out (see [`Scan`]).
    stamp: u64,
    /// When it was last published (the shard's clock, ms), for the admin
    /// view.
    last_ms: u64,
}

/// A topic's last message (the last-value cache).
#[derive(Debug)]
struct Last {
    frame: Bytes,
    /// Where the data starts in `frame`, to build the snapshot frame.
    data_at: u32,
    /// The snapshot frame (`"snapshot":true`), built by the first snapshot
    /// request after this publish and shared (one `Bytes`) by every later
    /// one until the next publish replaces it: forty snapshot requests of
    /// 8 MB of last values cost one 8 MB copy, not forty. With deflate
    /// on it carries the cell of its compressed variant, made by the
    /// first deflate subscriber it goes to and kept as long as it.
    snap: Option<(Framed, TopicAt)>,
}

/// What a snapshot frame costs against `max_lvc_bytes`: its bytes, twice
/// with a variant cell (the compressed variant is kept only when smaller,
/// so the cap still bounds what both hold).
fn snap_bytes(f: &Framed) -> usize {
    f.len() * if f.packed.is_some() { 2 } else { 1 }
}

impl Last {
    /// What it costs against `max_lvc_bytes`.
    fn bytes(&self) -> usize {
        self.frame.len() + self.snap.as_ref().map_or(0, |(f, _)| snap_bytes(f))
    }
}

/// Limits of an owner shard.
#[derive(Debug, Clone, Copy)]
pub struct OwnedLimits {
    /// Bytes of last values (snapshot frames included).
    pub max_lvc_bytes: usize,
    /// Topics kept (seq counters, last values, index nodes).
    pub max_topics: usize,
    /// Connections may agree to permessage-deflate: frames carry the cell
    /// of their compressed variant ([`Framed`]).
    pub deflate: bool,
}

#[derive(Debug)]
pub struct Owned {
    topics: FxHashMap<Box<str>, TopicState>,
    /// The same topics by token, for wildcard snapshots.
    index: TopicIndex,
    /// Patterns (exact or wildcard) → shards subscribed to them.
    interest: Trie<u16>,
    /// Bytes held by last values, and the most allowed.
    lvc_bytes: usize,
    limits: OwnedLimits,
    /// The last reclaim found too little to forget (interest everywhere):
    /// do not rescan the whole map per refused publish until interest is
    /// dropped somewhere.
    reclaim_futile: bool,
    /// Topics forgotten since the caller last asked (for the counter).
    forgotten: u64,
    /// Publishes numbered so far: the clock of topics' `stamp`.
    clock: u64,
}

/// A snapshot of some patterns' topics served in steps (a wildcard may
/// match 200,000 topics: ~400 ms in one go). Its subscription is in force
/// (its interest is known here) before it starts, so from its start on
/// every publish of its topics reaches the subscriber live. A step takes
/// a topic only if it was not published since the scan started: then no
/// live message of it has gone out since, and the snapshot's seq is
/// followed by exactly the next live one. A topic published since went
/// live (its next seq first) and gets no snapshot: never a duplicate,
/// never a gap.
#[derive(Debug)]
pub struct Scan {
    /// The owner's clock when the scan started.
    start: u64,
    /// Exact patterns (lookups) and how many were looked up already.
    exact: Vec<Box<str>>,
    next_exact: usize,
    /// Wildcards, walked over the topic index in one pass (so a topic two
    /// of them match comes once), and where the walk stopped.
    wild: Vec<Box<str>>,
    cursor: Option<Cursor>,
    wild_done: bool,
}

impl Scan {
    pub fn done(&self) -> bool {
        self.next_exact == self.exact.len() && self.wild_done
    }
}

impl Default for Owned {
    fn default() -> Self {
        Self::new(OwnedLimits {
            max_lvc_bytes: usize::MAX,
            max_topics: usize::MAX,
            deflate: false,
        })
    }
}

/// A published message, framed.
pub struct Published {
    pub frame: Framed,
    pub at: TopicAt,
    /// Shards with a matching subscription, as a bitmask.
    pub shards: ShardMask,
    /// The topic was new (or forgotten before): its seq is 1.
    pub created: bool,
    /// The seq the message got.
    pub seq: u64,
}

/// Frame the next message of `st`, keep it as its last value.
fn record(st: &mut TopicState, topic: &str, data: &[u8], lvc: &mut usize) -> (Bytes, TopicAt) {
    st.seq += 1;
    let (frame, at) = wire::msg(topic, st.seq, data, false);
    let old = st.last.as_ref().map_or(0, Last::bytes);
    st.last = Some(Last {
        frame: frame.clone(),
        data_at: (frame.len() - data.len() - 1) as u32,
        snap: None,
    });
    *lvc = *lvc + frame.len() - old;
    (frame, at)
}

fn has_interest(interest: &Trie<u16>, topic: &str) -> bool {
    let mut any = false;
    interest.for_each_match(topic, |_| any = true);
    any
}

/// `topic`'s snapshot frame, built once per published value.
fn snap_of(
    topics: &mut FxHashMap<Box<str>, TopicState>,
    lvc: &mut usize,
    topic: &str,
    deflate: bool,
) -> Option<(Framed, TopicAt)> {
    let st = topics.get_mut(topic)?;
    let seq = st.seq;
    let last = st.last.as_mut()?;
    if last.snap.is_none() {
        let data = last
            .frame
            .get(last.data_at as usize..last.frame.len() - 1)
            .unwrap_or_default();
        let (f, at) = wire::msg(topic, seq, data, true);
        let f = Framed::new(f, deflate);
        *lvc += snap_bytes(&f);
        last.snap = Some((f, at));
    }
    last.snap.clone()
}

impl Owned {
    pub fn new(limits: OwnedLimits) -> Self {
        Self {
            topics: FxHashMap::default(),
            index: TopicIndex::default(),
            interest: Trie::new(),
            lvc_bytes: 0,
            limits,
            reclaim_futile: false,
            forgotten: 0,
            clock: 0,
        }
    }

    /// Bytes of last values held.
    pub fn lvc_bytes(&self) -> usize {
        self.lvc_bytes
    }

    /// Topics held.
    pub fn topics(&self) -> usize {
        self.topics.len()
    }

    /// Topics forgotten since the last call.
    pub fn take_forgotten(&mut self) -> u64 {
        std::mem::take(&mut self.forgotten)
    }

    pub fn interest(&mut self, pattern: &str, shard: u16, add: bool) {
        if add {
            self.interest.insert(pattern, shard);
        } else {
            self.interest.remove(pattern, shard);
            // Topics it covered may be forgettable now.
            self.reclaim_futile = false;
        }
    }

    /// Does some shard hold interest in `topic` (as this owner knows)?
    pub fn wanted(&self, topic: &str) -> bool {
        has_interest(&self.interest, topic)
    }

    /// Would a publish to `topic` be taken (it exists, or there is room
    /// for it, made by forgetting topics nobody is interested in)?
    pub fn admits(&mut self, topic: &str) -> bool {
        self.topics.contains_key(topic) || self.make_room()
    }

    /// Assign the next seq, frame the message once, remember it, and say
    /// which shards want it. None: a new topic and no room for it.
    pub fn publish(&mut self, topic: &str, data: &[u8], now_ms: u64) -> Option<Published> {
        self.keep(topic, now_ms, |st, lvc| record(st, topic, data, lvc))
    }

    /// Cluster mode: keep a message numbered through NATS (`seq`, framed
    /// by [`wire::frame_copy`], its data at `data_at`) as `topic`'s last
    /// value and say which shards want it. None: a new topic and no room.
    pub fn record_copy(
        &mut self,
        topic: &str,
        seq: u64,
        (frame, at, data_at): (Bytes, TopicAt, u32),
        now_ms: u64,
    ) -> Option<Published> {
        self.keep(topic, now_ms, |st, lvc| {
            st.seq = seq;
            let old = st.last.as_ref().map_or(0, Last::bytes);
            *lvc = *lvc + frame.len() - old;
            st.last = Some(Last {
                frame: frame.clone(),
                data_at,
                snap: None,
            });
            (frame, at)
        })
    }

    /// `topic`'s state (made if there is room), updated by `update` (which
    /// returns the frame to fan out), and the shards that want it.
    fn keep(
        &mut self,
        topic: &str,
        now_ms: u64,
        update: impl FnOnce(&mut TopicState, &mut usize) -> (Bytes, TopicAt),
    ) -> Option<Published> {
        // One lookup for a known topic (the common case): no key made.
        let (frame, at, created, seq) = if let Some(st) = self.topics.get_mut(topic) {
            self.clock += 1;
            st.stamp = self.clock;
            st.last_ms = now_ms;
            let (f, a) = update(st, &mut self.lvc_bytes);
            (f, a, false, st.seq)
        } else {
            if !self.make_room() {
                return None;
            }
            self.index.insert(topic);
            let st = self.topics.entry(topic.into()).or_default();
            self.clock += 1;
            st.stamp = self.clock;
            st.last_ms = now_ms;
            let (f, a) = update(st, &mut self.lvc_bytes);
            (f, a, true, st.seq)
        };
        if self.lvc_bytes > self.limits.max_lvc_bytes {
            self.evict(topic);
        }
        let mut shards: ShardMask = 0;
        self.interest.for_each_match(topic, |s| shards |= 1 << s);
        Some(Published {
            frame: Framed::new(frame, self.limits.deflate),
            at,
            shards,
            created,
            seq,
        })
    }

    /// Up to `limit` topics that start with `prefix` (in no particular
    /// order), with their seq, last publish time (ms, the shard's clock)
    /// and the bytes their last value keeps. One pass over the map, cut
    /// short at `limit`: ~50 ns a topic (see `make_room`), so 500,000
    /// topics without a match cost the shard ~25 ms, once per admin query.
    pub fn view(&self, prefix: &str, limit: usize, mut f: impl FnMut(&str, u64, u64, usize)) {
        let mut n = 0;
        for (topic, st) in &self.topics {
            if n == limit {
                return;
            }
            if topic.starts_with(prefix) {
                n += 1;
                f(
                    topic,
                    st.seq,
                    st.last_ms,
                    st.last.as_ref().map_or(0, Last::bytes),
                );
            }
        }
    }

    /// Room for one more topic: below the cap, or made so by forgetting
    /// topics that no shard is interested in (their last value with them:
    /// a subscriber coming later sees their seq start again at 1, which
    /// protocol.md documents as a reset). Forgets a tenth of the cap at
    /// once, so the scan (one pass over the map, ~50 ns a topic) is paid
    /// once per 10% of churn, not per publish.
    fn make_room(&mut self) -> bool {
        let max = self.limits.max_topics;
        if self.topics.len() < max {
            return true;
        }
        if self.reclaim_futile {
            return false;
        }
        let target = max - (max / 10).max(1).min(max);
        let mut excess = self.topics.len().saturating_sub(target);
        let (interest, index, lvc) = (&self.interest, &mut self.index, &mut self.lvc_bytes);
        let mut forgot = 0;
        self.topics.retain(|t, st| {
            if excess == 0 || has_interest(interest, t) {
                return true;
            }
            if let Some(l) = st.last.take() {
                *lvc -= l.bytes();
            }
            index.remove(t);
            excess -= 1;
            forgot += 1;
            false
        });
        self.forgotten += forgot;
        self.reclaim_futile = self.topics.len() >= max;
        !self.reclaim_futile
    }

    /// Forget last values until a tenth below the cap, keeping `keep`'s;
    /// a topic so left with no value and no interest is forgotten whole
    /// (nobody can tell: its seq shows only to a later subscriber, as a
    /// documented reset). Done in bulk so the scan is rare.
    fn evict(&mut self, keep: &str) {
        let max = self.limits.max_lvc_bytes;
        let target = max - max / 10;
        let (interest, index, lvc) = (&self.interest, &mut self.index, &mut self.lvc_bytes);
        let mut forgot = 0;
        self.topics.retain(|t, st| {
            if *lvc <= target || &**t == keep {
                return true;
            }
            let Some(l) = st.last.take() else { return true };
            *lvc -= l.bytes();
            if has_interest(interest, t) {
                return true;
            }
            index.remove(t);
            forgot += 1;
            false
        });
        self.forgotten += forgot;
        if forgot > 0 {
            self.reclaim_futile = false;
        }
    }

    /// Start a snapshot of `patterns` (see [`Scan`]); nothing is visited
    /// until [`Owned::scan_step`].
    pub fn scan(&self, patterns: &[Box<str>]) -> Scan {
        let (wild, exact) = patterns.iter().cloned().partition(|p| is_pattern(p));
        Scan {
            start: self.clock,
            exact,
            next_exact: 0,
            wild,
            cursor: None,
            wild_done: false,
        }
    }

    /// The next step of `scan`: the last message of owned topics matching
    /// its patterns, as snapshot frames, each topic once over the whole
    /// scan, visiting at most about `budget` topics (index nodes or exact
    /// lookups). Exact topics are a lookup and wildcards walk the topic
    /// index: the work is proportional to the topics matched, not to
    /// those held.
    pub fn scan_step(&mut self, scan: &mut Scan, budget: usize) -> Vec<(Framed, TopicAt)> {
        let mut out = Vec::new();
        let mut left = budget.max(1);
        let (topics, index, lvc) = (&mut self.topics, &self.index, &mut self.lvc_bytes);
        let deflate = self.limits.deflate;
        let start = scan.start;
        let mut emit = |topic: &str| {
            // Published since the scan started: it went out live.
            if topics.get(topic).is_some_and(|st| st.stamp <= start) {
                if let Some(e) = snap_of(topics, lvc, topic, deflate) {
                    out.push(e);
                }
            }
        };
        while left > 0 && scan.next_exact < scan.exact.len() {
            emit(&scan.exact[scan.next_exact]);
            scan.next_exact += 1;
            left -= 1;
        }
        if left > 0 && !scan.wild_done {
            // A topic an exact pattern of the same scan names came (or
            // comes) through that lookup.
            let exact: Option<FxHashSet<&str>> =
                (!scan.exact.is_empty()).then(|| scan.exact.iter().map(|p| &**p).collect());
            let mut f = |t: &str| {
                if exact.as_ref().is_none_or(|x| !x.contains(t)) {
                    emit(t)
                }
            };
            scan.wild_done = index.walk_from(&scan.wild, &mut scan.cursor, left, &mut f);
        }
        if self.lvc_bytes > self.limits.max_lvc_bytes {
            self.evict("");
        }
        out
    }

    /// The last message of every owned topic matching any of `patterns`,
    /// in one go (tests; the broker serves scans in steps).
    #[cfg(test)]
    pub fn snapshot(&mut self, patterns: &[Box<str>]) -> Vec<(Framed, TopicAt)> {
        let mut scan = self.scan(patterns);
        let mut out = Vec::new();
        while !scan.done() {
            out.extend(self.scan_step(&mut scan, 1 << 20));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(f: &Bytes) -> String {
        let h = crate::ws::frame::parse_header(f).unwrap().unwrap();
        String::from_utf8(f[h.len..].to_vec()).unwrap()
    }

    #[test]
    fn seq_is_per_topic_and_gapless() {
        let mut o = Owned::default();
        for i in 1..=3 {
            let p = o.publish("a.b", b"1", 0).unwrap();
            assert!(payload(&p.frame).contains(&format!("\"seq\":{i},")));
        }
        let p = o.publish("a.c", b"1", 0).unwrap();
        assert!(payload(&p.frame).contains("\"seq\":1,"));
    }

    #[test]
    fn interest_by_pattern() {
        let mut o = Owned::default();
        o.interest("a.*", 1, true);
        o.interest("a.b", 3, true);
        o.interest(">", 0, true);
        assert_eq!(o.publish("a.b", b"1", 0).unwrap().shards, 0b1011);
        assert_eq!(o.publish("a.c", b"1", 0).unwrap().shards, 0b0011);
        o.interest(">", 0, false);
        assert_eq!(o.publish("x", b"1", 0).unwrap().shards, 0);
    }

    #[test]
    fn last_values_stay_under_the_cap() {
        let mut o = Owned::new(OwnedLimits {
            max_lvc_bytes: 10_000,
            max_topics: usize::MAX,
            deflate: false,
        });
        o.interest("t0", 1, true);
        for i in 0..1000 {
            o.publish(&format!("t{i}"), &[b'1'; 100], 0);
            assert!(o.lvc_bytes() <= 10_000, "{} after {i}", o.lvc_bytes());
        }
        // The newest is always kept; snapshot frames count too.
        assert_eq!(o.snapshot(&["t999".into()]).len(), 1);
        assert!(o.lvc_bytes() <= 10_000);
        // Evicted topics nobody wants are forgotten whole; t0, wanted,
        // keeps counting seq.
        assert!(o.topics() < 200, "{} topics kept", o.topics());
        assert_eq!(o.topics() as u64 + o.take_forgotten(), 1000);
        o.publish("t0", b"2", 0);
        let p = o.publish("t0", b"3", 0).unwrap();
        assert!(payload(&p.frame).contains("\"seq\":3,"));
        let gone = (1..1000)
            .map(|i| format!("t{i}"))
            .find(|t| !o.topics.contains_key(t.as_str()))
            .unwrap();
        let p = o.publish(&gone, b"3", 0).unwrap();
        assert!(p.created && payload(&p.frame).contains("\"seq\":1,"));
    }

    #[test]
    fn topics_stay_under_the_cap_forgetting_only_unwanted_ones() {
        let mut o = Owned::new(OwnedLimits {
            max_lvc_bytes: usize::MAX,
            max_topics: 100,
            deflate: false,
        });
        o.interest("keep.*", 0, true);
        for i in 0..50 {
            assert!(o.publish(&format!("keep.k{i}"), b"1", 0).is_some());
        }
        for i in 0..10_000 {
            assert!(o.publish(&format!("churn.c{i}"), b"1", 0).is_some(), "{i}");
            assert!(o.topics() <= 100);
        }
        // Every wanted topic survived the churn with its seq and value.
        for i in 0..50 {
            let p = o.publish(&format!("keep.k{i}"), b"2", 0).unwrap();
            assert!(payload(&p.frame).contains("\"seq\":2,"));
        }
        // Only wanted topics left: no room, and no rescan per refusal.
        o.interest(">", 1, true);
        let mut refused = 0;
        for i in 0..1000 {
            refused += o.publish(&format!("new.n{i}"), b"1", 0).is_none() as u32;
        }
        assert!(refused > 0 && o.topics() <= 100);
        assert!(!o.admits("new.other"));
        assert!(o.admits("keep.k1"), "existing topics are always taken");
        o.interest(">", 1, false);
        assert!(o.admits("new.other"), "room made once interest is gone");
        assert!(o.index.nodes() < 300, "index pruned: {}", o.index.nodes());
    }

    #[test]
    fn snapshot_frames_are_built_once_per_value_and_shared() {
        let mut o = Owned::default();
        o.publish("a.b", b"1", 0);
        let before = o.lvc_bytes();
        let s1 = o.snapshot(&["a.*".into()]);
        let s2 = o.snapshot(&["a.b".into(), "a.>".into(), ">".into()]);
        assert_eq!((s1.len(), s2.len()), (1, 1), "each topic once");
        assert_eq!(s1[0].0.as_ptr(), s2[0].0.as_ptr(), "one shared Bytes");
        assert_eq!(o.lvc_bytes(), before + s1[0].0.len(), "counted as LVC");
        o.publish("a.b", b"2", 0);
        assert!(o.lvc_bytes() < before + s1[0].0.len(), "dropped on publish");
        let s3 = o.snapshot(&["a.b".into()]);
        assert!(payload(&s3[0].0).contains("\"seq\":2,"));
    }

    #[test]
    fn snapshots_carry_the_last_message() {
        let mut o = Owned::default();
        o.publish("md.X.A", br#"{"p":1}"#, 0);
        o.publish("md.X.A", br#"{"p":2}"#, 0);
        o.publish("md.Y.A", br#"[3]"#, 0);
        o.publish("other", b"4", 0);
        let mut snap: Vec<String> = o
            .snapshot(&["md.*.A".into()])
            .iter()
            .map(|(f, _)| payload(f))
            .collect();
        snap.sort();
        assert_eq!(
            snap,
            vec![
                r#"{"op":"msg","topic":"md.X.A","seq":2,"snapshot":true,"data":{"p":2}}"#,
                r#"{"op":"msg","topic":"md.Y.A","seq":1,"snapshot":true,"data":[3]}"#,
            ]
        );
        let exact = o.snapshot(&["other".into()]);
        assert_eq!(exact.len(), 1);
        assert_eq!(exact[0].1.get(&exact[0].0), "other");
        assert!(o.snapshot(&["nothing".into()]).is_empty());
    }
}
