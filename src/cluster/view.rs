//! What `/admin/cluster` shows of the link (docs/cluster.md §8): the NATS
//! server this node talks to, the stream's leader and replicas, the
//! ringfan nodes heard on `{prefix}.c.hb`, and the stream's leader
//! elections ("topic ownership changes": with the stream as the only
//! sequencer, a leader change is the one ownership change there is).
//!
//! The bridge keeps it fresh on its own (a heartbeat out and a stream-info
//! read every `ping_interval`, two subscriptions), so the admin handler
//! on a shard only copies it under a short lock: no NATS round trip on a
//! shard's thread.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::Context;
use async_nats::Client;
use futures_util::StreamExt;

use super::task::Shared;

/// A node not heard for this long is left out (three heartbeats).
const NODE_GONE: Duration = Duration::from_secs(3);

/// The link as last seen; `BridgeStats::view`.
#[derive(Debug, Clone, Default)]
pub struct LinkView {
    /// Where this node's clients reach it (set once it listens).
    pub advertise: String,
    /// The NATS server connected to (its name and version), and its
    /// cluster's name.
    pub server: String,
    pub server_version: String,
    pub nats_cluster: Option<String>,
    /// The stream, from its last info read (`None` until one answered).
    pub stream: Option<StreamView>,
    /// Why the last stream-info read failed, if it did.
    pub stream_error: Option<String>,
    /// ringfan nodes heard on `{prefix}.c.hb`, and when.
    pub nodes: HashMap<String, (String, Instant)>,
    /// The leader named by the last leader election seen.
    pub last_leader_elected: Option<String>,
}

/// The stream's leader, replicas and size.
#[derive(Debug, Clone, Default)]
pub struct StreamView {
    pub name: String,
    pub leader: Option<String>,
    /// (server name, current, offline, operations behind, last seen ago)
    pub replicas: Vec<(String, bool, bool, Option<u64>, Duration)>,
    pub messages: u64,
    pub bytes: u64,
    pub last_seq: u64,
    /// Messages kept per topic (`max_msgs_per_subject`).
    pub history: i64,
    pub read_at: Option<Instant>,
}

impl LinkView {
    /// The nodes heard within [`NODE_GONE`], with how long ago.
    pub fn live_nodes(&self) -> Vec<(String, String, Duration)> {
        let mut out: Vec<_> = self
            .nodes
            .iter()
            .filter(|(_, (_, at))| at.elapsed() < NODE_GONE)
            .map(|(n, (addr, at))| (n.clone(), addr.clone(), at.elapsed()))
            .collect();
        out.sort();
        out
    }
}

/// Keeps `sh.stats.view` fresh until the bridge's runtime ends.
pub(super) async fn watch(sh: Arc<Shared>, client: Client, js: Context) {
    let prefix = &sh.cfg.prefix;
    let hb_subject = format!("{prefix}.c.hb");
    let advisory = format!("$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.{}", sh.cfg.stream);
    if let Ok(sub) = client.subscribe(hb_subject.clone()).await {
        tokio::spawn(heard(sh.clone(), sub));
    }
    if let Ok(sub) = client.subscribe(advisory).await {
        tokio::spawn(elections(sh.clone(), sub));
    }
    let mut tick = tokio::time::interval(sh.cfg.ping_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        if client.connection_state() != async_nats::connection::State::Connected {
            continue;
        }
        let info = client.server_info();
        let advertise = sh
            .stats
            .view
            .lock()
            .map(|v| v.advertise.clone())
            .unwrap_or_default();
        let beat =
            serde_json::json!({"node": sh.cfg.node_name, "advertise": advertise}).to_string();
        let _ = tokio::time::timeout(
            sh.cfg.retry_every,
            client.publish(hb_subject.clone(), beat.clone().into()),
        )
        .await;
        let read = tokio::time::timeout(sh.cfg.ping_interval, js.get_stream(&sh.cfg.stream)).await;
        let Ok(mut view) = sh.stats.view.lock() else {
            return;
        };
        view.server = info.server_name;
        view.server_version = info.version;
        view.nats_cluster = info.cluster;
        match read {
            Ok(Ok(stream)) => {
                let i = stream.cached_info();
                let cluster = i.cluster.as_ref();
                view.stream = Some(StreamView {
                    name: i.config.name.clone(),
                    leader: cluster.and_then(|c| c.leader.clone()),
                    replicas: cluster
                        .map(|c| {
                            c.replicas
                                .iter()
                                .map(|r| (r.name.clone(), r.current, r.offline, r.lag, r.active))
                                .collect()
                        })
                        .unwrap_or_default(),
                    messages: i.state.messages,
                    bytes: i.state.bytes,
                    last_seq: i.state.last_sequence,
                    history: i.config.max_messages_per_subject,
                    read_at: Some(Instant::now()),
                });
                view.stream_error = None;
            }
            Ok(Err(e)) => view.stream_error = Some(e.to_string()),
            Err(_) => view.stream_error = Some("no stream info within a ping interval".into()),
        }
        view.nodes
            .retain(|_, (_, at)| at.elapsed() < NODE_GONE * 10);
    }
}

async fn heard(sh: Arc<Shared>, mut sub: async_nats::Subscriber) {
    while let Some(m) = sub.next().await {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&m.payload) else {
            continue;
        };
        let (Some(node), advertise) = (v["node"].as_str(), v["advertise"].as_str()) else {
            continue;
        };
        if let Ok(mut view) = sh.stats.view.lock() {
            let addr = advertise.unwrap_or_default().to_string();
            view.nodes.insert(node.to_string(), (addr, Instant::now()));
        }
    }
}

async fn elections(sh: Arc<Shared>, mut sub: async_nats::Subscriber) {
    while let Some(m) = sub.next().await {
        sh.stats.leader_changes.fetch_add(1, Ordering::Relaxed);
        let leader = serde_json::from_slice::<serde_json::Value>(&m.payload)
            .ok()
            .and_then(|v| v["leader"].as_str().map(str::to_string));
        if let Ok(mut view) = sh.stats.view.lock() {
            view.last_leader_elected = leader;
        }
        tracing::info!("cluster: the stream elected a leader");
    }
}
