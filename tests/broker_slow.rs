//! Slow consumers (protocol.md, "Slow consumers"), one server per policy:
//! one subscriber stops reading (a raw TCP client with a small receive
//! buffer) while 100 others keep reading and a publisher floods ~1 KiB
//! messages on a few topics. The readers get every message, the publisher
//! gets every ack promptly, the server's memory stays bounded, and the
//! stalled subscriber gets exactly its policy.

mod common;

use common::pubsub::{parse_msg, pub_req, Client, Msg};
use common::wsraw::{bounded, masked, parse, RawWs, OP_CLOSE, OP_TEXT};
use common::{rss_kib, Broker};
use futures_util::{SinkExt, StreamExt};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;

const TOPICS: [&str; 4] = ["slow.a", "slow.b", "slow.c", "slow.d"];
/// Messages published in the flood (spread evenly over TOPICS).
const N: usize = 5000;
const PER_TOPIC: u64 = (N / TOPICS.len()) as u64;
const READERS: usize = 100;
const MAX_QUEUED: usize = 64 * 1024;
/// The publisher flushes every BURST messages and stays at most WINDOW
/// messages ahead of the slowest reader: WINDOW messages (~51 KiB framed)
/// fit in --max-queued-bytes, so however loaded the machine, a reader is
/// never a slow consumer, while the stalled subscriber falls behind by
/// thousands.
const BURST: usize = 8;
const WINDOW: usize = 48;
/// How much the server's RSS may grow during the flood.
const RSS_BUDGET_KIB: u64 = 50 * 1024;

fn data(n: usize) -> String {
    format!(r#"{{"n":{n},"pad":"{}"}}"#, "p".repeat(1000))
}

/// A subscriber that never reads after its ack: a raw TCP connection with
/// a small receive buffer, so that the server's queue for it fills fast.
async fn stalled_subscriber(addr: SocketAddr) -> RawWs {
    let sock = TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let stream = bounded(10, "connect", sock.connect(addr))
        .await
        .expect("connect");
    let mut ws = RawWs::upgrade(stream, "/ws").await;
    let sub = serde_json::json!({"op":"sub","topics":TOPICS,"id":1}).to_string();
    ws.send(&masked(OP_TEXT, sub.as_bytes())).await;
    let f = ws.frame().await;
    assert_eq!(f.payload, br#"{"op":"ack","id":1}"#);
    ws
}

/// How the stalled subscriber's stream ended.
#[derive(Debug, PartialEq)]
enum End {
    /// Nothing more for the quiet period (or `enough` was satisfied).
    Open,
    Close(Option<u16>, String),
    Eof,
    Reset(std::io::ErrorKind),
}

/// Read the stalled subscriber's msgs until `enough` says so, a close
/// frame, EOF, a reset, or `quiet` without data.
async fn drain(
    ws: &mut RawWs,
    msgs: &mut Vec<Msg>,
    quiet: Duration,
    enough: impl Fn(&[Msg]) -> bool,
) -> End {
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        while let Some((f, n)) = parse(&ws.buf) {
            ws.buf.drain(..n);
            match f.opcode {
                OP_TEXT => msgs.push(parse_msg(std::str::from_utf8(&f.payload).unwrap())),
                OP_CLOSE => {
                    let code = f.close_code();
                    let reason = String::from_utf8_lossy(f.payload.get(2..).unwrap_or_default());
                    return End::Close(code, reason.into_owned());
                }
                op => panic!("unexpected frame opcode {op}"),
            }
        }
        if enough(msgs) {
            return End::Open;
        }
        match tokio::time::timeout(quiet, ws.stream.read(&mut chunk)).await {
            Err(_) => return End::Open,
            Ok(Ok(0)) => return End::Eof,
            Ok(Ok(n)) => ws.buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => return End::Reset(e.kind()),
        }
    }
}

/// Per topic, the seqs in arrival order.
fn by_topic(msgs: &[Msg]) -> BTreeMap<String, Vec<u64>> {
    let mut m: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for x in msgs {
        assert!(!x.snapshot, "{}", x.text);
        m.entry(x.topic.clone()).or_default().push(x.seq);
    }
    m
}

/// The length of the run 1, 2, 3, ... at the start of `seqs`.
fn prefix_len(seqs: &[u64]) -> usize {
    seqs.iter()
        .enumerate()
        .take_while(|(i, s)| **s == *i as u64 + 1)
        .count()
}

/// The server does not cap SO_SNDBUF, so the kernel buffers up to
/// tcp_wmem's maximum for the stalled subscriber before the server's own
/// queue (--max-queued-bytes) starts to fill; the flood must exceed that.
fn check_kernel_buffers() {
    let wmem = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem").unwrap_or_default();
    let max: usize = wmem
        .split_whitespace()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        max < N * 1024,
        "tcp_wmem max {max} is too large for a flood of {N} KiB to stall a subscriber"
    );
}

struct Flood {
    broker: Broker,
    /// Still open, so the server keeps them.
    readers: Vec<Client>,
    stalled: RawWs,
    publisher: Client,
    rss_growth_kib: u64,
}

/// Start a server with `policy`, connect the readers, the stalled
/// subscriber and the publisher, and run the flood. Returns once every
/// reader has every message and the publisher every ack.
async fn flood(policy: &str) -> Flood {
    let max_queued = MAX_QUEUED.to_string();
    check_kernel_buffers();
    // A long close timeout: the stalled subscriber reads its close frame
    // only after the flood.
    let broker = Broker::start(&[
        "--shards",
        "2",
        "--slow-consumer",
        policy,
        "--max-queued-bytes",
        &max_queued,
        "--close-timeout",
        "30",
    ]);
    let addr = broker.addr;
    let stalled = stalled_subscriber(addr).await;

    let mut readers = Vec::new();
    // Messages each reader has received.
    let progress: Arc<Vec<AtomicU64>> = Arc::new((0..READERS).map(|_| AtomicU64::new(0)).collect());
    for i in 0..READERS {
        let progress = progress.clone();
        let mut c = Client::connect(addr).await;
        if i % 2 == 0 {
            c.sub(&TOPICS, 1).await;
        } else {
            c.sub(&["slow.*"], 1).await;
        }
        readers.push(tokio::spawn(async move {
            let mut next = [1u64; TOPICS.len()];
            let mut left = N;
            while left > 0 {
                let t = match c.next_within(30).await {
                    Some(Message::Text(t)) => t,
                    other => panic!("reader {i}: {other:?}"),
                };
                let m = parse_msg(&t);
                let k = TOPICS.iter().position(|t| *t == m.topic).unwrap();
                assert_eq!(m.seq, next[k], "reader {i}: gap on {}", m.topic);
                next[k] += 1;
                left -= 1;
                progress[i].store((N - left) as u64, Ordering::Release);
            }
            c
        }));
    }

    let pid = broker.child.id();
    let rss_before = rss_kib(pid);
    let rss_max = Arc::new(AtomicU64::new(rss_before));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (rss_max, stop) = (rss_max.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                rss_max.fetch_max(rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    // The publisher: every pub with an id; a task times each ack.
    let publisher = Client::connect(addr).await;
    let (mut sink, mut acks) = publisher.ws.split();
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..N).map(|_| AtomicU64::new(0)).collect());
    let t0 = Instant::now();
    let ack_task = {
        let sent_at = sent_at.clone();
        tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            for id in 0..N {
                let t = match bounded(30, "publisher ack", acks.next()).await {
                    Some(Ok(Message::Text(t))) => t,
                    other => panic!("publisher: {other:?}"),
                };
                assert_eq!(t.as_str(), format!(r#"{{"op":"ack","id":{id}}}"#));
                let now = t0.elapsed().as_micros() as u64;
                let lat = now.saturating_sub(sent_at[id].load(Ordering::Acquire));
                worst = worst.max(Duration::from_micros(lat));
            }
            (acks, worst)
        })
    };
    for n in 0..N {
        if n % BURST == 0 {
            // Wait (bounded) for the slowest reader to be within WINDOW.
            bounded(30, "readers catching up", async {
                while (0..READERS)
                    .map(|i| progress[i].load(Ordering::Acquire))
                    .min()
                    .unwrap_or(0)
                    + ((WINDOW - BURST) as u64)
                    < n as u64
                {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
            .await;
        }
        let t = TOPICS[n % TOPICS.len()];
        sent_at[n].store(t0.elapsed().as_micros() as u64, Ordering::Release);
        let req = pub_req(t, &data(n), Some(n as u64));
        bounded(10, "publish", sink.feed(Message::text(req)))
            .await
            .unwrap();
        if n % BURST == BURST - 1 {
            bounded(10, "publish", sink.flush()).await.unwrap();
        }
    }
    bounded(10, "publish", sink.flush()).await.unwrap();
    let publish_time = t0.elapsed();
    let (acks, worst_ack) = bounded(60, "acks", ack_task).await.unwrap();
    let publisher = Client {
        ws: sink.reunite(acks).unwrap(),
    };
    let mut done = Vec::new();
    for r in readers {
        done.push(bounded(60, "reader", r).await.unwrap());
    }
    let deliver_time = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    bounded(10, "RSS sampler", sampler).await.unwrap();
    let rss_growth_kib = rss_max.load(Ordering::Relaxed).saturating_sub(rss_before);
    eprintln!(
        "{policy}: published {N} in {publish_time:?}, worst ack {worst_ack:?}, \
         all delivered after {deliver_time:?}, RSS {rss_before} KiB + {rss_growth_kib} KiB"
    );
    // The publisher was never slowed down by the stalled subscriber.
    assert!(
        worst_ack < Duration::from_secs(3),
        "an ack took {worst_ack:?}"
    );
    assert!(
        rss_growth_kib < RSS_BUDGET_KIB,
        "server RSS grew by {rss_growth_kib} KiB during the flood"
    );
    Flood {
        broker,
        readers: done,
        stalled,
        publisher,
        rss_growth_kib,
    }
}

async fn metric(b: &Broker, name: &str) -> u64 {
    common::wsraw::metric(b.addr, name).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_policy_closes_the_slow_consumer_with_1008() {
    let mut f = flood("disconnect").await;
    let b = &f.broker;
    // The stalled subscriber, and no reader.
    assert_eq!(metric(b, "ringfan_slow_disconnects_total").await, 1);
    assert_eq!(metric(b, "ringfan_dropped_total").await, 0);
    assert_eq!(metric(b, "ringfan_conflated_total").await, 0);
    // Every reader got everything; the stalled one got what was queued
    // before the limit, in order, then the close.
    let mut msgs = Vec::new();
    let end = drain(&mut f.stalled, &mut msgs, Duration::from_secs(10), |_| {
        false
    })
    .await;
    eprintln!("disconnect: stalled subscriber's stream ended with {end:?}");
    let topics = by_topic(&msgs);
    for (t, seqs) in &topics {
        assert_eq!(prefix_len(seqs), seqs.len(), "{t}: {seqs:?}");
        assert!((seqs.len() as u64) < PER_TOPIC, "{t} was not cut off");
    }
    match end {
        End::Close(code, reason) => {
            assert_eq!(code, Some(1008), "reason {reason:?}");
            assert_eq!(reason, "slow consumer");
        }
        End::Reset(_) => {}
        other => panic!("stalled subscriber: expected close 1008 or a reset, got {other:?}"),
    }
    common::wsraw::wait_metric(
        b.addr,
        "ringfan_subscriptions",
        // Half the readers hold the 4 topics, half one pattern; the stalled
        // subscriber's 4 are gone.
        (READERS / 2 * TOPICS.len() + READERS / 2) as u64,
        Duration::from_secs(10),
    )
    .await;
    drop(f.readers);
    let _ = bounded(10, "close", f.publisher.ws.close(None)).await;
    eprintln!(
        "disconnect: stalled got {} msgs, RSS growth {} KiB",
        msgs.len(),
        f.rss_growth_kib
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_policy_leaves_a_seq_gap_then_newer_messages() {
    let mut f = flood("drop").await;
    let b = &f.broker;
    let dropped = metric(b, "ringfan_dropped_total").await;
    assert!(dropped > 0);
    assert_eq!(metric(b, "ringfan_slow_disconnects_total").await, 0);
    assert_eq!(metric(b, "ringfan_conflated_total").await, 0);
    // Resume: first what was queued before the limit...
    let mut msgs = Vec::new();
    let end = drain(
        &mut f.stalled,
        &mut msgs,
        Duration::from_millis(500),
        |_| false,
    )
    .await;
    assert_eq!(end, End::Open);
    let queued = msgs.len();
    // ...then, now that it reads, newer messages arrive again.
    for (k, t) in TOPICS.iter().enumerate() {
        f.publisher
            .send(pub_req(t, "\"after\"", Some(N as u64 + k as u64)))
            .await;
        f.publisher.expect_ack(N as u64 + k as u64).await;
    }
    let end = drain(&mut f.stalled, &mut msgs, Duration::from_secs(10), |m| {
        m.len() >= queued + TOPICS.len()
    })
    .await;
    assert_eq!(end, End::Open);
    let topics = by_topic(&msgs);
    assert_eq!(topics.len(), TOPICS.len());
    let mut received = 0;
    for (t, seqs) in &topics {
        let k = prefix_len(seqs);
        // 1..=k as queued, a gap, then the message published after resuming.
        assert!((k as u64) < PER_TOPIC, "{t}: no gap: {seqs:?}");
        assert_eq!(&seqs[k..], &[PER_TOPIC + 1], "{t}: {seqs:?}");
        received += k as u64;
    }
    // Every message was either delivered or counted as dropped.
    assert_eq!(
        received + dropped,
        N as u64,
        "delivered {received}, dropped {dropped}"
    );
    let m = msgs.last().unwrap();
    assert_eq!(m.data, "\"after\"");
    eprintln!("drop: stalled got {queued} msgs before the gap, {dropped} dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflate_policy_keeps_the_latest_per_topic() {
    let mut f = flood("conflate").await;
    let b = &f.broker;
    let conflated = metric(b, "ringfan_conflated_total").await;
    assert!(conflated > 0);
    assert_eq!(metric(b, "ringfan_slow_disconnects_total").await, 0);
    assert_eq!(metric(b, "ringfan_dropped_total").await, 0);
    // Resume: what was queued, then per topic at most one more message,
    // the latest.
    let mut msgs = Vec::new();
    let end = drain(&mut f.stalled, &mut msgs, Duration::from_secs(10), |m| {
        let t = by_topic(m);
        t.len() == TOPICS.len() && t.values().all(|s| s.last() == Some(&PER_TOPIC))
    })
    .await;
    assert_eq!(end, End::Open, "{} msgs", msgs.len());
    let more = drain(
        &mut f.stalled,
        &mut msgs,
        Duration::from_millis(300),
        |_| false,
    )
    .await;
    assert_eq!(more, End::Open);
    let topics = by_topic(&msgs);
    let mut received = 0;
    for (t, seqs) in &topics {
        let k = prefix_len(seqs);
        assert!((k as u64) < PER_TOPIC, "{t}: not conflated: {seqs:?}");
        assert_eq!(&seqs[k..], &[PER_TOPIC], "{t}: {seqs:?}");
        received += seqs.len() as u64;
    }
    // Each message was either delivered or replaced by a newer one.
    assert_eq!(
        received + conflated,
        N as u64,
        "delivered {received}, conflated {conflated}"
    );
    // The last message on each topic is the last published, with its data.
    for t in TOPICS {
        let m = msgs.iter().rev().find(|m| m.topic == t).unwrap();
        let k = TOPICS.iter().position(|x| *x == t).unwrap();
        assert_eq!(m.data, data(N - TOPICS.len() + k));
    }
    eprintln!(
        "conflate: stalled got {} msgs, {conflated} conflated",
        msgs.len()
    );
}

/// `ringfan_slow_disconnects_total` counts slow consumers disconnected: one
/// stalled subscriber makes it 1, however many messages were offered to it
/// before its connection was torn down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_disconnects_total_counts_connections() {
    check_kernel_buffers();
    let b = Broker::start(&[
        "--shards",
        "2",
        "--slow-consumer",
        "disconnect",
        "--max-queued-bytes",
        "65536",
    ]);
    let _stalled = stalled_subscriber(b.addr).await;
    let mut p = Client::connect(b.addr).await;
    for n in 0..N {
        p.feed(pub_req(TOPICS[n % TOPICS.len()], &data(n), None))
            .await;
    }
    p.flush().await;
    p.sync(1).await;
    common::wsraw::wait_metric(b.addr, "ringfan_subscriptions", 0, Duration::from_secs(10)).await;
    assert_eq!(metric(&b, "ringfan_slow_disconnects_total").await, 1);
}
