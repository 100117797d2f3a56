//! The NATS bridge (issue #18, docs/cluster.md §7): ringfan nodes share
//! topics through a JetStream stream that numbers every topic.
//!
//! This module is the bridge only: one OS thread (`ringfan-nats`) running
//! a current-thread tokio runtime with `async-nats`, behind a synchronous
//! facade. Shards send [`ToBridge`] through a bounded, non-blocking
//! [`BridgeSender`]; answers and republished copies come back through the
//! `sink` callback as [`FromBridge`]. It knows no WebSocket, frame or
//! shard internals: the broker wiring decides what a shard does with a
//! copy or an answer.
//!
//! Why a thread and not the ring: async-nats needs tokio, and a
//! current-thread runtime on one extra thread keeps the shards' io_uring
//! loops free of it (docs/cluster.md §7).

mod catchup;
mod fill;
mod reader;
mod subscriptions;
mod task;
mod view;
mod wire;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

pub use view::{LinkView, StreamView};
pub use wire::{copy_subject, parse_conflict, publish_subject, RF_SEQ};

/// Commands a burst may queue before [`BridgeSender::send`] reports the
/// bridge full: 16,384 is 16 shards × 1,024 commands each, far above one
/// publish in flight per topic plus interest changes at a reconnect storm
/// (issue #11 measured ~1,000 subscribes per shard per second).
pub const COMMAND_CAPACITY: usize = 16_384;

/// How to reach NATS and which stream to use (docs/cluster.md §2, §3).
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// `nats://host:port` (or `tls://…`), one or more servers of one cluster.
    pub urls: Vec<String>,
    /// A NATS `.creds` file (JWT + nkey seed).
    pub credentials: Option<PathBuf>,
    /// A PEM CA to verify the servers with; set, TLS is required.
    pub tls_ca: Option<PathBuf>,
    /// This node in heartbeats and the admin view (the process's random
    /// id).
    pub node_name: String,
    /// Subject prefix, so several ringfan clusters can share one NATS: "rf".
    pub prefix: String,
    /// The JetStream stream: "RINGFAN".
    pub stream: String,
    /// Stream replicas: 3 on a 3-server NATS, 1 on a single server.
    pub replicas: usize,
    /// Messages kept per topic (`max_msgs_per_subject`): the newest is
    /// every snapshot's; the others let a node that was cut off catch up
    /// without a gap (docs/cluster.md §4).
    pub history: i64,
    /// File storage (true): a memory stream vanished, config included, when
    /// a single 2.9.10 server restarted (measured, docs/cluster.md §2).
    pub storage_file: bool,
    /// A publish not acked within this answers `Unavailable`: 10 s, above
    /// the 7.7 s worst stream-leader failover measured.
    pub publish_timeout: Duration,
    /// No ack within this: resend the same message (same id): 250 ms.
    pub retry_every: Duration,
    /// NATS PING period: 1 s notices a silent partition in ~3 s (2 pings
    /// outstanding), against ~3 min with async-nats' 60 s default.
    pub ping_interval: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            urls: vec!["nats://127.0.0.1:4222".into()],
            credentials: None,
            tls_ca: None,
            node_name: String::new(),
            prefix: "rf".into(),
            stream: "RINGFAN".into(),
            replicas: 1,
            history: 16,
            storage_file: true,
            publish_timeout: Duration::from_secs(10),
            retry_every: Duration::from_millis(250),
            ping_interval: Duration::from_secs(1),
        }
    }
}

/// What a shard asks of the bridge.
#[derive(Debug)]
pub enum ToBridge {
    /// Publish into the stream, guarded by the topic's last stream seq.
    /// One in flight per topic is the caller's rule (§3).
    Publish {
        shard: u16,
        token: u64,
        topic: Box<str>,
        /// Stream seq of the topic's last message; 0 = the topic is new.
        expected_last: u64,
        rf_seq: u64,
        /// `Nats-Msg-Id`: unique per publish, kept across retries.
        msg_id: Box<str>,
        payload: bytes::Bytes,
        /// A bundle's `msg` lengths (header `Rf-Lens`); empty for one.
        lens: Vec<u32>,
    },
    /// A shard's first holder of `pattern` (add) or its last one gone.
    /// Counted across senders: SUB on 0 → 1, UNSUB on 1 → 0.
    Interest { pattern: Box<str>, add: bool },
    /// Every topic of `pattern` at its last stored message (a consumer
    /// with `last_per_subject`), fenced as a snapshot's `Last`: those that
    /// `shard` owns are handed to it as copies (never shed), then
    /// [`FromBridge::LastAll`]; [`FromBridge::LastUnavailable`] if the
    /// read failed part-way.
    LastAll {
        shard: u16,
        token: u64,
        pattern: Box<str>,
    },
    /// The stored messages of `topic` after stream sequence `after` and
    /// before `until` (a copy showed `shard` missed them), oldest first,
    /// read from any replica (`fill.rs`): [`FromBridge::Filled`].
    Fill {
        shard: u16,
        token: u64,
        topic: Box<str>,
        after: u64,
        until: u64,
    },
    /// The topic's last stored message, read from the stream leader
    /// (`STREAM.MSG.GET` `last_by_subj`). `fence`: sent only once every
    /// subscription asked for before it is in force (a snapshot's read:
    /// whatever is stored after it is then republished to this node).
    Last {
        shard: u16,
        token: u64,
        topic: Box<str>,
        fence: bool,
    },
}

/// The outcome of one [`ToBridge::Publish`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PublishResult {
    /// Stored (or already stored: a retry inside the dedupe window).
    Stored { stream_seq: u64, duplicate: bool },
    /// Another publish of the topic came first; `last` is its stream seq.
    Conflict { last: u64 },
    /// NATS not connected, or no ack within `publish_timeout`: "not
    /// confirmed; it may still be published".
    Unavailable,
    /// Refused for another reason (bad subject, payload too large, …).
    Error(Box<str>),
}

/// A stored message of a topic, as republished (or read back by `Last`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub topic: Box<str>,
    pub stream_seq: u64,
    /// The topic's previous stream seq (`Nats-Last-Sequence`; 0 = first).
    /// A `Last` read does not carry it: 0 there. Catch-up's first message
    /// of a topic: [`UNKNOWN_PREVIOUS`] (its reader sees only what it
    /// read), its later ones the one read before.
    pub last_stream_seq: u64,
    pub rf_seq: u64,
    pub payload: bytes::Bytes,
    /// A bundle's `msg` lengths (`Rf-Lens`); empty for one `msg`.
    pub lens: Vec<u32>,
}

/// `Stored::last_stream_seq` of a message whose topic's previous stream
/// sequence is not known (catch-up's first of a topic): above anything
/// delivered, so a shard following the topic fills from what it
/// delivered (`broker/cluster_fill.rs`), and a hole before it is seen.
pub const UNKNOWN_PREVIOUS: u64 = u64::MAX;

/// What the bridge hands a shard.
#[derive(Debug)]
pub enum FromBridge {
    Published {
        token: u64,
        result: PublishResult,
    },
    /// A republished copy, to the topic's owner shard. Data: shed when the
    /// shard's inbox is full (counted; the seq chain shows the gap).
    Copy(Stored),
    /// The answer to [`ToBridge::Last`]: `None` = no such topic stored.
    Last {
        token: u64,
        found: Option<Stored>,
    },
    /// [`ToBridge::Last`] could not be answered (not connected, timeout,
    /// a stored message without `Rf-Seq`): unknown, not "absent".
    LastUnavailable {
        token: u64,
        reason: Box<str>,
    },
    /// To every shard on each change of the NATS connection.
    Connected(bool),
    /// To every shard, after a reconnect found the stream made anew (its
    /// creation time changed): every topic's numbering starts again, and
    /// what a node delivered before says nothing about the new stream.
    StreamReset,
    /// A [`ToBridge::LastAll`] is done: the shard's topics of it came
    /// before this, as copies.
    LastAll {
        token: u64,
    },
    /// To every shard: a held pattern's NATS subscription was refused or
    /// ended (and is asked for again): copies may have been missed.
    Lapsed,
    /// The answer to [`ToBridge::Fill`]; `None`: not read in time.
    Filled {
        token: u64,
        found: Option<Vec<Stored>>,
    },
}

/// Maps a topic to its owner shard on this node.
pub type Owner = Arc<dyn Fn(&str) -> usize + Send + Sync>;
/// Delivers to a shard's inbox; `Err` hands the message back when full.
pub type Sink = Arc<dyn Fn(usize, FromBridge) -> Result<(), FromBridge> + Send + Sync>;

/// Counters for `/metrics` (docs/cluster.md §8). Relaxed atomics: each is
/// read alone.
#[derive(Debug, Default)]
pub struct BridgeStats {
    pub connected: AtomicBool,
    /// Connections after the first.
    pub reconnects: AtomicU64,
    /// Publishes sent (first attempts).
    pub messages_out: AtomicU64,
    /// Copies received and handed on (or shed).
    pub messages_in: AtomicU64,
    /// Resends of a publish after `retry_every` without an ack.
    pub publish_retries: AtomicU64,
    /// Publishes answered `Unavailable`.
    pub unavailable: AtomicU64,
    /// Publishes answered `Conflict`.
    pub conflicts: AtomicU64,
    /// NATS subscriptions held (distinct patterns).
    pub subscriptions: AtomicU64,
    /// Last measured NATS round trip (a loopback message every
    /// `ping_interval`), nanoseconds.
    pub rtt_ns_last: AtomicU64,
    /// Copies dropped because the owner shard's inbox was full.
    pub copies_shed: AtomicU64,
    /// Copies dropped for missing or bad headers or subject.
    pub copies_bad: AtomicU64,
    /// Answers (Published/Last/Connected) a shard did not take within
    /// `publish_timeout` of retries.
    pub answers_dropped: AtomicU64,
    /// `Interest` removes of a pattern not held, and subscribe failures.
    pub interest_errors: AtomicU64,
    /// Slow-consumer events from async-nats (messages dropped client-side).
    pub slow_consumers: AtomicU64,
    /// Catch-ups run after a reconnect (one per reconnect).
    pub catchups: AtomicU64,
    /// Stored messages handed to shards by catch-up (missed while away).
    pub caught_up: AtomicU64,
    /// Catch-ups that failed part-way (their patterns' topics stay as
    /// they were until their next message).
    pub catchup_errors: AtomicU64,
    /// Reconnects that found the stream made anew.
    pub stream_resets: AtomicU64,
    /// Leader elections of the stream seen (its advisories).
    pub leader_changes: AtomicU64,
    /// What `/admin/cluster` shows, kept fresh by the bridge.
    pub view: std::sync::Mutex<LinkView>,
}

impl BridgeStats {
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Why [`Bridge::start`] failed.
#[derive(Debug)]
pub enum ClusterError {
    /// Bad URL, unreadable credentials or CA.
    Config(String),
    /// No connection within the start-up bound.
    Connect(String),
    /// The stream could not be created, or exists with another shape.
    Stream(String),
    /// The thread or runtime could not start.
    Thread(String),
}

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(e) => write!(f, "cluster config: {e}"),
            Self::Connect(e) => write!(f, "cannot connect to NATS: {e}"),
            Self::Stream(e) => write!(f, "JetStream stream: {e}"),
            Self::Thread(e) => write!(f, "bridge thread: {e}"),
        }
    }
}

impl std::error::Error for ClusterError {}

/// The shards' handle: cheap to clone, never blocks.
#[derive(Clone, Debug)]
pub struct BridgeSender {
    tx: mpsc::Sender<ToBridge>,
    interest: mpsc::UnboundedSender<ToBridge>,
}

impl BridgeSender {
    /// Queues a command; `Err` gives it back when the bridge is full
    /// ([`COMMAND_CAPACITY`]) or gone. `Interest` is never refused for
    /// want of room: it has a queue of its own, which the bridge empties
    /// before it takes each other command. A snapshot's fenced read sent
    /// by the topic's owner shard must find the subscription it is for
    /// already asked for (the fence counts subscriptions asked before the
    /// read), and that subscription is another shard's `Interest`, sent
    /// before it mailed the owner: a refused one, resent at its next
    /// tick, came after the read. It holds a shard's 0 → 1 and 1 → 0
    /// changes of a pattern not yet taken: as many as the bridge is behind
    /// (the refused ones queued on the shard before were no fewer).
    pub fn send(&self, m: ToBridge) -> Result<(), ToBridge> {
        if matches!(m, ToBridge::Interest { .. }) {
            return self.interest.send(m).map_err(|e| e.0);
        }
        self.tx.try_send(m).map_err(|e| e.into_inner())
    }
}

/// The running bridge: its thread, command queue and counters.
pub struct Bridge {
    tx: mpsc::Sender<ToBridge>,
    interest: mpsc::UnboundedSender<ToBridge>,
    stats: Arc<BridgeStats>,
    notes: Vec<String>,
    max_payload: usize,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Bridge {
    /// Connects (bounded by `publish_timeout`), ensures the stream (created
    /// or checked; idempotent) and starts the `ringfan-nats` thread.
    pub fn start(
        cfg: ClusterConfig,
        owner: Owner,
        shards: usize,
        sink: Sink,
    ) -> Result<Bridge, ClusterError> {
        if cfg.urls.is_empty() {
            return Err(ClusterError::Config("no NATS url".into()));
        }
        let shards = shards.max(1);
        let stats = Arc::new(BridgeStats::default());
        let (tx, rx) = mpsc::channel(COMMAND_CAPACITY);
        let (interest, interest_rx) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        // The thread reports readiness itself; this bound only catches a
        // thread that never reports: the connect and stream steps are each
        // bounded by publish_timeout, plus 5 s of slack.
        let bound = cfg.publish_timeout * 2 + Duration::from_secs(5);
        let ctx = task::Shared {
            cfg,
            owner,
            shards,
            sink,
            stats: stats.clone(),
            heard: AtomicU64::new(0),
            catch_from: AtomicU64::new(1),
            link_up: std::sync::atomic::AtomicBool::new(true),
            fill_slots: tokio::sync::Semaphore::new(fill::FILLS_AT_ONCE),
            held_back: std::sync::Mutex::default(),
        };
        let thread = std::thread::Builder::new()
            .name("ringfan-nats".into())
            .spawn(move || task::thread_main(ctx, (rx, interest_rx), stop_rx, ready_tx))
            .map_err(|e| ClusterError::Thread(e.to_string()))?;
        let ready = ready_rx
            .recv_timeout(bound)
            .unwrap_or_else(|e| Err(ClusterError::Thread(format!("no start-up report: {e}"))));
        match ready {
            Ok((notes, max_payload)) => Ok(Bridge {
                max_payload,
                tx,
                interest,
                stats,
                notes,
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            Err(e) => {
                drop(stop_tx);
                // The thread exits on its own after a failed start; a thread
                // that never reported is left detached rather than joined
                // forever.
                if thread.is_finished() {
                    let _ = thread.join();
                }
                Err(e)
            }
        }
    }

    pub fn sender(&self) -> BridgeSender {
        BridgeSender {
            tx: self.tx.clone(),
            interest: self.interest.clone(),
        }
    }

    /// The largest message the NATS server takes (its `max_payload`, 1 MiB
    /// by default), headers included.
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// What start-up found worth telling the operator (one line each).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Where this node's clients reach it, told to the other nodes in
    /// its heartbeats (their admin view).
    pub fn advertise(&self, addr: String) {
        if let Ok(mut v) = self.stats.view.lock() {
            v.advertise = addr;
        }
    }

    pub fn stats(&self) -> Arc<BridgeStats> {
        self.stats.clone()
    }

    /// Stops the thread: subscriptions dropped, the connection flushed
    /// (up to 1 s) and closed. Publishes still in flight get no answer.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interest_is_taken_when_the_command_queue_is_full() {
        let (tx, mut rx) = mpsc::channel(1);
        let (interest, mut irx) = mpsc::unbounded_channel();
        let s = BridgeSender { tx, interest };
        let last = |token| ToBridge::Last {
            shard: 0,
            token,
            topic: "t".into(),
            fence: true,
        };
        assert!(s.send(last(1)).is_ok());
        assert!(s.send(last(2)).is_err(), "full");
        for i in 0..100 {
            let add = ToBridge::Interest {
                pattern: format!("p.{i}").into(),
                add: true,
            };
            assert!(s.send(add).is_ok(), "interest {i} refused");
        }
        assert!(matches!(rx.try_recv(), Ok(ToBridge::Last { token: 1, .. })));
        let got = std::iter::from_fn(|| irx.try_recv().ok()).count();
        assert_eq!(got, 100);
    }
}
