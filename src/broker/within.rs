//! Containment between two subscription patterns: does every topic one
//! pattern can match also match the other? Entitlements (issue #13) are
//! patterns, and a subscription is allowed when it asks for nothing the
//! token does not grant; `topic::matches` answers the same question for a
//! single topic.
//!
//! The sets compared are sets of *valid* topics (protocol.md, "Topics"):
//! at most [`MAX_TOKENS`] tokens and [`MAX_TOPIC_LEN`] bytes. Those limits
//! change the answer only at one edge, where a trailing `>` has no room to
//! stand for more than one token and so means `*` (see [`Limits::gt_reach`]).
//!
//! Why a token-by-token walk is exact. Take `inner` and `outer`, both
//! valid. A topic `inner` matches can put, at each `*` of `inner` (and for
//! each token of its `>`), any token at all; in particular a one-byte
//! token different from whatever literal `outer` has at that place, and
//! that topic is no longer (in bytes) than `inner` itself, so it is valid.
//! Hence:
//! - a literal of `outer` facing a `*` or `>` of `inner` refuses: fill the
//!   wildcard with another token;
//! - a literal of `outer` facing a different literal of `inner` refuses;
//! - a `*` of `outer` accepts any one token of `inner`;
//! - a `>` of `outer` accepts whatever `inner` has left, provided it has
//!   at least one token there (`>` needs one or more);
//! - a `>` of `inner` facing a `*` of `outer` is covered only if `outer`
//!   ends there and the `>` can never stand for two tokens: otherwise the
//!   topic one token longer escapes `outer`;
//! - running out of tokens on one side only refuses: the shorter pattern
//!   matches topics of a length the longer never does (`a` vs `a.>`:
//!   `>` needs a token; `a.*` vs `a`).
//!
//! Each counterexample above is a valid topic, so every refusal is a real
//! one, and every acceptance follows from the rules position by position.

use super::topic::{MAX_TOKENS, MAX_TOPIC_LEN};

/// The size limits of a topic. [`within`] uses the protocol's; tests use
/// small ones so a brute force over all topics reaches the edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub tokens: usize,
    pub bytes: usize,
}

impl Limits {
    pub const TOPIC: Self = Self {
        tokens: MAX_TOKENS,
        bytes: MAX_TOPIC_LEN,
    };

    /// The most tokens a topic matched by `pattern` (valid under these
    /// limits, `len` bytes, its last token `>` at token `n`) can have.
    /// `>` itself filled with a one-byte token keeps the length; every
    /// further token costs at least two bytes (a dot and a character).
    pub fn gt_reach(self, len: usize, n: usize) -> usize {
        self.tokens.min(n + self.bytes.saturating_sub(len) / 2)
    }
}

/// Is every valid topic matched by `inner` also matched by `outer`? Both
/// must be valid patterns (`topic::check_pattern`). Allocates nothing.
///
/// `md.*.AAPL` is within `md.>`; `a.>` is not within `a.*.>` (`a.x`);
/// `a.*.*` is within `a.>`, `a.>` not within `a.*.*`.
pub fn within(inner: &str, outer: &str) -> bool {
    within_under(inner, outer, Limits::TOPIC)
}

/// [`within`] for topics bounded by `limits` instead of the protocol's.
pub(crate) fn within_under(inner: &str, outer: &str, limits: Limits) -> bool {
    within_tokens(inner.split('.'), inner.len(), outer.split('.'), limits)
}

/// [`within`] on patterns already split into tokens (`Permissions` splits
/// its own once); `inner_len` is `inner`'s length in bytes, dots included.
pub(crate) fn within_tokens<'i, 'o>(
    mut i: impl Iterator<Item = &'i str>,
    inner_len: usize,
    mut o: impl Iterator<Item = &'o str>,
    limits: Limits,
) -> bool {
    // The 1-based position of the tokens being compared.
    let mut n = 0;
    loop {
        n += 1;
        match (i.next(), o.next()) {
            (None, None) => return true,
            // Whatever `inner` has from here (at least this token).
            (Some(_), Some(">")) => return true,
            // `>` one token long is `*`; any longer escapes a final `*`,
            // and a `*` with more after it misses the one-token topic.
            (Some(">"), Some("*")) => {
                return o.next().is_none() && limits.gt_reach(inner_len, n) <= n
            }
            (Some(_), Some("*")) => {}
            // `b` is a literal here, so equal means the same literal.
            (Some(a), Some(b)) if a == b => {}
            // A wildcard of `inner` facing a literal, two different
            // literals, or one pattern longer than the other.
            _ => return false,
        }
    }
}
