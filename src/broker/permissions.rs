//! What a connection's token lets it subscribe to and publish on (issue
//! #13): two lists of patterns, checked on every `sub` and `pub` and again
//! when a live token refresh narrows them.
//!
//! Each list is sorted once, when the token is read: patterns without a
//! wildcard go in a hash set (a publish on one of 100 symbols is one hash,
//! not 100 comparisons), the few with wildcards are kept split into tokens
//! and walked in order against the topic, itself split once onto the stack
//! (splitting each pattern on every check cost ~70 ns a pattern; a token
//! count that cannot match now rejects one before any text is compared).
//! Patterns another one already covers are dropped then too, so a
//! redundant token costs nothing per check.
//!
//! Union coverage. A subscription is allowed when the allowed patterns
//! *together* cover it, not only when one of them does:
//! - at a fixed number of tokens, the union is never more than its best
//!   member. Fill every wildcard of the subscription with a token no
//!   allowed pattern names (one byte long, so the topic stays valid): the
//!   allowed pattern matching that topic has a wildcard at each of those
//!   places and so covers the whole subscription at that length. `a.*` is
//!   not covered by `a.b`, `a.c`, … however many are listed;
//! - a trailing `>` spans lengths, and each length may be covered by a
//!   different pattern: `a.>` is covered by `a.*` and `a.*.>` together.
//!   [`Rules::covers_by_length`] checks the lengths one by one, from the
//!   subscription's own up to one past the longest allowed pattern (past
//!   that only an allowed `>` can cover, and one covering that length
//!   covers every longer one) or the topic limits, whichever comes first.
//!
//! The one place this is conservative: the argument needs a one-byte token
//! no allowed pattern names at that place. There are 66 one-byte tokens;
//! a token listing all of them at one place, for a subscription so long
//! that only one-byte tokens fit there, is refused though covered.

use rustc_hash::FxHashSet;

use super::topic::{check_pattern, is_pattern, matches, TopicError, MAX_TOKENS};
use super::within::{within, within_tokens, Limits};

/// The rights a token grants: which patterns may be subscribed to, which
/// topics published on. Immutable once built; share it through an `Arc`.
#[derive(Debug, Clone)]
pub struct Permissions {
    sub: Rules,
    publ: Rules,
}

/// One list of allowed patterns, split for checking.
#[derive(Debug, Clone, Default)]
struct Rules {
    /// Allowed patterns without a wildcard, none of them matched by one of
    /// `wild` (that one answers for it).
    exact: FxHashSet<Box<str>>,
    /// Allowed patterns with a wildcard, as tokens, none within another.
    wild: Box<[Box<[Box<str>]>]>,
    /// The most tokens of any of `wild`: the longest length at which the
    /// union can still change (see the module comment).
    wild_tokens: usize,
}

/// A valid topic or pattern's tokens, split onto the stack.
struct Tokens<'a> {
    all: [&'a str; MAX_TOKENS],
    n: usize,
}

impl<'a> Tokens<'a> {
    /// `None` past [`MAX_TOKENS`] tokens (never, for a valid one).
    fn split(s: &'a str) -> Option<Self> {
        let mut t = Self {
            all: [""; MAX_TOKENS],
            n: 0,
        };
        for tok in s.split('.') {
            *t.all.get_mut(t.n)? = tok;
            t.n += 1;
        }
        Some(t)
    }

    fn get(&self) -> &[&'a str] {
        &self.all[..self.n]
    }
}

/// `topic::matches` on split forms: the token count decides most refusals.
fn matches_tokens(pattern: &[Box<str>], topic: &[&str]) -> bool {
    let same = |p: &[Box<str>], t: &[&str]| p.iter().zip(t).all(|(p, t)| &**p == "*" || **p == **t);
    match pattern.split_last() {
        Some((last, head)) if &**last == ">" => topic.len() > head.len() && same(head, topic),
        _ => pattern.len() == topic.len() && same(pattern, topic),
    }
}

/// Is `inner` (split, `len` bytes) within `outer` (split)?
fn within_split(inner: &[&str], len: usize, outer: &[Box<str>], limits: Limits) -> bool {
    within_tokens(
        inner.iter().copied(),
        len,
        outer.iter().map(|t| &**t),
        limits,
    )
}

impl Permissions {
    /// The rights given by these allowed subscription and publish
    /// patterns; the first pattern that is not valid (`check_pattern`) is
    /// returned, with why, and nothing is built.
    pub fn new(
        sub: impl IntoIterator<Item = impl AsRef<str>>,
        publ: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<Self, (String, TopicError)> {
        Ok(Self {
            sub: Rules::new(sub)?,
            publ: Rules::new(publ)?,
        })
    }

    /// Everything: subscribe to `>`, publish on `>`.
    pub fn all() -> Self {
        let every = || Rules {
            exact: FxHashSet::default(),
            wild: Box::new([Box::new([">".into()])]),
            wild_tokens: 1,
        };
        Self {
            sub: every(),
            publ: every(),
        }
    }

    /// Nothing at all.
    pub fn none() -> Self {
        Self {
            sub: Rules::default(),
            publ: Rules::default(),
        }
    }

    /// May (valid) `pattern` be subscribed to: is every topic it matches
    /// matched by the allowed subscription patterns together?
    pub fn may_subscribe(&self, pattern: &str) -> bool {
        self.sub.covers_pattern(pattern, Limits::TOPIC)
    }

    /// May a message be published on (valid, wildcard-free) `topic`?
    pub fn may_publish(&self, topic: &str) -> bool {
        self.publ.covers_topic(topic)
    }

    /// Is (valid, wildcard-free) `topic` one the subscription rights reach,
    /// i.e. would subscribing to exactly it be allowed?
    pub fn covers_topic(&self, topic: &str) -> bool {
        self.sub.covers_topic(topic)
    }

    /// Those of `current` (a connection's subscriptions) these rights no
    /// longer allow, in the order given: after a live token refresh the
    /// caller drops them.
    pub fn revoked<'a>(&self, current: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
        current
            .into_iter()
            .filter(|p| !self.may_subscribe(p))
            .collect()
    }

    /// For the union property test: the check under small topic limits.
    #[cfg(test)]
    pub(crate) fn may_subscribe_under(&self, pattern: &str, limits: Limits) -> bool {
        self.sub.covers_pattern(pattern, limits)
    }
}

impl Rules {
    fn new(
        patterns: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<Self, (String, TopicError)> {
        let mut exact: FxHashSet<Box<str>> = FxHashSet::default();
        let mut wild: Vec<&str> = Vec::new();
        let patterns: Vec<_> = patterns.into_iter().collect();
        for p in &patterns {
            let p = p.as_ref();
            check_pattern(p).map_err(|e| (p.to_owned(), e))?;
            if !is_pattern(p) {
                exact.insert(p.into());
            } else if !wild.iter().any(|w| within(p, w)) {
                // Nothing kept covers it; drop what it covers.
                wild.retain(|w| !within(w, p));
                wild.push(p);
            }
        }
        exact.retain(|e| !wild.iter().any(|w| matches(w, e)));
        let wild: Box<[Box<[Box<str>]>]> = wild
            .iter()
            .map(|w| w.split('.').map(Box::from).collect())
            .collect();
        let wild_tokens = wild.iter().map(|w| w.len()).max().unwrap_or(0);
        Ok(Self {
            exact,
            wild,
            wild_tokens,
        })
    }

    fn covers_topic(&self, topic: &str) -> bool {
        self.exact.contains(topic) || self.wild_matches(topic)
    }

    fn wild_matches(&self, topic: &str) -> bool {
        Tokens::split(topic).is_some_and(|t| self.wild.iter().any(|w| matches_tokens(w, t.get())))
    }

    fn covers_pattern(&self, pattern: &str, limits: Limits) -> bool {
        // An allowed exact subscription is one hash, before any scan.
        if self.exact.contains(pattern) {
            return true;
        }
        if !is_pattern(pattern) {
            // A single topic (not among `exact`, just looked up);
            // `within` and `matches` agree on it.
            return self.wild_matches(pattern);
        }
        let Some(mut toks) = Tokens::split(pattern) else {
            return false;
        };
        // A wildcard matches many topics, so no exact pattern helps.
        let len = pattern.len();
        if self
            .wild
            .iter()
            .any(|w| within_split(toks.get(), len, w, limits))
        {
            return true;
        }
        pattern.ends_with('>') && self.covers_by_length(&mut toks, len, limits)
    }

    /// Is `pattern` (split, `len` bytes), ending in `>`, covered at each
    /// length it can match, each perhaps by a different allowed pattern?
    /// The `>` becomes as many `*` as that length needs, in place.
    fn covers_by_length(&self, pattern: &mut Tokens<'_>, len: usize, limits: Limits) -> bool {
        let n = pattern.n;
        let last = limits.gt_reach(len, n).min(n.max(self.wild_tokens + 1));
        // `x.>` becomes `x.*`, then `x.*.*`, …; each `*` added is two bytes.
        pattern.n -= 1;
        for m in n..=last {
            let Some(slot) = pattern.all.get_mut(pattern.n) else {
                return false;
            };
            *slot = "*";
            pattern.n += 1;
            let fixed_len = len + 2 * (m - n);
            if !self
                .wild
                .iter()
                .any(|w| within_split(pattern.get(), fixed_len, w, limits))
            {
                return false;
            }
        }
        true
    }
}
