//! Pure helpers of the bridge: subjects, header parsing, the stream's
//! config and its check. No I/O, so every rule here is unit-tested
//! without a NATS server.

use std::time::Duration;

use async_nats::jetstream::stream::{
    Config, DiscardPolicy, Republish, RetentionPolicy, StorageType,
};
use async_nats::HeaderMap;

use super::ClusterConfig;

/// Our per-topic sequence rides in this header (docs/cluster.md §3): JetStream
/// has no per-subject counter of its own.
pub const RF_SEQ: &str = "Rf-Seq";
/// A bundle's `msg` lengths, comma-separated (docs/cluster.md §3): its
/// `msg`s are numbered `Rf-Seq` on. Absent: one `msg`.
pub const RF_LENS: &str = "Rf-Lens";
/// The republished copy's stream sequence (set by the server).
pub const NATS_SEQUENCE: &str = "Nats-Sequence";
/// The same subject's previous stream sequence (set by the server; 0 when
/// the copy is the subject's first message).
pub const NATS_LAST_SEQUENCE: &str = "Nats-Last-Sequence";

/// The dedupe window: a retried publish (same `Nats-Msg-Id`) converges to
/// `duplicate: true` inside it. 120 s is 12× the 10 s publish timeout, so
/// every retry of one publish falls inside it.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// `{prefix}.t.{topic}`: where publishes go (into the stream).
pub fn publish_subject(prefix: &str, topic: &str) -> String {
    format!("{prefix}.t.{topic}")
}

/// `{prefix}.d.{pattern}`: the stream's republished copies, what nodes
/// subscribe to.
pub fn copy_subject(prefix: &str, pattern: &str) -> String {
    format!("{prefix}.d.{pattern}")
}

/// The topic of a republished copy's subject, `None` when it is not under
/// `{prefix}.d.`.
pub fn topic_of_copy<'a>(prefix: &str, subject: &'a str) -> Option<&'a str> {
    let rest = subject.strip_prefix(prefix)?.strip_prefix(".d.")?;
    (!rest.is_empty()).then_some(rest)
}

/// The topic of a stored message's own subject (as read back from the
/// stream), `None` when it is not under `{prefix}.t.`.
pub fn topic_of_publish<'a>(prefix: &str, subject: &'a str) -> Option<&'a str> {
    let rest = subject.strip_prefix(prefix)?.strip_prefix(".t.")?;
    (!rest.is_empty()).then_some(rest)
}

/// A bundle's lengths: `Some(empty)` without the header (one `msg`),
/// `None` when it is there and not a list of 2 to 256 numbers.
pub fn lens_of(headers: Option<&HeaderMap>) -> Option<Vec<u32>> {
    let Some(v) = headers.and_then(|h| h.get(RF_LENS)) else {
        return Some(Vec::new());
    };
    let lens: Vec<u32> = v
        .as_str()
        .split(',')
        .map(|n| n.trim().parse().ok())
        .collect::<Option<_>>()?;
    (2..=256).contains(&lens.len()).then_some(lens)
}

/// The lengths as the header carries them.
pub fn lens_header(lens: &[u32]) -> String {
    let mut s = String::with_capacity(lens.len() * 4);
    for (i, l) in lens.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(itoa::Buffer::new().format(*l));
    }
    s
}

/// A header's value as a `u64`; `None` when missing or not a number.
pub fn header_u64(headers: Option<&HeaderMap>, name: &str) -> Option<u64> {
    headers?.get(name)?.as_str().trim().parse().ok()
}

/// The three numbers of a republished copy: (stream seq, the subject's
/// previous stream seq, Rf-Seq). `None` when any is missing or bad: the
/// caller counts and drops such a copy.
pub fn copy_numbers(headers: Option<&HeaderMap>) -> Option<(u64, u64, u64)> {
    Some((
        header_u64(headers, NATS_SEQUENCE)?,
        header_u64(headers, NATS_LAST_SEQUENCE)?,
        header_u64(headers, RF_SEQ)?,
    ))
}

/// Whether NATS server version `v` ("2.9.10", "v2.10.1-beta") is at least
/// `min`. An unreadable version is not.
pub fn version_at_least(v: &str, min: (u64, u64, u64)) -> bool {
    let core = v
        .trim_start_matches('v')
        .split(['-', '+'])
        .next()
        .unwrap_or("");
    let mut n = core.split('.').map(|p| p.parse::<u64>().ok());
    match (n.next().flatten(), n.next().flatten(), n.next().flatten()) {
        (Some(a), Some(b), Some(c)) => (a, b, c) >= min,
        _ => false,
    }
}

/// Replicated streams need this nats-server: before it, the leader checked
/// `Nats-Expected-Last-Subject-Sequence` before replicating, so two
/// publishes of one subject at once could both pass (nats-server issue
/// 4320; seen here on 2.9.10 with 3 replicas as two messages with one
/// seq, about 10 in 190 when three nodes published one topic at once).
pub const REPLICATED_EXPECTED_SEQ_FIXED: (u64, u64, u64) = (2, 9, 21);

/// `N` from an error text containing "wrong last sequence: N" (JetStream
/// error 10071, measured on 2.9.10 as
/// `{"code":400,"err_code":10071,"description":"wrong last sequence: 5"}`).
/// async-nats wraps the description ("wrong last sequence: wrong last
/// sequence: 5 (code 400, …)"), so this takes the first occurrence that
/// is followed by digits.
pub fn parse_conflict(text: &str) -> Option<u64> {
    const KEY: &str = "wrong last sequence: ";
    let mut rest = text;
    while let Some(at) = rest.find(KEY) {
        rest = &rest[at + KEY.len()..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            return rest[..digits].parse().ok();
        }
    }
    None
}

/// The stream's config (docs/cluster.md §2): one message per subject (the
/// last value), republished to `{prefix}.d.>` so nodes only see stored
/// messages.
pub fn stream_config(cfg: &ClusterConfig) -> Config {
    Config {
        name: cfg.stream.clone(),
        subjects: vec![publish_subject(&cfg.prefix, ">")],
        storage: if cfg.storage_file {
            StorageType::File
        } else {
            StorageType::Memory
        },
        num_replicas: cfg.replicas.max(1),
        retention: RetentionPolicy::Limits,
        max_messages_per_subject: cfg.history.max(1),
        discard: DiscardPolicy::Old,
        allow_direct: true,
        duplicate_window: DUPLICATE_WINDOW,
        republish: Some(Republish {
            source: publish_subject(&cfg.prefix, ">"),
            destination: copy_subject(&cfg.prefix, ">"),
            headers_only: false,
        }),
        ..Default::default()
    }
}

/// What an existing stream must have for the bridge to work on it; the
/// rest (replicas, storage, limits) an operator may tune. Returns the
/// differences, empty when usable.
pub fn stream_mismatches(want: &Config, have: &Config) -> Vec<String> {
    let mut out = Vec::new();
    if !have.subjects.iter().any(|s| want.subjects.contains(s)) {
        out.push(format!(
            "subjects {:?} lack {:?}",
            have.subjects, want.subjects
        ));
    }
    // How many it keeps per topic is a tunable (the newest is what
    // snapshots read); none kept, or no bound, is another shape.
    if have.max_messages_per_subject < 1 {
        out.push(format!(
            "max_msgs_per_subject {} (want at least 1 and a bound: the newest of each topic)",
            have.max_messages_per_subject
        ));
    }
    let same_republish = match (&want.republish, &have.republish) {
        (Some(w), Some(h)) => {
            w.source == h.source && w.destination == h.destination && !h.headers_only
        }
        _ => false,
    };
    if !same_republish {
        out.push(format!(
            "republish {:?} (want {:?})",
            have.republish, want.republish
        ));
    }
    if have.retention != RetentionPolicy::Limits {
        out.push(format!("retention {:?} (want limits)", have.retention));
    }
    // Fills read missed messages from any replica (direct get): without
    // it every one would wait its whole 2 s for no answer.
    if !have.allow_direct {
        out.push("allow_direct false (want true: missed messages are read by direct get)".into());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, *v);
        }
        h
    }

    #[test]
    fn subjects_round_trip() {
        assert_eq!(publish_subject("rf", "a.b"), "rf.t.a.b");
        assert_eq!(copy_subject("rf", "a.*"), "rf.d.a.*");
        assert_eq!(topic_of_copy("rf", "rf.d.a.b"), Some("a.b"));
        assert_eq!(topic_of_copy("rf", "rf.t.a.b"), None);
        assert_eq!(topic_of_copy("rf", "rfx.d.a"), None);
        assert_eq!(topic_of_copy("rf", "rf.d."), None);
    }

    #[test]
    fn copy_headers_parse_or_drop() {
        let h = headers(&[
            ("Nats-Sequence", "7"),
            ("Nats-Last-Sequence", "3"),
            ("Rf-Seq", "42"),
        ]);
        assert_eq!(copy_numbers(Some(&h)), Some((7, 3, 42)));
        let bad = headers(&[
            ("Nats-Sequence", "7"),
            ("Nats-Last-Sequence", "x"),
            ("Rf-Seq", "42"),
        ]);
        assert_eq!(copy_numbers(Some(&bad)), None);
        let missing = headers(&[("Nats-Sequence", "7"), ("Nats-Last-Sequence", "0")]);
        assert_eq!(copy_numbers(Some(&missing)), None);
        assert_eq!(copy_numbers(None), None);
    }

    #[test]
    fn conflict_number_from_any_wrapping() {
        assert_eq!(parse_conflict("wrong last sequence: 5"), Some(5));
        assert_eq!(
            parse_conflict(
                "wrong last sequence: wrong last sequence: 17 (code 400, error code 10071)"
            ),
            Some(17)
        );
        assert_eq!(parse_conflict("wrong last sequence"), None);
        assert_eq!(parse_conflict("timed out"), None);
    }

    #[test]
    fn stream_check_accepts_tuning_rejects_shape() {
        let cfg = ClusterConfig::default();
        let want = stream_config(&cfg);
        let mut have = want.clone();
        have.num_replicas = 3;
        have.storage = StorageType::Memory;
        have.max_messages_per_subject = 1; // history is a tunable too
        assert!(stream_mismatches(&want, &have).is_empty());
        have.max_messages_per_subject = -1; // unbounded is not
        have.republish = None;
        have.allow_direct = false;
        assert_eq!(stream_mismatches(&want, &have).len(), 3);
    }

    #[test]
    fn versions_compare_by_number() {
        assert!(!version_at_least("2.9.10", REPLICATED_EXPECTED_SEQ_FIXED));
        assert!(version_at_least("2.9.21", REPLICATED_EXPECTED_SEQ_FIXED));
        assert!(version_at_least(
            "v2.10.0-beta.1",
            REPLICATED_EXPECTED_SEQ_FIXED
        ));
        assert!(version_at_least(
            "2.11.3+build",
            REPLICATED_EXPECTED_SEQ_FIXED
        ));
        assert!(!version_at_least("", REPLICATED_EXPECTED_SEQ_FIXED));
        assert!(!version_at_least("two", REPLICATED_EXPECTED_SEQ_FIXED));
    }
}
