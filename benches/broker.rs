//! Broker hot paths: matching a topic against subscriptions, framing a
//! publish, and queueing one frame on many connections.
//! `cargo bench --bench broker`; figures in docs/benchmarks.md.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringfan::broker::owner::Owned;
use ringfan::broker::topic::matches;
use ringfan::broker::trie::Trie;
use ringfan::broker::wire;
use ringfan::metrics::{LatencyHistogram, Sampled};
use ringfan::sendbuf::SendBuf;
use std::collections::VecDeque;
use std::time::Duration;

/// 100,000 subscriptions shaped like market data: exact symbols across
/// venues, per-venue wildcards, per-symbol wildcards and a few firehoses.
fn subscriptions() -> Vec<String> {
    let venues = ["NASDAQ", "NYSE", "ARCA", "BATS", "IEX"];
    let mut out = Vec::with_capacity(100_000);
    let mut i = 0u32;
    while out.len() < 100_000 {
        let v = venues[(i % 5) as usize];
        let sym = format!("S{:05}", i % 20_000);
        out.push(match i % 10 {
            0..=6 => format!("md.{v}.{sym}"),
            7 => format!("md.*.{sym}"),
            8 => format!("md.{v}.>"),
            _ => format!("md.{v}.{sym}.*"),
        });
        i += 1;
    }
    out
}

fn topic_match(c: &mut Criterion) {
    let subs = subscriptions();
    let mut trie = Trie::new();
    for (i, p) in subs.iter().enumerate() {
        trie.insert(p, i as u32);
    }
    let mut g = c.benchmark_group("topic_match");
    g.sample_size(30)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    g.throughput(Throughput::Elements(1));

    let mut exact_only = Trie::new();
    exact_only.insert("md.NASDAQ.AAPL", 1u32);
    g.bench_function("exact_1_subscription", |b| {
        b.iter(|| {
            let mut n = 0;
            exact_only.for_each_match(black_box("md.NASDAQ.AAPL"), |_| n += 1);
            n
        })
    });
    for topic in ["md.NASDAQ.S00042", "md.ARCA.S12345.trade", "md.XETRA.none"] {
        g.bench_with_input(
            BenchmarkId::new("trie_100k_subscriptions", topic),
            topic,
            |b, t| {
                b.iter(|| {
                    let mut n = 0;
                    trie.for_each_match(black_box(t), |_| n += 1);
                    n
                })
            },
        );
    }
    // What the trie saves: testing every subscription in turn.
    g.sample_size(10);
    g.bench_function("linear_scan_100k_subscriptions", |b| {
        b.iter(|| {
            subs.iter()
                .filter(|p| matches(p, black_box("md.NASDAQ.S00042")))
                .count()
        })
    });
    g.finish();
}

/// 10,000 connections subscribing to one pattern, then unsubscribing
/// (what a popular topic's subscribers do on a reconnect storm): each
/// operation must cost the same however many share the pattern.
fn trie_churn(c: &mut Criterion) {
    const N: u32 = 10_000;
    let mut g = c.benchmark_group("trie_churn");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    g.throughput(Throughput::Elements(2 * N as u64));
    let mut trie = Trie::new();
    g.bench_function("sub_unsub_10k_on_one_pattern", |b| {
        b.iter(|| {
            for i in 0..N {
                trie.insert(black_box("md.*.AAPL"), i);
            }
            for i in 0..N {
                trie.remove(black_box("md.*.AAPL"), i);
            }
        })
    });
    g.finish();
}

fn publish_framing(c: &mut Criterion) {
    let data = br#"{"bid":189.2,"ask":189.3,"bsz":300,"asz":200,"ts":1763712000123456789,"x":"Q"}"#;
    let mut g = c.benchmark_group("publish");
    g.sample_size(30)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    g.throughput(Throughput::Elements(1));
    g.bench_function("frame_msg_100B", |b| {
        b.iter(|| {
            wire::msg(
                black_box("md.NASDAQ.AAPL"),
                black_box(42),
                black_box(data),
                false,
            )
        })
    });
    let mut owned = Owned::default();
    owned.interest("md.*.AAPL", 0, true);
    owned.interest("md.NASDAQ.>", 1, true);
    g.bench_function("owner_publish_seq_lvc_interest", |b| {
        b.iter(|| owned.publish(black_box("md.NASDAQ.AAPL"), black_box(data), 0))
    });
    g.bench_function("parse_pub_request", |b| {
        let text = r#"{"op":"pub","topic":"md.NASDAQ.AAPL","data":{"bid":189.2,"ask":189.3,"bsz":300,"asz":200,"ts":1763712000123456789,"x":"Q"},"id":3}"#;
        b.iter(|| wire::parse(black_box(text)).is_ok())
    });
    // The --max-json-depth check a publish adds (issue #12): the common
    // case, fewer brackets than the limit, is one counting pass.
    g.bench_function("data_depth_check_100B", |b| {
        b.iter(|| wire::nests_deeper(black_box(data), black_box(64)))
    });
    g.finish();
}

/// One publish queued on 1,000 subscribers' send queues, then sent (popped
/// and dropped): what a shard does per delivery besides the syscall. Each
/// queue holding its own `Bytes` (an atomic count per queue) against one
/// shard-local share (`SendBuf::local`, a plain count); and the share with
/// its arrival time, observed into the publish-to-send latency histogram
/// as each frame is taken for its send (what `flush::submit_send` adds
/// per delivery).
fn fanout_queue(c: &mut Criterion) {
    let (frame, _) = wire::msg("md.NASDAQ.AAPL", 42, &[b'7'; 100], false);
    let mut queues: Vec<VecDeque<SendBuf>> =
        (0..1000).map(|_| VecDeque::with_capacity(8)).collect();
    let latency = LatencyHistogram::default();
    let mut g = c.benchmark_group("fanout_queue");
    g.throughput(Throughput::Elements(queues.len() as u64));
    let mut run = |b: &mut criterion::Bencher, share: &SendBuf, observe: bool| {
        // The flush's clock, read once per turn: a few ms after arrival.
        let now = black_box(3_000_000_u64 + 1_234);
        b.iter(|| {
            for q in queues.iter_mut() {
                q.push_back(share.clone());
            }
            for q in queues.iter_mut() {
                let f = q.pop_front();
                if observe {
                    if let Some(at) = f.as_ref().and_then(SendBuf::arrived_ns) {
                        latency.observe_ns(now.saturating_sub(at));
                    }
                }
                black_box(f);
            }
        })
    };
    g.bench_function("bytes_per_queue_x1000", |b| {
        run(b, &SendBuf::from(frame.clone()), false)
    });
    g.bench_function("local_share_x1000", |b| {
        run(b, &SendBuf::local(frame.clone()), false)
    });
    g.bench_function("local_share_latency_observed_x1000", |b| {
        run(b, &SendBuf::local_at(frame.clone(), 1_234), true)
    });
    g.finish();
    black_box(latency.sample());
}

/// A `/metrics` scrape of 16 shards (what the shard that answers it
/// spends; docs/operations.md "Metrics"), counters at realistic
/// magnitudes (every digit is a byte), `/proc` read included.
fn scrape(c: &mut Criterion) {
    use ringfan::broker::BrokerStats;
    use ringfan::metrics::inc;
    use ringfan::runtime::ShardStats;
    let runtime: Vec<ShardStats> = (0..16).map(|_| ShardStats::default()).collect();
    let broker: Vec<BrokerStats> = (0..16).map(|_| BrokerStats::default()).collect();
    for (r, b) in runtime.iter().zip(&broker) {
        inc(&r.sends_total, 123_456_789);
        inc(&b.deliveries_total, 9_876_543_210);
        for v in [40_000, 700_000, 3_000_000, 80_000_000] {
            r.publish_to_send_seconds.observe_ns(v);
        }
        r.connection_queued_bytes.observe(5_000);
    }
    let body = ringfan::server::metrics::scrape(&runtime, &broker, None, None);
    eprintln!(
        "scrape of 16 shards: {} bytes, {} lines",
        body.len(),
        body.lines().count()
    );
    let mut g = c.benchmark_group("metrics");
    g.bench_function("scrape_16_shards", |b| {
        b.iter(|| ringfan::server::metrics::scrape(&runtime, &broker, None, None))
    });
    g.bench_function("proc_read", |b| {
        b.iter(ringfan::metrics::process::Process::read)
    });
    g.finish();
}

criterion_group!(
    benches,
    topic_match,
    trie_churn,
    publish_framing,
    fanout_queue,
    scrape
);
criterion_main!(benches);
