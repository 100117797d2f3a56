//! `--cluster`: join other ringfan nodes through NATS (issue #18,
//! docs/cluster.md). Without it, nothing here runs and the broker is the
//! single node it always was.

use ringfan::broker::Mail;
use ringfan::cluster::{Bridge, BridgeSender, ClusterConfig};
use ringfan::runtime::{inboxes_weighed, ExternalInbox};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Cluster flags.
#[derive(clap::Args, Debug)]
pub struct ClusterArgs {
    /// Join a cluster through NATS with JetStream: server URLs
    /// (nats://host:port or tls://host:port), comma-separated or repeated.
    /// Topics are then numbered by a JetStream stream, so every node gives
    /// one topic one seq, and a message published on any node reaches
    /// subscribers on all of them. Without it: a single node.
    #[arg(long, value_name = "URL", value_delimiter = ',')]
    pub cluster: Vec<String>,
    /// A NATS credentials file (.creds: JWT and nkey seed).
    #[arg(long, value_name = "FILE", requires = "cluster")]
    pub cluster_credentials: Option<PathBuf>,
    /// PEM CA certificates to verify the NATS servers with; set, TLS to
    /// NATS is required.
    #[arg(long, value_name = "FILE", requires = "cluster")]
    pub cluster_ca: Option<PathBuf>,
    /// Replicas of the stream: 3 on a 3-server NATS cluster (a server's
    /// loss then stalls publishes 5-8 s, measured, and loses nothing), 1
    /// on a single server.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub cluster_replicas: usize,
    /// Stream storage: file (survives a NATS restart with every last
    /// value) or memory (a restart of a single NATS server loses the
    /// stream: every topic resets).
    #[arg(long, value_enum, default_value_t = Storage::File)]
    pub cluster_storage: Storage,
    /// Messages the stream keeps per topic (its newest): a node cut off
    /// from NATS for a moment (its NATS server restarted, a network blip)
    /// reads what it missed back from them, so its subscribers see no gap
    /// when a topic had at most this many meanwhile (past it, one explicit
    /// gap). Snapshots use the newest only. Applies when the stream is
    /// created; an existing stream keeps its own.
    #[arg(long, value_name = "N", default_value_t = 16,
          value_parser = clap::value_parser!(i64).range(1..=4096))]
    pub cluster_history: i64,
    /// Subject prefix, so several ringfan clusters can share one NATS.
    #[arg(long, value_name = "PREFIX", default_value = "rf")]
    pub cluster_prefix: String,
    /// The JetStream stream's name.
    #[arg(long, value_name = "NAME", default_value = "RINGFAN")]
    pub cluster_stream: String,
    /// Seconds a publish may wait for the stream before it is answered
    /// `unavailable` (above the 7.7 s worst stream-leader failover
    /// measured).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub cluster_publish_timeout: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Storage {
    File,
    Memory,
}

/// A started bridge, and what the shards need of it.
pub struct Joined {
    pub bridge: Bridge,
    pub sender: BridgeSender,
    pub inboxes: Vec<ExternalInbox<Mail>>,
    /// This process's id in message ids (random: a restarted node must not
    /// reuse its last life's ids within the stream's duplicate window).
    pub node: u64,
    /// `--cluster-publish-timeout`: how long shards wait for the bridge.
    pub publish_timeout: Duration,
}

impl Joined {
    /// What each shard's cluster state is made with.
    pub fn link(&self) -> ringfan::server::cluster::Link {
        ringfan::server::cluster::Link {
            sender: self.sender.clone(),
            node: self.node,
            publish_timeout: self.publish_timeout,
            max_payload: self.bridge.max_payload(),
        }
    }
}

/// Connect to NATS and start the bridge, or say why not (None: no
/// `--cluster`).
pub fn join(args: &ClusterArgs, shards: usize) -> Result<Option<Joined>, String> {
    if args.cluster.is_empty() {
        return Ok(None);
    }
    let node = fastrand::u64(..);
    let cfg = ClusterConfig {
        node_name: format!("{node:016x}"),
        urls: args.cluster.clone(),
        credentials: args.cluster_credentials.clone(),
        tls_ca: args.cluster_ca.clone(),
        prefix: args.cluster_prefix.clone(),
        stream: args.cluster_stream.clone(),
        replicas: args.cluster_replicas.max(1),
        history: args.cluster_history,
        storage_file: args.cluster_storage == Storage::File,
        publish_timeout: Duration::from_secs(args.cluster_publish_timeout.max(1)),
        ..ClusterConfig::default()
    };
    // A copy waits here while its shard is busy: 65,536 a shard is ~10 MB
    // of 150-byte messages, seconds of a busy topic set, and at most
    // COPY_BYTES of them whatever their size (a bundle is up to 256 KiB);
    // past either, copies are shed (a gap the seq shows) rather than grow
    // without bound.
    let (senders, inboxes) = inboxes_weighed::<Mail>(
        shards,
        65_536,
        ringfan::server::cluster::COPY_BYTES,
        ringfan::server::cluster::copy_weight,
    )
    .map_err(|e| format!("--cluster: {e}"))?;
    let owner = Arc::new(move |topic: &str| ringfan::broker::engine::owner_of(topic, shards));
    let sink = ringfan::server::cluster::bridge_sink(senders);
    let bridge = Bridge::start(cfg, owner, shards, sink).map_err(|e| format!("--cluster: {e}"))?;
    let sender = bridge.sender();
    for note in bridge.notes() {
        println!("ringfan: note: {note}");
    }
    Ok(Some(Joined {
        bridge,
        sender,
        inboxes,
        node,
        publish_timeout: Duration::from_secs(args.cluster_publish_timeout.max(1)),
    }))
}
