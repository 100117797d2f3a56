//! `within`: every shape by hand, then against a brute force over every
//! topic that could tell the two patterns apart.
//!
//! Why the brute force is exact. The patterns use the literals `a` and
//! `b` (or `a` and `bb`). Any topic telling two of them apart still does
//! once each token that is neither literal is replaced by `c`: matching
//! only asks "equal to this literal or not", and `c` is no longer than the
//! token it replaces, so the topic stays within the limits. So topics over
//! the literals plus `c` suffice, and up to 7 tokens reaches one past the
//! longest pattern (5 tokens, plus the token a `>` must stand for) or,
//! under the small limits, every topic there is.

use super::topic::{check_pattern, matches};
use super::within::{within, within_under, Limits};
use proptest::prelude::*;
use std::sync::OnceLock;

/// Every topic of 1..=`max` tokens drawn from `alphabet`.
pub(super) fn all_topics(alphabet: &[&str], max: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut level: Vec<String> = alphabet.iter().map(|t| t.to_string()).collect();
    for _ in 0..max {
        out.extend(level.iter().cloned());
        level = level
            .iter()
            .flat_map(|p| alphabet.iter().map(move |t| format!("{p}.{t}")))
            .collect();
    }
    out
}

/// Topics over {a, b, c}, 1..=7 tokens.
pub(super) fn topics_abc() -> &'static [String] {
    static T: OnceLock<Vec<String>> = OnceLock::new();
    T.get_or_init(|| all_topics(&["a", "b", "c"], 7))
}

/// Topics over {a, bb, c}, 1..=7 tokens (for the small limits: `bb`
/// makes bytes and tokens differ).
pub(super) fn topics_abbc() -> &'static [String] {
    static T: OnceLock<Vec<String>> = OnceLock::new();
    T.get_or_init(|| all_topics(&["a", "bb", "c"], 7))
}

/// Is `s` within the `limits` (tokens and bytes)?
pub(super) fn fits(s: &str, limits: Limits) -> bool {
    s.len() <= limits.bytes && s.split('.').count() <= limits.tokens
}

/// A pattern of 1..=`max` tokens over `lits`, `*` and (last) `>`.
pub(super) fn pattern(lits: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
    let mid = prop_oneof![proptest::sample::select(lits), Just("*")];
    let last = prop_oneof![proptest::sample::select(lits), Just("*"), Just(">")];
    (proptest::collection::vec(mid, 0..max), last).prop_map(|(mut head, last)| {
        head.push(last);
        head.join(".")
    })
}

/// The slow definition: every topic `inner` matches, `outer` matches.
fn brute(inner: &str, outer: &str, topics: &[String], limits: Limits) -> bool {
    topics
        .iter()
        .filter(|t| fits(t, limits))
        .all(|t| !matches(inner, t) || matches(outer, t))
}

fn yes(inner: &str, outer: &str) {
    assert!(within(inner, outer), "{inner} should be within {outer}");
}

fn no(inner: &str, outer: &str) {
    assert!(
        !within(inner, outer),
        "{inner} should not be within {outer}"
    );
}

#[test]
fn literal_in_literal() {
    yes("a", "a");
    yes("md.NASDAQ.AAPL", "md.NASDAQ.AAPL");
    no("a.b", "a.c");
    no("a.b", "a.bb");
    no("a.b", "a.b.c");
    no("a.b.c", "a.b");
}

#[test]
fn literal_in_star() {
    yes("a.b", "a.*");
    yes("a.b", "*.b");
    yes("a.b", "*.*");
    no("a.b", "*");
    no("a.b", "*.*.*");
}

#[test]
fn star_in_literal() {
    no("a.*", "a.b");
    no("*.b", "a.b");
    no("*", "a");
}

#[test]
fn star_in_star() {
    yes("a.*", "a.*");
    yes("a.*", "*.*");
    yes("md.*.AAPL", "md.*.*");
    no("*.*", "a.*");
    no("a.*", "a.*.*");
}

#[test]
fn anything_in_gt() {
    yes("md.*.AAPL", "md.>");
    yes("a.*", "a.>");
    yes("a.*.>", "a.>");
    yes("a.*.*", "a.>");
    yes("a.>", "*.>");
    yes("*", ">");
    yes("a.b.c", ">");
    yes(">", ">");
    no("*.b", "a.>");
    // `>` needs a token: `a` is not matched by `a.>`.
    no("a", "a.>");
}

#[test]
fn gt_in_narrower() {
    no("md.>", "md.*.AAPL");
    no("a.>", "a.*.>"); // a.x
    no("a.>", "a.*.*");
    no("a.>", "a.*"); // a.x.y
    no("a.>", "a.b.>");
    no(">", "*");
    no(">", "*.>");
    no(">", "a.>");
    no("*.>", "a.>");
}

/// A topic has at most 16 tokens, so a `>` in the 16th place stands for
/// exactly one token: it is a `*` there, and nothing longer exists.
#[test]
fn sixteen_token_edge() {
    let stars = |k: usize| vec!["*"; k].join(".");
    let gt16 = format!("{}.>", stars(15));
    let gt15 = format!("{}.>", stars(14));
    assert_eq!(check_pattern(&gt16), Ok(()));
    yes(&gt16, &stars(16));
    no(&gt15, &stars(15)); // 16 tokens fit after all
    yes(&gt15, &format!("{}.>", stars(13)));
    let lit16 = format!("{}.>", vec!["a"; 15].join("."));
    yes(&lit16, &format!("{}.*", vec!["a"; 15].join(".")));
    no(&lit16, &format!("{}.b", vec!["a"; 15].join(".")));
}

/// At 254 or 255 bytes a trailing `>` has no room for a second token (a
/// dot and a character): it, too, is a `*`.
#[test]
fn byte_limit_edge() {
    let head = |first: usize| {
        let t = |n: usize| "x".repeat(n);
        format!("{}.{}.{}.{}", t(first), t(62), t(62), t(62))
    };
    let long = format!("{}.>", head(63)); // 254 bytes
    let short = format!("{}.>", head(62)); // 253 bytes
    assert_eq!((long.len(), short.len()), (254, 253));
    assert_eq!(check_pattern(&long), Ok(()));
    yes(&long, &format!("{}.*", head(63)));
    no(&short, &format!("{}.*", head(62)));
}

/// A topic is a pattern matching only itself: `within` agrees with
/// `matches` when the inner pattern has no wildcard.
#[test]
fn agrees_with_matches_on_topics() {
    let pats = ["a", "a.b", "a.*", "*.b", "a.>", ">", "*", "*.*.c"];
    for topic in ["a", "a.b", "a.b.c", "x.b", "a.c"] {
        for p in pats {
            assert_eq!(within(topic, p), matches(p, topic), "{topic} in {p}");
        }
    }
}

/// Every pair of patterns up to 3 tokens, against every topic up to 5.
#[test]
fn exhaustive_short_patterns() {
    let mut pats = Vec::new();
    for body in all_topics(&["a", "b", "*"], 3) {
        pats.push(body.clone());
        pats.push(match body.rsplit_once('.') {
            Some((head, _)) => format!("{head}.>"),
            None => ">".to_string(),
        });
    }
    pats.sort();
    pats.dedup();
    let topics = all_topics(&["a", "b", "c"], 5);
    for i in &pats {
        for o in &pats {
            let want = brute(i, o, &topics, Limits::TOPIC);
            assert_eq!(within(i, o), want, "{i} within {o}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// `within` is exactly "every topic one matches, the other does".
    #[test]
    fn within_agrees_with_brute_force(i in pattern(&["a", "b"], 5), o in pattern(&["a", "b"], 5)) {
        prop_assert_eq!(within(&i, &o), brute(&i, &o, topics_abc(), Limits::TOPIC), "{} within {}", i, o);
    }

    /// The same under small limits, where topics up to 7 tokens are all
    /// there are: this reaches the edge where `>` can only be one token,
    /// by token count or by bytes (`bb` is two).
    #[test]
    fn within_under_small_limits_agrees_with_brute_force(
        i in pattern(&["a", "bb"], 5),
        o in pattern(&["a", "bb"], 5),
        tokens in 1usize..=6,
        bytes in 1usize..=14,
    ) {
        let limits = Limits { tokens, bytes };
        // `within` is asked only about valid patterns.
        if fits(&i, limits) {
            prop_assert_eq!(within_under(&i, &o, limits), brute(&i, &o, topics_abbc(), limits),
                            "{} within {} under {:?}", i, o, limits);
        }
    }
}
