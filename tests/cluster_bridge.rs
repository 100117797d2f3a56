//! The NATS bridge (src/cluster) against a real `nats-server -js` on a
//! loopback port with a temporary store (issue #18, docs/cluster.md §9);
//! the harness is tests/nats/mod.rs, catch-up and fills are
//! tests/cluster_catchup.rs.

mod nats;

use std::path::Path;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use nats::*;
use ringfan::cluster::{ClusterConfig, ClusterError, FromBridge, PublishResult, ToBridge};

// ---- tests ----

#[test]
fn stream_is_created_idempotently_and_checked() {
    let Some(bin) = need_nats("stream_is_created_idempotently_and_checked") else {
        return;
    };
    let dir = temp_dir("stream");
    let nats = Nats::start(&bin, free_port(), &dir);
    let (a, _ia) = start(config(&nats.url())).expect("first bridge creates the stream");
    let (b, _ib) = start(config(&nats.url())).expect("second bridge, same config, same stream");
    assert!(a.stats().connected.load(Ordering::Relaxed));
    b.shutdown();
    a.shutdown();
    // Same stream name, another prefix: its subjects and republish differ.
    let other = ClusterConfig {
        prefix: "zz".into(),
        ..config(&nats.url())
    };
    match start(other) {
        Err(ClusterError::Stream(e)) => assert!(e.contains("republish"), "{e}"),
        Err(e) => panic!("expected a stream shape error, got {e}"),
        Ok(_) => panic!("a stream of another shape was accepted"),
    }
    drop(nats);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn publish_is_stored_and_its_copy_reaches_the_owner_shard() {
    let Some(bin) = need_nats("publish_is_stored_and_its_copy_reaches_the_owner_shard") else {
        return;
    };
    let dir = temp_dir("publish");
    let nats = Nats::start(&bin, free_port(), &dir);
    let (b, mut inbox) = start(config(&nats.url())).expect("bridge");
    send(&b, interest("a.b", true));
    eventually("one subscription", || {
        b.stats().subscriptions.load(Ordering::Relaxed) == 1
    });
    // The interest's SUB and the publish go out on one connection, in
    // order, so the server knows the subscription before the copy exists.
    send(&b, publish(6, "a.b", 0, 1, "n1-1"));
    let (shard, result) = inbox.published(6);
    assert_eq!(shard, 6 % SHARDS, "answer to the asking shard");
    assert_eq!(
        result,
        PublishResult::Stored {
            stream_seq: 1,
            duplicate: false
        }
    );
    let (shard, copy) = inbox.copy_of("a.b");
    assert_eq!(shard, owner("a.b"), "copy to the topic's owner shard");
    assert_eq!(
        (copy.stream_seq, copy.last_stream_seq, copy.rf_seq),
        (1, 0, 1)
    );
    assert_eq!(&copy.payload[..], b"{\"seq\":1}");

    send(&b, publish(7, "a.b", 1, 2, "n1-2"));
    let (_, result) = inbox.published(7);
    assert!(
        matches!(
            result,
            PublishResult::Stored {
                stream_seq: 2,
                duplicate: false
            }
        ),
        "{result:?}"
    );
    let (_, copy) = inbox.copy_of("a.b");
    assert_eq!(
        (copy.stream_seq, copy.last_stream_seq, copy.rf_seq),
        (2, 1, 2)
    );

    // Not a subject: refused, not retried for 10 s.
    send(&b, publish(8, "bad topic", 0, 1, "n1-3"));
    let (_, result) = inbox.published(8);
    assert!(matches!(result, PublishResult::Error(_)), "{result:?}");

    let stats = b.stats();
    assert_eq!(stats.messages_in.load(Ordering::Relaxed), 2);
    assert_eq!(stats.copies_bad.load(Ordering::Relaxed), 0);
    b.shutdown();
    drop(nats);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn wrong_expected_last_is_a_conflict_and_a_retry_is_a_duplicate() {
    let Some(bin) = need_nats("wrong_expected_last_is_a_conflict_and_a_retry_is_a_duplicate")
    else {
        return;
    };
    let dir = temp_dir("conflict");
    let nats = Nats::start(&bin, free_port(), &dir);
    let (b, mut inbox) = start(config(&nats.url())).expect("bridge");
    send(&b, publish(1, "other", 0, 1, "x-1")); // stream seq 1
    assert!(matches!(
        inbox.published(1).1,
        PublishResult::Stored { stream_seq: 1, .. }
    ));
    send(&b, publish(2, "c", 0, 1, "c-1")); // stream seq 2
    assert!(matches!(
        inbox.published(2).1,
        PublishResult::Stored { stream_seq: 2, .. }
    ));

    // "c" is not new any more: 0 and a made-up 99 both lose to seq 2.
    send(&b, publish(3, "c", 0, 2, "c-2"));
    assert_eq!(inbox.published(3).1, PublishResult::Conflict { last: 2 });
    send(&b, publish(4, "c", 99, 2, "c-3"));
    assert_eq!(inbox.published(4).1, PublishResult::Conflict { last: 2 });
    assert_eq!(b.stats().conflicts.load(Ordering::Relaxed), 2);

    // The same message again (same id, same headers): the dedupe window
    // answers with the original seq, before the expected-seq check.
    send(&b, publish(5, "c", 0, 1, "c-1"));
    assert_eq!(
        inbox.published(5).1,
        PublishResult::Stored {
            stream_seq: 2,
            duplicate: true
        }
    );
    b.shutdown();
    drop(nats);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn interest_is_refcounted_and_wildcards_match() {
    let Some(bin) = need_nats("interest_is_refcounted_and_wildcards_match") else {
        return;
    };
    let dir = temp_dir("interest");
    let nats = Nats::start(&bin, free_port(), &dir);
    let (b, mut inbox) = start(config(&nats.url())).expect("bridge");
    let stats = b.stats();
    let subs = || stats.subscriptions.load(Ordering::Relaxed);
    send(&b, interest("w.*", true));
    send(&b, interest("w.*", true)); // a second shard: no second SUB
    send(&b, interest("g.>", true));
    send(&b, interest("end", true)); // the sentinel: copies arrive in stream order
    eventually("three distinct patterns held", || subs() == 3);

    let mut token = 10;
    let mut stored = |inbox: &mut Inbox, topic: &str| {
        token += 1;
        send(&b, publish(token, topic, 0, 1, &format!("id-{token}")));
        assert!(
            matches!(inbox.published(token).1, PublishResult::Stored { .. }),
            "{topic}"
        );
    };
    stored(&mut inbox, "w.x");
    stored(&mut inbox, "g.a.b");
    stored(&mut inbox, "w.x.y"); // `*` is one token: not matched
    stored(&mut inbox, "end");
    inbox.copy_of("w.x");
    inbox.copy_of("g.a.b");
    inbox.copy_of("end");
    assert_eq!(inbox.copies_seen("w.x.y"), 0, "w.* matched w.x.y");
    assert_eq!(inbox.copies_seen("w.x"), 0, "w.x delivered twice");

    // One holder of w.* left: still subscribed.
    send(&b, interest("w.*", false));
    stored(&mut inbox, "w.z");
    inbox.copy_of("w.z");
    // The last one gone: UNSUB. The sentinel's copy comes after any w.q.
    send(&b, interest("w.*", false));
    eventually("w.* released", || subs() == 2);
    stored(&mut inbox, "w.q");
    stored(&mut inbox, "end.x"); // not matched by `end`: a different topic
    send(&b, publish(99, "end", 4, 2, "end-2")); // stream seq 4 was "end"
    assert!(matches!(
        inbox.published(99).1,
        PublishResult::Stored { .. }
    ));
    let (_, c) = inbox.copy_of("end");
    assert_eq!(c.rf_seq, 2);
    assert_eq!(inbox.copies_seen("w.q"), 0, "copy after the last UNSUB");
    assert_eq!(inbox.copies_seen("end.x"), 0);
    // A remove of a pattern nobody holds is counted, not trusted.
    send(&b, interest("never", false));
    eventually("interest error counted", || {
        stats.interest_errors.load(Ordering::Relaxed) == 1
    });
    assert_eq!(subs(), 2);
    b.shutdown();
    drop(nats);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn last_reads_a_known_and_an_unknown_topic() {
    let Some(bin) = need_nats("last_reads_a_known_and_an_unknown_topic") else {
        return;
    };
    let dir = temp_dir("last");
    let nats = Nats::start(&bin, free_port(), &dir);
    let (b, mut inbox) = start(config(&nats.url())).expect("bridge");
    send(&b, publish(1, "k.v", 0, 41, "k-41"));
    send(&b, publish(2, "k.w", 0, 1, "w-1"));
    inbox.published(1);
    inbox.published(2);
    send(&b, publish(3, "k.v", 1, 42, "k-42"));
    assert!(matches!(
        inbox.published(3).1,
        PublishResult::Stored { stream_seq: 3, .. }
    ));

    send(
        &b,
        ToBridge::Last {
            shard: 3,
            token: 50,
            topic: "k.v".into(),
            fence: false,
        },
    );
    let (shard, found) = inbox.last(50);
    assert_eq!(shard, 3);
    let found = found.expect("k.v is stored");
    assert_eq!((found.stream_seq, found.rf_seq), (3, 42));
    assert_eq!(&found.payload[..], b"{\"seq\":42}");
    assert_eq!(&*found.topic, "k.v");

    send(
        &b,
        ToBridge::Last {
            shard: 1,
            token: 51,
            topic: "k.none".into(),
            fence: false,
        },
    );
    assert_eq!(inbox.last(51), (1, None));
    // A snapshot's read waits for the subscription asked for just before
    // it (docs/cluster.md §5), then answers like any other.
    send(
        &b,
        ToBridge::Interest {
            pattern: "k.v".into(),
            add: true,
        },
    );
    send(
        &b,
        ToBridge::Last {
            shard: 2,
            token: 52,
            topic: "k.v".into(),
            fence: true,
        },
    );
    let (shard, found) = inbox.last(52);
    assert_eq!(shard, 2);
    assert_eq!(found.map(|f| f.rf_seq), Some(42));
    b.shutdown();
    drop(nats);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn nats_restart_is_unavailable_then_recovers_with_last_values() {
    let Some(bin) = need_nats("nats_restart_is_unavailable_then_recovers_with_last_values") else {
        return;
    };
    let dir = temp_dir("restart");
    let port = free_port();
    let mut nats = Nats::start(&bin, port, &dir);
    let (b, mut inbox) = start(config(&nats.url())).expect("bridge");
    inbox.connected_everywhere(true);
    let stats = b.stats();
    send(&b, interest("r.>", true));
    eventually("subscribed", || {
        stats.subscriptions.load(Ordering::Relaxed) == 1
    });
    send(&b, publish(1, "r.a", 0, 7, "r-7"));
    assert_eq!(
        inbox.published(1).1,
        PublishResult::Stored {
            stream_seq: 1,
            duplicate: false
        }
    );
    inbox.copy_of("r.a");

    nats.kill();
    inbox.connected_everywhere(false);
    assert!(!stats.connected.load(Ordering::Relaxed));
    send(&b, publish(2, "r.a", 1, 8, "r-8"));
    assert_eq!(inbox.published(2).1, PublishResult::Unavailable);
    assert_eq!(stats.unavailable.load(Ordering::Relaxed), 1);
    send(
        &b,
        ToBridge::Last {
            shard: 0,
            token: 3,
            topic: "r.a".into(),
            fence: false,
        },
    );
    inbox.take("last unavailable", |_, m| {
        matches!(m, FromBridge::LastUnavailable { token: 3, .. }).then_some(())
    });

    let nats = Nats::start(&bin, port, &dir); // same port, same store
    inbox.connected_everywhere(true);
    assert!(stats.reconnects.load(Ordering::Relaxed) >= 1);
    // File storage: the last value survived the restart.
    send(
        &b,
        ToBridge::Last {
            shard: 2,
            token: 4,
            topic: "r.a".into(),
            fence: false,
        },
    );
    let found = inbox.take("last after restart", |_, m| match m {
        FromBridge::Last { token: 4, found } => Some(found.clone()),
        _ => None,
    });
    let found = found.expect("r.a survived the restart");
    assert_eq!((found.stream_seq, found.rf_seq), (1, 7));
    // Publishing works again, and the subscription came back with it.
    send(&b, publish(5, "r.a", 1, 8, "r-8b"));
    assert_eq!(
        inbox.published(5).1,
        PublishResult::Stored {
            stream_seq: 2,
            duplicate: false
        }
    );
    let (_, copy) = inbox.copy_of("r.a");
    assert_eq!(
        (copy.stream_seq, copy.last_stream_seq, copy.rf_seq),
        (2, 1, 8)
    );
    b.shutdown();
    drop(nats);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tls_to_nats_with_a_ca_file() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let Some(bin) = need_nats("tls_to_nats_with_a_ca_file") else {
        return;
    };
    let dir = temp_dir("tls");
    // A throwaway CA and a leaf for 127.0.0.1 (an IP SAN) that it signs.
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().expect("CA key");
    let ca = ca_params.self_signed(&ca_key).expect("CA cert");
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("leaf params")
        .signed_by(&leaf_key, &issuer)
        .expect("leaf cert");
    let (ca_pem, cert_pem, key_pem) = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&ca_pem, ca.pem()).expect("write CA");
    std::fs::write(&cert_pem, leaf.pem()).expect("write cert");
    std::fs::write(&key_pem, leaf_key.serialize_pem()).expect("write key");
    let (tls, tlscert, tlskey) = (
        Path::new("--tls"),
        Path::new("--tlscert"),
        Path::new("--tlskey"),
    );
    let nats = Nats::start_with(
        &bin,
        free_port(),
        &dir,
        &[tls, tlscert, &cert_pem, tlskey, &key_pem],
    );

    let cfg = ClusterConfig {
        tls_ca: Some(ca_pem),
        ..config(&nats.url())
    };
    let (b, mut inbox) = start(cfg).expect("bridge over TLS");
    send(&b, interest("s", true));
    eventually("subscribed", || {
        b.stats().subscriptions.load(Ordering::Relaxed) == 1
    });
    send(&b, publish(1, "s", 0, 1, "s-1"));
    assert!(matches!(
        inbox.published(1).1,
        PublishResult::Stored { stream_seq: 1, .. }
    ));
    assert_eq!(inbox.copy_of("s").1.rf_seq, 1);
    b.shutdown();

    // Without the CA the server's certificate is not trusted: no start.
    let plain = config(&nats.url());
    let no_ca = ClusterConfig {
        tls_ca: None,
        ..plain
    };
    assert!(
        start(no_ca).is_err(),
        "a TLS-only server took a plain client"
    );
    drop(nats);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_wildcard_read_hands_each_shard_its_topics_at_their_newest() {
    let Some(bin) = need_nats("a_wildcard_read_hands_each_shard_its_topics_at_their_newest") else {
        return;
    };
    let dir = temp_dir("lastall");
    let nats = Nats::start(&bin, free_port(), &dir);
    let (b, mut inbox) = start(config(&nats.url())).expect("bridge");
    inbox.connected_everywhere(true);
    let topics = ["l.a", "l.b", "l.c", "l.dd", "m.a"];
    let mut token = 0;
    for t in topics {
        let mut last = 0;
        for rf in 1..=2 {
            token += 1;
            send(&b, publish(token, t, last, rf, &format!("la-{token}")));
            match inbox.published(token).1 {
                PublishResult::Stored { stream_seq, .. } => last = stream_seq,
                other => panic!("{other:?}"),
            }
        }
    }
    let shard = owner("l.a");
    send(&b, interest("l.*", true));
    send(
        &b,
        ToBridge::LastAll {
            shard: shard as u16,
            token: 77,
            pattern: "l.*".into(),
        },
    );
    inbox.take("LastAll done", |s, m| {
        matches!(m, FromBridge::LastAll { token: 77 } if s == shard).then_some(())
    });
    let mut got: Vec<(String, u64)> = inbox
        .seen
        .iter()
        .filter_map(|(s, m)| match m {
            FromBridge::Copy(c) => {
                assert_eq!(*s, shard, "only the asking shard's topics");
                Some((c.topic.to_string(), c.rf_seq))
            }
            _ => None,
        })
        .collect();
    got.sort();
    let mut want: Vec<(String, u64)> = ["l.a", "l.b", "l.c", "l.dd"]
        .into_iter()
        .filter(|t| owner(t) == shard)
        .map(|t| (t.to_string(), 2))
        .collect();
    want.sort();
    assert!(!want.is_empty());
    assert_eq!(got, want, "each of its topics once, at the newest");
    b.shutdown();
    drop(nats);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bundle_travels_with_its_lengths_to_copies_and_reads() {
    let Some(bin) = need_nats("a_bundle_travels_with_its_lengths_to_copies_and_reads") else {
        return;
    };
    let dir = temp_dir("bundle");
    let nats = Nats::start(&bin, free_port(), &dir);
    let (b, mut inbox) = start(config(&nats.url())).expect("bridge");
    inbox.connected_everywhere(true);
    send(&b, interest("bu.>", true));
    send(
        &b,
        ToBridge::Last {
            shard: 0,
            token: 1,
            topic: "bu.x".into(),
            fence: true,
        },
    );
    assert_eq!(inbox.last(1), (0, None));
    send(
        &b,
        ToBridge::Publish {
            shard: 1,
            token: 2,
            topic: "bu.x".into(),
            expected_last: 0,
            rf_seq: 1,
            msg_id: "bundle-1".into(),
            payload: Bytes::from_static(b"abcdefghij"),
            lens: vec![3, 3, 4],
        },
    );
    assert!(matches!(inbox.published(2).1, PublishResult::Stored { .. }));
    let (_, copy) = inbox.copy_of("bu.x");
    assert_eq!((copy.rf_seq, copy.lens.clone()), (1, vec![3, 3, 4]));
    assert_eq!(&copy.payload[..], b"abcdefghij");
    send(
        &b,
        ToBridge::Last {
            shard: 3,
            token: 3,
            topic: "bu.x".into(),
            fence: false,
        },
    );
    let found = inbox.last(3).1.expect("stored");
    assert_eq!((found.rf_seq, found.lens), (1, vec![3, 3, 4]));
    b.shutdown();
    drop(nats);
    let _ = std::fs::remove_dir_all(&dir);
}
