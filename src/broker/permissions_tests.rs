//! `Permissions`: building, publishing, subscribing (union coverage
//! included) and the revocation list, by hand and against a brute force
//! (see `within_tests` for why its topics suffice).

use super::permissions::Permissions;
use super::topic::{matches, TopicError};
use super::within::Limits;
use super::within_tests::{fits, pattern, topics_abbc, topics_abc};
use proptest::prelude::*;

fn perms(sub: &[&str], publ: &[&str]) -> Permissions {
    match Permissions::new(sub, publ) {
        Ok(p) => p,
        Err((p, e)) => panic!("{p}: {e}"),
    }
}

/// The slow definition of union coverage: every topic `pattern` matches,
/// some allowed pattern matches.
fn brute(pattern: &str, allowed: &[String], topics: &[String], limits: Limits) -> bool {
    topics
        .iter()
        .filter(|t| fits(t, limits) && matches(pattern, t))
        .all(|t| allowed.iter().any(|a| matches(a, t)))
}

#[test]
fn new_names_the_first_bad_pattern() {
    let err = Permissions::new(["a.*", "a..b", "c d"], [">"]).err();
    assert_eq!(err, Some(("a..b".to_string(), TopicError::EmptyToken)));
    let err = Permissions::new(["a.*"], ["x", "a.>.b"]).err();
    assert_eq!(err, Some(("a.>.b".to_string(), TopicError::GtNotLast)));
    assert!(Permissions::new(Vec::<String>::new(), vec!["a".to_string()]).is_ok());
}

#[test]
fn all_and_none() {
    let all = Permissions::all();
    let none = Permissions::none();
    for p in ["a", "a.*", ">", "md.NYSE.>"] {
        assert!(all.may_subscribe(p) && !none.may_subscribe(p), "{p}");
    }
    for t in ["a", "md.NYSE.IBM"] {
        assert!(all.may_publish(t) && !none.may_publish(t), "{t}");
        assert!(all.covers_topic(t) && !none.covers_topic(t), "{t}");
    }
}

#[test]
fn publish_exact_and_wildcard() {
    let p = perms(&[], &["md.NASDAQ.AAPL", "md.NYSE.*", "news.>"]);
    assert!(p.may_publish("md.NASDAQ.AAPL"));
    assert!(!p.may_publish("md.NASDAQ.MSFT"));
    assert!(p.may_publish("md.NYSE.IBM"));
    assert!(!p.may_publish("md.NYSE.IBM.x"));
    assert!(p.may_publish("news.a.b"));
    assert!(!p.may_publish("news"));
    // Publish rights say nothing about subscribing, and the reverse.
    assert!(!p.may_subscribe("md.NASDAQ.AAPL"));
    assert!(!perms(&["x"], &[]).may_publish("x"));
}

#[test]
fn subscribe_by_one_pattern() {
    let p = perms(&["md.NASDAQ.AAPL", "md.NYSE.*", "news.>"], &[]);
    assert!(p.may_subscribe("md.NASDAQ.AAPL"));
    assert!(p.may_subscribe("md.NYSE.IBM"));
    assert!(p.may_subscribe("md.NYSE.*"));
    assert!(p.may_subscribe("news.>"));
    assert!(p.may_subscribe("news.*.x"));
    assert!(!p.may_subscribe("md.NASDAQ.*"));
    assert!(!p.may_subscribe("md.*.IBM"));
    assert!(!p.may_subscribe("md.>"));
    assert!(!p.may_subscribe("news"));
    assert!(p.covers_topic("news.x") && !p.covers_topic("md.NASDAQ.MSFT"));
}

/// A `>` spans lengths, each of which another pattern may cover.
#[test]
fn subscribe_by_union_of_lengths() {
    assert!(perms(&["a.*", "a.*.>"], &[]).may_subscribe("a.>"));
    assert!(perms(&["*", "*.>"], &[]).may_subscribe(">"));
    assert!(perms(&["a.*", "a.*.*", "a.*.*.>"], &[]).may_subscribe("a.>"));
    assert!(perms(&["a.b", "a.*.>"], &[]).may_subscribe("a.b.>"));
    // a.x.y.z is in no one of them.
    assert!(!perms(&["a.*", "a.*.*"], &[]).may_subscribe("a.>"));
    // One length covered only in part: a.x escapes.
    assert!(!perms(&["a.b", "a.*.>"], &[]).may_subscribe("a.>"));
}

/// At one length the union is no wider than its widest member: however
/// many literals are listed, a `*` can be something else.
#[test]
fn no_union_at_one_length() {
    let p = perms(&["a.b", "a.c", "a.d"], &[]);
    assert!(!p.may_subscribe("a.*"));
    assert!(p.may_subscribe("a.b"));
    assert!(!perms(&["a.*.b", "*.a.b"], &[]).may_subscribe("*.*.b"));
}

/// Topics stop at 16 tokens, so lengths 2..=16 listed one by one cover
/// `a.>` as well as `a.>` itself does.
#[test]
fn union_up_to_sixteen_tokens() {
    let every: Vec<String> = (1..=15)
        .map(|k| format!("a.{}", vec!["*"; k].join(".")))
        .collect();
    let p = Permissions::new(&every, &[] as &[&str]).ok();
    assert!(p.is_some_and(|p| p.may_subscribe("a.>")));
    let short = Permissions::new(&every[..14], &[] as &[&str]).ok();
    assert!(short.is_some_and(|p| !p.may_subscribe("a.>")));
}

/// Patterns covered by others are dropped when built, which must not
/// change an answer.
#[test]
fn redundant_patterns_change_nothing() {
    let p = perms(&["a.b", "a.*", "a.>", "a.*.c", "x.y", "x.y"], &[]);
    assert!(p.may_subscribe("a.b") && p.may_subscribe("a.*.*") && p.may_subscribe("x.y"));
    assert!(!p.may_subscribe("x.*") && !p.may_subscribe("a"));
}

#[test]
fn revoked_lists_what_is_no_longer_allowed_in_order() {
    let p = perms(&["md.NYSE.*", "news.>"], &[]);
    let current = [
        "md.NASDAQ.AAPL",
        "md.NYSE.IBM",
        "md.>",
        "news.x",
        "md.NYSE.*",
    ];
    assert_eq!(p.revoked(current), vec!["md.NASDAQ.AAPL", "md.>"]);
    assert!(Permissions::all().revoked(current).is_empty());
    assert_eq!(Permissions::none().revoked(current), current.to_vec());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// `may_subscribe` is exactly "every topic the subscription matches,
    /// some allowed pattern matches".
    #[test]
    fn may_subscribe_agrees_with_brute_force(
        sub in pattern(&["a", "b"], 4),
        allowed in proptest::collection::vec(pattern(&["a", "b"], 4), 0..5),
    ) {
        let p = Permissions::new(&allowed, &[] as &[&str]).map_err(|(p, e)| TestCaseError::fail(format!("{p}: {e}")))?;
        prop_assert_eq!(p.may_subscribe(&sub), brute(&sub, &allowed, topics_abc(), Limits::TOPIC),
                        "{} under {:?}", sub, allowed);
    }

    /// `may_publish` (and `covers_topic`) match split patterns against
    /// a split topic: the same answer as `topic::matches` on the text.
    #[test]
    fn may_publish_agrees_with_matches(allowed in proptest::collection::vec(pattern(&["a", "b"], 4), 0..5)) {
        let p = Permissions::new(&allowed, &allowed).map_err(|(p, e)| TestCaseError::fail(format!("{p}: {e}")))?;
        for t in topics_abc() {
            let want = allowed.iter().any(|a| matches(a, t));
            prop_assert_eq!(p.may_publish(t), want, "{} under {:?}", t, allowed);
            prop_assert_eq!(p.covers_topic(t), want, "{} under {:?}", t, allowed);
        }
    }

    /// The same under small limits, where every topic there is gets tried:
    /// lengths run out by token count or by bytes.
    #[test]
    fn may_subscribe_under_small_limits_agrees_with_brute_force(
        sub in pattern(&["a", "bb"], 5),
        allowed in proptest::collection::vec(pattern(&["a", "bb"], 5), 0..5),
        tokens in 1usize..=6,
        bytes in 1usize..=14,
    ) {
        let limits = Limits { tokens, bytes };
        let p = Permissions::new(&allowed, &[] as &[&str]).map_err(|(p, e)| TestCaseError::fail(format!("{p}: {e}")))?;
        if fits(&sub, limits) {
            prop_assert_eq!(p.may_subscribe_under(&sub, limits), brute(&sub, &allowed, topics_abbc(), limits),
                            "{} under {:?} {:?}", sub, allowed, limits);
        }
    }
}
