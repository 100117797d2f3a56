//! The HTTP publish path's own costs (`POST /publish`): parsing a batch
//! body, and publishing a batch of 100 through the broker to one
//! subscriber per topic (numbering, framing once, queueing).
//! `cargo bench --bench http_publish`; figures in docs/benchmarks.md.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ringfan::broker::sim::Cluster;
use ringfan::server::publish::parse;
use std::time::Duration;

/// A batch body of `n` quotes of ~100 bytes of data each, over `n` topics.
fn body(n: usize) -> Vec<u8> {
    let msgs: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"topic":"md.NASDAQ.S{i:05}","data":{{"bid":189.52,"ask":189.55,"bs":300,"as":100,"t":1733270400123456789,"n":{i}}}}}"#
            )
        })
        .collect();
    format!(r#"{{"messages":[{}]}}"#, msgs.join(",")).into_bytes()
}

fn http_publish(c: &mut Criterion) {
    let mut g = c.benchmark_group("http_publish");
    g.sample_size(30)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_millis(500));
    let b100 = body(100);
    g.throughput(Throughput::Elements(100));
    g.bench_function("parse_batch_100", |b| {
        b.iter(|| parse(black_box(&b100)).map(|p| p.messages.len()))
    });
    let parsed = parse(&b100).map(|p| {
        p.messages
            .iter()
            .map(|(t, d)| (t.to_string(), d.to_string()))
            .collect::<Vec<_>>()
    });
    let Ok(owned) = parsed else {
        return;
    };
    let msgs: Vec<(&str, &str)> = owned.iter().map(|(t, d)| (&**t, &**d)).collect();
    let mut cluster = Cluster::new(1);
    for (t, _) in &msgs {
        let s = cluster.connect(0);
        cluster.send(s, serde_json::json!({"op": "sub", "topics": [t]}));
    }
    let mut ticket = 0;
    g.bench_function("publish_batch_100_one_subscriber_each", |b| {
        b.iter(|| {
            ticket += 1;
            let r = cluster.publish_batch(0, ticket, black_box(&msgs));
            // What the fake wire keeps is dropped, as a send would.
            cluster.hosts[0].wire.clear();
            r.map(|o| o.map(|o| o.seqs.len()))
        })
    });
    g.finish();
}

criterion_group!(benches, http_publish);
criterion_main!(benches);
