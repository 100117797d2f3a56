//! Subscriptions by pattern, matched by topic in time proportional to the
//! topic's tokens (and the wildcard branches actually present), never to the
//! number of subscriptions: a token trie with `*` and `>` edges.
//!
//! The same structure serves the topic owner (values: shards that have
//! subscribers) and each shard (values: local connections).
//!
//! Subscribing and unsubscribing cost O(1) whatever the subscribers at a
//! node: each node's values are a plain `Vec` (what `for_each_match`
//! walks, unchanged) with, once it is over [`SMALL`] long, a value → index
//! map beside it for `contains` and `swap_remove`. 100,000 connections on
//! one pattern used to take ~5·10⁹ comparisons to subscribe and as many to
//! unsubscribe.

use rustc_hash::FxHashMap;
use slab::Slab;
use std::hash::Hash;

use super::topic::MAX_TOKENS;

/// Up to this many values a node's list is searched (at most 32
/// comparisons of 8 bytes, a few cache lines: no slower than hashing);
/// past it an index is kept. It is dropped again below half of this, so a
/// list going up and down around the mark does not rebuild it each time.
const SMALL: usize = 32;

/// The values subscribed at one node, in no particular order.
#[derive(Debug)]
struct Members<V> {
    list: Vec<V>,
    /// Value → its position in `list`; empty (no allocation) while the
    /// list is at most [`SMALL`] long.
    index: FxHashMap<V, u32>,
}

impl<V> Default for Members<V> {
    fn default() -> Self {
        Self {
            list: Vec::new(),
            index: FxHashMap::default(),
        }
    }
}

impl<V> Members<V> {
    fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

impl<V: Copy + Eq + Hash> Members<V> {
    fn position(&self, v: &V) -> Option<usize> {
        if self.index.is_empty() {
            self.list.iter().position(|x| x == v)
        } else {
            self.index.get(v).map(|&i| i as usize)
        }
    }

    /// Add `v`; false if it is there already.
    fn insert(&mut self, v: V) -> bool {
        if self.position(&v).is_some() {
            return false;
        }
        self.list.push(v);
        if !self.index.is_empty() {
            self.index.insert(v, (self.list.len() - 1) as u32);
        } else if self.list.len() > SMALL {
            self.index = self
                .list
                .iter()
                .enumerate()
                .map(|(i, &x)| (x, i as u32))
                .collect();
        }
        true
    }

    /// Add `v` at the end without looking for it: the caller knows it is
    /// not there and keeps its position (see [`Trie::push`]).
    fn push(&mut self, v: V) -> u32 {
        self.list.push(v);
        let i = (self.list.len() - 1) as u32;
        if !self.index.is_empty() {
            self.index.insert(v, i);
        }
        i
    }

    /// Take out `v`, which is at `i`: the value moved into `i` in its
    /// place, if any. Err if `v` is not at `i`.
    fn remove_at(&mut self, i: usize, v: &V) -> Result<Option<V>, NotThere> {
        if self.list.get(i) != Some(v) {
            return Err(NotThere);
        }
        self.list.swap_remove(i);
        let moved = self.list.get(i).copied();
        if !self.index.is_empty() {
            self.index.remove(v);
            if let Some(m) = moved {
                self.index.insert(m, i as u32);
            }
        }
        Ok(moved)
    }

    /// Take `v` out; false if it was not there.
    fn remove(&mut self, v: &V) -> bool {
        let Some(i) = self.position(v) else {
            return false;
        };
        self.list.swap_remove(i);
        if !self.index.is_empty() {
            self.index.remove(v);
            if let Some(&moved) = self.list.get(i) {
                self.index.insert(moved, i as u32);
            }
            if self.list.len() < SMALL / 2 {
                self.index = FxHashMap::default();
            }
        }
        true
    }
}

/// [`Trie::remove_at`] found no such value at that position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotThere;

#[derive(Debug)]
struct Node<V> {
    children: FxHashMap<Box<str>, usize>,
    star: Option<usize>,
    /// Subscribers whose pattern ends here.
    exact: Members<V>,
    /// Subscribers of `<path to here>.>`.
    rest: Members<V>,
    parent: Option<(usize, Edge)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Edge {
    Token(Box<str>),
    Star,
}

impl<V> Node<V> {
    fn new(parent: Option<(usize, Edge)>) -> Self {
        Self {
            children: FxHashMap::default(),
            star: None,
            exact: Members::default(),
            rest: Members::default(),
            parent,
        }
    }

    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.star.is_none()
            && self.exact.is_empty()
            && self.rest.is_empty()
    }
}

#[derive(Debug)]
pub struct Trie<V> {
    nodes: Slab<Node<V>>,
    root: usize,
    len: usize,
}

impl<V> Default for Trie<V> {
    fn default() -> Self {
        let mut nodes = Slab::new();
        let root = nodes.insert(Node::new(None));
        Self {
            nodes,
            root,
            len: 0,
        }
    }
}

impl<V: Copy + Eq + Hash> Trie<V> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of (pattern, value) subscriptions.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Subscribe `v` to the (valid) `pattern`. False if it already was.
    pub fn insert(&mut self, pattern: &str, v: V) -> bool {
        let (node, rest) = self.make(pattern);
        self.add(node, v, rest)
    }

    /// Subscribe `v` to the (valid) `pattern` without looking whether it
    /// already is (the caller knows it is not), and return its position,
    /// which the caller keeps for [`Trie::remove_at`]. Positions make the
    /// node's value → position index unnecessary: at 15,000 connections a
    /// shard on one pattern, that index cost ~27 bytes a connection.
    pub fn push(&mut self, pattern: &str, v: V) -> u32 {
        let (node, rest) = self.make(pattern);
        let n = &mut self.nodes[node];
        let pos = if rest {
            n.rest.push(v)
        } else {
            n.exact.push(v)
        };
        self.len += 1;
        pos
    }

    /// Unsubscribe `v`, at position `pos` of `pattern` (from
    /// [`Trie::push`]). Ok with the value that now has position `pos` (its
    /// holder must update what it kept), if any; Err if `v` is not there.
    pub fn remove_at(&mut self, pattern: &str, pos: u32, v: V) -> Result<Option<V>, NotThere> {
        let (node, rest) = self.find(pattern).ok_or(NotThere)?;
        let n = &mut self.nodes[node];
        let list = if rest { &mut n.rest } else { &mut n.exact };
        let moved = list.remove_at(pos as usize, &v)?;
        self.len -= 1;
        self.prune(node);
        Ok(moved)
    }

    /// The node for (valid) `pattern`, made if missing, and whether the
    /// pattern ends in `>` there.
    fn make(&mut self, pattern: &str) -> (usize, bool) {
        let mut node = self.root;
        let mut tokens = pattern.split('.').peekable();
        while let Some(t) = tokens.next() {
            if t == ">" && tokens.peek().is_none() {
                return (node, true);
            }
            node = if t == "*" {
                match self.nodes[node].star {
                    Some(n) => n,
                    None => {
                        let n = self.nodes.insert(Node::new(Some((node, Edge::Star))));
                        self.nodes[node].star = Some(n);
                        n
                    }
                }
            } else {
                match self.nodes[node].children.get(t) {
                    Some(&n) => n,
                    None => {
                        let n = self
                            .nodes
                            .insert(Node::new(Some((node, Edge::Token(t.into())))));
                        self.nodes[node].children.insert(t.into(), n);
                        n
                    }
                }
            };
        }
        (node, false)
    }

    fn add(&mut self, node: usize, v: V, rest: bool) -> bool {
        let n = &mut self.nodes[node];
        let list = if rest { &mut n.rest } else { &mut n.exact };
        if !list.insert(v) {
            return false;
        }
        self.len += 1;
        true
    }

    /// Find the node for `pattern` without creating anything.
    fn find(&self, pattern: &str) -> Option<(usize, bool)> {
        let mut node = self.root;
        let mut tokens = pattern.split('.').peekable();
        while let Some(t) = tokens.next() {
            if t == ">" && tokens.peek().is_none() {
                return Some((node, true));
            }
            node = if t == "*" {
                self.nodes[node].star?
            } else {
                *self.nodes[node].children.get(t)?
            };
        }
        Some((node, false))
    }

    /// Unsubscribe `v` from `pattern`. False if it was not subscribed.
    pub fn remove(&mut self, pattern: &str, v: V) -> bool {
        let Some((node, rest)) = self.find(pattern) else {
            return false;
        };
        let n = &mut self.nodes[node];
        let list = if rest { &mut n.rest } else { &mut n.exact };
        if !list.remove(&v) {
            return false;
        }
        self.len -= 1;
        self.prune(node);
        true
    }

    /// Drop empty nodes from `node` up, so churn leaves no garbage.
    fn prune(&mut self, mut node: usize) {
        while node != self.root && self.nodes[node].is_empty() {
            let Some((parent, edge)) = self.nodes.remove(node).parent else {
                break;
            };
            match edge {
                Edge::Star => self.nodes[parent].star = None,
                Edge::Token(t) => {
                    self.nodes[parent].children.remove(&t);
                }
            }
            node = parent;
        }
    }

    /// Is anything subscribed to exactly this pattern?
    pub fn contains(&self, pattern: &str) -> bool {
        self.find(pattern).is_some_and(|(n, rest)| {
            let n = &self.nodes[n];
            !if rest { &n.rest } else { &n.exact }.is_empty()
        })
    }

    /// Call `f` for every subscription whose pattern matches the (valid,
    /// wildcard-free) `topic`. A value subscribed through several patterns
    /// is reported once per pattern: callers that deliver dedupe.
    pub fn for_each_match(&self, topic: &str, mut f: impl FnMut(V)) {
        let mut toks: [&str; MAX_TOKENS] = [""; MAX_TOKENS];
        let mut n = 0;
        for t in topic.split('.') {
            if n == MAX_TOKENS {
                return; // not a valid topic: matches nothing
            }
            toks[n] = t;
            n += 1;
        }
        self.walk(self.root, &toks[..n], &mut f);
    }

    fn walk(&self, node: usize, toks: &[&str], f: &mut impl FnMut(V)) {
        let n = &self.nodes[node];
        let Some((first, more)) = toks.split_first() else {
            n.exact.list.iter().for_each(|&v| f(v));
            return;
        };
        // `>` here matches the one or more tokens left.
        n.rest.list.iter().for_each(|&v| f(v));
        if let Some(&c) = n.children.get(*first) {
            self.walk(c, more, f);
        }
        if let Some(s) = n.star {
            self.walk(s, more, f);
        }
    }

    /// Every (pattern, value) in the trie (the property test compares it
    /// with what was inserted).
    #[cfg(test)]
    fn patterns(&self) -> Vec<(String, V)> {
        let mut out = Vec::new();
        let mut path = Vec::new();
        self.collect(self.root, &mut path, &mut out);
        out
    }

    #[cfg(test)]
    fn collect(&self, node: usize, path: &mut Vec<String>, out: &mut Vec<(String, V)>) {
        let n = &self.nodes[node];
        for &v in &n.exact.list {
            out.push((path.join("."), v));
        }
        for &v in &n.rest.list {
            let mut p = path.clone();
            p.push(">".into());
            out.push((p.join("."), v));
        }
        for (t, &c) in &n.children {
            path.push(t.to_string());
            self.collect(c, path, out);
            path.pop();
        }
        if let Some(s) = n.star {
            path.push("*".into());
            self.collect(s, path, out);
            path.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::topic::{check_pattern, matches};
    use super::*;
    use proptest::prelude::*;

    fn matched(t: &Trie<u32>, topic: &str) -> Vec<u32> {
        let mut v = Vec::new();
        t.for_each_match(topic, |x| v.push(x));
        v.sort_unstable();
        v
    }

    #[test]
    fn wildcard_edges() {
        let mut t = Trie::new();
        t.insert("a.*", 1);
        t.insert("a.>", 2);
        t.insert("a", 3);
        t.insert("a.b.c", 4);
        t.insert("*.b.*", 5);
        t.insert(">", 6);
        assert_eq!(matched(&t, "a"), vec![3, 6]); // a.> needs one more token
        assert_eq!(matched(&t, "a.b"), vec![1, 2, 6]);
        assert_eq!(matched(&t, "a.b.c"), vec![2, 4, 5, 6]); // a.* is one token only
        assert_eq!(matched(&t, "x.b.y"), vec![5, 6]);
    }

    #[test]
    fn insert_is_idempotent_and_remove_prunes() {
        let mut t = Trie::new();
        assert!(t.insert("md.*.AAPL", 7));
        assert!(!t.insert("md.*.AAPL", 7));
        assert!(t.insert("md.*.AAPL", 8));
        assert_eq!(t.len(), 2);
        assert!(t.contains("md.*.AAPL"));
        assert!(t.remove("md.*.AAPL", 7));
        assert!(!t.remove("md.*.AAPL", 7));
        assert!(!t.remove("md.NASDAQ", 8));
        assert!(t.remove("md.*.AAPL", 8));
        assert!(t.is_empty());
        assert!(!t.contains("md.*.AAPL"));
        assert_eq!(t.nodes.len(), 1, "empty nodes pruned back to the root");
    }

    thread_local! {
        static COMPARED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    /// A value that counts how often it is compared: the work the trie
    /// does per subscribe and unsubscribe, without timing anything.
    #[derive(Debug, Clone, Copy, Eq)]
    struct Counted(u32);

    impl std::hash::Hash for Counted {
        fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
            self.0.hash(h);
        }
    }

    impl PartialEq for Counted {
        fn eq(&self, other: &Self) -> bool {
            COMPARED.with(|c| c.set(c.get() + 1));
            self.0 == other.0
        }
    }

    #[test]
    fn many_subscribers_on_one_pattern_cost_constant_work_each() {
        const N: u32 = 100_000;
        let mut t = Trie::new();
        COMPARED.with(|c| c.set(0));
        for i in 0..N {
            assert!(t.insert("md.*.AAPL", Counted(i)));
            assert!(t.insert("md.>", Counted(i)));
        }
        assert!(!t.insert("md.*.AAPL", Counted(N / 2)), "already there");
        let mut n = 0;
        t.for_each_match("md.X.AAPL", |_| n += 1);
        assert_eq!(n, 2 * N as usize);
        // Out of order, so a removal moves values around the list.
        for i in (0..N).rev().step_by(2).chain((0..N).step_by(2)) {
            assert!(t.remove("md.*.AAPL", Counted(i)));
            assert!(t.remove("md.>", Counted(i)));
        }
        assert!(!t.remove("md.>", Counted(0)));
        assert!(t.is_empty());
        // 400,002 inserts and removes: a list search would have compared
        // values ~2·10¹⁰ times; hashing compares about once per call, and
        // lists up to `SMALL` long at most `SMALL` times.
        let compared = COMPARED.with(|c| c.get());
        assert!(compared < 10 * 400_002, "{compared} comparisons");
    }

    #[test]
    fn positions_kept_by_the_caller_survive_every_move() {
        // What the broker does: it keeps each value's position and
        // updates the one that a removal moved.
        const N: u32 = 10_000;
        let mut t = Trie::new();
        let mut pos: FxHashMap<u32, u32> = FxHashMap::default();
        COMPARED.with(|c| c.set(0));
        for i in 0..N {
            pos.insert(i, t.push("md.>", Counted(i)));
        }
        assert_eq!(matched_counted(&t, "md.x"), (0..N).collect::<Vec<_>>());
        assert_eq!(
            t.remove_at("md.>", 0, Counted(1)),
            Err(NotThere),
            "not there"
        );
        assert_eq!(
            t.remove_at("md.*", 0, Counted(0)),
            Err(NotThere),
            "no such node"
        );
        for i in (0..N).rev().step_by(3).chain((0..N).filter(|i| i % 3 != 0)) {
            let p = pos.remove(&i).unwrap_or(u32::MAX);
            match t.remove_at("md.>", p, Counted(i)) {
                Ok(Some(Counted(m))) => {
                    pos.insert(m, p);
                }
                Ok(None) => {}
                Err(NotThere) => panic!("{i} not at {p}"),
            }
            if i == N / 2 {
                let mut left: Vec<u32> = pos.keys().copied().collect();
                left.sort_unstable();
                assert_eq!(matched_counted(&t, "md.x"), left);
            }
        }
        assert!(t.is_empty());
        // One comparison per removal (and the checks above), never a search.
        let compared = COMPARED.with(|c| c.get());
        assert!(compared < 3 * N as u64 + 10, "{compared} comparisons");
    }

    fn matched_counted(t: &Trie<Counted>, topic: &str) -> Vec<u32> {
        let mut v = Vec::new();
        t.for_each_match(topic, |c| v.push(c.0));
        v.sort_unstable();
        v
    }

    #[test]
    fn removal_keeps_the_index_right_through_growth_and_shrinking() {
        let mut t = Trie::new();
        let mut held: Vec<u32> = Vec::new();
        // Up past SMALL, down below SMALL / 2, up again: every value must
        // stay findable and removable exactly once.
        for round in 0..3u32 {
            for i in 0..(SMALL as u32 * 3) {
                let v = round * 1000 + i;
                assert!(t.insert("a.b", v));
                held.push(v);
            }
            while held.len() > 3 {
                let v = held.remove(held.len() / 2);
                assert!(t.remove("a.b", v), "{v}");
                assert!(!t.remove("a.b", v), "{v} twice");
            }
        }
        assert_eq!(matched(&t, "a.b"), {
            let mut h = held.clone();
            h.sort_unstable();
            h
        });
    }

    fn token() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_string()),
            Just("b".to_string()),
            Just("c".to_string())
        ]
    }

    fn pattern() -> impl Strategy<Value = String> {
        proptest::collection::vec(prop_oneof![4 => token(), 2 => Just("*".to_string())], 1..5)
            .prop_flat_map(|toks| {
                (Just(toks), any::<bool>()).prop_map(|(mut toks, gt)| {
                    if gt {
                        *toks.last_mut().unwrap() = ">".into();
                    }
                    toks.join(".")
                })
            })
    }

    proptest! {
        /// The trie agrees with the reference `matches` for any set of
        /// patterns and any topic, and removing everything leaves it empty.
        #[test]
        fn agrees_with_reference(pats in proptest::collection::vec(pattern(), 0..30),
                                 topics in proptest::collection::vec(proptest::collection::vec(token(), 1..6), 1..20)) {
            let mut t = Trie::new();
            for (i, p) in pats.iter().enumerate() {
                prop_assert!(check_pattern(p).is_ok());
                t.insert(p, i as u32);
            }
            for toks in &topics {
                let topic = toks.join(".");
                let mut want: Vec<u32> = pats.iter().enumerate()
                    .filter(|(_, p)| matches(p, &topic)).map(|(i, _)| i as u32).collect();
                want.sort_unstable();
                prop_assert_eq!(matched(&t, &topic), want, "topic {}", topic);
            }
            let mut listed: Vec<(String, u32)> = t.patterns();
            listed.sort();
            let mut want: Vec<(String, u32)> = pats.iter().cloned().enumerate().map(|(i, p)| (p, i as u32)).collect();
            want.sort();
            prop_assert_eq!(listed, want);
            for (i, p) in pats.iter().enumerate() {
                prop_assert!(t.remove(p, i as u32));
            }
            prop_assert!(t.is_empty());
            prop_assert_eq!(t.nodes.len(), 1);
        }
    }
}
