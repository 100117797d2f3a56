//! The bridge's async side, all on the `ringfan-nats` thread's
//! current-thread runtime. The main loop never awaits the NATS client:
//! publishes, last-value reads, subscriptions and slow answers run as
//! spawned tasks, so a disconnected client (whose command channel stops
//! draining while it reconnects) can never stall the loop.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::connection::State;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::{self, Context};
use async_nats::{Client, ConnectOptions, Event, HeaderValue, ServerAddr};
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep, sleep_until, timeout, timeout_at};

use super::subscriptions::{hold, Fence};
use super::wire::{self, RF_SEQ};
use super::{BridgeStats, ClusterConfig, ClusterError, FromBridge, Owner, PublishResult, Stored};
use super::{Sink, ToBridge};

/// What every task of the bridge shares.
pub(crate) struct Shared {
    pub cfg: ClusterConfig,
    pub owner: Owner,
    pub shards: usize,
    pub sink: Sink,
    pub stats: Arc<BridgeStats>,
    /// The highest stream sequence this node has heard of (copies, acks,
    /// the stream's last at start). The stream hands out republished
    /// copies and acks in its order on one route to us, so after a
    /// reconnect everything we may have missed is above it (catch-up).
    pub heard: std::sync::atomic::AtomicU64,
    /// Taken from `heard` when the link goes down: where the catch-up
    /// after the reconnect starts (acks and copies that come after the
    /// reconnect must not move it past what was missed).
    pub catch_from: std::sync::atomic::AtomicU64,
    /// The link as the client's event callback last said: `catch_from`
    /// is taken once per outage, as the loss is reported.
    pub link_up: std::sync::atomic::AtomicBool,
    /// Fills read at once, at most (`fill.rs`): a node shedding copies of
    /// thousands of topics must not flood the stream with reads.
    pub fill_slots: tokio::sync::Semaphore,
    /// While the link is down and until catch-up is done, live copies wait
    /// here (so a newer live copy cannot overtake the caught-up one of
    /// the same topic and turn it into a duplicate), tagged with their outage.
    pub held_back: std::sync::Mutex<super::catchup::HeldBack>,
}

/// The shards' commands, and their `Interest` on a queue of its own
/// (`BridgeSender::send`).
pub(crate) type Commands = (mpsc::Receiver<ToBridge>, mpsc::UnboundedReceiver<ToBridge>);

/// Start-up's outcome: the notes for the operator, or why it failed.
type Ready = std::sync::mpsc::Sender<Result<(Vec<String>, usize), ClusterError>>;

/// The thread's body: build the runtime, connect, ensure the stream,
/// report to [`super::Bridge::start`], then serve until stopped.
pub(crate) fn thread_main(sh: Shared, rx: Commands, stop: oneshot::Receiver<()>, ready: Ready) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(ClusterError::Thread(e.to_string())));
            return;
        }
    };
    rt.block_on(async move {
        let sh = Arc::new(sh);
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let bound = sh.cfg.publish_timeout;
        let client = match timeout(bound, connect(&sh, ev_tx)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                let _ = ready.send(Err(e));
                return;
            }
            Err(_) => {
                let _ = ready.send(Err(ClusterError::Connect(format!(
                    "no connection within {bound:?}"
                ))));
                return;
            }
        };
        let mut notes = Vec::new();
        let version = client.server_info().version;
        let replicas = sh.cfg.replicas;
        if replicas > 1 && !wire::version_at_least(&version, wire::REPLICATED_EXPECTED_SEQ_FIXED)
        {
            notes.push(format!(
                "nats-server {version} with {replicas} stream replicas: before 2.9.21 a replicated stream may store two publishes of one topic made at once on two nodes with the same seq (nats-server issue 4320); use nats-server 2.9.21 or later, or publish each topic from one node"
            ));
        }
        let mut js = jetstream::new(client.clone());
        // A fresh NATS cluster may not answer JetStream requests for a
        // while (its meta leader is being elected: 0.28 s measured, once
        // over 15 s on this loaded machine): ask again every 250 ms with
        // 3 s per try until the start-up bound, rather than once.
        js.set_timeout(Duration::from_secs(3).min(bound));
        let deadline = Instant::now() + bound;
        let ensured = loop {
            match ensure_stream(&js, &sh.cfg).await {
                Ok(found) => break Ok(found),
                Err(e) if wrong_shape(&e) || Instant::now() >= deadline => break Err(e),
                Err(e) => {
                    tracing::info!("cluster: stream not ready yet ({e}); asking again");
                    sleep(Duration::from_millis(250)).await;
                }
            }
        };
        let found = match ensured {
            Ok(found) => found,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        sh.heard.fetch_max(found.last_seq, Ordering::Relaxed);
        // Bounds JetStream API calls (stream info, MSG.GET); each publish
        // attempt has its own shorter bound (retry_every).
        js.set_timeout(sh.cfg.publish_timeout);
        let max_payload = client.server_info().max_payload;
        if ready.send(Ok((notes, max_payload))).is_err() {
            return; // start() gave up waiting: nobody holds a Bridge
        }
        let created = Arc::new(std::sync::Mutex::new(found.created));
        run(sh, client, js, rx, stop, ev_rx, created).await;
    });
}

async fn connect(
    sh: &Arc<Shared>,
    events: mpsc::UnboundedSender<Event>,
) -> Result<Client, ClusterError> {
    let cfg = &sh.cfg;
    let shared = sh.clone();
    let addrs = cfg
        .urls
        .iter()
        .map(|u| {
            u.parse::<ServerAddr>()
                .map_err(|e| ClusterError::Config(format!("{u}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut opts = ConnectOptions::new()
        .name("ringfan")
        .ping_interval(cfg.ping_interval)
        .connection_timeout(cfg.publish_timeout)
        .request_timeout(Some(cfg.publish_timeout))
        .event_callback(move |ev| {
            let (events, sh) = (events.clone(), shared.clone());
            async move {
                // Where catch-up starts is taken here, as the client
                // reports the loss, not when the bridge's loop gets to the
                // event: the loop may be busy for up to `retry_every`, and
                // copies and acks on the next connection (a reconnect took
                // ~3 ms) must not move it past what was missed.
                match ev {
                    Event::Disconnected | Event::Closed
                        if sh.link_up.swap(false, Ordering::SeqCst) =>
                    {
                        let from = sh.heard.load(Ordering::SeqCst) + 1;
                        sh.catch_from.store(from, Ordering::SeqCst);
                        // Live copies wait behind catch-up from now on.
                        super::catchup::hold_back(&sh);
                    }
                    Event::Connected => sh.link_up.store(true, Ordering::SeqCst),
                    _ => {}
                }
                let _ = events.send(ev);
            }
        });
    if let Some(creds) = &cfg.credentials {
        opts = opts
            .credentials_file(creds)
            .await
            .map_err(|e| ClusterError::Config(format!("{}: {e}", creds.display())))?;
    }
    if let Some(ca) = &cfg.tls_ca {
        // rustls through async-nats; its only provider in our build is
        // aws-lc-rs (the `ring` feature is off), the one src/tls uses.
        opts = opts.add_root_certificates(ca.clone()).require_tls(true);
    }
    opts.connect(addrs)
        .await
        .map_err(|e| ClusterError::Connect(e.to_string()))
}

/// An existing stream of another shape: waiting will not change it.
fn wrong_shape(e: &ClusterError) -> bool {
    matches!(e, ClusterError::Stream(m) if m.contains("another shape"))
}

/// Creates the stream, or checks an existing one has the shape the bridge
/// needs. Creating with an identical config is idempotent on the server,
/// so every node (and every reconnect) runs this.
pub(super) async fn ensure_stream(
    js: &Context,
    cfg: &ClusterConfig,
) -> Result<StreamFound, ClusterError> {
    let want = wire::stream_config(cfg);
    let created = match js.create_stream(want.clone()).await {
        Ok(s) => return Ok(StreamFound::of(s.cached_info())),
        Err(e) => e,
    };
    // Typically 10058 "stream name already in use with a different
    // configuration": fine if only tunables differ.
    let stream = js
        .get_stream(&cfg.stream)
        .await
        .map_err(|e| ClusterError::Stream(format!("create: {created}; info: {e}")))?;
    let have = &stream.cached_info().config;
    let diff = wire::stream_mismatches(&want, have);
    if diff.is_empty() {
        tracing::info!(
            stream = %cfg.stream,
            "cluster: using the existing stream (its tunables differ from ours: {created})"
        );
        Ok(StreamFound::of(stream.cached_info()))
    } else {
        Err(ClusterError::Stream(format!(
            "{} exists with another shape: {}",
            cfg.stream,
            diff.join("; ")
        )))
    }
}

/// What the bridge learns of the stream when it makes sure of it.
pub(super) struct StreamFound {
    /// When it was created: another value after a reconnect means it was
    /// made anew (a memory stream on a restarted server, an operator's
    /// delete), and every topic's numbering starts again.
    pub created: String,
    /// Its last stream sequence: nothing before it is missed at start.
    pub last_seq: u64,
}

impl StreamFound {
    fn of(info: &jetstream::stream::Info) -> Self {
        Self {
            created: info.created.to_string(),
            last_seq: info.state.last_sequence,
        }
    }
}

/// A held pattern: holders across shards, and the task owning its NATS
/// subscription (dropping `_stop` ends the task, which unsubscribes).
struct Held {
    count: usize,
    _stop: oneshot::Sender<()>,
}

async fn run(
    sh: Arc<Shared>,
    client: Client,
    js: Context,
    (mut rx, mut interest): Commands,
    mut stop: oneshot::Receiver<()>,
    mut events: mpsc::UnboundedReceiver<Event>,
    created: Arc<std::sync::Mutex<String>>,
) {
    let stats = sh.stats.clone();
    let mut connected = true;
    let mut held: HashMap<Box<str>, Held> = HashMap::new();
    let mut fence = Fence::new();
    stats.connected.store(true, Ordering::Relaxed);
    // Connected(bool) goes through one task per shard, in order, so a
    // shard with a full inbox still sees false before true (a blip
    // matters: it ends the right to serve snapshots locally,
    // docs/cluster.md §5), and a stuck shard delays no other.
    let conn_tx: Vec<mpsc::UnboundedSender<bool>> = (0..sh.shards)
        .map(|shard| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(tell_connected(sh.clone(), shard, rx));
            tx
        })
        .collect();
    let broadcast = |up: bool| {
        for tx in &conn_tx {
            let _ = tx.send(up);
        }
    };
    broadcast(true);

    // RTT: a message to our own inbox every ping_interval.
    let rtt_subject = client.new_inbox();
    let mut rtt_sub = match client.subscribe(rtt_subject.clone()).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("cluster: no RTT subscription: {e}");
            None
        }
    };
    tokio::spawn(super::view::watch(sh.clone(), client.clone(), js.clone()));
    let mut rtt_sent: Option<Instant> = None;
    let mut tick = tokio::time::interval(sh.cfg.ping_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);

    loop {
        let rtt_next = async {
            match rtt_sub.as_mut() {
                Some(s) => s.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = &mut stop => break,
            Some(ev) = events.recv() => match ev {
                Event::Connected => {
                    if !connected {
                        connected = true;
                        BridgeStats::inc(&stats.reconnects);
                        stats.connected.store(true, Ordering::Relaxed);
                        broadcast(true);
                        // The stream made sure of again (a memory stream
                        // vanishes with a restarted server, measured on
                        // 2.9.10), then what was stored meanwhile caught
                        // up for every pattern held.
                        let patterns: Vec<Box<str>> = held.keys().cloned().collect();
                        let task = super::catchup::after_reconnect(
                            sh.clone(),
                            js.clone(),
                            patterns,
                            created.clone(),
                        );
                        tokio::spawn(task);
                    }
                }
                Event::Disconnected | Event::Closed => {
                    if connected {
                        connected = false;
                        // `catch_from` was taken, and live copies held
                        // back, by the event callback.
                        rtt_sent = None;
                        stats.connected.store(false, Ordering::Relaxed);
                        broadcast(false);
                    }
                }
                Event::SlowConsumer(_) => BridgeStats::inc(&stats.slow_consumers),
                other => tracing::warn!("cluster: NATS: {other}"),
            },
            Some(cmd) = interest.recv() => command(&sh, &client, &js, &mut held, &mut fence, cmd),
            cmd = rx.recv() => match cmd {
                Some(cmd) => {
                    // Interest first: any a shard sent before it mailed
                    // the shard that sent this is queued by now.
                    while let Ok(i) = interest.try_recv() {
                        command(&sh, &client, &js, &mut held, &mut fence, i);
                    }
                    command(&sh, &client, &js, &mut held, &mut fence, cmd)
                }
                None => break,
            },
            _ = tick.tick() => {
                // A ping lost to a disconnect is forgotten after 10 periods.
                let stale = rtt_sent.is_some_and(|t| t.elapsed() > sh.cfg.ping_interval * 10);
                if rtt_sub.is_some()
                    && (rtt_sent.is_none() || stale)
                    && client.connection_state() == State::Connected
                {
                    // try-publish semantics: publish() awaits only the
                    // client's channel, which drains while connected.
                    let send = client.publish(rtt_subject.clone(), bytes::Bytes::new());
                    if timeout(sh.cfg.retry_every, send).await.is_ok() {
                        rtt_sent = Some(Instant::now());
                    }
                }
            }
            Some(_) = rtt_next => {
                if let Some(t) = rtt_sent.take() {
                    let ns = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    stats.rtt_ns_last.store(ns, Ordering::Relaxed);
                }
            }
        }
    }
    held.clear(); // each subscription task unsubscribes as it ends
    stats.subscriptions.store(0, Ordering::Relaxed);
    let _ = timeout(Duration::from_secs(1), client.flush()).await;
}

fn command(
    sh: &Arc<Shared>,
    client: &Client,
    js: &Context,
    held: &mut HashMap<Box<str>, Held>,
    fence: &mut Fence,
    cmd: ToBridge,
) {
    let stats = &sh.stats;
    match cmd {
        ToBridge::Publish {
            shard,
            token,
            topic,
            expected_last,
            rf_seq,
            msg_id,
            payload,
            lens,
        } => {
            // async-nats would queue a publish silently while it
            // reconnects (docs/cluster.md §3): answer now, send nothing.
            if client.connection_state() != State::Connected {
                BridgeStats::inc(&stats.unavailable);
                let result = PublishResult::Unavailable;
                answer_now(sh, shard.into(), FromBridge::Published { token, result });
                return;
            }
            BridgeStats::inc(&stats.messages_out);
            let mut msg = PublishMessage::build()
                .payload(payload)
                .message_id(&*msg_id)
                .expected_last_subject_sequence(expected_last)
                .header(RF_SEQ, HeaderValue::from(rf_seq));
            if !lens.is_empty() {
                msg = msg.header(wire::RF_LENS, wire::lens_header(&lens).as_str());
            }
            let subject = wire::publish_subject(&sh.cfg.prefix, &topic);
            let (sh, client, js) = (sh.clone(), client.clone(), js.clone());
            tokio::spawn(async move {
                let mine = Mine {
                    expected_last,
                    msg_id,
                };
                let result = publish(&sh, &client, &js, subject, msg, mine).await;
                match &result {
                    PublishResult::Unavailable => BridgeStats::inc(&sh.stats.unavailable),
                    PublishResult::Conflict { .. } => BridgeStats::inc(&sh.stats.conflicts),
                    _ => {}
                }
                answer(&sh, shard.into(), FromBridge::Published { token, result }).await;
            });
        }
        ToBridge::Interest { pattern, add } => {
            if add {
                if let Some(h) = held.get_mut(&pattern) {
                    h.count += 1;
                } else {
                    let (stop_tx, stop_rx) = oneshot::channel();
                    let entered = fence.enter();
                    let task = hold(
                        sh.clone(),
                        client.clone(),
                        pattern.clone(),
                        stop_rx,
                        entered,
                    );
                    tokio::spawn(task);
                    held.insert(
                        pattern,
                        Held {
                            count: 1,
                            _stop: stop_tx,
                        },
                    );
                }
            } else {
                match held.get_mut(&pattern) {
                    Some(h) if h.count > 1 => h.count -= 1,
                    Some(_) => {
                        held.remove(&pattern);
                    }
                    None => {
                        BridgeStats::inc(&stats.interest_errors);
                        tracing::warn!("cluster: interest removed for {pattern:?}, not held");
                    }
                }
            }
            let n = u64::try_from(held.len()).unwrap_or(u64::MAX);
            stats.subscriptions.store(n, Ordering::Relaxed);
        }
        ToBridge::LastAll {
            shard,
            token,
            pattern,
        } => {
            if client.connection_state() != State::Connected {
                let reason = "NATS not connected".into();
                let msg = FromBridge::LastUnavailable { token, reason };
                return answer_now(sh, shard.into(), msg);
            }
            // Fenced as a snapshot's exact read (see `Fence`).
            let passed = fence.passed();
            let (sh, js) = (sh.clone(), js.clone());
            tokio::spawn(async move {
                if timeout(sh.cfg.publish_timeout, passed).await.is_err() {
                    let reason = "subscriptions not in force in time".into();
                    let msg = FromBridge::LastUnavailable { token, reason };
                    answer(&sh, shard.into(), msg).await;
                    return;
                }
                super::catchup::last_all(&sh, &js, shard.into(), token, &pattern).await;
            });
        }
        ToBridge::Fill {
            shard,
            token,
            topic,
            after,
            until,
        } => {
            let (sh, client, js) = (sh.clone(), client.clone(), js.clone());
            tokio::spawn(async move {
                let found = super::fill::fill(&sh, &client, &js, &topic, after, until).await;
                answer(&sh, shard.into(), FromBridge::Filled { token, found }).await;
            });
        }
        ToBridge::Last {
            shard,
            token,
            topic,
            fence: fenced,
        } => {
            if client.connection_state() != State::Connected {
                let reason = "NATS not connected".into();
                answer_now(
                    sh,
                    shard.into(),
                    FromBridge::LastUnavailable { token, reason },
                );
                return;
            }
            let passed = fenced.then(|| fence.passed());
            let (sh, client, js) = (sh.clone(), client.clone(), js.clone());
            tokio::spawn(async move {
                if let Some(passed) = passed {
                    if timeout(sh.cfg.publish_timeout, passed).await.is_err() {
                        let reason = "subscriptions not in force in time".into();
                        let msg = FromBridge::LastUnavailable { token, reason };
                        answer(&sh, shard.into(), msg).await;
                        return;
                    }
                }
                let msg = last(&sh, &client, &js, token, topic).await;
                answer(&sh, shard.into(), msg).await;
            });
        }
    }
}

/// What tells a publish's own stored message: the topic's last stream
/// sequence it was sent against, and its `Nats-Msg-Id`.
struct Mine {
    expected_last: u64,
    msg_id: Box<str>,
}

/// One publish to its outcome (docs/cluster.md §3): resend the same
/// message every `retry_every` without an ack, while connected, until
/// `publish_timeout`.
async fn publish(
    sh: &Shared,
    client: &Client,
    js: &Context,
    subject: String,
    msg: PublishMessage,
    mine: Mine,
) -> PublishResult {
    let cfg = &sh.cfg;
    let deadline = tokio::time::Instant::now() + cfg.publish_timeout;
    let mut attempts = 0u32;
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return PublishResult::Unavailable;
        }
        let tick_end = (now + cfg.retry_every).min(deadline);
        // While disconnected a send would only queue in async-nats: wait
        // for the reconnect (or the deadline) instead.
        if client.connection_state() == State::Connected {
            if attempts > 0 {
                BridgeStats::inc(&sh.stats.publish_retries);
            }
            attempts += 1;
            let attempt = async {
                let ack = js.send_publish(subject.clone(), msg.clone()).await?;
                ack.await
            };
            match timeout_at(tick_end, attempt).await {
                Err(_) => continue, // no ack in time: resend
                Ok(Ok(ack)) => {
                    sh.heard.fetch_max(ack.sequence, Ordering::Relaxed);
                    return PublishResult::Stored {
                        stream_seq: ack.sequence,
                        duplicate: ack.duplicate,
                    };
                }
                Ok(Err(e)) => match e.kind() {
                    PublishErrorKind::WrongLastSequence => {
                        // An earlier attempt of this same message may be
                        // what the stream holds after `expected_last`, its
                        // ack lost: a stream leader killed just after
                        // storing it (the 3-server test saw the resend
                        // refused so, not deduplicated by its id, and the
                        // message numbered again: stored twice).
                        if attempts > 1 {
                            if let Some(seq) = own_message(sh, js, &subject, &mine).await {
                                sh.heard.fetch_max(seq, Ordering::Relaxed);
                                return PublishResult::Stored {
                                    stream_seq: seq,
                                    duplicate: true,
                                };
                            }
                        }
                        let text = e.to_string();
                        return match wire::parse_conflict(&text) {
                            Some(last) => PublishResult::Conflict { last },
                            None => PublishResult::Error(text.into()),
                        };
                    }
                    // No responders (a stream without a leader), a lost
                    // connection, the ack window full: retry next tick.
                    PublishErrorKind::StreamNotFound
                    | PublishErrorKind::TimedOut
                    | PublishErrorKind::BrokenPipe
                    | PublishErrorKind::MaxAckPending => {}
                    _ => return PublishResult::Error(e.to_string().into()),
                },
            }
        }
        sleep_until(tick_end).await;
    }
}

/// The stream sequence of this publish's own message, when the topic's
/// next message after `expected_last` is it (same `Nats-Msg-Id`). Read
/// from the leader, which refused the resend so has that message; `None`
/// when it is another's or cannot be read (then it is a conflict).
async fn own_message(sh: &Shared, js: &Context, subject: &str, mine: &Mine) -> Option<u64> {
    let stream = js.get_stream_no_info(&sh.cfg.stream).await.ok()?;
    let get = stream
        .raw_message_builder()
        .next_by_subject(subject)
        .sequence(mine.expected_last.checked_add(1)?)
        .send();
    let m = timeout(sh.cfg.retry_every, get).await.ok()?.ok()?;
    let id = m.headers.get("Nats-Msg-Id")?;
    (id.as_str() == &*mine.msg_id).then_some(m.sequence)
}

/// The topic's last stored message from the stream leader, retried like a
/// publish (a read is idempotent).
async fn last(
    sh: &Shared,
    client: &Client,
    js: &Context,
    token: u64,
    topic: Box<str>,
) -> FromBridge {
    let cfg = &sh.cfg;
    let unavailable = |reason: String| FromBridge::LastUnavailable {
        token,
        reason: reason.into(),
    };
    let stream = match js.get_stream_no_info(&cfg.stream).await {
        Ok(s) => s,
        Err(e) => return unavailable(e.to_string()),
    };
    let subject = wire::publish_subject(&cfg.prefix, &topic);
    let deadline = tokio::time::Instant::now() + cfg.publish_timeout;
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return unavailable(format!("no answer within {:?}", cfg.publish_timeout));
        }
        let tick_end = (now + cfg.retry_every).min(deadline);
        if client.connection_state() == State::Connected {
            let get = stream.get_last_raw_message_by_subject(&subject);
            match timeout_at(tick_end, get).await {
                Err(_) => continue,
                Ok(Ok(m)) => {
                    let rf_seq = wire::header_u64(Some(&m.headers), RF_SEQ);
                    let lens = wire::lens_of(Some(&m.headers));
                    let (Some(rf_seq), Some(lens)) = (rf_seq, lens) else {
                        return unavailable("stored message without a good Rf-Seq/Rf-Lens".into());
                    };
                    let found = Stored {
                        topic,
                        stream_seq: m.sequence,
                        last_stream_seq: 0,
                        rf_seq,
                        payload: m.payload,
                        lens,
                    };
                    return FromBridge::Last {
                        token,
                        found: Some(found),
                    };
                }
                Ok(Err(e)) => match e.kind() {
                    LastRawMessageErrorKind::NoMessageFound => {
                        return FromBridge::Last { token, found: None }
                    }
                    LastRawMessageErrorKind::Other => {} // timeout, no responders: retry
                    _ => return unavailable(e.to_string()),
                },
            }
        }
        sleep_until(tick_end).await;
    }
}

async fn tell_connected(sh: Arc<Shared>, shard: usize, mut rx: mpsc::UnboundedReceiver<bool>) {
    while let Some(up) = rx.recv().await {
        answer(&sh, shard, FromBridge::Connected(up)).await;
    }
}

/// Control answers are never shed on the first try: try once here, and
/// if the inbox is full, keep trying in a task of its own.
pub(super) fn answer_now(sh: &Arc<Shared>, shard: usize, msg: FromBridge) {
    if let Err(msg) = (sh.sink)(shard, msg) {
        let sh = sh.clone();
        tokio::spawn(async move { answer(&sh, shard, msg).await });
    }
}

/// Delivers a control answer, retrying a full inbox with backoff (1 ms
/// doubling to 50 ms) for up to `publish_timeout`; then counts it dropped
/// rather than hold a task forever.
pub(super) async fn answer(sh: &Shared, shard: usize, mut msg: FromBridge) -> bool {
    let give_up = Instant::now() + sh.cfg.publish_timeout;
    let mut wait = Duration::from_millis(1);
    loop {
        match (sh.sink)(shard, msg) {
            Ok(()) => return true,
            Err(back) => msg = back,
        }
        if Instant::now() >= give_up {
            BridgeStats::inc(&sh.stats.answers_dropped);
            tracing::warn!(
                "cluster: shard {shard} took no answer for {:?}",
                sh.cfg.publish_timeout
            );
            return false;
        }
        sleep(wait).await;
        wait = (wait * 2).min(Duration::from_millis(50));
    }
}
