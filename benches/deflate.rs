//! permessage-deflate's per-message costs (issue #17), on a realistic
//! quote (~150 B of JSON, as the broker frames it) and a 4 KiB book update:
//! - `deflate`: compressing one message (what a publish pays once per
//!   shard with a deflate subscriber);
//! - `inflate`: inflating one client message (what a compressed publish
//!   costs on the way in);
//! - `fanout_share/1000`: offering one publish's share to 1,000 deflate
//!   connections the way `Io::offer` does (`SendBuf::deflated`): one
//!   compression, then 999 reference-count clones, against 1,000 clones of
//!   the plain share.
//!
//! Run with `cargo bench --bench deflate -- --warm-up-time 1
//! --measurement-time 3`; figures in docs/benchmarks.md.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use ringfan::sendbuf::SendBuf;
use ringfan::ws::deflate::{deflate, inflate, Agreed};
use ringfan::ws::frame::server_frame;
use ringfan::ws::OpCode;

fn quote() -> Vec<u8> {
    br#"{"op":"msg","topic":"md.NASDAQ.AAPL","seq":1734117,"data":{"sym":"AAPL","bid":189.51,"ask":189.52,"bid_size":300,"ask_size":200,"t":1733312000123}}"#.to_vec()
}

fn book() -> Vec<u8> {
    let mut s =
        String::from(r#"{"op":"msg","topic":"md.NASDAQ.AAPL.book","seq":88,"data":{"bids":["#);
    for i in 0..60 {
        s.push_str(&format!(
            r#"{{"px":{:.2},"qty":{},"n":{}}},"#,
            189.51 - i as f64 * 0.01,
            100 + i * 7,
            1 + i % 5
        ));
    }
    s.push_str(r#"{"px":0,"qty":0,"n":0}]}}"#);
    s.into_bytes()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("deflate");
    for (name, msg) in [("quote", quote()), ("book", book())] {
        let mut packed = Vec::new();
        assert!(deflate(&msg, &mut packed));
        eprintln!("{name}: {} B -> {} B", msg.len(), packed.len());
        g.bench_function(BenchmarkId::new("deflate", name), |b| {
            b.iter(|| deflate(black_box(&msg), &mut packed))
        });
        let mut out = Vec::new();
        g.bench_function(BenchmarkId::new("inflate", name), |b| {
            b.iter(|| inflate(black_box(&packed), 1 << 20, &mut out))
        });
    }
    let agreed = Agreed {
        server_window_bits: 15,
    };
    let frame = server_frame(OpCode::Text, &quote());
    let mut queue = Vec::with_capacity(1000);
    g.bench_function("fanout_share/1000/deflate", |b| {
        b.iter(|| {
            let share = SendBuf::local(frame.clone());
            let mut compressed = false;
            for _ in 0..1000 {
                queue.push(
                    share
                        .deflated(agreed, ringfan::sendbuf::DEFLATE_MIN, &mut compressed)
                        .unwrap(),
                );
            }
            queue.clear();
        })
    });
    g.bench_function("fanout_share/1000/plain", |b| {
        b.iter(|| {
            let share = SendBuf::local(frame.clone());
            for _ in 0..1000 {
                queue.push(share.clone());
            }
            queue.clear();
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
