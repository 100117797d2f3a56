//! Micro-benchmarks of the sans-IO WebSocket core (issue 2).
//!
//! Groups:
//! - `unmask`: the byte-at-a-time reference loop against the dispatched
//!   SIMD `apply_mask` and against every implementation this CPU can run.
//! - `utf8`: whole-buffer `validate`, incremental `Utf8Validator`, and
//!   `std::str::from_utf8` on JSON-like text with some multibyte chars.
//! - `header`: `parse_header` for the three length encodings.
//! - `decode`: one client-masked 100-byte text frame through
//!   `Connection::read` (unmask + validate + event), alone and 1000 back to
//!   back; the scratch-buffer copy that in-place unmasking forces on a
//!   benchmark is measured on its own so it can be subtracted.
//! - `encode`: `server_frame_parts` of a ~150-byte `msg` envelope.
//!
//! Run with `cargo bench --bench ws_core`; results are in
//! `docs/benchmarks.md`.

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BatchSize, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};

use ringfan::ws::frame::{client_frame, parse_header, put_header, server_frame_parts};
use ringfan::ws::mask::{apply_mask, apply_mask_reference, implementations};
use ringfan::ws::utf8::{validate, Utf8Validator};
use ringfan::ws::{Connection, Event, OpCode, Read};

/// 16 B, 125 B (largest 7-bit length), 1 KiB, 64 KiB, 1 MiB.
const SIZES: [usize; 5] = [16, 125, 1 << 10, 64 << 10, 1 << 20];

const MASK: [u8; 4] = [0x3a, 0xc5, 0x91, 0x07];

/// The settings every group shares: keep the whole run to a few minutes.
fn configure<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(20)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    g
}

fn size_label(n: usize) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{}MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{}KiB", n >> 10),
        n => format!("{n}B"),
    }
}

/// Deterministic pseudo-random bytes (what a masked payload looks like).
fn noise(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    fastrand::Rng::with_seed(0x5eed).fill(&mut v);
    v
}

/// Realistic text: JSON-like market data records, mostly ASCII with some
/// 2-, 3- and 4-byte code points, cut on a character boundary and padded
/// with spaces to exactly `len` bytes. Always valid UTF-8.
fn json_text(len: usize) -> Vec<u8> {
    const VENUES: [&str; 4] = ["Zürich", "東京", "São Paulo", "NYSE"];
    const NOTES: [&str; 4] = ["ok", "€ fee — waived", "größer", "🚀 new high"];
    const SIDES: [&str; 2] = ["buy", "sell"];
    let mut s = String::with_capacity(len + 256);
    let mut i: u64 = 0;
    while s.len() < len {
        s.push_str(&format!(
            "{{\"type\":\"trade\",\"sym\":\"BTC-USD\",\"seq\":{},\"px\":{}.{:02},\"qty\":0.{:04},\
             \"side\":\"{}\",\"venue\":\"{}\",\"note\":\"{}\",\"ts\":{}}}\n",
            1_000_000 + i,
            64_000 + i % 997,
            i % 100,
            (i * 37) % 10_000,
            SIDES[(i % 2) as usize],
            VENUES[(i % 4) as usize],
            NOTES[((i / 4) % 4) as usize],
            1_795_000_000_000u64 + i * 13,
        ));
        i += 1;
    }
    let mut cut = len;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut v = s.into_bytes();
    v.truncate(cut);
    v.resize(len, b' ');
    assert!(std::str::from_utf8(&v).is_ok());
    v
}

fn bench_unmask(c: &mut Criterion) {
    let mut g = configure(c, "unmask");
    let impls = implementations();
    for &n in &SIZES {
        g.throughput(Throughput::Bytes(n as u64));
        let label = size_label(n);
        let mut buf = noise(n);

        g.bench_with_input(BenchmarkId::new("reference", &label), &n, |b, _| {
            b.iter(|| apply_mask_reference(black_box(&mut buf[..]), black_box(MASK), black_box(0)))
        });
        g.bench_with_input(BenchmarkId::new("dispatched", &label), &n, |b, _| {
            b.iter(|| apply_mask(black_box(&mut buf[..]), black_box(MASK), black_box(0)))
        });
        // Through a function pointer, as `selected()` calls them.
        for &(name, f) in &impls {
            let f = black_box(f);
            g.bench_with_input(
                BenchmarkId::new(format!("impl/{name}"), &label),
                &n,
                |b, _| b.iter(|| f(black_box(&mut buf[..]), black_box(MASK), black_box(0))),
            );
        }
    }
    g.finish();
}

fn bench_utf8(c: &mut Criterion) {
    let mut g = configure(c, "utf8");
    for &n in &SIZES {
        g.throughput(Throughput::Bytes(n as u64));
        let label = size_label(n);
        let text = json_text(n);

        g.bench_with_input(BenchmarkId::new("validate", &label), &text, |b, t| {
            b.iter(|| validate(black_box(&t[..])).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("feed+finish", &label), &text, |b, t| {
            let mut v = Utf8Validator::new();
            b.iter(|| {
                v.feed(black_box(&t[..])).unwrap();
                v.finish().unwrap()
            })
        });
        g.bench_with_input(BenchmarkId::new("std_from_utf8", &label), &text, |b, t| {
            b.iter(|| std::str::from_utf8(black_box(&t[..])).unwrap().len())
        });
    }
    g.finish();
}

/// A masked text header (no payload) for `payload_len`.
fn masked_header(payload_len: usize) -> Vec<u8> {
    let mut h = Vec::new();
    put_header(&mut h, true, OpCode::Text, payload_len, Some(MASK));
    h
}

fn bench_header(c: &mut Criterion) {
    let mut g = configure(c, "header");
    g.throughput(Throughput::Elements(1));
    let cases = [
        ("masked_7bit_len_100B", masked_header(100), 6),
        ("masked_16bit_len_1000B", masked_header(1000), 8),
        ("masked_64bit_len_70000B", masked_header(70_000), 14),
    ];
    for (name, hdr, want_len) in cases {
        assert_eq!(parse_header(&hdr).unwrap().unwrap().len, want_len);
        g.bench_function(name, |b| {
            b.iter(|| parse_header(black_box(&hdr[..])).unwrap().unwrap())
        });
    }
    g.finish();
}

/// Decode the one frame at the front of `buf`; it must be a data message.
#[inline(always)]
fn decode_one(conn: &mut Connection, buf: &mut [u8]) -> usize {
    match conn.read(buf) {
        Ok(Read::Frame {
            consumed,
            event: Some(Event::Message(m)),
        }) => {
            black_box(m.kind);
            black_box(m.payload);
            consumed
        }
        other => panic!("unexpected decode result: {other:?}"),
    }
}

/// Decode every frame in `buf`; all must be data messages.
#[inline(always)]
fn decode_all(conn: &mut Connection, buf: &mut [u8]) -> usize {
    let mut off = 0;
    let mut frames = 0;
    while off < buf.len() {
        off += decode_one(conn, &mut buf[off..]);
        frames += 1;
    }
    frames
}

fn bench_decode(c: &mut Criterion) {
    let mut g = configure(c, "decode");
    let payload = json_text(100);
    let frame = client_frame(OpCode::Text, &payload, MASK);
    assert_eq!(frame.len(), 106);

    // Sanity: the path decodes back to the payload.
    {
        let mut conn = Connection::server();
        let mut buf = frame.to_vec();
        match conn.read(&mut buf) {
            Ok(Read::Frame {
                consumed: 106,
                event: Some(Event::Message(m)),
            }) => assert_eq!(m.payload, &payload[..]),
            other => panic!("{other:?}"),
        }
    }

    // --- one 100-byte frame -------------------------------------------
    g.throughput(Throughput::Elements(1));
    let mut scratch = vec![0u8; frame.len()];
    g.bench_function("1x100B/copy_only", |b| {
        b.iter(|| {
            scratch.copy_from_slice(black_box(&frame[..]));
            black_box(&mut scratch[..]);
        })
    });
    let mut conn = Connection::server();
    g.bench_function("1x100B/copy+decode", |b| {
        b.iter(|| {
            scratch.copy_from_slice(black_box(&frame[..]));
            decode_one(&mut conn, black_box(&mut scratch[..]))
        })
    });
    // Copy done in untimed setup; only `read` is timed (plus criterion's
    // per-batch loop, a ns or so).
    let mut conn = Connection::server();
    g.bench_function("1x100B/decode_batched", |b| {
        b.iter_batched_ref(
            || frame.to_vec(),
            |buf| decode_one(&mut conn, &mut buf[..]),
            BatchSize::SmallInput,
        )
    });

    // The stages of that `read`, each alone on the same 100-byte payload,
    // to see where the time goes.
    g.bench_function("1x100B/stage_parse_header", |b| {
        b.iter(|| parse_header(black_box(&frame[..])).unwrap().unwrap())
    });
    g.bench_function("1x100B/stage_unmask", |b| {
        b.iter_batched_ref(
            || frame[6..].to_vec(),
            |p| apply_mask(&mut p[..], black_box(MASK), 0),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("1x100B/stage_validate", |b| {
        b.iter(|| validate(black_box(&payload[..])).unwrap())
    });
    // Same frame as Binary: `read` without the UTF-8 check.
    let bin_frame = client_frame(OpCode::Binary, &payload, MASK);
    let mut conn = Connection::server();
    g.bench_function("1x100B/decode_batched_binary", |b| {
        b.iter_batched_ref(
            || bin_frame.to_vec(),
            |buf| decode_one(&mut conn, &mut buf[..]),
            BatchSize::SmallInput,
        )
    });

    // --- 1000 frames back to back -------------------------------------
    const N: usize = 1000;
    let stream: Vec<u8> = frame
        .iter()
        .copied()
        .cycle()
        .take(N * frame.len())
        .collect();
    let mut scratch = vec![0u8; stream.len()];
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("1000x100B/copy_only", |b| {
        b.iter(|| {
            scratch.copy_from_slice(black_box(&stream[..]));
            black_box(&mut scratch[..]);
        })
    });
    let mut conn = Connection::server();
    g.bench_function("1000x100B/copy+decode", |b| {
        b.iter(|| {
            scratch.copy_from_slice(black_box(&stream[..]));
            let n = decode_all(&mut conn, black_box(&mut scratch[..]));
            assert_eq!(n, N);
        })
    });
    // The buffer is filled in untimed setup right before it is decoded, so
    // it is cache-hot, as a buffer the kernel just wrote into would be.
    let mut conn = Connection::server();
    g.bench_function("1000x100B/decode_batched", |b| {
        b.iter_batched_ref(
            || stream.clone(),
            |buf| {
                let n = decode_all(&mut conn, &mut buf[..]);
                assert_eq!(n, N);
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn bench_encode(c: &mut Criterion) {
    let mut g = configure(c, "encode");
    // A broker `msg` frame: envelope + the publisher's bytes + closing brace.
    let head: &[u8] = br#"{"type":"msg","topic":"md.btc-usd.trades","seq":18446744,"data":"#;
    let body: &[u8] =
        br#"{"px":64123.50,"qty":0.2500,"side":"buy","ts":1795000000123,"id":77,"venue":"cb"}"#;
    let tail: &[u8] = b"}";
    let total = head.len() + body.len() + tail.len();
    assert!((140..=160).contains(&total), "envelope is {total} bytes");
    g.throughput(Throughput::Bytes(total as u64));
    g.bench_function(format!("server_frame_parts_{total}B"), |b| {
        b.iter(|| server_frame_parts(OpCode::Text, black_box(&[head, body, tail])))
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_unmask,
    bench_utf8,
    bench_header,
    bench_decode,
    bench_encode
);
criterion_main!(benches);
