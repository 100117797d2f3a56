//! The topics an owner shard holds, as a token trie, so that a wildcard
//! snapshot (`md.NASDAQ.*`) visits only the topics under `md.NASDAQ`
//! instead of every topic the shard owns (a full scan of 200,000 topics
//! per pattern blocked a shard for seconds).
//!
//! Touched only when a topic is created or forgotten, never per publish.
//! Cost: one node per distinct prefix; a leaf is ~100 bytes (the node,
//! its token and its slot in the parent's map).

use rustc_hash::FxHashMap;
use slab::Slab;

use super::topic::MAX_TOKENS;

#[derive(Debug, Default)]
struct Node {
    children: FxHashMap<Box<str>, usize>,
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
