//! What a connection event costs the shard that logs it (issue #15): with
//! no subscriber (the load generator), left out by the rate limit (a
//! storm past its budget), and written as a JSON line (to a sink: the
//! formatting, not the disk). Storms are what matter: a flood of refused
//! handshakes costs the first figure's shard per refusal, past the burst.
//! `cargo bench --bench logs -- --warm-up-time 1 --measurement-time 3`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ringfan::logs::{self, ConnLabel, Who};

fn who() -> Who<'static> {
    Who {
        conn: Some(ConnLabel {
            shard: 3,
            key: 12345,
            gen: 678,
        }),
        peer: Some("203.0.113.7:50312".parse().expect("addr")),
        user: Some("alice@example.com"),
    }
}

fn events(c: &mut Criterion) {
    let who = who();
    let response = ringfan::ws::http::error(404, &[], "no such endpoint");
    let mut g = c.benchmark_group("logs");
    g.bench_function("refused_no_subscriber", |b| {
        b.iter(|| logs::handshake_refused(black_box(&who), 404, black_box(&response)))
    });
    let json = || {
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(std::io::sink)
            .finish()
    };
    tracing::subscriber::with_default(json(), || {
        // Past the burst: every call from here on is left out (counted),
        // except the few the rate lets through (5 a second).
        for _ in 0..100 {
            logs::slow_consumer(&who, "disconnect", Some(1 << 20));
        }
        g.bench_function("slow_consumer_suppressed", |b| {
            b.iter(|| logs::slow_consumer(black_box(&who), "disconnect", Some(1 << 20)))
        });
    });
    // Written every time: the limiter is bypassed by formatting directly
    // through the same subscriber, with the same fields.
    tracing::subscriber::with_default(json(), || {
        g.bench_function("line_written_json", |b| {
            b.iter(|| {
                let w = black_box(&who);
                tracing::warn!(
                    target: "ringfan::slow_consumer",
                    event = "slow_consumer",
                    conn = w.conn.map(tracing::field::display),
                    peer = w.peer.map(tracing::field::display),
                    user = w.user,
                    policy = "disconnect",
                    queued = 1usize << 20,
                    code = 1008u16,
                    "slow consumer disconnected"
                )
            })
        });
    });
    g.finish();
}

criterion_group!(benches, events);
criterion_main!(benches);
