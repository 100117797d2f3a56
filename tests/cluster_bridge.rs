//! The NATS bridge (src/cluster) against a real `nats-server -js` on a
//! loopback port with a temporary store (issue #18, docs/cluster.md §9).
//!
//! Without nats-server these tests print a loud skip note and pass, unless
//! NATS_SERVER_REQUIRED=1 (tests/run.sh sets it, after installing
//! Debian's nats-server). Every wait is bounded by a generous deadline;
//! nothing asserts a duration.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringfan::cluster::{
    Bridge, ClusterConfig, ClusterError, FromBridge, PublishResult, Stored, ToBridge,
};

const SHARDS: usize = 4;
/// Far above anything measured (a copy arrives in ~0.2 ms, a reconnect in
/// ~14 ms after the server is back, docs/cluster.md): only a hang fails.
const DEADLINE: Duration = Duration::from_secs(30);

// ---- nats-server helpers ----

fn nats_server_bin() -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("nats-server"))
            .find(|p| p.is_file())
    });
    from_path.or_else(|| {
        // Debian installs it in /usr/sbin, which a non-root PATH lacks.
        ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
    })
}

/// The server binary, or `None` after a loud note (the test then returns).
fn need_nats(test: &str) -> Option<PathBuf> {
    let bin = nats_server_bin();
    if bin.is_none() {
        if std::env::var("NATS_SERVER_REQUIRED").as_deref() == Ok("1") {
            panic!(
                "{test}: nats-server not found and NATS_SERVER_REQUIRED=1 \
                 (Debian: apt-get install nats-server)"
            );
        }
        eprintln!(
            "\n!!!!! SKIPPED {test}: nats-server not found (apt-get install nats-server; \
             NATS_SERVER_REQUIRED=1 makes this a failure) !!!!!\n"
        );
    }
    bin
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("ringfan-nats-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the store dir");
    dir
}

/// One `nats-server -js`; killed on drop.
struct Nats {
    child: Child,
    port: u16,
}

impl Nats {
    fn start(bin: &Path, port: u16, dir: &Path) -> Nats {
        Self::start_with(bin, port, dir, &[])
    }

    fn start_with(bin: &Path, port: u16, dir: &Path, extra: &[&Path]) -> Nats {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("nats.log"))
            .expect("open the server log");
        let child = Command::new(bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.join("store"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn nats-server");
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < DEADLINE,
                "nats-server did not listen on {port} (log: {})",
                dir.join("nats.log").display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Nats { child, port }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---- the bridge under test ----

fn owner(topic: &str) -> usize {
    topic.bytes().map(usize::from).sum::<usize>() % SHARDS
}

fn config(url: &str) -> ClusterConfig {
    ClusterConfig {
        urls: vec![url.to_string()],
        ..ClusterConfig::default()
    }
}

/// What the sink received, in order, per shard.
struct Inbox {
    rx: mpsc::Receiver<(usize, FromBridge)>,
    seen: Vec<(usize, FromBridge)>,
}

impl Inbox {
    /// The first message (seen or arriving) `pick` accepts, removed.
    fn take<T>(&mut self, what: &str, mut pick: impl FnMut(usize, &FromBridge) -> Option<T>) -> T {
        if let Some(i) = self.seen.iter().position(|(s, m)| pick(*s, m).is_some()) {
            let (s, m) = self.seen.remove(i);
            return pick(s, &m).expect("picked twice");
        }
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok((s, m)) => match pick(s, &m) {
                    Some(t) => return t,
                    None => self.seen.push((s, m)),
                },
                Err(_) => panic!("no {what} within {DEADLINE:?}; got {:?}", self.seen),
            }
        }
    }

    fn published(&mut self, token: u64) -> (usize, PublishResult) {
        self.take("publish answer", |s, m| match m {
            FromBridge::Published { token: t, result } if *t == token => Some((s, result.clone())),
            _ => None,
        })
    }

    fn last(&mut self, token: u64) -> (usize, Option<Stored>) {
        self.take("last answer", |s, m| match m {
            FromBridge::Last { token: t, found } if *t == token => Some((s, found.clone())),
            _ => None,
        })
    }

    fn copy_of(&mut self, topic: &str) -> (usize, Stored) {
        self.take(&format!("copy of {topic}"), |s, m| match m {
            FromBridge::Copy(c) if &*c.topic == topic => Some((s, c.clone())),
            _ => None,
        })
    }

    fn copies_seen(&self, topic: &str) -> usize {
        let is = |m: &FromBridge| matches!(m, FromBridge::Copy(c) if &*c.topic == topic);
        self.seen.iter().filter(|(_, m)| is(m)).count()
    }

    /// `Connected(up)` on every shard.
    fn connected_everywhere(&mut self, up: bool) {
        for shard in 0..SHARDS {
            self.take(&format!("Connected({up}) on shard {shard}"), |s, m| {
                matches!(m, FromBridge::Connected(u) if *u == up && s == shard).then_some(())
            });
        }
    }
}

fn start(cfg: ClusterConfig) -> Result<(Bridge, Inbox), ClusterError> {
    let (tx, rx) = mpsc::channel();
    let sink = Arc::new(move |shard: usize, m: FromBridge| tx.send((shard, m)).map_err(|e| e.0 .1));
    let bridge = Bridge::start(cfg, Arc::new(owner), SHARDS, sink)?;
    Ok((
        bridge,
        Inbox {
            rx,
            seen: Vec::new(),
        },
    ))
}

fn publish(token: u64, topic: &str, expected_last: u64, rf_seq: u64, id: &str) -> ToBridge {
    ToBridge::Publish {
        shard: (token % SHARDS as u64) as u16,
        token,
        topic: topic.into(),
        expected_last,
        rf_seq,
        msg_id: id.into(),
        payload: Bytes::from(format!("{{\"seq\":{rf_seq}}}")),
        lens: Vec::new(),
    }
}

fn interest(pattern: &str, add: bool) -> ToBridge {
    ToBridge::Interest {
        pattern: pattern.into(),
        add,
    }
}

fn send(b: &Bridge, m: ToBridge) {
    b.sender().send(m).expect("the bridge takes a command");
}

/// Waits (bounded) until `f` holds: for counters the bridge updates on its
/// own thread.
fn eventually(what: &str, f: impl Fn() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !f() {
        assert!(Instant::now() < end, "not within {DEADLINE:?}: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

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

/// A TCP relay in front of nats-server that can cut this node's link
/// alone (a network blip between one node and NATS) while other clients
/// keep theirs: every relayed connection is shut down, new ones are
/// refused until `resume`.
struct Relay {
    port: u16,
    cut: Arc<std::sync::atomic::AtomicBool>,
    live: Arc<std::sync::Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start(target: u16) -> Relay {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
        let port = l.local_addr().expect("relay addr").port();
        let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let live: Arc<std::sync::Mutex<Vec<TcpStream>>> = Arc::default();
        let (c, lv) = (cut.clone(), live.clone());
        std::thread::spawn(move || {
            for down in l.incoming().flatten() {
                if c.load(Ordering::SeqCst) {
                    continue; // dropped: refused while cut
                }
                let Ok(up) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let pipe = |mut from: TcpStream, mut to: TcpStream| {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                };
                let (Ok(d2), Ok(u2), Ok(d3), Ok(u3)) = (
                    down.try_clone(),
                    up.try_clone(),
                    down.try_clone(),
                    up.try_clone(),
                ) else {
                    continue;
                };
                lv.lock().expect("relay list").extend([d3, u3]);
                pipe(down, u2);
                pipe(up, d2);
            }
        });
        Relay { port, cut, live }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for s in self.live.lock().expect("relay list").drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    fn resume(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

#[test]
fn a_node_cut_off_catches_up_on_what_was_stored_meanwhile() {
    let Some(bin) = need_nats("a_node_cut_off_catches_up_on_what_was_stored_meanwhile") else {
        return;
    };
    let dir = temp_dir("catchup");
    let nats = Nats::start(&bin, free_port(), &dir);
    let relay = Relay::start(nats.port);
    let (a, mut inbox) = start(config(&relay.url())).expect("bridge behind the relay");
    let (b, mut b_inbox) = start(config(&nats.url())).expect("publishing bridge");
    inbox.connected_everywhere(true);
    let stats = a.stats();
    send(&a, interest("c.>", true));
    // A fenced read answers only after node A's SUB reached the server
    // (it goes first on the same connection): then B's publish reaches A.
    send(
        &a,
        ToBridge::Last {
            shard: 0,
            token: 9,
            topic: "c.x".into(),
            fence: true,
        },
    );
    assert_eq!(inbox.last(9), (0, None));
    send(&b, publish(1, "c.x", 0, 1, "c-1"));
    let stored = |r: PublishResult| match r {
        PublishResult::Stored { stream_seq, .. } => stream_seq,
        other => panic!("not stored: {other:?}"),
    };
    let s1 = stored(b_inbox.published(1).1);
    assert_eq!(inbox.copy_of("c.x").1.stream_seq, s1);

    relay.cut();
    inbox.connected_everywhere(false);
    // Stored while node A is away: two of c.x, one of c.y, one A has no
    // interest in.
    let s2 = {
        send(&b, publish(2, "c.x", s1, 2, "c-2"));
        stored(b_inbox.published(2).1)
    };
    send(&b, publish(3, "c.x", s2, 3, "c-3"));
    let s3 = stored(b_inbox.published(3).1);
    send(&b, publish(4, "c.y", 0, 1, "c-4"));
    let s4 = stored(b_inbox.published(4).1);
    send(&b, publish(5, "d.z", 0, 1, "c-5"));
    stored(b_inbox.published(5).1);

    relay.resume();
    inbox.connected_everywhere(true);
    // Every message missed, in order (the stream keeps 16 per topic by
    // default): no gap at all.
    let (shard, x) = inbox.copy_of("c.x");
    assert_eq!((shard, x.stream_seq, x.rf_seq), (owner("c.x"), s2, 2));
    let (shard, x) = inbox.copy_of("c.x");
    assert_eq!((shard, x.stream_seq, x.rf_seq), (owner("c.x"), s3, 3));
    let (shard, y) = inbox.copy_of("c.y");
    assert_eq!((shard, y.stream_seq, y.rf_seq), (owner("c.y"), s4, 1));
    eventually("catch-up counted", || {
        stats.catchups.load(Ordering::Relaxed) == 1 && stats.caught_up.load(Ordering::Relaxed) == 3
    });
    std::thread::sleep(Duration::from_millis(300));
    while let Ok(m) = inbox.rx.try_recv() {
        inbox.seen.push(m);
    }
    assert_eq!(inbox.copies_seen("d.z"), 0, "no interest in d.z");
    assert_eq!(inbox.copies_seen("c.x"), 0, "each once");
    assert_eq!(stats.catchup_errors.load(Ordering::Relaxed), 0);
    a.shutdown();
    b.shutdown();
    drop(nats);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_node_holding_many_patterns_catches_up_through_one_filtered_read() {
    let Some(bin) = need_nats("a_node_holding_many_patterns_catches_up_through_one_filtered_read")
    else {
        return;
    };
    let dir = temp_dir("catchup-many");
    let nats = Nats::start(&bin, free_port(), &dir);
    let relay = Relay::start(nats.port);
    let (a, mut inbox) = start(config(&relay.url())).expect("bridge behind the relay");
    let (b, mut b_inbox) = start(config(&nats.url())).expect("publishing bridge");
    inbox.connected_everywhere(true);
    let stats = a.stats();
    // More patterns than one consumer each is worth (64).
    for i in 0..70 {
        send(&a, interest(&format!("m.{i}"), true));
    }
    relay.cut();
    inbox.connected_everywhere(false);
    for (token, topic) in [(1, "m.5"), (2, "m.69"), (3, "m.x"), (4, "n.5")] {
        send(&b, publish(token, topic, 0, 1, &format!("many-{token}")));
        assert!(matches!(
            b_inbox.published(token).1,
            PublishResult::Stored { .. }
        ));
    }
    relay.resume();
    inbox.connected_everywhere(true);
    inbox.copy_of("m.5");
    inbox.copy_of("m.69");
    eventually("catch-up counted", || {
        stats.catchups.load(Ordering::Relaxed) == 1 && stats.caught_up.load(Ordering::Relaxed) == 2
    });
    std::thread::sleep(Duration::from_millis(300));
    while let Ok(m) = inbox.rx.try_recv() {
        inbox.seen.push(m);
    }
    assert_eq!(inbox.copies_seen("m.x") + inbox.copies_seen("n.5"), 0);
    assert_eq!(stats.catchup_errors.load(Ordering::Relaxed), 0);
    a.shutdown();
    b.shutdown();
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
