//! Subscriptions by pattern, matched by topic in time proportional to the
//! topic's tokens (and the wildcard branches actually present), never to the
//! number of subscriptions: a token trie with `*` and `>` edges.
//!
//! The same structure serves the topic owner (values: shards that have
//! subscribers) and each shard (values: local connections).

use rustc_hash::FxHashMap;
use slab::Slab;

use super::topic::MAX_TOKENS;

#[derive(Debug)]
struct Node<V> {
    children: FxHashMap<Box<str>, usize>,
    star: Option<usize>,
    /// Subscribers whose pattern ends here.
    exact: Vec<V>,
    /// Subscribers of `<path to here>.>`.
    rest: Vec<V>,
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
            exact: Vec::new(),
            rest: Vec::new(),
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

impl<V: Copy + Eq> Trie<V> {
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
        let mut node = self.root;
        let mut tokens = pattern.split('.').peekable();
        while let Some(t) = tokens.next() {
            if t == ">" && tokens.peek().is_none() {
                return self.add(node, v, true);
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
        self.add(node, v, false)
    }

    fn add(&mut self, node: usize, v: V, rest: bool) -> bool {
        let n = &mut self.nodes[node];
        let list = if rest { &mut n.rest } else { &mut n.exact };
        if list.contains(&v) {
            return false;
        }
        list.push(v);
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
        let Some(i) = list.iter().position(|x| *x == v) else {
            return false;
        };
        list.swap_remove(i);
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
            n.exact.iter().for_each(|&v| f(v));
            return;
        };
        // `>` here matches the one or more tokens left.
        n.rest.iter().for_each(|&v| f(v));
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
        for &v in &n.exact {
            out.push((path.join("."), v));
        }
        for &v in &n.rest {
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
