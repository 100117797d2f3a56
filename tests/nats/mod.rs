//! What the NATS bridge tests share (tests/cluster_bridge.rs,
//! tests/cluster_catchup.rs): a real `nats-server -js` on a loopback port
//! with a temporary store, and a bridge whose shards are a channel.
//!
//! Without nats-server the tests print a loud skip note and pass, unless
//! NATS_SERVER_REQUIRED=1 (tests/run.sh sets it, after installing
//! Debian's nats-server). Every wait is bounded by a generous deadline;
//! nothing asserts a duration.
#![allow(dead_code)]

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

pub const SHARDS: usize = 4;
/// Far above anything measured (a copy arrives in ~0.2 ms, a reconnect in
/// ~14 ms after the server is back, docs/cluster.md): only a hang fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

// ---- nats-server helpers ----

pub fn nats_server_bin() -> Option<PathBuf> {
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
pub fn need_nats(test: &str) -> Option<PathBuf> {
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

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("ringfan-nats-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the store dir");
    dir
}

/// One `nats-server -js`; killed on drop.
pub struct Nats {
    pub child: Child,
    pub port: u16,
}

impl Nats {
    pub fn start(bin: &Path, port: u16, dir: &Path) -> Nats {
        Self::start_with(bin, port, dir, &[])
    }

    pub fn start_with(bin: &Path, port: u16, dir: &Path, extra: &[&Path]) -> Nats {
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

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---- the bridge under test ----

pub fn owner(topic: &str) -> usize {
    topic.bytes().map(usize::from).sum::<usize>() % SHARDS
}

pub fn config(url: &str) -> ClusterConfig {
    ClusterConfig {
        urls: vec![url.to_string()],
        ..ClusterConfig::default()
    }
}

/// What the sink received, in order, per shard.
pub struct Inbox {
    pub rx: mpsc::Receiver<(usize, FromBridge)>,
    pub seen: Vec<(usize, FromBridge)>,
}

impl Inbox {
    /// The first message (seen or arriving) `pick` accepts, removed.
    pub fn take<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(usize, &FromBridge) -> Option<T>,
    ) -> T {
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

    pub fn published(&mut self, token: u64) -> (usize, PublishResult) {
        self.take("publish answer", |s, m| match m {
            FromBridge::Published { token: t, result } if *t == token => Some((s, result.clone())),
            _ => None,
        })
    }

    pub fn last(&mut self, token: u64) -> (usize, Option<Stored>) {
        self.take("last answer", |s, m| match m {
            FromBridge::Last { token: t, found } if *t == token => Some((s, found.clone())),
            _ => None,
        })
    }

    pub fn copy_of(&mut self, topic: &str) -> (usize, Stored) {
        self.take(&format!("copy of {topic}"), |s, m| match m {
            FromBridge::Copy(c) if &*c.topic == topic => Some((s, c.clone())),
            _ => None,
        })
    }

    pub fn copies_seen(&self, topic: &str) -> usize {
        let is = |m: &FromBridge| matches!(m, FromBridge::Copy(c) if &*c.topic == topic);
        self.seen.iter().filter(|(_, m)| is(m)).count()
    }

    /// `Connected(up)` on every shard.
    pub fn connected_everywhere(&mut self, up: bool) {
        for shard in 0..SHARDS {
            self.take(&format!("Connected({up}) on shard {shard}"), |s, m| {
                matches!(m, FromBridge::Connected(u) if *u == up && s == shard).then_some(())
            });
        }
    }
}

pub fn start(cfg: ClusterConfig) -> Result<(Bridge, Inbox), ClusterError> {
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

pub fn publish(token: u64, topic: &str, expected_last: u64, rf_seq: u64, id: &str) -> ToBridge {
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

pub fn interest(pattern: &str, add: bool) -> ToBridge {
    ToBridge::Interest {
        pattern: pattern.into(),
        add,
    }
}

pub fn send(b: &Bridge, m: ToBridge) {
    b.sender().send(m).expect("the bridge takes a command");
}

/// Waits (bounded) until `f` holds: for counters the bridge updates on its
/// own thread.
pub fn eventually(what: &str, f: impl Fn() -> bool) {
    let end = Instant::now() + DEADLINE;
    while !f() {
        assert!(Instant::now() < end, "not within {DEADLINE:?}: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
