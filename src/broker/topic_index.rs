//! The topics an owner shard holds, as a token trie, so that a wildcard
//! snapshot (`md.NASDAQ.*`) visits only the topics under `md.NASDAQ`
//! instead of every topic the shard owns (a full scan of 200,000 topics
//! per pattern blocked a shard for seconds).
//!
//! Touched only when a topic is created or forgotten, never per publish.
//! Cost: one node per distinct prefix; a leaf is ~100 bytes (the node,
//! its token and its slot in the parent's map).
//!
//! Children are kept in token order, so a walk can stop after a budget of
//! nodes and resume later after the last topic it visited ([`Cursor`]),
//! whatever was added or removed in between: a snapshot of `t.*` over
//! 200,000 topics is served in steps across loop turns instead of one
//! ~400 ms stall (issue #12).

use std::collections::BTreeMap;
use std::ops::Bound::{Excluded, Unbounded};
use std::ops::ControlFlow;

use slab::Slab;

use super::topic::MAX_TOKENS;

/// Where a paused walk stopped: the tokens of the last node it visited
/// (that node's own topic included, its children not yet).
pub type Cursor = Vec<Box<str>>;

/// A pattern's progress along a path: (pattern, tokens matched), or
/// [`REST`] once a `>` matched at least one token.
type State = (u16, u8);
const REST: u8 = u8::MAX;

#[derive(Debug, Default)]
struct Node {
    children: BTreeMap<Box<str>, usize>,
    /// A topic ends here.
    topic: bool,
}

#[derive(Debug)]
pub struct TopicIndex {
    nodes: Slab<Node>,
    root: usize,
}

impl Default for TopicIndex {
    fn default() -> Self {
        let mut nodes = Slab::new();
        let root = nodes.insert(Node::default());
        Self { nodes, root }
    }
}

impl TopicIndex {
    /// Record the (valid, wildcard-free) `topic`.
    pub fn insert(&mut self, topic: &str) {
        let mut node = self.root;
        for t in topic.split('.') {
            node = match self.nodes[node].children.get(t) {
                Some(&n) => n,
                None => {
                    let n = self.nodes.insert(Node::default());
                    self.nodes[node].children.insert(t.into(), n);
                    n
                }
            };
        }
        self.nodes[node].topic = true;
    }

    /// Forget `topic`, pruning the nodes it alone used.
    pub fn remove(&mut self, topic: &str) {
        let mut path = [0usize; MAX_TOKENS + 1];
        let mut toks: [&str; MAX_TOKENS] = [""; MAX_TOKENS];
        path[0] = self.root;
        let mut n = 0;
        for t in topic.split('.') {
            if n == MAX_TOKENS {
                return;
            }
            let Some(&c) = self.nodes[path[n]].children.get(t) else {
                return;
            };
            toks[n] = t;
            n += 1;
            path[n] = c;
        }
        self.nodes[path[n]].topic = false;
        while n > 0 {
            let node = &self.nodes[path[n]];
            if node.topic || !node.children.is_empty() {
                break;
            }
            self.nodes.remove(path[n]);
            self.nodes[path[n - 1]].children.remove(toks[n - 1]);
            n -= 1;
        }
    }

    /// Nodes held (the root included): what the index costs.
    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Call `f` with every topic matching the (valid) `pattern`, visiting
    /// only the branches the pattern can match.
    pub fn for_each_match(&self, pattern: &str, mut f: impl FnMut(&str)) {
        let mut pat: [&str; MAX_TOKENS] = [""; MAX_TOKENS];
        let mut n = 0;
        for t in pattern.split('.') {
            if n == MAX_TOKENS {
                return;
            }
            pat[n] = t;
            n += 1;
        }
        let mut name = String::with_capacity(super::topic::MAX_TOPIC_LEN);
        self.walk(self.root, &pat[..n], &mut name, &mut f);
    }

    /// Call `f` with every topic matching any of the (valid) `patterns`,
    /// each once, in token order, starting after `cursor` (None: from the
    /// start), and stop once `budget` nodes were visited: then `cursor`
    /// says where to go on and the answer is false. True: no topic left.
    /// Topics added or removed between two calls are seen or not, each
    /// at most once; every topic there throughout is seen exactly once.
    pub fn walk_from(
        &self,
        patterns: &[Box<str>],
        cursor: &mut Option<Cursor>,
        budget: usize,
        f: impl FnMut(&str),
    ) -> bool {
        let pats: Vec<Vec<&str>> = patterns
            .iter()
            .take(u16::MAX as usize)
            .map(|p| p.split('.').take(MAX_TOKENS).collect())
            .collect();
        let start: Vec<State> = (0..pats.len() as u16).map(|i| (i, 0)).collect();
        let mut w = Walker {
            ix: self,
            pats,
            left: budget.max(1),
            path: Vec::with_capacity(MAX_TOKENS),
            name: String::with_capacity(super::topic::MAX_TOPIC_LEN),
            f,
            stopped: None,
        };
        let cur: Vec<&str> = cursor.iter().flatten().map(|t| &**t).collect();
        let from = cursor.as_ref().map(|_| &cur[..]);
        let done = w.visit(self.root, &start, from).is_continue();
        *cursor = w.stopped.take();
        done
    }

    fn walk(&self, node: usize, pat: &[&str], name: &mut String, f: &mut impl FnMut(&str)) {
        let n = &self.nodes[node];
        let Some((&first, more)) = pat.split_first() else {
            if n.topic {
                f(name);
            }
            return;
        };
        if first == ">" && more.is_empty() {
            for (t, &c) in &n.children {
                let len = push(name, t);
                self.all(c, name, f);
                name.truncate(len);
            }
        } else if first == "*" {
            for (t, &c) in &n.children {
                let len = push(name, t);
                self.walk(c, more, name, f);
                name.truncate(len);
            }
        } else if let Some(&c) = n.children.get(first) {
            let len = push(name, first);
            self.walk(c, more, name, f);
            name.truncate(len);
        }
    }

    /// Every topic at or below `node`.
    fn all(&self, node: usize, name: &mut String, f: &mut impl FnMut(&str)) {
        let n = &self.nodes[node];
        if n.topic {
            f(name);
        }
        for (t, &c) in &n.children {
            let len = push(name, t);
            self.all(c, name, f);
            name.truncate(len);
        }
    }
}

/// One resumable walk's state (see [`TopicIndex::walk_from`]).
struct Walker<'a, F> {
    ix: &'a TopicIndex,
    pats: Vec<Vec<&'a str>>,
    /// Nodes still to visit in this step.
    left: usize,
    path: Vec<&'a str>,
    name: String,
    f: F,
    /// Where the budget ran out.
    stopped: Option<Cursor>,
}

impl<'a, F: FnMut(&str)> Walker<'a, F> {
    /// Does a topic here match: some pattern fully matched, or in a `>`?
    fn accepts(&self, states: &[State]) -> bool {
        states
            .iter()
            .any(|&(p, at)| at == REST || at as usize == self.pats[p as usize].len())
    }

    /// The states after one more token `t`.
    fn next(&self, states: &[State], t: &str, out: &mut Vec<State>) {
        out.clear();
        for &(p, at) in states {
            if at == REST {
                out.push((p, REST));
                continue;
            }
            match self.pats[p as usize].get(at as usize) {
                Some(&">") => out.push((p, REST)),
                Some(&tok) if tok == "*" || tok == t => out.push((p, at + 1)),
                _ => {}
            }
        }
    }

    /// `node` with the patterns' `states` there. `cur`: this node lies on
    /// the cursor's path, with these tokens of it left below: it and its
    /// topic were visited in an earlier step, so only what comes after the
    /// cursor is visited now.
    fn visit(&mut self, node: usize, states: &[State], cur: Option<&[&str]>) -> ControlFlow<()> {
        let ix = self.ix;
        let n = &ix.nodes[node];
        if cur.is_none() {
            if n.topic && self.accepts(states) {
                (self.f)(&self.name);
            }
            self.left -= 1;
            if self.left == 0 {
                self.stopped = Some(self.path.iter().map(|&t| t.into()).collect());
                return ControlFlow::Break(());
            }
        }
        // Below the cursor's path (or the cursor node itself): everything.
        let (first, below) = match cur {
            Some([first, below @ ..]) => (Some(*first), below),
            _ => (None, &[][..]),
        };
        let any_child = states.iter().any(|&(p, at)| {
            at == REST || matches!(self.pats[p as usize].get(at as usize), Some(&"*" | &">"))
        });
        let mut next = Vec::with_capacity(states.len());
        if any_child {
            if let Some(f) = first {
                if let Some((t, &c)) = n.children.get_key_value(f) {
                    self.child(c, t, states, &mut next, Some(below))?;
                }
            }
            let range = match first {
                Some(f) => n.children.range::<str, _>((Excluded(f), Unbounded)),
                None => n.children.range::<str, _>(..),
            };
            for (t, &c) in range {
                self.child(c, t, states, &mut next, None)?;
            }
        } else {
            // Only literal tokens go on: look them up, in order.
            let mut toks: Vec<&str> = states
                .iter()
                .filter_map(|&(p, at)| self.pats[p as usize].get(at as usize).copied())
                .filter(|t| first.is_none_or(|f| *t >= f))
                .collect();
            toks.sort_unstable();
            toks.dedup();
            for tok in toks {
                if let Some((t, &c)) = n.children.get_key_value(tok) {
                    let cur = (Some(tok) == first).then_some(below);
                    self.child(c, t, states, &mut next, cur)?;
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn child(
        &mut self,
        c: usize,
        t: &'a str,
        states: &[State],
        next: &mut Vec<State>,
        cur: Option<&[&str]>,
    ) -> ControlFlow<()> {
        self.next(states, t, next);
        if next.is_empty() {
            return ControlFlow::Continue(());
        }
        let mine = std::mem::take(next);
        let len = push(&mut self.name, t);
        self.path.push(t);
        let r = self.visit(c, &mine, cur);
        self.path.pop();
        self.name.truncate(len);
        *next = mine;
        r
    }
}

/// Append `.token` (or `token` at the start); returns the length before.
fn push(name: &mut String, token: &str) -> usize {
    let len = name.len();
    if len > 0 {
        name.push('.');
    }
    name.push_str(token);
    len
}

#[cfg(test)]
mod tests {
    use super::super::topic::matches;
    use super::*;

    fn matched(ix: &TopicIndex, p: &str) -> Vec<String> {
        let mut v = Vec::new();
        ix.for_each_match(p, |t| v.push(t.to_string()));
        v.sort();
        v
    }

    #[test]
    fn agrees_with_matches_and_prunes() {
        let topics = ["a", "a.b", "a.b.c", "a.c", "x.b.y", "x.b", "b.c.d.e"];
        let mut ix = TopicIndex::default();
        for t in topics {
            ix.insert(t);
        }
        for p in [
            "a", "a.*", "a.>", "*.b", "*.b.*", ">", "*", "a.b.c", "q.>", "b.>",
        ] {
            let mut want: Vec<String> = topics
                .iter()
                .filter(|t| matches(p, t))
                .map(|t| t.to_string())
                .collect();
            want.sort();
            assert_eq!(matched(&ix, p), want, "pattern {p}");
        }
        for t in topics {
            ix.remove(t);
        }
        ix.remove("never.there");
        assert_eq!(ix.nodes(), 1, "pruned back to the root");
        assert!(matched(&ix, ">").is_empty());
    }
}
